"""Throughput of the depth evaluator (images per second).

Builds a checkpoint (random weights, ``--depth_encoder``) at ``--height x --width`` and a synthetic
NYUv2-layout test set (640 x 480 PNGs + ``gt_depths.npz``) in a temporary
folder, then times on CPU and CUDA when present (``--device`` picks one):

* ``inference``: data loading + network (``predict_disparities``);
* ``inference + flip``: the same with flip post-processing;
* ``metrics``: resize, median scaling and metrics under the NYU eigen protocol;
* ``end to end``: ``evaluate()`` as the CLI runs it (loading the checkpoint
  included).

Each figure is the best of ``--repeats`` runs.

    python benchmarks/bench_eval.py [--height 256 --width 320 --num_images 16 --batch_size 8 --threads N
                                    --depth_encoder resnet18]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import networks  # noqa: E402
from evaluation import (  # noqa: E402
    EvalConfig,
    build_eval_set,
    evaluate,
    evaluate_depth_maps,
    predict_disparities,
    resolve_protocol,
)
from inference import DepthEstimator  # noqa: E402
from utils import DEFAULT_DEPTH_ENCODER, DEPTH_ENCODERS, OneLineErrorParser, describe_cpu  # noqa: E402


def make_test_set(root: Path, num_images: int, height: int, width: int, depth_encoder: str) -> Path:
    """Checkpoint in ``root/weights`` and an NYU-layout test set in ``root/nyu``."""
    encoder = networks.build_depth_encoder(depth_encoder)
    decoder = networks.DepthDecoder(encoder.num_ch_enc)
    networks.save_weights_folder(root / "weights", {"encoder": encoder, "depth": decoder}, height, width, False,
                                 depth_encoder=depth_encoder)
    data = root / "nyu"
    (data / "color").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(1, num_images + 1):
        image = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
        Image.fromarray(image).save(data / "color" / f"{index:04d}.png")
    (data / "test_files.txt").write_text("".join(f"color {i:04d} l\n" for i in range(1, num_images + 1)))
    np.savez(data / "gt_depths.npz", data=rng.uniform(0.5, 9.0, size=(num_images, 480, 640)).astype(np.float32))
    return data


def timed(run, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls (robust on a shared machine) and the last result."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def benchmark(device: str, root: Path, args: argparse.Namespace) -> None:
    config = EvalConfig(
        load_weights_folder=str(root / "weights"), data_path=str(root / "nyu"), batch_size=args.batch_size,
        num_workers=args.num_workers, device=device, out_dir=str(root / "out"), progress=False,
    )
    protocol = resolve_protocol("nyu", "eigen")
    estimator = DepthEstimator.from_checkpoint(config.load_weights_folder, device)
    eval_set = build_eval_set(config, protocol, estimator.height, estimator.width)
    n = len(eval_set.dataset)
    predict_disparities(estimator, eval_set.dataset, args.batch_size, args.num_workers, progress=False)  # warm-up
    seconds, disps = timed(lambda: predict_disparities(
        estimator, eval_set.dataset, args.batch_size, args.num_workers, progress=False), args.repeats)
    flip_seconds, _ = timed(lambda: predict_disparities(
        estimator, eval_set.dataset, args.batch_size, args.num_workers, post_process=True, progress=False),
        args.repeats)
    metric_seconds, _ = timed(
        lambda: evaluate_depth_maps(disps, eval_set.ground_truth, protocol, progress=False), args.repeats)
    total_seconds, _ = timed(lambda: evaluate(config), args.repeats)
    print(f"device {device} (CPU: {describe_cpu()}, {torch.get_num_threads()} threads), input {args.height}x{args.width}, "
          f"batch {args.batch_size}, {args.num_workers} workers, {n} images of 640x480, best of {args.repeats}")
    for label, value in (("inference", seconds), ("inference + flip", flip_seconds),
                         ("metrics (eigen protocol)", metric_seconds), ("end to end evaluate()", total_seconds)):
        print(f"  {label:<26} {n / value:8.2f} images/s  ({1000 * value / n:8.1f} ms/image)")


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--num_images", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (the best is shown)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--depth_encoder", choices=DEPTH_ENCODERS, default=DEFAULT_DEPTH_ENCODER,
                        help="the checkpoint's depth encoder")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="where to time: the CPU and CUDA when present (all), or one of them")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_test_set(root, args.num_images, args.height, args.width, args.depth_encoder)
        if args.device in ("all", "cpu"):
            benchmark("cpu", root, args)
        if args.device == "cuda" or (args.device == "all" and torch.cuda.is_available()):
            benchmark("cuda", root, args)


if __name__ == "__main__":
    main()
