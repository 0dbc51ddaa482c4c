"""Training speed of the full GasMono step (depth, AlignNet, PoseNet, losses,
backward, AdamW) on random images: the release's step structure
(``release_step.py``), our reference path (``--kernels reference``: the plain
PyTorch a researcher edits) and our fast path (``--kernels fast``: the
kernels of ``accel/``), side by side on the same weights.

    python benchmarks/bench_train.py                              # CPU, 256x320, batch 2
    python benchmarks/bench_train.py --threads 1 --clock cpu      # robust on a shared machine
    python benchmarks/bench_train.py --device cuda --batch_size 12 --amp on --no_release

Every round processes one batch (a fresh copy, so that nothing computed for
an earlier batch is reused) with the full recipe at epoch 25: coarse poses,
self-distillation and two passes per batch, each pass an optimiser step.
Rounds alternate release / reference / fast, so that all see the same machine
load; a ratio is the median over the rounds of release time / its time (and
the ratio of the best times). Prints the processor (speed-ups differ between
CPUs of one kind), seconds per optimiser step, items per second and peak
memory (CUDA: allocated by torch, per configuration; CPU: the process's
resident set, shared by all).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from release_step import ReleaseStep  # noqa: E402

from options import GasMonoOptions  # noqa: E402
from trainer import Trainer  # noqa: E402
from utils import (  # noqa: E402
    DEFAULT_DEPTH_ENCODER,
    DEPTH_ENCODERS,
    NYU_NORMALISED_INTRINSICS,
    OneLineErrorParser,
    describe_cpu,
)

EPOCH = 25  # two passes per batch, full distillation weight
RELEASE = "release"  # the label of the release-structured step


def random_batch(batch_size: int, height: int, width: int) -> dict:
    """A batch of the keys the trainer reads (scale 0), random images, NYU intrinsics, small coarse poses."""
    generator = torch.Generator().manual_seed(0)
    batch = {}
    for frame_id in (0, -1, 1):
        image = torch.rand(batch_size, 3, height, width, generator=generator)
        batch[("color", frame_id, 0)] = image
        batch[("color_aug", frame_id, 0)] = image
    K = torch.from_numpy(NYU_NORMALISED_INTRINSICS).clone()
    K[0] *= width
    K[1] *= height
    batch[("K", 0)] = K.repeat(batch_size, 1, 1)
    batch[("inv_K", 0)] = torch.linalg.inv(batch[("K", 0)])
    for frame_id in (-1, 1):
        pose = torch.eye(4).repeat(batch_size, 1, 1)
        pose[:, 0, 3] = 0.05 * frame_id
        batch[("pose_gt", frame_id)] = pose
    return batch


# the full recipe: coarse poses with AlignNet, self-distillation with two passes per batch
RECIPE_FLAGS = ["--use_posegt", "--selfpp", "--www", "0.2", "--wpp", "0.2", "--iiters", "2",
                "--disparity_smoothness", "1e-4", "--weights_init", "scratch"]


def recipe_trainer(height: int, width: int, batch_size: int, *extra: str) -> Trainer:
    """A data-less trainer of the full recipe at :data:`EPOCH`, in training mode (``extra``: more flags)."""
    flags = ["--height", str(height), "--width", str(width), "--batch_size", str(batch_size), *RECIPE_FLAGS, *extra]
    trainer = Trainer(GasMonoOptions().parse(flags), with_data=False)
    trainer.set_train()
    trainer.epoch = EPOCH
    return trainer


def release_like(trainer: Trainer) -> ReleaseStep:
    """The release-structured step on the trainer's options and a copy of its weights."""
    step = ReleaseStep(trainer.opt, trainer.device)
    for name, model in step.models.items():
        model.load_state_dict(trainer.models[name].state_dict())
    step.epoch = trainer.epoch
    return step


def one_batch(process_batch: Callable, optimizer: torch.optim.Optimizer, batch: dict, passes: int,
              around_step: Callable[[], ContextManager] = nullcontext) -> Callable[[], None]:
    """One batch: ``passes`` optimiser steps carrying the distillation state, on a fresh copy of
    ``batch`` (``around_step``: a context for each ``optimizer.step``, e.g. a profiler scope)."""
    def run() -> None:
        inputs, state = {key: value.clone() for key, value in batch.items()}, None
        for _ in range(passes):
            _, losses, state = process_batch(inputs, state)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            with around_step():
                optimizer.step()
    return run


def measure(runs: dict[str, Callable[[], None]], rounds: int, warmup: int, clock: Callable[[], float],
            device: torch.device) -> dict[str, dict]:
    """Alternate the runs ``rounds`` times after ``warmup`` calls each -> per run its times and peak memory."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    results = {name: {"times": [], "peak_mb": 0.0} for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = clock()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                peak = torch.cuda.max_memory_allocated(device) / 2**20
            else:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            results[name]["times"].append(clock() - start)
            results[name]["peak_mb"] = max(results[name]["peak_mb"], peak)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=3, help="timed batches per configuration (alternating)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches per configuration first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or this process's CPU time (robust on a loaded machine with --threads 1)")
    parser.add_argument("--kernels", nargs="+", choices=["reference", "fast"], default=["reference", "fast"],
                        help="our paths to time beside the release")
    parser.add_argument("--amp", choices=["off", "on"], default="off", help="ours with bf16 autocast (CUDA)")
    parser.add_argument("--compile", action="store_true", help="ours with --compile")
    parser.add_argument("--memory_format", choices=["channels_last", "contiguous"], default="channels_last",
                        help="ours: the networks' memory format")
    parser.add_argument("--no_release", action="store_true", help="time ours only")
    parser.add_argument("--depth_encoder", choices=DEPTH_ENCODERS, default=DEFAULT_DEPTH_ENCODER)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runs: dict[str, Callable[[], None]] = {}
    batch = random_batch(args.batch_size, args.height, args.width)
    plans = {}
    trainers = {}
    for kernels in args.kernels:
        trainer = recipe_trainer(args.height, args.width, args.batch_size, "--device", args.device,
                                 "--depth_encoder", args.depth_encoder, "--memory_format", args.memory_format,
                                 "--kernels", kernels, *["--amp"] * (args.amp == "on"),
                                 *["--compile"] * args.compile)
        if trainers:  # the same weights for every configuration
            for name, model in trainer.models.items():
                model.load_state_dict(next(iter(trainers.values())).models[name].state_dict())
        trainers[kernels] = trainer
        plans[kernels] = trainer.kernels.describe()
    first = next(iter(trainers.values()))
    device, passes = first.device, first.recipe.passes_per_batch(EPOCH)
    if not args.no_release:
        step = release_like(first)
        runs[RELEASE] = one_batch(step.process_batch, step.optimizer, batch, passes)
    for kernels, trainer in trainers.items():
        runs[kernels] = one_batch(trainer.process_batch, trainer.optimizer, batch, passes)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else describe_cpu()
    print(f"device: {name}; torch {torch.__version__}, {torch.get_num_threads()} threads; {args.height}x{args.width}, "
          f"batch {args.batch_size}, depth encoder {args.depth_encoder}, {args.memory_format}"
          f"{', bf16 autocast' if args.amp == 'on' else ''}{', compiled' if args.compile else ''}; {passes} passes "
          f"per batch, {args.rounds} alternating rounds, {args.clock} clock")
    for kernels, plan in plans.items():
        print(f"{kernels}: {plan}")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    results = measure(runs, args.rounds, args.warmup, clock, device)
    memory = "peak MB" if device.type == "cuda" else "RSS MB"
    print(f"{'configuration':<12} {'s/step':>8} {'best':>8} {'items/s':>8} {memory:>9}")
    for label, result in results.items():
        step_times = [seconds / passes for seconds in result["times"]]
        median = statistics.median(step_times)
        print(f"{label:<12} {median:>8.3f} {min(step_times):>8.3f} {args.batch_size / median:>8.2f} "
              f"{result['peak_mb']:>9.0f}")
    if RELEASE in results:
        baseline = results[RELEASE]["times"]
        for label, result in results.items():
            if label == RELEASE:
                continue
            ratios = [ref / time for ref, time in zip(baseline, result["times"])]
            print(f"speed-up of {label} over the release: {statistics.median(ratios):.2f}x (median of "
                  f"{len(ratios)} pairs, {min(ratios):.2f}-{max(ratios):.2f}), best/best "
                  f"{min(baseline) / min(result['times']):.2f}x")


if __name__ == "__main__":
    main()
