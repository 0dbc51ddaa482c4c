"""Tests of the NYUv2 test-set preparation (datasets/nyu_test_preparation.py and
tools/prepare_nyu_test.py) on tiny fake copies of the official NYUv2 .mat files."""
from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

import datasets.nyu_test_preparation as nyu_prep
from tools.prepare_nyu_test import build_parser, main
from utils import PROJECT_ROOT, GasMonoError

COUNT, HEIGHT, WIDTH = 5, 6, 8
TEST_INDICES = [4, 2, 5]  # 1-based, in the order of splits.mat


def write_fake_labeled(path: Path, images: np.ndarray | None, depths: np.ndarray | None,
                       compression: str | None = None) -> None:
    """Store ``N x H x W x 3`` images and ``N x H x W`` depths in MATLAB v7.3's transposed layout
    (one chunk per frame when compressed)."""
    with h5py.File(path, "w") as handle:
        if images is not None:
            data = images.transpose(0, 3, 2, 1)  # N x 3 x W x H
            chunks = (1, *data.shape[1:]) if compression else None
            handle.create_dataset("images", data=data, chunks=chunks, compression=compression)
        if depths is not None:
            data = depths.transpose(0, 2, 1)  # N x W x H
            chunks = (1, *data.shape[1:]) if compression else None
            handle.create_dataset("depths", data=data, chunks=chunks, compression=compression)


def write_list(path: Path, indices) -> Path:
    path.write_text("".join(f"color {index:04d} l\n" for index in indices))
    return path


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
    reference = write_list(tmp_path / "reference_test_files.txt", TEST_INDICES)
    return {"labeled": labeled, "splits": splits, "images": images, "depths": depths, "reference": reference}


def run_tool(fake_mats: dict, labeled: Path, splits: Path, out: Path, split_dir: Path, **options) -> int:
    """The tool with the fake files' own test list as reference."""
    return nyu_prep.prepare_nyu_test(labeled, splits, out, split_dir, reference_list=fake_mats["reference"],
                                     progress=False, **options)


def test_exports_images_list_and_ground_truth(fake_mats: dict, tmp_path: Path) -> None:
    out, split_dir = tmp_path / "nyu_test", tmp_path / "splits"
    assert run_tool(fake_mats, fake_mats["labeled"], fake_mats["splits"], out, split_dir) == 3
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
        run_tool(fake_mats, no_depths, fake_mats["splits"], tmp_path / "o", tmp_path / "s")

    wrong_shape = tmp_path / "wrong_shape.mat"
    write_fake_labeled(wrong_shape, fake_mats["images"], fake_mats["depths"][:, :, :-1])
    with pytest.raises(GasMonoError, match="'depths' has shape \\(5, 7, 6\\), expected \\(5, 8, 6\\)"):
        run_tool(fake_mats, wrong_shape, fake_mats["splits"], tmp_path / "o", tmp_path / "s")

    out_of_range = tmp_path / "range.mat"
    scipy.io.savemat(out_of_range, {"testNdxs": np.array([[1], [6]])})
    with pytest.raises(GasMonoError, match="test indices must lie in 1..5 .* got 1..6"):
        run_tool(fake_mats, fake_mats["labeled"], out_of_range, tmp_path / "o", tmp_path / "s",
                 allow_index_mismatch=True)

    no_key = tmp_path / "no_key.mat"
    scipy.io.savemat(no_key, {"trainNdxs": np.array([[1]])})
    with pytest.raises(GasMonoError, match="has no variable 'testNdxs'"):
        nyu_prep.read_test_indices(no_key)

    not_hdf5 = tmp_path / "v5.mat"
    scipy.io.savemat(not_hdf5, {"images": np.zeros((2, 2))})
    with pytest.raises(GasMonoError, match="cannot read .*v5.mat as MATLAB v7.3"):
        run_tool(fake_mats, not_hdf5, fake_mats["splits"], tmp_path / "o", tmp_path / "s")
    assert not (tmp_path / "s" / "gt_depths.npz").exists()

    with pytest.raises(SystemExit) as exit_info:
        main(["--labeled_mat", str(no_depths), "--splits_mat", str(fake_mats["splits"]),
              "--out", str(tmp_path / "o"), "--split_dir", str(tmp_path / "s"), "--allow_index_mismatch"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {no_depths} has no dataset 'depths'"


def test_indices_must_equal_the_shipped_list(fake_mats: dict, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--labeled_mat", str(fake_mats["labeled"]), "--splits_mat", str(fake_mats["splits"]),
              "--out", str(tmp_path / "o"), "--split_dir", str(tmp_path / "s")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"error: testNdxs of {fake_mats['splits']} differs from {nyu_prep.SHIPPED_TEST_LIST}: position 1 "
                     f"is 4, the list has 1 (--allow_index_mismatch accepts other indices)")
    assert not (tmp_path / "s").exists() and not (tmp_path / "o").exists()

    prefix = write_list(tmp_path / "prefix.txt", TEST_INDICES + [7])
    with pytest.raises(GasMonoError, match="3 indices against 4 listed \\(from position 4\\)"):
        nyu_prep.check_test_indices(np.array(TEST_INDICES), fake_mats["splits"], prefix, allow_mismatch=False)


def test_the_official_indices_leave_the_shipped_list_untouched(tmp_path: Path) -> None:
    shipped = nyu_prep.read_test_list(nyu_prep.SHIPPED_TEST_LIST)
    assert len(shipped) == 654 and shipped == sorted(shipped) and shipped[0] >= 1 and shipped[-1] <= 1449
    rng = np.random.default_rng(1)
    labeled = tmp_path / "labeled.mat"
    write_fake_labeled(labeled, rng.integers(0, 256, (1449, 2, 3, 3), dtype=np.uint8),
                       rng.uniform(0.5, 9.0, (1449, 2, 3)).astype(np.float32))
    splits = tmp_path / "splits.mat"
    scipy.io.savemat(splits, {"testNdxs": np.array(shipped, np.float64)[:, None]})
    split_dir = tmp_path / "splits_nyu"
    split_dir.mkdir()
    listed = split_dir / "test_files.txt"
    listed.write_bytes(nyu_prep.SHIPPED_TEST_LIST.read_bytes())
    before = listed.stat()
    assert nyu_prep.prepare_nyu_test(labeled, splits, tmp_path / "out", split_dir, reference_list=listed,
                                     progress=False) == 654
    assert listed.read_bytes() == nyu_prep.SHIPPED_TEST_LIST.read_bytes()
    assert (listed.stat().st_ino, listed.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert np.load(split_dir / "gt_depths.npz")["data"].shape == (654, 2, 3)


def test_allow_index_mismatch_writes_the_given_indices_with_a_warning(fake_mats: dict, tmp_path: Path,
                                                                       caplog) -> None:
    split_dir = tmp_path / "s"
    with caplog.at_level(logging.WARNING, logger=nyu_prep.__name__):
        count = nyu_prep.prepare_nyu_test(fake_mats["labeled"], fake_mats["splits"], tmp_path / "o", split_dir,
                                          allow_index_mismatch=True, progress=False)
    assert count == 3
    assert "differs from" in caplog.text and "position 1 is 4" in caplog.text
    assert (split_dir / "test_files.txt").read_text() == "color 0004 l\ncolor 0002 l\ncolor 0005 l\n"


def test_split_dir_defaults_to_the_projects_splits_nyu(fake_mats: dict) -> None:
    args = build_parser().parse_args(["--labeled_mat", "l.mat", "--splits_mat", "s.mat", "--out", "o"])
    assert args.split_dir == PROJECT_ROOT / "splits" / "nyu" and args.split_dir.is_absolute()
    assert nyu_prep.SHIPPED_TEST_LIST == PROJECT_ROOT / "splits" / "nyu" / "test_files.txt"


def test_ground_truth_is_written_atomically(fake_mats: dict, tmp_path: Path, monkeypatch) -> None:
    split_dir = tmp_path / "s"
    split_dir.mkdir()
    previous = split_dir / "gt_depths.npz"
    np.savez_compressed(previous, data=np.zeros((1, 2, 2), np.float32))
    previous_bytes = previous.read_bytes()

    def disk_full(file, **arrays):
        with open(file, "wb") if isinstance(file, (str, Path)) else open(file.fileno(), "wb", closefd=False) as f:
            f.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run_tool(fake_mats, fake_mats["labeled"], fake_mats["splits"], tmp_path / "o", split_dir)
    assert previous.read_bytes() == previous_bytes
    assert sorted(path.name for path in split_dir.iterdir()) == ["gt_depths.npz"]


@pytest.mark.parametrize("damage", ["empty", "header_only", "cut_in_data", "not_matlab"])
def test_a_damaged_splits_mat_is_a_one_line_error(damage: str, fake_mats: dict, tmp_path: Path, capsys) -> None:
    content = fake_mats["splits"].read_bytes()
    damaged = tmp_path / f"splits_{damage}.mat"
    damaged.write_bytes({"empty": b"", "header_only": content[:100], "cut_in_data": content[:len(content) - 10],
                         "not_matlab": b"not a MATLAB file " * 20}[damage])
    with pytest.raises(SystemExit) as exit_info:
        main(["--labeled_mat", str(fake_mats["labeled"]), "--splits_mat", str(damaged),
              "--out", str(tmp_path / "o"), "--split_dir", str(tmp_path / "s"), "--allow_index_mismatch"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read {damaged} as a MATLAB v5 file")


@pytest.mark.parametrize("damage", ["truncated", "corrupt_chunk"])
def test_a_damaged_labeled_mat_is_a_one_line_error(damage: str, fake_mats: dict, tmp_path: Path, capsys) -> None:
    labeled = tmp_path / "labeled.mat"
    write_fake_labeled(labeled, fake_mats["images"], fake_mats["depths"], compression="gzip")
    content = bytearray(labeled.read_bytes())
    if damage == "truncated":
        content = content[:len(content) // 2]
    else:
        with h5py.File(labeled, "r") as handle:
            chunk = handle["images"].id.get_chunk_info(TEST_INDICES[1] - 1)
        content[chunk.byte_offset:chunk.byte_offset + chunk.size] = bytes(chunk.size)
    labeled.write_bytes(bytes(content))
    with pytest.raises(SystemExit) as exit_info:
        main(["--labeled_mat", str(labeled), "--splits_mat", str(fake_mats["splits"]),
              "--out", str(tmp_path / "o"), "--split_dir", str(tmp_path / "s"), "--allow_index_mismatch"])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    last = stderr.strip().splitlines()[-1]  # after the progress bar
    assert "Traceback" not in stderr and last.startswith("error: cannot read ") and str(labeled) in last
    assert not (tmp_path / "s" / "gt_depths.npz").exists()
