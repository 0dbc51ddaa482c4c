"""KITTI training data in Monodepth2's layouts, which the GasMono release trains on.

Raw data (``--dataset kitti``), split lines ``<date>/<drive> <frame> <l|r>``
(``splits/eigen_zhou``)::

    <data_path>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    <data_path>/<date>/<drive>/image_02/data/<frame:010d>.jpg          side l (camera 2); .png with --png
    <data_path>/<date>/<drive>/image_03/data/<frame:010d>.jpg          side r (camera 3)
    <data_path>/<date>/<drive>/velodyne_points/data/<frame:010d>.bin   float32 N x 4 scans

Odometry (``--dataset kitti_odom``), split lines ``<sequence> <frame> <l|r>``::

    <data_path>/sequences/<nn:02d>/image_2/<frame:06d>.png             side l; image_3 side r
    <data_path>/sequences/<nn:02d>/calib.txt                           P2 / P3 (coarse poses only)

As in Monodepth2, every drive uses one normalised K (fx 0.58, fy 1.92, centred
principal point: :data:`KITTI_NORMALISED_INTRINSICS`, for the full 1242 x 375
images), frames are resized to the network size whatever their own size, items
have stereo pairs (frame id ``"s"``, ``stereo_T`` with baseline 0.1) and are
never flipped (the release fixes ``do_flip`` to False).

Validation depth (raw data only) is the velodyne scan projected into the
item's camera (:func:`datasets.eval_kitti.velodyne_to_depth_map`), resized
with nearest-neighbour sampling to Monodepth2's 375 x 1242 so that items of
dates with other image sizes batch together; training validation scores it as
Monodepth2 does (``validation_protocol = "kitti"``: Garg crop, ``gt > 0``,
predictions clamped to 1e-3..80 m, median scaling). An item without its scan
is validated without depth (all zeros), said once when the data set is built.

Coarse poses are this project's extension (the release's KITTI loader has
none): ``tools/make_coarse_poses.py --dataset kitti`` runs COLMAP on each
camera of each drive with the intrinsics of ``P_rect_0<camera>`` in
``calib_cam_to_cam.txt`` and writes ``<cpose_dir>/<date>/<drive>/image_0<camera>/<frame:04d>.npy``
(odometry: ``<cpose_dir>/sequences/<nn>/image_<camera>/``), which items read
for their side.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from coarse_poses.sequences import ImageSequence, list_frames
from datasets.eval_kitti import projection_intrinsics, read_calib_file, velodyne_to_depth_map
from datasets.mono_dataset import MonoDataset
from utils import GasMonoError

__all__ = [
    "KITTI_NORMALISED_INTRINSICS",
    "KITTI_DEPTH_SIZE",
    "SIDE_TO_CAMERA",
    "CAM_TO_CAM_FILE",
    "VELO_TO_CAM_FILE",
    "KittiDataset",
    "KittiRawDataset",
    "KittiOdomDataset",
]

logger = logging.getLogger(__name__)

KITTI_NORMALISED_INTRINSICS = np.array(
    [[0.58, 0.0, 0.5, 0.0], [0.0, 1.92, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=np.float32
)
"""Monodepth2's K for every KITTI drive, normalised by the image size (1242 x 375 at full size)."""
KITTI_DEPTH_SIZE = (375, 1242)
"""``(H, W)`` of the validation depth maps (Monodepth2's full resolution)."""
SIDE_TO_CAMERA = {"l": 2, "r": 3}
CAM_TO_CAM_FILE = "calib_cam_to_cam.txt"
VELO_TO_CAM_FILE = "calib_velo_to_cam.txt"


def _sequence(scene: str, image_dir: Path, img_ext: str, calib_path: Path, key: str) -> ImageSequence | None:
    """The sequence of one camera folder, None when it holds no frames."""
    if not image_dir.is_dir() or not list_frames(image_dir, img_ext):
        return None
    return ImageSequence(scene, image_dir, img_ext, intrinsics=projection_intrinsics(calib_path, key))


def _require_sequences(sequences: list[ImageSequence], data_path: Path, layout: str) -> list[ImageSequence]:
    if not sequences:
        raise GasMonoError(f"no KITTI camera folders ({layout}) with frames under {data_path}")
    return sequences


class KittiDataset(MonoDataset):
    """What the KITTI layouts share: Monodepth2's intrinsics and stereo pairs."""

    has_stereo = True
    validation_protocol = "kitti"

    def get_intrinsics(self, folder: str) -> np.ndarray:
        return KITTI_NORMALISED_INTRINSICS.copy()


class KittiRawDataset(KittiDataset):
    """KITTI raw drives (see the module docstring); the constructor and the
    items are those of :class:`datasets.mono_dataset.MonoDataset`."""

    _without_scan: frozenset[tuple[str, int]] = frozenset()  # items validated without depth

    def get_image_path(self, folder: str, frame_index: int, side: str) -> Path:
        camera = SIDE_TO_CAMERA[side]
        return self.data_path / folder / f"image_0{camera}" / "data" / f"{frame_index:010d}{self.img_ext}"

    def get_velodyne_path(self, folder: str, frame_index: int) -> Path:
        return self.data_path / folder / "velodyne_points" / "data" / f"{frame_index:010d}.bin"

    def get_calibration_dir(self, folder: str) -> Path:
        """``<data_path>/<date>``, which holds the calibration files of the drive ``<date>/<drive>``."""
        return self.data_path / folder.split("/")[0]

    def check_depth(self) -> bool:
        """Whether any item has its velodyne scan; the calibration files of
        their dates must exist. Items without a scan are noted (and said once)."""
        missing = {(folder, frame) for folder, frame, _ in self.items
                   if not self.get_velodyne_path(folder, frame).is_file()}
        with_scan = [(folder, frame) for folder, frame, _ in self.items if (folder, frame) not in missing]
        if not with_scan:
            return False
        for calib_dir in sorted({self.get_calibration_dir(folder) for folder, _ in with_scan}):
            for name in (CAM_TO_CAM_FILE, VELO_TO_CAM_FILE):
                read_calib_file(calib_dir / name)
        if missing:
            folder, frame = sorted(missing)[0]
            logger.warning("%d of %d items have no velodyne scan (e.g. %s): they are validated without depth",
                           len(missing), len(self.items), self.get_velodyne_path(folder, frame))
        self._without_scan = frozenset(missing)
        return True

    def get_depth(self, folder: str, frame_index: int, side: str) -> np.ndarray:
        """The projected scan, ``375 x 1242`` float32 metres (zeros without a scan)."""
        if (folder, frame_index) in self._without_scan:
            return np.zeros(KITTI_DEPTH_SIZE, dtype=np.float32)
        depth = velodyne_to_depth_map(self.get_calibration_dir(folder), self.get_velodyne_path(folder, frame_index),
                                      SIDE_TO_CAMERA[side])
        if depth.shape != KITTI_DEPTH_SIZE:
            depth = cv2.resize(depth, KITTI_DEPTH_SIZE[::-1], interpolation=cv2.INTER_NEAREST)
        return depth

    @classmethod
    def coarse_pose_scene(cls, folder: str, side: str) -> str:
        return f"{folder}/image_0{SIDE_TO_CAMERA[side]}"

    @classmethod
    def image_sequences(cls, data_path: str | os.PathLike, img_ext: str = ".jpg") -> list[ImageSequence]:
        """Both cameras of every drive ``<date>/<drive>``, with the intrinsics of
        ``P_rect_0<camera>`` in ``<date>/calib_cam_to_cam.txt``."""
        data_path = Path(data_path)
        if not data_path.is_dir():
            raise GasMonoError(f"data path not found: {data_path}")
        sequences = []
        for drive_dir in sorted(path for path in data_path.glob("*/*") if path.is_dir()):
            folder = f"{drive_dir.parent.name}/{drive_dir.name}"
            for camera in SIDE_TO_CAMERA.values():
                sequence = _sequence(f"{folder}/image_0{camera}", drive_dir / f"image_0{camera}" / "data", img_ext,
                                     drive_dir.parent / CAM_TO_CAM_FILE, f"P_rect_0{camera}")
                if sequence is not None:
                    sequences.append(sequence)
        return _require_sequences(sequences, data_path, f"<date>/<drive>/image_0{{2,3}}/data/*{img_ext}")


class KittiOdomDataset(KittiDataset):
    """KITTI odometry sequences (see the module docstring); no validation depth."""

    def check_folder(self, folder: str) -> None:
        if not folder.isdigit():
            raise GasMonoError(f"KITTI odometry sequence {folder!r} is not a number (split lines: '<nn> <frame> <l|r>')")

    def get_sequence_dir(self, folder: str) -> Path:
        return self.data_path / "sequences" / f"{int(folder):02d}"

    def get_image_path(self, folder: str, frame_index: int, side: str) -> Path:
        return self.get_sequence_dir(folder) / f"image_{SIDE_TO_CAMERA[side]}" / f"{frame_index:06d}{self.img_ext}"

    @classmethod
    def coarse_pose_scene(cls, folder: str, side: str) -> str:
        return f"sequences/{int(folder):02d}/image_{SIDE_TO_CAMERA[side]}"

    @classmethod
    def image_sequences(cls, data_path: str | os.PathLike, img_ext: str = ".png") -> list[ImageSequence]:
        """Both cameras of every ``sequences/<nn>``, with the intrinsics of ``P2`` /
        ``P3`` in its ``calib.txt``."""
        data_path = Path(data_path)
        if not data_path.is_dir():
            raise GasMonoError(f"data path not found: {data_path}")
        sequences = []
        for sequence_dir in sorted(path for path in (data_path / "sequences").glob("*") if path.is_dir()):
            for camera in SIDE_TO_CAMERA.values():
                sequence = _sequence(f"sequences/{sequence_dir.name}/image_{camera}", sequence_dir / f"image_{camera}",
                                     img_ext, sequence_dir / "calib.txt", f"P{camera}")
                if sequence is not None:
                    sequences.append(sequence)
        return _require_sequences(sequences, data_path, f"sequences/<nn>/image_{{2,3}}/*{img_ext}")
