"""KITTI Eigen test split (generalisation test) and velodyne ground truth.

Monodepth2 layout: ``<data_path>/<date>/<drive>/image_02/data/<frame:010d>.jpg``
(or ``.png``), velodyne scans ``<drive>/velodyne_points/data/<frame:010d>.bin``
(float32 x, y, z, reflectance), calibration ``<date>/calib_cam_to_cam.txt`` and
``<date>/calib_velo_to_cam.txt``. The test list ``splits/eigen/test_files.txt``
has lines ``<date>/<drive> <frame> l`` (``l``/``2`` = camera 2, ``r``/``3`` =
camera 3); the ground truth of those frames is exported once by
``tools/export_kitti_gt.py`` to ``splits/eigen/gt_depths.npz``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from datasets.eval_base import EvalImageDataset, EvalSet, PixelCrop, StackedGroundTruth
from utils import PROJECT_ROOT, GasMonoError, readlines

__all__ = [
    "KITTI_SIDE_TO_CAMERA",
    "KittiItem",
    "KittiEigenTestDataset",
    "parse_kitti_split",
    "read_calib_file",
    "projection_intrinsics",
    "load_velodyne_points",
    "velodyne_to_depth_map",
    "kitti_eigen_test_set",
]

DEFAULT_SPLIT_DIR = PROJECT_ROOT / "splits" / "eigen"
KITTI_SIDE_TO_CAMERA = {"l": 2, "r": 3, "2": 2, "3": 3}

KittiItem = tuple[str, int, int]
"""``(<date>/<drive>, frame, camera)``."""


def parse_kitti_split(path: str | os.PathLike) -> list[KittiItem]:
    """Parse a KITTI split file (lines ``<date>/<drive> <frame> <side>``)."""
    path = Path(path)
    items = []
    for number, line in enumerate(readlines(path, "KITTI split file"), start=1):
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in KITTI_SIDE_TO_CAMERA:
            raise GasMonoError(
                f"{path}:{number}: expected '<date>/<drive> <frame> <l|r>', e.g. "
                f"'2011_09_26/2011_09_26_drive_0002_sync 0000000069 l', got {line!r}"
            )
        items.append((parts[0], int(parts[1]), KITTI_SIDE_TO_CAMERA[parts[2]]))
    return items


def read_calib_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a KITTI calibration file (``key: v1 v2 ...``) into float64 arrays.

    Entries whose values are not numbers (e.g. ``calib_time``) are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"KITTI calibration file not found: {path}")
    data = {}
    for line in readlines(path, "KITTI calibration file"):
        key, separator, value = line.partition(":")
        if not separator:
            continue
        try:
            data[key.strip()] = np.array([float(token) for token in value.split()], dtype=np.float64)
        except ValueError:
            continue
    return data


def _calib_entry(calib: dict[str, np.ndarray], key: str, size: int, path: Path) -> np.ndarray:
    if key not in calib or calib[key].size != size:
        raise GasMonoError(f"{path}: missing or malformed entry '{key}' ({size} numbers expected)")
    return calib[key]


def projection_intrinsics(path: str | os.PathLike, key: str) -> np.ndarray:
    """The ``3 x 3`` pixel intrinsics of a ``3 x 4`` projection matrix entry of a
    KITTI calibration file (``P_rect_02`` of ``calib_cam_to_cam.txt``, or ``P2``
    of an odometry sequence's ``calib.txt``): its left ``3 x 3`` block."""
    path = Path(path)
    return _calib_entry(read_calib_file(path), key, 12, path).reshape(3, 4)[:, :3].copy()


def load_velodyne_points(path: str | os.PathLike) -> np.ndarray:
    """Read a velodyne scan as ``N x 4`` homogeneous points (x, y, z, 1)."""
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"velodyne scan not found: {path}")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4:
        raise GasMonoError(f"velodyne scan {path} has {raw.size} floats, not a multiple of 4")
    points = raw.reshape(-1, 4).astype(np.float64)
    points[:, 3] = 1.0
    return points


def velodyne_to_depth_map(
    calib_dir: str | os.PathLike, velodyne_path: str | os.PathLike, camera: int = 2
) -> np.ndarray:
    """Project a velodyne scan into a rectified camera (Monodepth2 convention).

    ``P = P_rect_0<camera> @ R_rect_00 @ [R|T]_velo_to_cam``; points behind
    the scanner (x < 0) or the camera (z <= 0) are dropped; image coordinates
    are ``round(u) - 1``, ``round(v) - 1`` (the 1-based convention of the KITTI
    devkit that Monodepth2's ground truth keeps); points outside the image of
    size ``S_rect_0<camera>`` are dropped; a pixel hit by several points keeps
    the nearest depth.

    Returns:
        float32 ``H x W`` depth map in metres (0 = no point).
    """
    calib_dir = Path(calib_dir)
    cam_path = calib_dir / "calib_cam_to_cam.txt"
    velo_path = calib_dir / "calib_velo_to_cam.txt"
    cam_to_cam = read_calib_file(cam_path)
    velo_to_cam = read_calib_file(velo_path)
    velo_to_cam_matrix = np.eye(4)
    velo_to_cam_matrix[:3, :3] = _calib_entry(velo_to_cam, "R", 9, velo_path).reshape(3, 3)
    velo_to_cam_matrix[:3, 3] = _calib_entry(velo_to_cam, "T", 3, velo_path)
    rect = np.eye(4)
    rect[:3, :3] = _calib_entry(cam_to_cam, "R_rect_00", 9, cam_path).reshape(3, 3)
    projection = _calib_entry(cam_to_cam, f"P_rect_0{camera}", 12, cam_path).reshape(3, 4)
    width, height = _calib_entry(cam_to_cam, f"S_rect_0{camera}", 2, cam_path).astype(np.int64)

    points = load_velodyne_points(velodyne_path)
    points = points[points[:, 0] >= 0]
    projected = points @ (projection @ rect @ velo_to_cam_matrix).T
    projected = projected[projected[:, 2] > 0]
    depth = projected[:, 2]
    cols = np.round(projected[:, 0] / depth).astype(np.int64) - 1
    rows = np.round(projected[:, 1] / depth).astype(np.int64) - 1
    inside = (cols >= 0) & (rows >= 0) & (cols < width) & (rows < height)
    nearest = np.full((height, width), np.inf)
    np.minimum.at(nearest, (rows[inside], cols[inside]), depth[inside])
    nearest[np.isinf(nearest)] = 0.0
    return nearest.astype(np.float32)


def _image_path(data_path: Path, item: KittiItem) -> Path:
    folder, frame, camera = item
    stem = data_path / folder / f"image_0{camera}" / "data" / f"{frame:010d}"
    for suffix in (".jpg", ".png"):
        if stem.with_suffix(suffix).is_file():
            return stem.with_suffix(suffix)
    return stem.with_suffix(".jpg")


class KittiEigenTestDataset(EvalImageDataset):
    """KITTI test images listed by a split file (Monodepth2 layout)."""

    def __init__(
        self,
        data_path: str | os.PathLike,
        list_path: str | os.PathLike,
        height: int,
        width: int,
        input_crop: PixelCrop | None = None,
        check_files: bool = True,
    ) -> None:
        self.data_path = Path(data_path)
        self.items = parse_kitti_split(list_path)
        paths = [_image_path(self.data_path, item) for item in self.items]
        super().__init__(paths, height, width, input_crop, None, check_files)


def kitti_eigen_test_set(
    data_path: str | os.PathLike,
    height: int,
    width: int,
    gt_depths: str | os.PathLike | None = None,
    input_crop: PixelCrop | None = None,
    check_files: bool = True,
    split_dir: str | os.PathLike = DEFAULT_SPLIT_DIR,
) -> EvalSet:
    """The KITTI Eigen test set: images under ``data_path``, list and ground
    truth from ``split_dir`` (``gt_depths`` overrides the ground-truth file)."""
    split_dir = Path(split_dir)
    list_path = split_dir / "test_files.txt"
    if not list_path.is_file():
        raise GasMonoError(f"KITTI Eigen test list not found: {list_path}")
    gt_path = Path(gt_depths) if gt_depths is not None else split_dir / "gt_depths.npz"
    if not gt_path.is_file():
        raise GasMonoError(
            f"KITTI ground truth not found: {gt_path} (export it with tools/export_kitti_gt.py)"
        )
    dataset = KittiEigenTestDataset(data_path, list_path, height, width, input_crop, check_files)
    return EvalSet(dataset, StackedGroundTruth(gt_path), f"KITTI Eigen test, list {list_path}, ground truth {gt_path}")
