"""Export velodyne ground-truth depth for the KITTI Eigen test frames.

Example::

    python tools/export_kitti_gt.py --data_path data/kitti_raw

Reads ``splits/eigen/test_files.txt`` and writes ``splits/eigen/gt_depths.npz``
(see :mod:`datasets.kitti_ground_truth`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.eval_kitti import DEFAULT_SPLIT_DIR  # noqa: E402
from datasets.kitti_ground_truth import export_kitti_gt  # noqa: E402
from utils import OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Project KITTI velodyne scans to ground-truth depth maps for the Eigen test split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data_path", type=Path, required=True, help="KITTI raw data root (Monodepth2 layout)")
    parser.add_argument("--split_file", type=Path, default=DEFAULT_SPLIT_DIR / "test_files.txt",
                        help="test list, lines '<date>/<drive> <frame> l'")
    parser.add_argument("--output", type=Path, default=DEFAULT_SPLIT_DIR / "gt_depths.npz",
                        help="output .npz (key 'data')")
    return parser


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    maps = export_kitti_gt(args.data_path, args.split_file, args.output)
    valid = sum(int((depth > 0).sum()) for depth in maps)
    print(f"wrote {len(maps)} depth maps ({valid} projected points) to {args.output}")


if __name__ == "__main__":
    main()
