"""NYUv2 test set (654 images) in the two layouts our users have.

* Release layout: a list ``test_files.txt`` with lines ``color <i:04d> l``,
  images ``<data_path>/color/<i:04d>.png`` (640 x 480) and the ground truth
  stacked in one ``gt_depths.npz`` (key ``data``, ``N x 480 x 640``, metres).
  The list is ``<data_path>/test_files.txt`` when present, else
  ``splits/nyu/test_files.txt``; the ground truth is the given file, else
  ``<data_path>/gt_depths.npz``, else ``splits/nyu/gt_depths.npz``.
* SC-Depth layout: ``[testing/]color/*.png`` with ``[testing/]depth/*.png``
  (uint16, depth = value / 5000), paired by file name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from datasets.eval_base import DepthImageGroundTruth, EvalImageDataset, EvalSet, PixelCrop, StackedGroundTruth
from utils import PROJECT_ROOT, GasMonoError, readlines

__all__ = [
    "NYU_TEST_SIZE",
    "SCDEPTH_DEPTH_DIVISOR",
    "NYUTestDataset",
    "SCDepthNYUTestDataset",
    "parse_nyu_test_line",
    "nyu_test_set",
]

NYU_TEST_SIZE = (480, 640)
"""``(H, W)`` of the official NYUv2 test images and depth maps."""

SCDEPTH_DEPTH_DIVISOR = 5000.0
DEFAULT_SPLIT_DIR = PROJECT_ROOT / "splits" / "nyu"


def parse_nyu_test_line(line: str, list_path: Path, line_number: int) -> tuple[str, int]:
    """Parse ``color <i:04d> [l]`` into ``(folder, index)``."""
    parts = line.split()
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        raise GasMonoError(
            f"{list_path}:{line_number}: expected '<folder> <index> [side]', e.g. 'color 0001 l', got {line!r}"
        )
    return parts[0], int(parts[1])


class NYUTestDataset(EvalImageDataset):
    """NYUv2 test images ``<data_path>/<folder>/<i:04d>.png`` listed by a test file.

    Args:
        data_path: folder holding ``color/``.
        list_path: the ``test_files.txt`` (lines ``color <i:04d> l``).
        height, width, input_crop, required_size, check_files: see :class:`EvalImageDataset`.
    """

    def __init__(
        self,
        data_path: str | os.PathLike,
        list_path: str | os.PathLike,
        height: int,
        width: int,
        input_crop: PixelCrop | None = None,
        required_size: tuple[int, int] | None = None,
        check_files: bool = True,
    ) -> None:
        self.data_path = Path(data_path)
        self.list_path = Path(list_path)
        lines = readlines(self.list_path, "NYUv2 test list")
        paths = []
        for number, line in enumerate(lines, start=1):
            folder, index = parse_nyu_test_line(line, self.list_path, number)
            paths.append(self.data_path / folder / f"{index:04d}.png")
        super().__init__(paths, height, width, input_crop, required_size, check_files)


class SCDepthNYUTestDataset(EvalImageDataset):
    """SC-Depth's NYUv2 test folder: ``color/*.png``, sorted by name."""

    def __init__(
        self,
        root: str | os.PathLike,
        height: int,
        width: int,
        input_crop: PixelCrop | None = None,
        required_size: tuple[int, int] | None = None,
        check_files: bool = True,
    ) -> None:
        self.root = Path(root)
        paths = sorted((self.root / "color").glob("*.png"))
        super().__init__(paths, height, width, input_crop, required_size, check_files)

    def depth_paths(self) -> list[Path]:
        """The ground-truth PNG of each image (same file name in ``depth/``)."""
        return [self.root / "depth" / path.name for path in self.image_paths]


def _first_existing(candidates: Sequence[Path], what: str) -> Path:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(candidate) for candidate in candidates)
    raise GasMonoError(f"{what} not found (tried {tried})")


def _scdepth_root(data_path: Path) -> Path | None:
    for root in (data_path / "testing", data_path):
        if (root / "color").is_dir() and (root / "depth").is_dir():
            return root
    return None


def nyu_test_set(
    data_path: str | os.PathLike,
    height: int,
    width: int,
    gt_depths: str | os.PathLike | None = None,
    input_crop: PixelCrop | None = None,
    required_size: tuple[int, int] | None = None,
    check_files: bool = True,
    split_dir: str | os.PathLike = DEFAULT_SPLIT_DIR,
) -> EvalSet:
    """Find the NYUv2 test set under ``data_path`` (either layout, see the module doc).

    The SC-Depth layout is used when ``data_path`` (or ``data_path/testing``)
    holds ``color/`` and ``depth/`` folders and neither ``gt_depths`` nor
    ``<data_path>/test_files.txt`` / ``<data_path>/gt_depths.npz`` is given.
    """
    data_path = Path(data_path)
    split_dir = Path(split_dir)
    if not data_path.is_dir():
        raise GasMonoError(f"NYUv2 test folder not found: {data_path}")
    release_files = (data_path / "test_files.txt").is_file() or (data_path / "gt_depths.npz").is_file()
    scdepth_root = _scdepth_root(data_path)
    if gt_depths is None and not release_files and scdepth_root is not None:
        dataset = SCDepthNYUTestDataset(scdepth_root, height, width, input_crop, required_size, check_files)
        ground_truth = DepthImageGroundTruth(dataset.depth_paths(), SCDEPTH_DEPTH_DIVISOR)
        return EvalSet(dataset, ground_truth, f"NYUv2 test, SC-Depth layout {scdepth_root}")

    list_path = _first_existing([data_path / "test_files.txt", split_dir / "test_files.txt"], "NYUv2 test list")
    if gt_depths is not None:
        gt_path = Path(gt_depths)
        if not gt_path.is_file():
            raise GasMonoError(f"ground-truth file not found: {gt_path}")
    else:
        gt_path = _first_existing([data_path / "gt_depths.npz", split_dir / "gt_depths.npz"], "NYUv2 ground truth")
    dataset = NYUTestDataset(data_path, list_path, height, width, input_crop, required_size, check_files)
    ground_truth = StackedGroundTruth(gt_path)
    return EvalSet(dataset, ground_truth, f"NYUv2 test, list {list_path}, ground truth {gt_path}")
