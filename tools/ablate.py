"""Seeded ablation of GasMono's components on the demo's synthetic data and schedule.

Example::

    python tools/ablate.py --out ablation_output --seeds 3   # 5 variants x 3 seeds of the demo's schedule
    python tools/ablate.py --out ablation_output --quick     # tiny sizes, a smoke test
    python tools/ablate.py --out ablation_output --seeds 3 --deterministic   # every run repeatable bit for bit

Trains the variants of :data:`experiments.ablation.VARIANTS` (``full``;
``no_coarse_poses``: PoseNet on the raw frames; ``no_self_distillation``;
``neither``; ``resnet18``: the full recipe with a ResNet-18 depth encoder)
with ``--seeds`` training seeds on the same data and split, evaluates the
depth of each on the validation frames of the training rooms and on held-out
rooms and its poses against the ground truth, and writes ``ablation.md`` and
``ablation.json`` (mean ± std over the seeds, and which differences exceed
their spread) under ``--out``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see tools/demo.py

from experiments.ablation import VARIANT_NAMES, run_ablation, select_variants  # noqa: E402
from experiments.ablation_report import depth_table, findings, pose_table  # noqa: E402
from experiments.report import configure_console  # noqa: E402
from experiments.settings import add_settings_arguments, settings_from_arguments  # noqa: E402
from utils import OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Train the demo's schedule per variant (full GasMono; without coarse poses; without "
        "self-distillation; without both; with a ResNet-18 depth encoder) and seed on one synthetic data set, "
        "and compare them (mean ± std over the seeds).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("ablation_output"),
                        help="output folder (everything goes there)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per variant (--seed, --seed + 1, ...)")
    parser.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                        help=f"variants to train, full always among them (default: all of {', '.join(VARIANT_NAMES)})")
    add_settings_arguments(parser)
    return parser


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    configure_console()
    preset, settings = settings_from_arguments(args)
    results = run_ablation(args.out, settings, select_variants(args.variants), seeds=args.seeds, preset=preset,
                           progress=not args.no_progress)
    print()
    print(depth_table(results))
    print()
    print(pose_table(results))
    print()
    print("\n".join(f"- {line}" for line in findings(results)))
    print(f"\ntotal {results['timings_s']['total']:.0f} s; results: {args.out / 'ablation.md'}, "
          f"{args.out / 'ablation.json'}")
    return results


if __name__ == "__main__":
    main()
