"""Evaluate coarse relative poses against ground-truth camera poses.

Example::

    python evaluate_pose.py --cpose_dir splits/nyu/cpose --data_path data/synthetic/train

For every ``<cpose_dir>/<scene>/<frame:04d>.npy`` the two stored transforms are
compared with the ground truth of ``<data_path>/<scene>/poses.txt`` (one
row-major 4x4 world-to-camera matrix per line, frames from 0). Reported per
scene and overall: relative rotation error and translation direction error
(the angle between the translation vectors, which factors out the arbitrary
per-sequence scale of monocular SfM), in degrees.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from coarse_poses.evaluation import evaluate_coarse_poses, format_pose_table
from utils import PROJECT_ROOT, OneLineErrorParser, atomic_write_text, cli_entry_point


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Compare coarse poses <cpose_dir>/<scene>/<frame:04d>.npy with ground-truth poses "
        "<data_path>/<scene>/poses.txt: rotation and translation-direction errors in degrees.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data_path", type=str, default=str(PROJECT_ROOT / "data" / "nyu"),
                        help="folder of the sequences, each with a poses.txt")
    parser.add_argument("--split", type=str, default="nyu", help="split name, used for the default --cpose_dir")
    parser.add_argument("--cpose_dir", type=str, default=None, help="coarse poses; default splits/<split>/cpose")
    parser.add_argument("--scenes", type=str, nargs="+", default=None,
                        help="scenes to evaluate; default every scene with pose files")
    parser.add_argument("--output_json", type=str, default=None, help="also write the results to this JSON file")
    return parser


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cpose_dir = Path(args.cpose_dir) if args.cpose_dir else PROJECT_ROOT / "splits" / args.split / "cpose"
    report = evaluate_coarse_poses(cpose_dir, args.data_path, args.scenes)
    print(format_pose_table(report))
    if args.output_json:
        atomic_write_text(json.dumps(report, indent=2) + "\n", args.output_json)
        print(f"results written to {args.output_json}")


if __name__ == "__main__":
    main()
