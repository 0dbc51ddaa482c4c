"""The NYUv2 test set (654 images) from the official files.

Reads ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5: ``images`` uint8
stored as ``N x 3 x W x H`` and ``depths`` float32 stored as ``N x W x H``,
transposed relative to ``H x W``) and ``splits.mat`` (MATLAB v5: ``testNdxs``,
1-based indices), and writes what the NYUv2 test set of :mod:`datasets.eval_nyu` reads::

    <out>/color/<i:04d>.png           RGB test images (i: the 1-based index)
    <split_dir>/test_files.txt        lines "color <i:04d> l", in testNdxs order
    <split_dir>/gt_depths.npz         key "data": float32 N_test x H x W, metres

``<split_dir>`` defaults to the project's ``splits/nyu``. The indices read
from ``splits.mat`` must equal the shipped list ``splits/nyu/test_files.txt``
(the release's 654 official test indices) unless a mismatch is allowed (a
subset, another split), which is logged as a warning. The ground truth is
written atomically.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from datasets.eval_nyu import DEFAULT_SPLIT_DIR
from utils import GasMonoError, atomic_save_npz, atomic_write_text, readlines, require_path

logger = logging.getLogger(__name__)

SHIPPED_TEST_LIST = DEFAULT_SPLIT_DIR / "test_files.txt"


def read_test_indices(splits_mat: str | os.PathLike, key: str = "testNdxs") -> np.ndarray:
    """1-based test indices from the official ``splits.mat`` (MATLAB v5).

    A missing, truncated or corrupt file is a :class:`GasMonoError` naming it.
    """
    path = require_path(splits_mat, "splits file")
    try:
        contents = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises many types on a damaged file (MatReadError, IndexError, OSError)
        raise GasMonoError(
            f"cannot read {path} as a MATLAB v5 file (truncated or corrupt?): {type(error).__name__}: "
            f"{' '.join(str(error).split())}"
        ) from None
    if key not in contents:
        raise GasMonoError(f"{path} has no variable {key!r}")
    indices = np.asarray(contents[key]).ravel()
    if indices.size == 0 or not np.issubdtype(indices.dtype, np.number) or not np.all(np.mod(indices, 1) == 0):
        raise GasMonoError(f"{path}: {key} must be a non-empty list of integers")
    return indices.astype(np.int64)


def read_test_list(list_path: str | os.PathLike) -> list[int]:
    """The indices of a test list (lines ``color <i:04d> l``), in list order."""
    list_path = Path(list_path)
    indices = []
    for number, line in enumerate(readlines(list_path), 1):
        parts = line.split()
        if len(parts) != 3 or parts[0] != "color" or not parts[1].isdigit():
            raise GasMonoError(f"{list_path} line {number}: expected 'color <index> l', got {line.strip()!r}")
        indices.append(int(parts[1]))
    return indices


def first_index_difference(indices: Sequence[int], listed: Sequence[int]) -> str | None:
    """Describe the first position where ``indices`` and ``listed`` differ, or None when equal."""
    for position, (index, expected) in enumerate(zip(indices, listed), 1):
        if index != expected:
            return f"position {position} is {index}, the list has {expected}"
    if len(indices) != len(listed):
        position = min(len(indices), len(listed)) + 1
        return f"{len(indices)} indices against {len(listed)} listed (from position {position})"
    return None


def check_test_indices(
    indices: np.ndarray, splits_mat: str | os.PathLike, list_path: str | os.PathLike, allow_mismatch: bool
) -> None:
    """Compare the indices of ``splits.mat`` with the reference list: a
    difference is a :class:`GasMonoError` naming the first one, or, with
    ``allow_mismatch``, a logged warning."""
    difference = first_index_difference(indices.tolist(), read_test_list(list_path))
    if difference is None:
        return
    message = f"testNdxs of {splits_mat} differs from {list_path}: {difference}"
    if not allow_mismatch:
        raise GasMonoError(f"{message} (--allow_index_mismatch accepts other indices)")
    logger.warning("%s; writing these %d indices as asked (--allow_index_mismatch)", message, len(indices))


def write_test_list(indices: np.ndarray, list_path: Path) -> None:
    """Write ``color <i:04d> l`` lines; a file with the same content is left untouched."""
    text = "".join(f"color {index:04d} l\n" for index in indices)
    if list_path.is_file() and list_path.read_text(encoding="utf-8") == text:
        return
    atomic_write_text(text, list_path)


def prepare_nyu_test(
    labeled_mat: str | os.PathLike,
    splits_mat: str | os.PathLike,
    out_dir: str | os.PathLike,
    split_dir: str | os.PathLike = DEFAULT_SPLIT_DIR,
    reference_list: str | os.PathLike = SHIPPED_TEST_LIST,
    allow_index_mismatch: bool = False,
    progress: bool = True,
) -> int:
    """Export the test images, the test list and the stacked ground truth.

    Args:
        labeled_mat, splits_mat: the official files.
        out_dir: images go to ``<out_dir>/color/<i:04d>.png``.
        split_dir: folder for ``test_files.txt`` and ``gt_depths.npz``.
        reference_list: the test list the indices must equal (the shipped one).
        allow_index_mismatch: accept indices that differ from ``reference_list``.

    Returns:
        The number of test images written.
    """
    labeled_path = require_path(labeled_mat, "labeled data set")
    indices = read_test_indices(splits_mat)
    check_test_indices(indices, splits_mat, reference_list, allow_index_mismatch)
    out_dir, split_dir = Path(out_dir), Path(split_dir)
    try:
        handle = h5py.File(labeled_path, "r")
    except OSError as error:
        raise GasMonoError(f"cannot read {labeled_path} as MATLAB v7.3 (HDF5): {error}") from None
    with handle:
        for name in ("images", "depths"):
            if name not in handle:
                raise GasMonoError(f"{labeled_path} has no dataset {name!r}")
        images, depths = handle["images"], handle["depths"]
        if images.ndim != 4 or images.shape[1] != 3:
            raise GasMonoError(f"{labeled_path}: 'images' has shape {images.shape}, expected N x 3 x W x H")
        count, _, width, height = images.shape
        if depths.shape != (count, width, height):
            raise GasMonoError(
                f"{labeled_path}: 'depths' has shape {depths.shape}, "
                f"expected {(count, width, height)} to match 'images'"
            )
        if indices.min() < 1 or indices.max() > count:
            raise GasMonoError(
                f"test indices must lie in 1..{count} (the frames in {labeled_path}), "
                f"got {indices.min()}..{indices.max()}"
            )
        color_dir = out_dir / "color"
        color_dir.mkdir(parents=True, exist_ok=True)
        gt = np.empty((len(indices), height, width), np.float32)
        for row, index in enumerate(tqdm(indices, desc="NYUv2 test", unit="image", disable=not progress)):
            try:
                image = np.asarray(images[index - 1]).transpose(2, 1, 0)
                gt[row] = np.asarray(depths[index - 1], dtype=np.float32).T
            except OSError as error:
                raise GasMonoError(
                    f"cannot read frame {index} of {labeled_path} (truncated or corrupt?): "
                    f"{' '.join(str(error).split())}"
                ) from None
            Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(color_dir / f"{index:04d}.png")
    atomic_save_npz(split_dir / "gt_depths.npz", data=gt)
    write_test_list(indices, split_dir / "test_files.txt")
    logger.info("wrote %d test images to %s and ground truth to %s", len(indices), color_dir, split_dir)
    return len(indices)
