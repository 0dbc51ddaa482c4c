"""Evaluate relative poses against ground-truth camera poses: the coarse
(COLMAP) poses and, with a checkpoint, what its networks make of them.

Examples::

    python evaluate_pose.py --cpose_dir demo_output/cpose --data_path demo_output/data/train
    python evaluate_pose.py --cpose_dir demo_output/cpose --data_path demo_output/data/train \\
        --load_weights_folder demo_output/logs/gasmono/models/weights_9

Every item with a coarse-pose file ``<cpose_dir>/<scene>/<frame:04d>.npy`` is
scored against ``<data_path>/<scene>/poses.txt`` (one row-major 4x4
world-to-camera matrix per line, frames from 0). Kinds (see
:mod:`evaluation.poses`): ``coarse``; with a checkpoint trained with
``--use_posegt`` also ``refined`` (AlignNet) and ``final`` (refined composed
with PoseNet's residual); with one trained without it ``posenet``. Per kind:
median rotation error, median translation-direction error (degrees) and the
scale consistency, the standard deviation of ``log(|t_est| / |t_gt|)`` over
all pairs of all sequences (invariant to one global scale). The table is
printed; the results go to ``<weights folder>/eval_pose.json`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from coarse_poses.evaluation import evaluate_coarse_poses, format_pose_kinds_table, format_pose_table
from datasets.registry import DATASET_NAMES
from evaluation.poses import evaluate_poses
from utils import PROJECT_ROOT, OneLineErrorParser, atomic_write_text, cli_entry_point, resolve_device


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Compare coarse poses <cpose_dir>/<scene>/<frame:04d>.npy, and the poses a checkpoint's "
        "networks make of them, with ground-truth poses <data_path>/<scene>/poses.txt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data_path", type=str, default=str(PROJECT_ROOT / "data" / "nyu"),
                        help="folder of the sequences, each with a poses.txt")
    parser.add_argument("--dataset", type=str, default="nyu", choices=DATASET_NAMES,
                        help="layout of --data_path (datasets/registry.py); ground-truth poses.txt per scene "
                             "exist for nyu-layout sets such as the synthetic ones")
    parser.add_argument("--split", type=str, default="nyu", help="split name, used for the default --cpose_dir")
    parser.add_argument("--cpose_dir", type=str, default=None, help="coarse poses; default splits/<split>/cpose")
    parser.add_argument("--scenes", type=str, nargs="+", default=None,
                        help="scenes to evaluate; default every scene with pose files")
    parser.add_argument("--load_weights_folder", type=str, default=None,
                        help="checkpoint whose AlignNet / PoseNet poses are evaluated too")
    parser.add_argument("--out", type=str, default=None,
                        help="results JSON; default <load_weights_folder>/eval_pose.json (none without a checkpoint)")
    parser.add_argument("--png", action="store_true", help="frames are .png instead of .jpg")
    parser.add_argument("--device", type=str, default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--min_depth", type=float, default=0.1, help="depth range of the checkpoint's network")
    parser.add_argument("--max_depth", type=float, default=10.0, help="depth range of the checkpoint's network")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cpose_dir = Path(args.cpose_dir) if args.cpose_dir else PROJECT_ROOT / "splits" / args.split / "cpose"
    report = evaluate_poses(args.data_path, cpose_dir, args.load_weights_folder, args.scenes,
                            resolve_device(args.device), args.batch_size, args.num_workers,
                            ".png" if args.png else ".jpg", args.min_depth, args.max_depth,
                            progress=not args.no_progress, dataset=args.dataset)
    report["coarse_per_scene"] = evaluate_coarse_poses(cpose_dir, args.data_path, report["scenes"])
    print(format_pose_table(report["coarse_per_scene"]))
    print()
    print(format_pose_kinds_table(report, report["descriptions"]))
    out = args.out or (Path(args.load_weights_folder) / "eval_pose.json" if args.load_weights_folder else None)
    if out is not None:
        atomic_write_text(json.dumps(report, indent=2) + "\n", out)
        print(f"results written to {out}")
    return report


if __name__ == "__main__":
    main()
