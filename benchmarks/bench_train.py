"""Training speed of the full GasMono step (depth, AlignNet, PoseNet, losses,
backward, AdamW) on random images, side by side with the release's step
structure (``release_step.py``) on the same weights.

    python benchmarks/bench_train.py                              # CPU, 256x320, batch 2, ours vs release
    python benchmarks/bench_train.py --threads 1 --clock cpu      # robust on a shared machine
    python benchmarks/bench_train.py --device cuda --batch_size 12 --amp on --no_release

Every round processes one batch (a fresh copy, so that nothing computed for
an earlier batch is reused) with the full recipe at epoch 25: coarse poses,
self-distillation and two passes per batch, each pass an optimiser step.
Rounds alternate release / ours, so that both see the same machine load; the
ratio is the median over the rounds of release time / our time (and the ratio
of the best times). Prints seconds per optimiser step, items per second and
peak memory (CUDA: allocated by torch, per configuration; CPU: the process's
resident set, shared by both).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from release_step import ReleaseStep  # noqa: E402

from options import GasMonoOptions  # noqa: E402
from trainer import Trainer  # noqa: E402
from utils import DEFAULT_DEPTH_ENCODER, DEPTH_ENCODERS, NYU_NORMALISED_INTRINSICS, OneLineErrorParser  # noqa: E402

EPOCH = 25  # two passes per batch, full distillation weight


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


def ours(trainer: Trainer, batch: dict, passes: int) -> Callable[[], None]:
    """One batch through our trainer: ``passes`` optimiser steps carrying the distillation state."""
    def run() -> None:
        inputs = {key: value.clone() for key, value in batch.items()}
        state = None
        for _ in range(passes):
            _, losses, state = trainer.process_batch(inputs, state)
            trainer.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            trainer.optimizer.step()
    return run


def release(step: ReleaseStep, batch: dict, passes: int) -> Callable[[], None]:
    """One batch through the release-structured step."""
    def run() -> None:
        inputs = {key: value.clone() for key, value in batch.items()}
        state = None
        for _ in range(passes):
            _, losses, state = step.process_batch(inputs, state)
            step.step(losses["loss"])
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
    parser.add_argument("--amp", choices=["off", "on", "both"], default="off", help="ours with bf16 autocast (CUDA)")
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
    flags = ["--height", str(args.height), "--width", str(args.width), "--batch_size", str(args.batch_size),
             "--use_posegt", "--selfpp", "--www", "0.2", "--wpp", "0.2", "--iiters", "2", "--disparity_smoothness",
             "1e-4", "--weights_init", "scratch", "--device", args.device, "--depth_encoder", args.depth_encoder,
             "--memory_format", args.memory_format]
    torch.manual_seed(0)
    runs: dict[str, Callable[[], None]] = {}
    batch = random_batch(args.batch_size, args.height, args.width)
    device = None
    for amp in {"off": [False], "on": [True], "both": [False, True]}[args.amp]:
        trainer = Trainer(GasMonoOptions().parse(flags + ["--amp"] * amp + ["--compile"] * args.compile),
                          with_data=False)
        trainer.set_train()
        trainer.epoch = EPOCH
        device = trainer.device
        passes = trainer.recipe.passes_per_batch(EPOCH)
        label = f"ours {'bf16' if amp else 'fp32'}{' compiled' if args.compile else ''} {args.memory_format}"
        if not args.no_release and "release fp32 NCHW" not in runs:
            step = ReleaseStep(trainer.opt, device)
            for name, model in step.models.items():
                model.load_state_dict(trainer.models[name].state_dict())
            step.epoch = EPOCH
            runs["release fp32 NCHW"] = release(step, batch, passes)
        runs[label] = ours(trainer, batch, passes)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, {torch.get_num_threads()} threads, {args.height}x{args.width}, batch {args.batch_size}, "
          f"depth encoder {args.depth_encoder}, {passes} passes per batch, {args.rounds} alternating rounds, "
          f"{args.clock} clock")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    results = measure(runs, args.rounds, args.warmup, clock, device)
    memory = "peak MB" if device.type == "cuda" else "RSS MB"
    print(f"{'configuration':<36} {'s/step':>8} {'best':>8} {'items/s':>8} {memory:>9}")
    for label, result in results.items():
        step_times = [seconds / passes for seconds in result["times"]]
        median = statistics.median(step_times)
        print(f"{label:<36} {median:>8.3f} {min(step_times):>8.3f} {args.batch_size / median:>8.2f} "
              f"{result['peak_mb']:>9.0f}")
    if "release fp32 NCHW" in results:
        baseline = results["release fp32 NCHW"]["times"]
        for label, result in results.items():
            if label == "release fp32 NCHW":
                continue
            ratios = [ref / time for ref, time in zip(baseline, result["times"])]
            print(f"speed-up of {label} over the release: {statistics.median(ratios):.2f}x (median of "
                  f"{len(ratios)} pairs, {min(ratios):.2f}-{max(ratios):.2f}), best/best "
                  f"{min(baseline) / min(result['times']):.2f}x")


if __name__ == "__main__":
    main()
