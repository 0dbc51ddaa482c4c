"""Do bf16 autocast losses track fp32 ones? Two trainers start from the same
weights and take the same optimiser steps on the same batches (full recipe,
two passes per batch, tie-break noise off, the same random draws per step),
one in fp32 and one with ``--amp``; the losses of every step and their
relative difference are printed, then a one-line verdict.

    python benchmarks/amp_check.py --device cuda              # batch 12, 256x320, 6 steps
    python benchmarks/amp_check.py --device cuda --steps 10 --tolerance 0.03

``--amp`` is bf16 autocast on CUDA; on the CPU both runs are fp32 (the check
then only exercises the script).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_train import EPOCH, random_batch, recipe_trainer  # noqa: E402

from trainer import Trainer  # noqa: E402
from utils import OneLineErrorParser  # noqa: E402


def losses_over_steps(trainer: Trainer, batches: list[dict], passes: int) -> list[float]:
    """The loss of every optimiser step; the random draws of step ``i`` come from seed ``i``."""
    losses, step = [], 0
    for batch in batches:
        state = None
        for _ in range(passes):
            torch.manual_seed(step)
            _, step_losses, state = trainer.process_batch(batch, state)
            trainer.optimizer.zero_grad(set_to_none=True)
            step_losses["loss"].backward()
            trainer.optimizer.step()
            losses.append(step_losses["loss"].item())
            step += 1
    return losses


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--batch_size", type=int, default=12)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps (two per batch)")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="largest relative loss difference that counts as tracking")
    args = parser.parse_args(argv)
    trainers = {}
    for name, extra in (("fp32", []), ("bf16", ["--amp"])):
        torch.manual_seed(0)
        trainer = recipe_trainer(args.height, args.width, args.batch_size, "--device", args.device, *extra)
        trainer.tie_break_noise_std = 0.0
        trainers[name] = trainer
    passes = trainers["fp32"].recipe.passes_per_batch(EPOCH)
    batches = []
    for index in range((args.steps + passes - 1) // passes):
        batch = random_batch(args.batch_size, args.height, args.width)
        generator = torch.Generator().manual_seed(index)
        for key in [key for key in batch if key[0] in ("color", "color_aug")]:
            batch[key] = torch.rand(batch[key].shape, generator=generator)
        batches.append(batch)
    results = {name: losses_over_steps(trainer, batches, passes)[:args.steps] for name, trainer in trainers.items()}
    print(f"device {trainers['fp32'].device}, batch {args.batch_size}, {args.height}x{args.width}, {args.steps} steps")
    print(f"{'step':>4} {'fp32 loss':>12} {'bf16 loss':>12} {'relative difference':>20}")
    differences = []
    for step, (full, half) in enumerate(zip(results["fp32"], results["bf16"])):
        differences.append(abs(half - full) / abs(full))
        print(f"{step:>4} {full:>12.6f} {half:>12.6f} {differences[-1]:>20.2e}")
    verdict = "track" if max(differences) <= args.tolerance else "do NOT track"
    print(f"bf16 losses {verdict} fp32: largest relative difference {max(differences):.2e} "
          f"(tolerance {args.tolerance:g})")


if __name__ == "__main__":
    main()
