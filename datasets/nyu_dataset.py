"""NYUv2 training sequences in the release's layout (and the synthetic indoor set).

Layout::

    <data_path>/<scene>/<frame:06d>.jpg          frames, numbered per scene
    <data_path>/<scene>/cam.txt                  optional 3x3 pixel intrinsics (overrides NYUv2's)
    <data_path>/<scene>/depth/<frame:06d>.png    optional uint16 depth in millimetres (synthetic set)
    <cpose_dir>/<scene>/<frame:04d>.npy          optional coarse poses, float32 2 x 4 x 4

Split lines: ``<scene> <frame> <side>``, e.g. ``kitchen_0045a 0009 l``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from datasets.intrinsics import read_pixel_intrinsics
from datasets.mono_dataset import MonoDataset, load_split, parse_split_line
from utils import NYU_NORMALISED_INTRINSICS, GasMonoError

DEPTH_PNG_SCALE = 1000.0  # uint16 millimetres

__all__ = ["NYUDataset", "NYU_NORMALISED_INTRINSICS", "load_split", "parse_split_line"]


class NYUDataset(MonoDataset):
    """NYUv2 raw sequences (SC-Depth's preprocessed release layout); see :class:`MonoDataset`
    for the constructor and the item dictionary."""

    def get_image_path(self, folder: str, frame_index: int, side: str) -> Path:
        return self.data_path / folder / f"{frame_index:06d}{self.img_ext}"

    def get_intrinsics(self, folder: str) -> np.ndarray:
        """NYUv2's normalised intrinsics, or ``<scene>/cam.txt`` (3x3 pixels) normalised
        by that scene's image size."""
        cam_path = self.data_path / folder / "cam.txt"
        if not cam_path.is_file():
            return NYU_NORMALISED_INTRINSICS.copy()
        pixel_K = read_pixel_intrinsics(cam_path)
        first_frame = self.items[next(i for i, item in enumerate(self.items) if item[0] == folder)][1]
        image_path = self.get_image_path(folder, first_frame, "l")
        try:
            with Image.open(image_path) as image:
                width, height = image.size
        except OSError as error:
            raise GasMonoError(f"cannot read image {image_path}: {error}") from None
        K = np.eye(4, dtype=np.float32)
        K[:3, :3] = pixel_K
        K[0, :] /= width
        K[1, :] /= height
        return K

    def get_depth_path(self, folder: str, frame_index: int) -> Path:
        return self.data_path / folder / "depth" / f"{frame_index:06d}.png"

    def check_depth(self) -> bool:
        folder, frame_index, _ = self.items[0]
        return self.get_depth_path(folder, frame_index).is_file()

    def get_depth(self, folder: str, frame_index: int, side: str) -> np.ndarray:
        path = self.get_depth_path(folder, frame_index)
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise GasMonoError(f"cannot read depth {path}")
        if depth.dtype != np.uint16 or depth.ndim != 2:
            raise GasMonoError(f"depth {path} must be a single-channel uint16 PNG (millimetres)")
        return depth.astype(np.float32) / DEPTH_PNG_SCALE
