#!/usr/bin/env bash
# Entry points of the project: the CPU demo, the ablation, the release's NYUv2 training recipe, GasMono on
# KITTI and the Monodepth2 baseline on NYUv2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

usage() {
    cat <<'EOF'
usage: bash run.sh <command> [arguments]

  demo [--quick] [--preset NAME] [--deterministic] [--device DEV] [--out DIR] [--seed N] [--set NAME=VALUE ...]
        the whole pipeline on bundled synthetic data: render scenes, COLMAP coarse poses, train
        GasMono with every component, evaluate depth (untrained vs trained) and poses; results,
        figures and checkpoints go to DIR (default demo_output/). About 10 minutes on 2 CPU
        cores; --quick runs every stage at tiny sizes in under 3 minutes; --device cuda (or
        --preset gpu) renders more rooms and trains at 256x320 for about 10 GPU minutes (presets:
        python tools/demo.py --help); --deterministic makes every stage repeatable bit for bit
        on the same machine and thread count (docs/reproducibility.md).
  ablate [--seeds N] [--variants NAME ...] [--quick] [--preset P] [--deterministic] [--out DIR] [--seed N]
         [--set ...]
        the demo's schedule trained per variant (full; without coarse poses; without
        self-distillation; without both; ResNet-18 depth encoder) and per training seed on
        one data set; mean +- std tables in DIR (default ablation_output/).
  train DATA_PATH [train.py flags]
        the release's NYUv2 recipe: --height 256 --width 320 --learning_rate 5e-5 --use_posegt
        --www 0.2 --wpp 0.2 --iiters 2 --selfpp --batch_size 12 --disparity_smoothness 1e-4;
        extra flags are appended (for a repeated flag the last value wins).
  train_ddp NGPUS DATA_PATH [train.py flags]
        the same recipe on NGPUS GPUs with torchrun; --batch_size is per process
        (12 per GPU, so NGPUS x 12 in total). Several machines: run the same command on each
        with NNODES (number of machines), NODE_RANK (0 .. NNODES-1), MASTER_ADDR (the address of
        the machine with NODE_RANK 0) and MASTER_PORT (default 29500) in the environment; give
        every machine the data and the same --log_dir on a shared file system (rank 0 saves).
        SIGTERM, SIGUSR1 or Ctrl-C to torchrun reach every rank: they stop after the current batch,
        rank 0 saves a checkpoint to resume from; torchrun waits STOP_TIMEOUT seconds (default 120)
        before it kills them (see docs/faults.md).
  train_kitti DATA_PATH [train.py flags]
        GasMono on KITTI raw (docs/datasets.md): --dataset kitti --split eigen_zhou --height 192
        --width 640 --batch_size 12 --max_depth 100 --disparity_smoothness 1e-3 --num_epochs 20
        (Monodepth2's KITTI settings; MonoViT also trains at 192x640; the release publishes no
        KITTI flags) with the release's method flags --learning_rate 5e-5 --use_posegt --www 0.2
        --wpp 0.2 --iiters 2 --selfpp. The coarse poses come first: tools/make_coarse_poses.py
        --dataset kitti --data_path DATA_PATH --split eigen_zhou --split_files splits/eigen_zhou.
        Add --png for .png frames.
  baseline DATA_PATH [train.py flags]
        Monodepth2 on NYUv2: --depth_encoder resnet18 --height 256 --width 320 --max_depth 10
        --model_name baseline; PoseNet on raw pairs (no coarse poses), no self-distillation, the
        release's other defaults (--learning_rate 1e-4, --disparity_smoothness 1e-3, --batch_size
        12, 40 epochs). ImageNet weights: add --depth_encoder_pretrained and --resnet_pretrained.

The first demo/ablate/train/train_kitti/baseline call installs requirements.txt into .venv when torch, pycolmap,
albumentations or timm cannot be imported from it.
EOF
}

ensure_venv() {
    if ! .venv/bin/python -c "import torch, pycolmap, albumentations, timm" >/dev/null 2>&1; then
        echo "installing requirements into .venv ..." >&2
        python3 -m venv .venv
        .venv/bin/pip install -r requirements.txt
    fi
}

recipe=(--height 256 --width 320 --learning_rate 5e-5 --use_posegt --www 0.2 --wpp 0.2 --iiters 2 --selfpp
        --batch_size 12 --disparity_smoothness 1e-4)
kitti_recipe=(--dataset kitti --split eigen_zhou --height 192 --width 640 --batch_size 12 --max_depth 100
              --disparity_smoothness 1e-3 --num_epochs 20 --learning_rate 5e-5 --use_posegt --www 0.2 --wpp 0.2
              --iiters 2 --selfpp --model_name gasmono_kitti)
baseline_recipe=(--depth_encoder resnet18 --height 256 --width 320 --max_depth 10 --model_name baseline)

command="${1:-}"
if [ $# -gt 0 ]; then
    shift
fi

case "$command" in
    demo | ablate)
        ensure_venv
        exec .venv/bin/python "tools/$command.py" "$@"
        ;;
    train | train_kitti | baseline)
        if [ $# -lt 1 ]; then
            echo "error: $command needs DATA_PATH" >&2
            usage >&2
            exit 2
        fi
        data_path="$1"
        shift
        ensure_venv
        if [ "$command" = baseline ]; then
            exec .venv/bin/python train.py --data_path "$data_path" "${baseline_recipe[@]}" "$@"
        fi
        if [ "$command" = train_kitti ]; then
            exec .venv/bin/python train.py --data_path "$data_path" "${kitti_recipe[@]}" "$@"
        fi
        exec .venv/bin/python train.py --data_path "$data_path" "${recipe[@]}" "$@"
        ;;
    train_ddp)
        if [ $# -lt 2 ]; then
            echo "error: train_ddp needs NGPUS and DATA_PATH" >&2
            usage >&2
            exit 2
        fi
        ngpus="$1"
        data_path="$2"
        shift 2
        nodes=(--standalone)
        nnodes="${NNODES:-1}"
        if ! [[ "$nnodes" =~ ^[1-9][0-9]*$ ]]; then
            echo "error: NNODES must be a positive integer, got '$nnodes'" >&2
            exit 2
        fi
        if [ "$nnodes" -gt 1 ]; then
            node_rank="${NODE_RANK:-}"
            if ! [[ "$node_rank" =~ ^[0-9]+$ ]] || [ "$node_rank" -ge "$nnodes" ]; then
                echo "error: NODE_RANK must be 0 .. $((nnodes - 1)) with NNODES=$nnodes, got '$node_rank'" >&2
                exit 2
            fi
            if [ -z "${MASTER_ADDR:-}" ]; then
                echo "error: NNODES=$nnodes needs MASTER_ADDR, the address of the machine with NODE_RANK 0" >&2
                exit 2
            fi
            nodes=(--nnodes "$nnodes" --node_rank "$node_rank" --master_addr "$MASTER_ADDR"
                   --master_port "${MASTER_PORT:-29500}")
        fi
        ensure_venv
        # torchrun forwards these signals to the ranks (by default not SIGUSR1, which would kill torchrun alone)
        exec .venv/bin/torchrun "${nodes[@]}" --nproc_per_node "$ngpus" \
            --signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout "${STOP_TIMEOUT:-120}" \
            train.py --data_path "$data_path" "${recipe[@]}" "$@"
        ;;
    -h | --help | help)
        usage
        ;;
    "")
        usage >&2
        exit 2
        ;;
    *)
        echo "error: unknown command '$command'" >&2
        usage >&2
        exit 2
        ;;
esac
