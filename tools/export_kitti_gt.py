"""Export velodyne ground-truth depth for the KITTI Eigen test frames.

Example::

    python tools/export_kitti_gt.py --data_path data/kitti_raw

Reads ``splits/eigen/test_files.txt`` (lines ``<date>/<drive> <frame> l``),
projects each frame's velodyne scan into the rectified camera image
(Monodepth2 convention, see :func:`datasets.eval_kitti.velodyne_to_depth_map`)
and writes ``splits/eigen/gt_depths.npz`` with key ``data``: an object array of
the ``H x W`` float32 depth maps (sizes differ between dates), in list order.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.eval_kitti import DEFAULT_SPLIT_DIR, parse_kitti_split, velodyne_to_depth_map  # noqa: E402
from utils import GasMonoError, OneLineErrorParser, cli_entry_point  # noqa: E402

__all__ = ["export_kitti_gt", "build_parser", "main"]


def export_kitti_gt(
    data_path: str | os.PathLike,
    list_path: str | os.PathLike,
    output: str | os.PathLike,
    progress: bool = True,
) -> list[np.ndarray]:
    """Project the velodyne scans of the listed frames and save them.

    Args:
        data_path: KITTI raw root (``<date>/calib_*.txt``, ``<date>/<drive>/velodyne_points``).
        list_path: split file, lines ``<date>/<drive> <frame> <side>``.
        output: ``.npz`` to write (key ``data``: object array of depth maps).

    Returns:
        the depth maps, in list order.
    """
    data_path = Path(data_path)
    if not data_path.is_dir():
        raise GasMonoError(f"KITTI folder not found: {data_path}")
    items = parse_kitti_split(list_path)
    if not items:
        raise GasMonoError(f"empty split file: {list_path}")
    maps = []
    for folder, frame, camera in tqdm(items, desc="export", unit="frame", disable=not progress):
        calib_dir = data_path / folder.split("/")[0]
        velodyne = data_path / folder / "velodyne_points" / "data" / f"{frame:010d}.bin"
        maps.append(velodyne_to_depth_map(calib_dir, velodyne, camera))
    stacked = np.empty(len(maps), dtype=object)
    for index, depth in enumerate(maps):
        stacked[index] = depth
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, data=stacked)
    return maps


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
