"""Prepare the NYUv2 test set (654 images) from the official files.

Example::

    python tools/prepare_nyu_test.py --labeled_mat nyu_depth_v2_labeled.mat \\
        --splits_mat splits.mat --out data/nyu_test

Writes ``<out>/color/<i:04d>.png`` and ``<split_dir>/test_files.txt`` /
``gt_depths.npz`` (see :mod:`datasets.nyu_test_preparation`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.eval_nyu import DEFAULT_SPLIT_DIR  # noqa: E402
from datasets.nyu_test_preparation import SHIPPED_TEST_LIST, prepare_nyu_test  # noqa: E402
from utils import OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Export the NYUv2 test set (images, test_files.txt, gt_depths.npz) from the official .mat files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--labeled_mat", type=Path, required=True, help="official nyu_depth_v2_labeled.mat")
    parser.add_argument("--splits_mat", type=Path, required=True, help="official splits.mat (testNdxs)")
    parser.add_argument("--out", type=Path, required=True, help="data folder; images go to <out>/color/<i:04d>.png")
    parser.add_argument("--split_dir", type=Path, default=DEFAULT_SPLIT_DIR,
                        help="folder for test_files.txt and gt_depths.npz")
    parser.add_argument("--allow_index_mismatch", action="store_true",
                        help=f"accept test indices that differ from {SHIPPED_TEST_LIST} (e.g. a subset) and write "
                             "their list, with a warning")
    return parser


@cli_entry_point
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    count = prepare_nyu_test(args.labeled_mat, args.splits_mat, args.out, args.split_dir,
                             allow_index_mismatch=args.allow_index_mismatch)
    print(f"wrote {count} test images to {args.out / 'color'}")
    print(f"wrote {args.split_dir / 'test_files.txt'} and {args.split_dir / 'gt_depths.npz'}")


if __name__ == "__main__":
    main()
