"""Rendered rooms written in KITTI's raw layout: two rectified cameras, calibration files, velodyne scans.

Not street scenes: the same box rooms and handheld trajectories as
:mod:`synthetic.dataset`, so that the KITTI code paths (loading, stereo pairs,
validation depth from scans, ground-truth export, coarse poses from the
calibration) run end to end on data made here. Layout
(:func:`generate_kitti_raw`)::

    <out>/<date>/calib_cam_to_cam.txt             S_rect_0k, P_rect_0k (k = 0, 2, 3), R_rect_00
    <out>/<date>/calib_velo_to_cam.txt            R, T (velodyne -> camera 0)
    <out>/<date>/<date>_drive_<nnnn>_sync/image_02/data/<frame:010d>.jpg   left camera (.png with img_ext)
    <out>/<date>/<date>_drive_<nnnn>_sync/image_03/data/<frame:010d>.jpg   right camera, ``baseline`` m to the right
    <out>/<date>/<date>_drive_<nnnn>_sync/velodyne_points/data/<frame:010d>.bin   float32 N x 4 scans
    <out>/<date>/<date>_drive_<nnnn>_sync/poses.txt   per frame 16 floats: world-to-camera of camera 2

Both cameras share the pixel intrinsics that Monodepth2's normalised KITTI K
gives at the rendered size (fx = 0.58 W, fy = 1.92 H, principal point at the
centre), so the KITTI data set's fixed K is the true one. Camera 0 (the
calibration's reference) is camera 2. A scan holds the rendered depth of
camera 2 at every ``scan_row_step``-th row and ``scan_column_step``-th column,
as velodyne-frame points (x forward, y left, z up). The principal point in
``P_rect_0k`` is one pixel more than the renderer's, because the ground-truth
projection keeps the KITTI devkit's 1-based pixel convention
(``round(u) - 1``): a scan point then lands on the pixel it was sampled from.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from synthetic.renderer import render
from synthetic.rooms import TEXTURED, make_room
from synthetic.trajectories import make_trajectory
from utils import GasMonoError, atomic_write_text

__all__ = ["KITTI_DATE", "VELO_TO_CAM_ROTATION", "VELO_TO_CAM_TRANSLATION", "kitti_pixel_intrinsics",
           "generate_kitti_raw"]

logger = logging.getLogger(__name__)

KITTI_DATE = "2011_09_26"
VELO_TO_CAM_ROTATION = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
"""Velodyne axes (x forward, y left, z up) into camera axes (x right, y down, z forward)."""
VELO_TO_CAM_TRANSLATION = np.array([0.02, -0.08, -0.27])
_JPEG_QUALITY = 95


def kitti_pixel_intrinsics(height: int, width: int) -> np.ndarray:
    """``3 x 3`` pixel K of Monodepth2's normalised KITTI intrinsics at ``height x width``."""
    return np.array([[0.58 * width, 0.0, 0.5 * width], [0.0, 1.92 * height, 0.5 * height], [0.0, 0.0, 1.0]])


def _numbers(values: np.ndarray) -> str:
    return " ".join(f"{value:.12e}" for value in np.asarray(values, dtype=np.float64).ravel())


def write_calibration(date_dir: Path, intrinsics: np.ndarray, height: int, width: int, baseline: float) -> None:
    """``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt`` of one date (see the module docstring)."""
    projection = np.zeros((3, 4))
    projection[:, :3] = intrinsics
    projection[:2, 2] += 1.0  # the 1-based pixel convention of the ground-truth projection
    right = projection.copy()
    right[0, 3] = -intrinsics[0, 0] * baseline
    lines = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    for camera, matrix in (("00", projection), ("02", projection), ("03", right)):
        lines.append(f"S_rect_{camera}: {_numbers([width, height])}")
        lines.append(f"P_rect_{camera}: {_numbers(matrix)}")
    lines.append(f"R_rect_00: {_numbers(np.eye(3))}")
    atomic_write_text("\n".join(lines) + "\n", date_dir / "calib_cam_to_cam.txt")
    velo = ["calib_time: 15-Mar-2012 11:37:16", f"R: {_numbers(VELO_TO_CAM_ROTATION)}",
            f"T: {_numbers(VELO_TO_CAM_TRANSLATION)}"]
    atomic_write_text("\n".join(velo) + "\n", date_dir / "calib_velo_to_cam.txt")


def depth_to_scan(depth: np.ndarray, intrinsics: np.ndarray, row_step: int, column_step: int) -> np.ndarray:
    """Velodyne points ``N x 4`` (x, y, z, reflectance 0.5) at the sampled pixels of a z-depth map."""
    rows, cols = np.mgrid[row_step // 2:depth.shape[0]:row_step, 0:depth.shape[1]:column_step]
    z = depth[rows, cols].ravel()
    x = (cols.ravel() - intrinsics[0, 2]) * z / intrinsics[0, 0]
    y = (rows.ravel() - intrinsics[1, 2]) * z / intrinsics[1, 1]
    camera_points = np.stack([x, y, z], 1)
    velodyne = (camera_points - VELO_TO_CAM_TRANSLATION) @ VELO_TO_CAM_ROTATION  # R^T (p - T), row-wise
    return np.concatenate([velodyne, np.full((len(z), 1), 0.5)], 1).astype(np.float32)


def _save_image(rgb: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        Image.fromarray(rgb).save(path, quality=_JPEG_QUALITY)
    else:
        Image.fromarray(rgb).save(path)


def generate_kitti_raw(
    out_dir: str | Path,
    num_drives: int = 2,
    frames_per_drive: int = 8,
    height: int = 96,
    width: int = 320,
    seed: int = 0,
    baseline: float = 0.1,
    img_ext: str = ".jpg",
    scan_row_step: int = 4,
    scan_column_step: int = 2,
    progress: bool = True,
) -> dict:
    """Render ``num_drives`` drives of ``frames_per_drive`` stereo frames into ``out_dir`` (layout above).

    Returns:
        ``{"date", "drives": ["<date>/<drive>", ...], "intrinsics": 3 x 3 list, "height", "width",
        "baseline"}``.
    """
    if num_drives < 1 or frames_per_drive < 3:
        raise GasMonoError("need at least one drive of at least 3 frames")
    if img_ext not in (".jpg", ".png"):
        raise GasMonoError(f"img_ext must be .jpg or .png, got {img_ext!r}")
    date_dir = Path(out_dir) / KITTI_DATE
    date_dir.mkdir(parents=True, exist_ok=True)
    intrinsics = kitti_pixel_intrinsics(height, width)
    write_calibration(date_dir, intrinsics, height, width, baseline)
    to_right = np.eye(4)
    to_right[0, 3] = -baseline  # camera 3 sits `baseline` to the right of camera 2
    drives = []
    with tqdm(total=num_drives * frames_per_drive, unit="frame", desc="rendering", disable=not progress) as bar:
        for index in range(num_drives):
            drive = f"{KITTI_DATE}_drive_{index + 1:04d}_sync"
            drive_dir = date_dir / drive
            drive_seed = int(np.random.SeedSequence([seed, 11, index]).generate_state(1)[0])
            room = make_room(drive_seed, TEXTURED)
            poses = make_trajectory(room, frames_per_drive, np.random.default_rng([drive_seed, 7]))
            for frame, extrinsics in enumerate(poses):
                left, depth = render(room, extrinsics, intrinsics, height, width)
                right, _ = render(room, to_right @ extrinsics, intrinsics, height, width)
                _save_image(left, drive_dir / "image_02" / "data" / f"{frame:010d}{img_ext}")
                _save_image(right, drive_dir / "image_03" / "data" / f"{frame:010d}{img_ext}")
                scan_path = drive_dir / "velodyne_points" / "data" / f"{frame:010d}.bin"
                scan_path.parent.mkdir(parents=True, exist_ok=True)
                depth_to_scan(depth, intrinsics, scan_row_step, scan_column_step).tofile(scan_path)
                bar.update()
            np.savetxt(drive_dir / "poses.txt", poses.reshape(len(poses), 16), fmt="%.9g")
            drives.append(f"{KITTI_DATE}/{drive}")
    logger.info("rendered %d KITTI-layout drives into %s", num_drives, out_dir)
    return {"date": KITTI_DATE, "drives": drives, "intrinsics": intrinsics.tolist(), "height": height,
            "width": width, "baseline": baseline}
