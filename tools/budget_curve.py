"""The budget curve: the demo's data and schedule at more training batches, with the supervised bound.

Example::

    # seed 0 at 290, 1,000 and 3,000 batches, seeds 1 and 2 at 290 and 1,000 (hours on 2 cores)
    python tools/budget_curve.py --out budget_output --budgets 290 1000 3000 --seeds 0 1 2 \\
        --more_seeds_up_to 1000 --figure docs/budget_curve.png
    python tools/budget_curve.py --out budget_quick --quick --budgets 6 12   # a smoke test

Every run is deterministic (``--deterministic`` is implied). Per point
(budget, seed): GasMono trained with the demo's schedule stretched to about
that many batches, the same depth network trained on the rendered depth for
as many batches (the supervised bound; ``--supervised_seeds``), both evaluated
on the validation frames of the training rooms and on held-out rooms, and a
prediction grid. Writes ``budget_curve.json`` / ``.md`` / ``.png`` under
``--out`` after every point; run the same command again to resume
(:mod:`experiments.budget_curve`).
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

from experiments.budget_curve import run_budget_curve  # noqa: E402
from experiments.report import configure_console  # noqa: E402
from experiments.settings import add_settings_arguments, settings_from_arguments  # noqa: E402
from utils import OneLineErrorParser, cli_entry_point, sec_to_hm_str  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Train the demo's schedule stretched to several numbers of batches (and the same network on "
        "ground-truth depth as the supervised bound), deterministically, and plot abs_rel against the budget.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("budget_output"), help="output folder")
    parser.add_argument("--budgets", type=int, nargs="+", default=[290, 1000, 3000],
                        help="training batches per point (rounded to whole epochs of the split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds; the first runs at every budget (the data keep --seed)")
    parser.add_argument("--more_seeds_up_to", type=int, default=None, metavar="BATCHES",
                        help="run the seeds after the first only at budgets up to this (None: at every budget)")
    parser.add_argument("--supervised_seeds", type=int, nargs="*", default=None,
                        help="seeds whose points also train the supervised bound (None: the first seed; the "
                             "option without a seed: no supervised bound)")
    parser.add_argument("--figure", type=Path, default=None,
                        help="also write the curve's figure there (e.g. docs/budget_curve.png)")
    add_settings_arguments(parser)
    return parser


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    configure_console()
    preset, settings = settings_from_arguments(args)
    results = run_budget_curve(args.out, settings, args.budgets, args.seeds, args.more_seeds_up_to,
                               args.supervised_seeds, preset=preset, figure=args.figure,
                               progress=not args.no_progress)
    print()
    print((args.out / "budget_curve.md").read_text(encoding="utf-8"))
    print(f"total of this run {sec_to_hm_str(results.get('timings_s', {}).get('total (this run)', 0.0))}; results: "
          f"{args.out / 'budget_curve.md'}, {args.out / 'budget_curve.json'}, {args.out / 'budget_curve.png'}")
    return results


if __name__ == "__main__":
    main()
