"""7-Scenes test set (Microsoft RGB-D 7-Scenes, official layout).

``<data_path>/<scene>/seq-XX/frame-XXXXXX.color.png`` with
``frame-XXXXXX.depth.png`` (uint16 millimetres, 65535 = invalid; the depth
is not registered to the colour image and is evaluated unregistered, as prior
work does). The test sequences of a scene are listed in its
``TestSplit.txt`` (lines ``sequence2`` or ``seq-02``). Every N-th frame of each
test sequence is used (frames 0, N, 2N, ...). ``data_path`` may also be a
single scene folder.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from datasets.eval_base import DepthImageGroundTruth, EvalImageDataset, EvalSet, PixelCrop
from utils import GasMonoError, readlines

__all__ = [
    "SEVEN_SCENES_DEPTH_DIVISOR",
    "SEVEN_SCENES_INVALID_DEPTH",
    "SevenScenesTestDataset",
    "parse_test_split",
    "seven_scenes_test_set",
]

SEVEN_SCENES_DEPTH_DIVISOR = 1000.0
SEVEN_SCENES_INVALID_DEPTH = 65535
_SEQUENCE_LINE = re.compile(r"^\s*(?:sequence|seq-?)(\d+)\s*$", re.IGNORECASE)


def parse_test_split(path: Path) -> list[str]:
    """Sequence folder names (``seq-XX``) listed in a ``TestSplit.txt``."""
    folders = []
    for number, line in enumerate(readlines(path, "7-Scenes test split"), start=1):
        match = _SEQUENCE_LINE.match(line)
        if not match:
            raise GasMonoError(f"{path}:{number}: expected 'sequenceN' or 'seq-NN', got {line!r}")
        folders.append(f"seq-{int(match[1]):02d}")
    return folders


def _scene_folders(data_path: Path) -> list[Path]:
    if (data_path / "TestSplit.txt").is_file():
        return [data_path]
    scenes = sorted(path for path in data_path.iterdir() if (path / "TestSplit.txt").is_file())
    if not scenes:
        raise GasMonoError(f"no 7-Scenes scene with a TestSplit.txt in {data_path}")
    return scenes


class SevenScenesTestDataset(EvalImageDataset):
    """Every ``frame_stride``-th colour frame of the test sequences of each scene.

    Args:
        data_path: the 7-Scenes root (scene folders) or one scene folder.
        frame_stride: keep frames 0, N, 2N, ... of each test sequence.
    """

    def __init__(
        self,
        data_path: str | os.PathLike,
        height: int,
        width: int,
        frame_stride: int = 10,
        input_crop: PixelCrop | None = None,
        check_files: bool = True,
    ) -> None:
        self.data_path = Path(data_path)
        if not self.data_path.is_dir():
            raise GasMonoError(f"7-Scenes folder not found: {self.data_path}")
        if frame_stride < 1:
            raise GasMonoError(f"frame stride must be at least 1, got {frame_stride}")
        self.frame_stride = frame_stride
        self.items: list[tuple[str, str, str]] = []
        paths = []
        for scene in _scene_folders(self.data_path):
            for sequence in parse_test_split(scene / "TestSplit.txt"):
                folder = scene / sequence
                if not folder.is_dir():
                    raise GasMonoError(f"test sequence listed in {scene / 'TestSplit.txt'} not found: {folder}")
                frames = sorted(folder.glob("frame-*.color.png"))
                if not frames:
                    raise GasMonoError(f"no frame-XXXXXX.color.png in {folder}")
                for frame in frames[::frame_stride]:
                    self.items.append((scene.name, sequence, frame.name[: -len(".color.png")]))
                    paths.append(frame)
        super().__init__(paths, height, width, input_crop, None, check_files)

    def depth_paths(self) -> list[Path]:
        """``frame-XXXXXX.depth.png`` beside each colour frame."""
        return [path.with_name(path.name.replace(".color.png", ".depth.png")) for path in self.image_paths]


def seven_scenes_test_set(
    data_path: str | os.PathLike,
    height: int,
    width: int,
    frame_stride: int = 10,
    input_crop: PixelCrop | None = None,
    check_files: bool = True,
) -> EvalSet:
    """The 7-Scenes test frames under ``data_path`` (every ``frame_stride``-th)."""
    dataset = SevenScenesTestDataset(data_path, height, width, frame_stride, input_crop, check_files)
    ground_truth = DepthImageGroundTruth(
        dataset.depth_paths(), SEVEN_SCENES_DEPTH_DIVISOR, invalid_values=(SEVEN_SCENES_INVALID_DEPTH,)
    )
    description = f"7-Scenes test sequences in {dataset.data_path}, every {frame_stride}th frame"
    return EvalSet(dataset, ground_truth, description)
