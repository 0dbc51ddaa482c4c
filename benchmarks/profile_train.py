"""Where a training step spends its time, by kernel group, for our step and
the release-structured one (``release_step.py``), from ``torch.profiler``.

    python benchmarks/profile_train.py                  # CPU, 256x320, batch 2, one batch of two passes each
    python benchmarks/profile_train.py --threads 1
    python benchmarks/profile_train.py --kernels reference
    python benchmarks/profile_train.py --operators 12   # also the 12 costliest operators, side by side

Each operator's own time (without its children) goes to one group:
convolutions and matrix products (the networks' kernels, which identical
math cannot change; the linear layers that run as 1 x 1 convolutions,
``accel.linear``, count as matrix products), normalisation and activations, pooling and padding,
sampling (the warps), elementwise arithmetic and reductions, memory (copies,
fills, concatenations) and the optimiser (everything inside
``optimizer.step``). The last line is the ceiling that the convolutions and
matrix products put on our speed-up: the release's total over our time in
those two groups alone.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_train import EPOCH, one_batch, random_batch, recipe_trainer, release_like  # noqa: E402

from utils import OneLineErrorParser, describe_cpu  # noqa: E402

OPTIMISER_SCOPE = "optimizer step"
GROUPS = {
    "convolutions": ("convolution", "conv2d", "mkldnn_convolution", "_slow_conv2d_forward", "_slow_conv2d_backward",
                     "convolution_backward", "cudnn_convolution"),
    "matrix products": ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear"),
    "normalisation, activations": ("native_batch_norm", "native_batch_norm_backward", "native_layer_norm",
                                   "native_layer_norm_backward", "elu", "elu_", "elu_backward", "gelu",
                                   "gelu_backward", "hardswish", "hardswish_backward", "threshold_backward",
                                   "clamp_min_", "relu", "relu_", "_softmax", "_softmax_backward_data", "sigmoid",
                                   "sigmoid_backward"),
    "pooling, padding": ("avg_pool2d", "avg_pool2d_backward", "max_pool2d_with_indices",
                         "max_pool2d_with_indices_backward", "reflection_pad2d", "reflection_pad2d_backward",
                         "constant_pad_nd", "im2col", "col2im"),
    "sampling (warps)": ("grid_sampler_2d", "grid_sampler_2d_backward", "upsample_bilinear2d",
                         "upsample_bilinear2d_backward", "upsample_nearest2d", "upsample_nearest2d_backward"),
    "memory": ("copy_", "fill_", "zero_", "cat", "clone", "_to_copy", "empty", "empty_strided", "resize_",
               "contiguous", "as_strided", "slice_backward", "select_backward", "index_select"),
}
GROUP_OF = {f"aten::{name}": group for group, names in GROUPS.items() for name in names}
# convolution operator -> the indices of its input image and its weight among its arguments
CONVOLUTION_ARGUMENTS = {**{f"aten::{name}": (0, 1) for name in ("conv2d", "convolution", "_convolution",
                                                                   "mkldnn_convolution")},
                         "aten::convolution_backward": (1, 2)}


def is_linear_layer(event) -> bool:
    """A convolution that is a linear layer's product (:func:`accel.linear.onednn_linear`:
    a ``1 x C x 1 x M`` input and a ``O x C x 1 x 1`` weight)."""
    shapes = event.input_shapes
    if event.name not in CONVOLUTION_ARGUMENTS or len(shapes) <= CONVOLUTION_ARGUMENTS[event.name][1]:
        return False
    image, weight = (shapes[index] for index in CONVOLUTION_ARGUMENTS[event.name])
    return len(image) == 4 and image[0] == 1 and image[2] == 1 and len(weight) == 4 and weight[2:] == [1, 1]


def group_times(prof: profile) -> dict[str, float]:
    """Own CPU time (ms) per group; operators inside ``optimizer.step`` go to ``optimiser``,
    the convolutions of linear layers to ``matrix products``."""
    times: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        parent, in_optimiser = event.cpu_parent, False
        while parent is not None and not in_optimiser:
            in_optimiser = parent.name == OPTIMISER_SCOPE
            parent = parent.cpu_parent
        group = "optimiser" if in_optimiser else GROUP_OF.get(event.name, "elementwise, reductions")
        if group == "convolutions" and is_linear_layer(event):
            group = "matrix products"
        times[group] += event.self_cpu_time_total / 1000
    return times


def operator_times(prof: profile) -> dict[str, float]:
    """Own CPU time (ms) per ``aten::`` operator."""
    return {event.key: event.self_cpu_time_total / 1000 for event in prof.key_averages()
            if event.key.startswith("aten::")}


def profiled(run: Callable[[], None]) -> tuple[dict[str, float], dict[str, float]]:
    """Own CPU time (ms) of one ``run`` (after one untimed) per group and per operator."""
    run()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    return group_times(prof), operator_times(prof)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--kernels", choices=["reference", "fast"], default="fast", help="our path to profile")
    parser.add_argument("--operators", type=int, default=0, help="also print the N costliest operators")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    trainer = recipe_trainer(args.height, args.width, args.batch_size, "--device", "cpu", "--kernels", args.kernels)
    step = release_like(trainer)
    batch = random_batch(args.batch_size, args.height, args.width)
    passes = trainer.recipe.passes_per_batch(EPOCH)

    def optimiser_scope() -> record_function:
        return record_function(OPTIMISER_SCOPE)

    ours = one_batch(trainer.process_batch, trainer.optimizer, batch, passes, optimiser_scope)
    release = one_batch(step.process_batch, step.optimizer, batch, passes, optimiser_scope)
    (theirs, their_operators), (mine, my_operators) = profiled(release), profiled(ours)
    total_theirs, total_mine = sum(theirs.values()), sum(mine.values())
    print(f"CPU: {describe_cpu()}, {torch.get_num_threads()} threads, {args.height}x{args.width}, batch "
          f"{args.batch_size}, one batch of {passes} passes, ours: {trainer.kernels.describe()}; own operator time per "
          "group (ms per optimiser step and share)")
    print(f"{'group':<28} {'release':>9} {'share':>6} {'ours':>9} {'share':>6} {'release/ours':>13}")
    for group in [*GROUPS, "elementwise, reductions", "optimiser"]:
        a, b = theirs.get(group, 0.0) / passes, mine.get(group, 0.0) / passes
        ratio = f"{a / b:13.2f}" if b > 0 else f"{'-':>13}"
        print(f"{group:<28} {a:>9.0f} {100 * a * passes / total_theirs:>5.1f}% {b:>9.0f} "
              f"{100 * b * passes / total_mine:>5.1f}% {ratio}")
    print(f"{'total':<28} {total_theirs / passes:>9.0f} {'':>6} {total_mine / passes:>9.0f} {'':>6} "
          f"{total_theirs / total_mine:13.2f}")
    kernels = mine["convolutions"] + mine["matrix products"]
    print(f"ceiling set by our convolutions and matrix products alone: {total_theirs / kernels:.2f}x")
    if args.operators:
        names = sorted(set(their_operators) | set(my_operators),
                       key=lambda name: -max(their_operators.get(name, 0.0), my_operators.get(name, 0.0)))
        print(f"{'operator':<36} {'release':>9} {'ours':>9}   (ms per optimiser step)")
        for name in names[:args.operators]:
            print(f"{name:<36} {their_operators.get(name, 0.0) / passes:>9.0f} {my_operators.get(name, 0.0) / passes:>9.0f}")


if __name__ == "__main__":
    main()
