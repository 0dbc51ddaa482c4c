"""Tests of tools/prepare_nyu_test.py on tiny fake copies of the official NYUv2 .mat files."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from tools import prepare_nyu_test as tool
from utils import GasMonoError

COUNT, HEIGHT, WIDTH = 5, 6, 8
TEST_INDICES = [4, 2, 5]  # 1-based, in the order of splits.mat


def write_fake_labeled(path: Path, images: np.ndarray | None, depths: np.ndarray | None) -> None:
    """Store ``N x H x W x 3`` images and ``N x H x W`` depths in MATLAB v7.3's transposed layout."""
    with h5py.File(path, "w") as handle:
        if images is not None:
            handle.create_dataset("images", data=images.transpose(0, 3, 2, 1))  # N x 3 x W x H
        if depths is not None:
            handle.create_dataset("depths", data=depths.transpose(0, 2, 1))  # N x W x H


@pytest.fixture
def fake_mats(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (COUNT, HEIGHT, WIDTH, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.0, (COUNT, HEIGHT, WIDTH)).astype(np.float32)
    labeled = tmp_path / "nyu_depth_v2_labeled.mat"
    write_fake_labeled(labeled, images, depths)
    splits = tmp_path / "splits.mat"
    scipy.io.savemat(splits, {"testNdxs": np.array(TEST_INDICES, np.float64)[:, None],
                              "trainNdxs": np.array([[1], [3]], np.float64)})
    return {"labeled": labeled, "splits": splits, "images": images, "depths": depths}


def test_exports_images_list_and_ground_truth(fake_mats: dict, tmp_path: Path) -> None:
    out, split_dir = tmp_path / "nyu_test", tmp_path / "splits"
    assert tool.prepare_nyu_test(fake_mats["labeled"], fake_mats["splits"], out, split_dir, progress=False) == 3
    assert (split_dir / "test_files.txt").read_text() == "color 0004 l\ncolor 0002 l\ncolor 0005 l\n"
    gt = np.load(split_dir / "gt_depths.npz")["data"]
    assert gt.shape == (3, HEIGHT, WIDTH) and gt.dtype == np.float32
    for row, index in enumerate(TEST_INDICES):
        image = Image.open(out / "color" / f"{index:04d}.png")
        assert image.mode == "RGB" and image.size == (WIDTH, HEIGHT)
        np.testing.assert_array_equal(np.asarray(image), fake_mats["images"][index - 1])
        np.testing.assert_array_equal(gt[row], fake_mats["depths"][index - 1])
    assert sorted(p.name for p in (out / "color").iterdir()) == ["0002.png", "0004.png", "0005.png"]


def test_bad_inputs(fake_mats: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    no_depths = tmp_path / "no_depths.mat"
    write_fake_labeled(no_depths, fake_mats["images"], None)
    with pytest.raises(GasMonoError, match=f"{no_depths} has no dataset 'depths'"):
        tool.prepare_nyu_test(no_depths, fake_mats["splits"], tmp_path / "o", tmp_path / "s", progress=False)

    wrong_shape = tmp_path / "wrong_shape.mat"
    write_fake_labeled(wrong_shape, fake_mats["images"], fake_mats["depths"][:, :, :-1])
    with pytest.raises(GasMonoError, match="'depths' has shape \\(5, 7, 6\\), expected \\(5, 8, 6\\)"):
        tool.prepare_nyu_test(wrong_shape, fake_mats["splits"], tmp_path / "o", tmp_path / "s", progress=False)

    out_of_range = tmp_path / "range.mat"
    scipy.io.savemat(out_of_range, {"testNdxs": np.array([[1], [6]])})
    with pytest.raises(GasMonoError, match="test indices must lie in 1..5 .* got 1..6"):
        tool.prepare_nyu_test(fake_mats["labeled"], out_of_range, tmp_path / "o", tmp_path / "s", progress=False)

    no_key = tmp_path / "no_key.mat"
    scipy.io.savemat(no_key, {"trainNdxs": np.array([[1]])})
    with pytest.raises(GasMonoError, match="has no variable 'testNdxs'"):
        tool.read_test_indices(no_key)

    not_hdf5 = tmp_path / "v5.mat"
    scipy.io.savemat(not_hdf5, {"images": np.zeros((2, 2))})
    with pytest.raises(GasMonoError, match="cannot read .*v5.mat as MATLAB v7.3"):
        tool.prepare_nyu_test(not_hdf5, fake_mats["splits"], tmp_path / "o", tmp_path / "s", progress=False)
    assert not (tmp_path / "s" / "gt_depths.npz").exists()

    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--labeled_mat", str(no_depths), "--splits_mat", str(fake_mats["splits"]),
                   "--out", str(tmp_path / "o"), "--split_dir", str(tmp_path / "s")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {no_depths} has no dataset 'depths'"
