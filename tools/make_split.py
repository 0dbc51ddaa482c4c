"""Write train/val split files for the sequences under a data folder.

An item ``<scene> <frame> l`` is listed when the frames ``frame - 1`` and
``frame + 1`` of its scene are on disk (and, with ``--cpose_dir``, when its
coarse-pose file exists). Validation is a seeded frame-level hold-out, as in
the release.

Example::

    python tools/make_split.py data/synthetic_indoor/train splits/synthetic --cpose_dir splits/synthetic/cpose
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coarse_poses.pose_files import filter_items_with_coarse_poses  # noqa: E402
from datasets.splits import find_sequence_items, write_split_files  # noqa: E402
from utils import GasMonoError, OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Write train_files.txt / val_files.txt for the sequences on disk.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("data_path", type=Path, help="folder holding <scene>/<frame:06d><img_ext>")
    parser.add_argument("out_dir", type=Path, help="folder to write train_files.txt and val_files.txt into")
    parser.add_argument("--val_fraction", type=float, default=0.1, help="fraction of items held out for validation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hold-out shuffle")
    parser.add_argument("--cpose_dir", type=Path, default=None,
                        help="keep only items with a coarse-pose file <cpose_dir>/<scene>/<frame:04d>.npy")
    parser.add_argument("--img_ext", default=".jpg", help="image file extension")
    return parser


@cli_entry_point
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    items = find_sequence_items(args.data_path, args.img_ext)
    found = len(items)
    if args.cpose_dir is not None:
        items = filter_items_with_coarse_poses(items, args.cpose_dir)
        if not items:
            raise GasMonoError(f"none of the {found} items under {args.data_path} has coarse poses in {args.cpose_dir}")
    train_path, val_path = write_split_files(items, args.out_dir, args.val_fraction, args.seed)
    num_val = sum(1 for _ in open(val_path, encoding="utf-8"))
    scenes = len({scene for scene, _ in items})
    print(f"{found} items with both neighbours; {len(items)} kept from {scenes} scenes")
    print(f"wrote {len(items) - num_val} items to {train_path} and {num_val} to {val_path}")


if __name__ == "__main__":
    main()
