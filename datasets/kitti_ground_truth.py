"""Velodyne ground-truth depth of the KITTI Eigen test frames, exported once.

For every line ``<date>/<drive> <frame> <side>`` of a test list (the shipped
``splits/eigen/test_files.txt``: 697 frames, Monodepth2's list), the frame's
velodyne scan is projected into the rectified camera image (Monodepth2
convention, see :func:`datasets.eval_kitti.velodyne_to_depth_map`). The maps
are saved to one ``.npz`` with key ``data``: an object array of the ``H x W``
float32 depth maps (sizes differ between dates), in list order, which
:func:`datasets.eval_kitti.kitti_eigen_test_set` reads.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.eval_kitti import parse_kitti_split, velodyne_to_depth_map
from utils import GasMonoError


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
