"""ScanNet test set (the P2Net split, 533 images) as a flat folder.

``<data_path>/scene0011_00_color_1860.jpg`` with
``<data_path>/scene0011_00_depth_1860.png`` (uint16 millimetres). Items are
ordered by scene name, then frame number.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from datasets.eval_base import DepthImageGroundTruth, EvalImageDataset, EvalSet, PixelCrop
from utils import GasMonoError

__all__ = ["SCANNET_DEPTH_DIVISOR", "ScanNetTestDataset", "scannet_test_set"]

SCANNET_DEPTH_DIVISOR = 1000.0
_COLOR_NAME = re.compile(r"^(?P<scene>.+)_color_(?P<frame>\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)


class ScanNetTestDataset(EvalImageDataset):
    """The colour images ``<scene>_color_<frame>.jpg`` of a flat ScanNet test folder."""

    def __init__(
        self,
        data_path: str | os.PathLike,
        height: int,
        width: int,
        input_crop: PixelCrop | None = None,
        check_files: bool = True,
    ) -> None:
        self.data_path = Path(data_path)
        if not self.data_path.is_dir():
            raise GasMonoError(f"ScanNet test folder not found: {self.data_path}")
        keyed = []
        for path in self.data_path.iterdir():
            match = _COLOR_NAME.match(path.name)
            if match:
                keyed.append(((match["scene"], int(match["frame"])), match["frame"], path))
        if not keyed:
            raise GasMonoError(f"no '<scene>_color_<frame>.jpg' images in {self.data_path}")
        keyed.sort()
        self._depth_names = [f"{scene}_depth_{frame}.png" for (scene, _), frame, _ in keyed]
        super().__init__([path for _, _, path in keyed], height, width, input_crop, None, check_files)

    def depth_paths(self) -> list[Path]:
        """``<scene>_depth_<frame>.png`` beside each colour image."""
        return [self.data_path / name for name in self._depth_names]


def scannet_test_set(
    data_path: str | os.PathLike,
    height: int,
    width: int,
    input_crop: PixelCrop | None = None,
    check_files: bool = True,
) -> EvalSet:
    """The ScanNet test set in ``data_path`` (depth in millimetres)."""
    dataset = ScanNetTestDataset(data_path, height, width, input_crop, check_files)
    ground_truth = DepthImageGroundTruth(dataset.depth_paths(), SCANNET_DEPTH_DIVISOR)
    return EvalSet(dataset, ground_truth, f"ScanNet test folder {dataset.data_path}")
