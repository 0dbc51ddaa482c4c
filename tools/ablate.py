"""Ablation of GasMono's components on the demo's synthetic data and schedule.

Example::

    python tools/ablate.py --out ablation_output            # four demo-length runs (about 25 minutes on 2 cores)
    python tools/ablate.py --out ablation_output --quick    # tiny sizes, a smoke test

Trains the variants of :data:`experiments.ablation.VARIANTS` (``full``;
``no_coarse_poses``: PoseNet on the raw frames; ``no_self_distillation``;
``neither``) on the same data, split and initialisation, evaluates each on
the held-out test rooms and writes ``ablation.md`` and ``ablation.json``
under ``--out``.
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

from experiments.ablation import comparison_table, run_ablation  # noqa: E402
from experiments.report import configure_console  # noqa: E402
from experiments.settings import preset_settings  # noqa: E402
from utils import OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Train the demo's schedule four ways (full GasMono; without coarse poses; without "
        "self-distillation; without both) on one synthetic data set and compare them on the test set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("ablation_output"),
                        help="output folder (everything goes there)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and 2 short epochs: every stage in a few minutes (a smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, COLMAP, the split and training")
    parser.add_argument("--device", type=str, default="cpu", help="device for training and evaluation")
    parser.add_argument("--no_progress", action="store_true",
                        help="hide the progress bars of rendering, COLMAP and evaluation (training keeps its "
                             "bar per epoch)")
    return parser


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_console()
    settings = preset_settings("quick" if args.quick else "full", seed=args.seed, device=args.device)
    results = run_ablation(args.out, settings, quick=args.quick, progress=not args.no_progress)
    print()
    print(comparison_table(results))
    print(f"\ntotal {results['timings_s']['total']:.0f} s; results: {args.out / 'ablation.md'}, "
          f"{args.out / 'ablation.json'}")


if __name__ == "__main__":
    main()
