#!/usr/bin/env bash
# The GPU check: training, loading and evaluation speed on one CUDA device, in at most 8 minutes.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    cat <<'EOF'
usage: bash benchmarks/gpu_check.sh

Measures GasMono on the first CUDA device, at batch 12 and 256x320, in at most 8 minutes
(every stage has a time limit; a stage that reaches it is reported and skipped):

  1. training step, fp32 eager, channels-last: items/s and peak memory, side by side with
     the release's step structure (benchmarks/release_step.py, fp32, NCHW) on the same weights
  2. the same in NCHW memory (--memory_format contiguous), to see whether channels-last wins here
  3. training step with bf16 autocast (--amp): items/s and peak memory
  4. training step with bf16 autocast and torch.compile (--amp --compile): items/s and peak
     memory after compilation (compiling takes minutes; stopped after 170 s)
  5. DataLoader items/s with the default --num_workers, batch 12, strong augmentation,
     LANCZOS and area resizing (on frames it renders first)
  6. evaluator images/s (NYUv2 layout, 640x480 inputs, the default --num_workers)
  7. whether bf16 losses track fp32 ones over 6 optimiser steps from the same weights
     (relative difference per step, and a verdict)

Uses .venv/bin/python when present, else python3. Needs CUDA: on a machine without it the
script stops with a one-line error. CI does not run it.
EOF
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) echo "error: unknown argument '$1' (bash benchmarks/gpu_check.sh --help)" >&2; exit 2 ;;
esac

python=.venv/bin/python
[ -x "$python" ] || python=python3
if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    echo "error: no CUDA device is visible to torch; benchmarks/gpu_check.sh measures a GPU (see --help)" >&2
    exit 2
fi

start=$SECONDS
workers=$("$python" -c "from options import GasMonoOptions; print(GasMonoOptions().parse([]).num_workers)")
"$python" -c "import torch; print(f'{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}')"

# stage LIMIT_SECONDS TITLE COMMAND...: run the command with a time limit, report its duration
stage() {
    local limit="$1" title="$2"
    shift 2
    echo
    echo "== $title"
    local begin=$SECONDS
    timeout "$limit" "$@"
    local status=$?
    if [ "$status" -eq 124 ]; then
        echo "(stopped after the stage's limit of $limit s)"
    elif [ "$status" -ne 0 ]; then
        echo "(failed with exit status $status)"
    fi
    echo "($((SECONDS - begin)) s)"
}

train=("$python" benchmarks/bench_train.py --device cuda --batch_size 12 --height 256 --width 320)
stage 75 "1. training, fp32 eager, ours vs the release's step" "${train[@]}" --rounds 5 --warmup 2
stage 45 "2. training, fp32 eager, NCHW" "${train[@]}" --memory_format contiguous --no_release --rounds 4 --warmup 1
stage 45 "3. training, bf16 autocast" "${train[@]}" --amp on --no_release --rounds 5 --warmup 2
stage 170 "4. training, bf16 autocast + torch.compile" "${train[@]}" --amp on --compile --no_release --rounds 5 \
    --warmup 2
stage 50 "5. DataLoader, $workers workers (the default), batch 12" "$python" benchmarks/bench_loader.py \
    --items 240 --num_workers "$workers" --batch_size 12 --augmentations strong
stage 40 "6. evaluator" "$python" benchmarks/bench_eval.py --device cuda --batch_size 12 --num_images 96 \
    --num_workers "$workers" --repeats 2
stage 45 "7. bf16 losses against fp32" "$python" benchmarks/amp_check.py --device cuda --batch_size 12 --steps 6
echo
echo "gpu_check: $((SECONDS - start)) s in all"
