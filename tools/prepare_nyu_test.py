"""Prepare the NYUv2 test set (654 images) from the official files.

Reads ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5: ``images`` uint8
stored as ``N x 3 x W x H`` and ``depths`` float32 stored as ``N x W x H``,
transposed relative to ``H x W``) and ``splits.mat`` (MATLAB v5: ``testNdxs``,
1-based indices), and writes what ``evaluate_depth.py`` reads::

    <out>/color/<i:04d>.png           RGB test images (i: the 1-based index)
    <split_dir>/test_files.txt        lines "color <i:04d> l", in testNdxs order
    <split_dir>/gt_depths.npz         key "data": float32 N_test x H x W, metres

Example::

    python tools/prepare_nyu_test.py --labeled_mat nyu_depth_v2_labeled.mat \\
        --splits_mat splits.mat --out data/nyu_test --split_dir splits/nyu
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import GasMonoError, atomic_write_text, cli_entry_point, require_path  # noqa: E402

logger = logging.getLogger(__name__)


def read_test_indices(splits_mat: str | os.PathLike, key: str = "testNdxs") -> np.ndarray:
    """1-based test indices from the official ``splits.mat`` (MATLAB v5)."""
    path = require_path(splits_mat, "splits file")
    try:
        contents = scipy.io.loadmat(str(path))
    except (ValueError, OSError, NotImplementedError) as error:
        raise GasMonoError(f"cannot read {path} as a MATLAB v5 file: {error}") from None
    if key not in contents:
        raise GasMonoError(f"{path} has no variable {key!r}")
    indices = np.asarray(contents[key]).ravel()
    if indices.size == 0 or not np.all(np.equal(np.mod(indices, 1), 0)):
        raise GasMonoError(f"{path}: {key} must be a non-empty list of integers")
    return indices.astype(np.int64)


def prepare_nyu_test(
    labeled_mat: str | os.PathLike,
    splits_mat: str | os.PathLike,
    out_dir: str | os.PathLike,
    split_dir: str | os.PathLike,
    progress: bool = True,
) -> int:
    """Export the test images, the test list and the stacked ground truth.

    Returns:
        The number of test images written.
    """
    labeled_path = require_path(labeled_mat, "labeled data set")
    indices = read_test_indices(splits_mat)
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
            image = np.asarray(images[index - 1]).transpose(2, 1, 0)
            Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(color_dir / f"{index:04d}.png")
            gt[row] = np.asarray(depths[index - 1], dtype=np.float32).T
    split_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(split_dir / "gt_depths.npz", data=gt)
    atomic_write_text("".join(f"color {index:04d} l\n" for index in indices), split_dir / "test_files.txt")
    logger.info("wrote %d test images to %s and ground truth to %s", len(indices), color_dir, split_dir)
    return len(indices)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export the NYUv2 test set (images, test_files.txt, gt_depths.npz) from the official .mat files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--labeled_mat", type=Path, required=True, help="official nyu_depth_v2_labeled.mat")
    parser.add_argument("--splits_mat", type=Path, required=True, help="official splits.mat (testNdxs)")
    parser.add_argument("--out", type=Path, required=True, help="data folder; images go to <out>/color/<i:04d>.png")
    parser.add_argument("--split_dir", type=Path, default=Path("splits/nyu"),
                        help="folder for test_files.txt and gt_depths.npz")
    return parser


@cli_entry_point
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    count = prepare_nyu_test(args.labeled_mat, args.splits_mat, args.out, args.split_dir)
    print(f"wrote {count} test images to {args.out / 'color'}")
    print(f"wrote {args.split_dir / 'test_files.txt'} and {args.split_dir / 'gt_depths.npz'}")


if __name__ == "__main__":
    main()
