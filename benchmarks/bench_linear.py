"""The linear layers of the MPViT encoder, forward + backward, on PyTorch's
GEMM (``nn.Linear``) and on oneDNN (``accel.linear.Conv1x1Linear``), CPU float32:
the measurement behind the machine's choice of ``accel.tuning`` (which times
a subset of these shapes at start-up and caches the verdict), in full.

    python benchmarks/bench_linear.py
    python benchmarks/bench_linear.py --threads 1 --rounds 50

The shapes are those of a training step at 256 x 320, batch 2 (rows = tokens
x batch; stage 1 to 4: 64, 128, 216 and 288 channels, MLP ratio 4, ``qkv``
3x). Prints each layer's time per call on both backends (median over
alternating rounds), the achieved GFLOP/s and the speed-up, and the largest
difference of the results relative to the largest value.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_train import measure  # noqa: E402

from accel.linear import Conv1x1Linear  # noqa: E402
from utils import OneLineErrorParser, describe_cpu  # noqa: E402

# (rows, in features, out features): qkv, proj, fc1, fc2 of every stage at 256 x 320, batch 2
ENCODER_SHAPES = [
    (10240, 64, 192), (10240, 64, 64), (10240, 64, 256), (10240, 256, 64),
    (2560, 128, 384), (2560, 128, 128), (2560, 128, 512), (2560, 512, 128),
    (640, 216, 648), (640, 216, 216), (640, 216, 864), (640, 864, 216),
    (160, 288, 864), (160, 288, 288), (160, 288, 1152), (160, 1152, 288),
]


# the layer class of each backend
BACKENDS = {"blas": torch.nn.Linear, "onednn": Conv1x1Linear}


def on_backend(backend: str, layer: torch.nn.Linear, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    """Forward + backward of ``layer`` on the CPU linear ``backend``."""
    def run() -> None:
        layer.__class__ = BACKENDS[backend]
        layer(x).backward(grad)
    return run


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed calls per backend and shape (alternating)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not torch.backends.mkldnn.is_available():
        parser.error("this PyTorch is built without oneDNN")
    torch.manual_seed(0)
    print(f"CPU: {describe_cpu()}, {torch.get_num_threads()} threads, torch {torch.__version__}, float32, "
          f"forward + backward, median of {args.rounds} rounds")
    print(f"{'rows x in -> out':>20} {'GEMM ms':>8} {'GFLOP/s':>8} {'oneDNN ms':>10} {'GFLOP/s':>8} {'speed-up':>9}"
          f" {'max diff':>9}")
    totals = {"blas": 0.0, "onednn": 0.0}
    for rows, features_in, features_out in ENCODER_SHAPES:
        layer = torch.nn.Linear(features_in, features_out)
        x = torch.randn(rows, features_in, requires_grad=True)
        grad = torch.randn(rows, features_out)
        outputs = {}
        for backend in totals:
            layer.__class__ = BACKENDS[backend]
            with torch.no_grad():
                outputs[backend] = layer(x)
        results = measure({backend: on_backend(backend, layer, x, grad) for backend in totals}, args.rounds, 3,
                          time.perf_counter, torch.device("cpu"))
        flops = 3 * 2 * rows * features_in * features_out  # forward, and the two products of backward
        blas, onednn = (statistics.median(results[backend]["times"]) for backend in ("blas", "onednn"))
        totals["blas"] += blas
        totals["onednn"] += onednn
        difference = float((outputs["onednn"] - outputs["blas"]).abs().max() / outputs["blas"].abs().max())
        print(f"{f'{rows} x {features_in} -> {features_out}':>20} {1e3 * blas:>8.2f} {flops / blas / 1e9:>8.0f} "
              f"{1e3 * onednn:>10.2f} {flops / onednn / 1e9:>8.0f} {blas / onednn:>8.2f}x {difference:>9.1e}")
    print(f"{'all shapes':>20} {1e3 * totals['blas']:>8.2f} {'':>8} {1e3 * totals['onednn']:>10.2f} {'':>8} "
          f"{totals['blas'] / totals['onednn']:>8.2f}x")


if __name__ == "__main__":
    main()
