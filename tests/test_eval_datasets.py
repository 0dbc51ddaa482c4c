"""Evaluation test-set loaders (NYUv2, SC-Depth, ScanNet, 7-Scenes, KITTI) and
the KITTI velodyne ground-truth export, on small layouts built in tmp_path."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from datasets.eval_base import EvalImageDataset, StackedGroundTruth, prepare_image
from datasets.eval_kitti import kitti_eigen_test_set, parse_kitti_split, read_calib_file, velodyne_to_depth_map
from datasets.eval_nyu import nyu_test_set
from datasets.eval_scannet import scannet_test_set
from datasets.eval_seven_scenes import seven_scenes_test_set
from datasets.kitti_ground_truth import export_kitti_gt
from tools.export_kitti_gt import main as export_main
from utils import GasMonoError

H, W = 32, 64  # network size used by the loaders in these tests


def _save_rgb(path: Path, height: int, width: int, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), value, dtype=np.uint8)
    image[:, :, 1] = np.arange(width, dtype=np.uint8)[None, :]
    Image.fromarray(image).save(path)


def _save_depth_png(path: Path, raw: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), raw.astype(np.uint16))


def _make_nyu(root: Path, num: int = 3, size: tuple[int, int] = (48, 64), gt_name: str = "gt_depths.npz") -> np.ndarray:
    for index in range(1, num + 1):
        _save_rgb(root / "color" / f"{index:04d}.png", *size, value=40 * index)
    (root / "test_files.txt").write_text("".join(f"color {index:04d} l\n" for index in range(1, num + 1)))
    gt = np.stack([np.full(size, float(index), dtype=np.float32) for index in range(1, num + 1)])
    np.savez(root / gt_name, data=gt)
    return gt


def test_prepare_image_crop_and_resize():
    array = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    tensor = prepare_image(Image.fromarray(array), 4, 5, crop=(1, 5, 2, 7))
    assert tensor.shape == (3, 4, 5) and tensor.dtype == torch.float32
    expected = array[1:5, 2:7].astype(np.float32).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(tensor.numpy(), expected, atol=1e-7)


def test_nyu_release_layout_items_and_ground_truth(tmp_path):
    gt = _make_nyu(tmp_path)
    test_set = nyu_test_set(tmp_path, H, W)
    assert len(test_set.dataset) == 3 and len(test_set.ground_truth) == 3
    item = test_set.dataset[1]
    assert item["index"] == 1 and item["color"].shape == (3, H, W)
    # image 2 has red channel 80: after LANCZOS resizing a constant stays constant
    assert torch.allclose(item["color"][0], torch.full((H, W), 80 / 255.0), atol=1e-6)
    np.testing.assert_array_equal(test_set.ground_truth[2], gt[2])


def test_nyu_list_and_gt_fallback_to_split_dir(tmp_path):
    data, split_dir = tmp_path / "data", tmp_path / "split"
    _make_nyu(data)
    split_dir.mkdir()
    (data / "test_files.txt").rename(split_dir / "test_files.txt")
    (data / "gt_depths.npz").rename(split_dir / "gt_depths.npz")
    test_set = nyu_test_set(data, H, W, split_dir=split_dir)
    assert str(split_dir / "gt_depths.npz") in test_set.description
    assert test_set.ground_truth[0][0, 0] == 1.0
    # an explicit ground-truth file wins
    np.savez(tmp_path / "other.npz", data=np.full((3, 48, 64), 7.0, dtype=np.float32))
    assert nyu_test_set(data, H, W, gt_depths=tmp_path / "other.npz", split_dir=split_dir).ground_truth[0][0, 0] == 7.0


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda root: (root / "test_files.txt").write_text("color 0001 l\ncolor x l\n"), "test_files.txt:2"),
        (lambda root: (root / "color" / "0002.png").unlink(), "0002.png"),
        (lambda root: np.savez(root / "gt_depths.npz", depth=np.zeros((3, 4, 4))), "no 'data' entry"),
        (lambda root: np.savez(root / "gt_depths.npz", data=np.zeros((2, 4, 4))), "3 test images but 2 ground-truth"),
        (lambda root: (root / "gt_depths.npz").write_bytes(b"not a zip"), "cannot read ground-truth"),
        (lambda root: (root / "gt_depths.npz").write_bytes((root / "gt_depths.npz").read_bytes()[:300]),
         "gt_depths.npz: File is not a zip file"),
        (lambda root: (root / "test_files.txt").write_bytes(b"color 0001 l\ncolor \xff\xfe l\n"),
         "test_files.txt line 2: not UTF-8 text"),
    ],
)
def test_nyu_bad_input_is_one_line_error(tmp_path, break_it, message):
    _make_nyu(tmp_path)
    break_it(tmp_path)
    with pytest.raises(GasMonoError, match=message.replace(".", r"\.")) as info:
        nyu_test_set(tmp_path, H, W, split_dir=tmp_path / "none")
    assert "\n" not in str(info.value)


def test_input_crop_requires_size(tmp_path):
    _make_nyu(tmp_path, size=(48, 64))
    with pytest.raises(GasMonoError, match="needs 640x480"):
        nyu_test_set(tmp_path, H, W, input_crop=(44, 471, 40, 601), required_size=(480, 640))


def test_scdepth_layout_depth_divisor(tmp_path):
    root = tmp_path / "testing"
    for index, name in enumerate(["0000", "0001"]):
        _save_rgb(root / "color" / f"{name}.png", 24, 32, value=10 + index)
        _save_depth_png(root / "depth" / f"{name}.png", np.full((24, 32), 5000 * (index + 1)))
    test_set = nyu_test_set(tmp_path, H, W)
    assert "SC-Depth" in test_set.description
    np.testing.assert_allclose(test_set.ground_truth[1], 2.0)
    assert test_set.dataset.image_paths[1].name == "0001.png"


def test_scannet_flat_folder_order_and_millimetres(tmp_path):
    frames = [("scene0011_00", 1860), ("scene0011_00", 20), ("scene0002_01", 500)]
    for number, (scene, frame) in enumerate(frames):
        _save_rgb(tmp_path / f"{scene}_color_{frame}.jpg", 24, 32, value=number)
        _save_depth_png(tmp_path / f"{scene}_depth_{frame}.png", np.full((12, 16), 1000 + number))
    test_set = scannet_test_set(tmp_path, H, W)
    names = [path.name for path in test_set.dataset.image_paths]
    assert names == ["scene0002_01_color_500.jpg", "scene0011_00_color_20.jpg", "scene0011_00_color_1860.jpg"]
    np.testing.assert_allclose(test_set.ground_truth[0], 1.002)
    assert test_set.ground_truth[2].shape == (12, 16)
    (tmp_path / "scene0011_00_depth_20.png").unlink()
    with pytest.raises(GasMonoError, match="scene0011_00_depth_20.png"):
        scannet_test_set(tmp_path, H, W)


def test_seven_scenes_test_split_stride_and_invalid(tmp_path):
    for scene, sequences in (("chess", [1, 3]), ("fire", [2])):
        (tmp_path / scene).mkdir()
        (tmp_path / scene / "TestSplit.txt").write_text("".join(f"sequence{seq}\n" for seq in sequences))
        for seq in (1, 2, 3):
            for frame in range(5):
                stem = tmp_path / scene / f"seq-{seq:02d}" / f"frame-{frame:06d}"
                _save_rgb(stem.with_name(stem.name + ".color.png"), 24, 32, value=frame)
                raw = np.full((24, 32), 1000 * (frame + 1))
                raw[0, 0] = 65535
                _save_depth_png(stem.with_name(stem.name + ".depth.png"), raw)
    test_set = seven_scenes_test_set(tmp_path, H, W, frame_stride=2)
    assert test_set.dataset.items == [
        ("chess", "seq-01", "frame-000000"), ("chess", "seq-01", "frame-000002"), ("chess", "seq-01", "frame-000004"),
        ("chess", "seq-03", "frame-000000"), ("chess", "seq-03", "frame-000002"), ("chess", "seq-03", "frame-000004"),
        ("fire", "seq-02", "frame-000000"), ("fire", "seq-02", "frame-000002"), ("fire", "seq-02", "frame-000004"),
    ]
    depth = test_set.ground_truth[1]
    assert depth[0, 0] == 0.0 and depth[5, 5] == pytest.approx(3.0)
    (tmp_path / "fire" / "TestSplit.txt").write_text("sequence2\nseqX\n")
    with pytest.raises(GasMonoError, match="TestSplit.txt:2"):
        seven_scenes_test_set(tmp_path, H, W)


# --------------------------------------------------------------------------
# KITTI: a tiny fake drive with hand-made calibration and velodyne points
# --------------------------------------------------------------------------

DATE, DRIVE = "2011_09_26", "2011_09_26_drive_0002_sync"
IMAGE_H, IMAGE_W = 10, 20
FOCAL, CX, CY = 10.0, 9.6, 4.2


def _write_fake_kitti(root: Path, frames: dict[int, np.ndarray]) -> None:
    """Camera-to-velodyne axes as in KITTI (x forward, y left, z up); R_rect
    = identity; P_rect_02 with a 0.5 px horizontal offset term (Tx)."""
    date = root / DATE
    date.mkdir(parents=True)
    p_rect = [FOCAL, 0, CX, 5.0, 0, FOCAL, CY, 0, 0, 0, 1, 0]
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        f"S_rect_02: {IMAGE_W:.6e} {IMAGE_H:.6e}\n"
        "R_rect_00: 1 0 0 0 1 0 0 0 1\n"
        "P_rect_02: " + " ".join(f"{value:.6e}" for value in p_rect) + "\n"
    )
    # velodyne (x fwd, y left, z up) -> camera (x right, y down, z fwd)
    (date / "calib_velo_to_cam.txt").write_text("calib_time: 15-Mar-2012 11:37:16\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0 0 0\n")
    for frame, points in frames.items():
        velodyne = root / DATE / DRIVE / "velodyne_points" / "data" / f"{frame:010d}.bin"
        velodyne.parent.mkdir(parents=True, exist_ok=True)
        np.concatenate([points, np.full((len(points), 1), 0.7)], axis=1).astype(np.float32).tofile(velodyne)
        _save_rgb(root / DATE / DRIVE / "image_02" / "data" / f"{frame:010d}.png", IMAGE_H, IMAGE_W, value=frame)


def _velo_point(u: float, v: float, depth: float) -> list[float]:
    """Velodyne point that projects to pixel (u, v) (before the -1 shift) at this depth."""
    x_cam = ((u * depth - 5.0) - CX * depth) / FOCAL
    y_cam = (v - CY) * depth / FOCAL
    return [depth, -x_cam, -y_cam]


def test_read_calib_file_skips_text_entries(tmp_path):
    _write_fake_kitti(tmp_path, {})
    calib = read_calib_file(tmp_path / DATE / "calib_cam_to_cam.txt")
    assert "calib_time" not in calib and calib["corner_dist"][0] == pytest.approx(0.0995)
    assert calib["P_rect_02"].shape == (12,) and calib["S_rect_02"].tolist() == [20.0, 10.0]


def test_velodyne_projection_pixels_depths_and_nearest(tmp_path):
    points = np.array([
        _velo_point(5.0, 3.0, 4.0),    # -> row 2, col 4, depth 4
        _velo_point(5.2, 3.1, 2.5),    # same pixel after rounding, nearer: kept
        _velo_point(12.0, 7.0, 30.0),  # -> row 6, col 11
        _velo_point(0.4, 3.0, 6.0),    # round(0.4) - 1 = -1: outside
        _velo_point(25.0, 3.0, 6.0),   # beyond the right border
        [-3.0, 0.1, 0.1],              # behind the scanner
    ])
    _write_fake_kitti(tmp_path, {69: points})
    depth = velodyne_to_depth_map(tmp_path / DATE, tmp_path / DATE / DRIVE / "velodyne_points/data/0000000069.bin")
    assert depth.shape == (IMAGE_H, IMAGE_W) and depth.dtype == np.float32
    assert depth[2, 4] == pytest.approx(2.5, rel=1e-5)
    assert depth[6, 11] == pytest.approx(30.0, rel=1e-5)
    assert np.count_nonzero(depth) == 2


def test_export_kitti_gt_and_eigen_loader(tmp_path):
    root, split_dir = tmp_path / "kitti", tmp_path / "eigen"
    _write_fake_kitti(root, {69: np.array([_velo_point(5, 3, 4.0)]), 70: np.array([_velo_point(8, 8, 9.0)])})
    split_dir.mkdir()
    (split_dir / "test_files.txt").write_text(f"{DATE}/{DRIVE} 0000000069 l\n{DATE}/{DRIVE} 0000000070 l\n")
    assert parse_kitti_split(split_dir / "test_files.txt")[1] == (f"{DATE}/{DRIVE}", 70, 2)
    export_main(["--data_path", str(root), "--split_file", str(split_dir / "test_files.txt"),
                 "--output", str(split_dir / "gt_depths.npz")])
    ground_truth = StackedGroundTruth(split_dir / "gt_depths.npz")
    assert len(ground_truth) == 2 and ground_truth[1][7, 7] == pytest.approx(9.0, rel=1e-5)
    test_set = kitti_eigen_test_set(root, H, W, split_dir=split_dir)
    assert test_set.dataset.image_paths[0].name == "0000000069.png"
    assert test_set.dataset[1]["color"].shape == (3, H, W)
    (split_dir / "test_files.txt").write_text(f"{DATE}/{DRIVE} 69\n")
    with pytest.raises(GasMonoError, match="test_files.txt:1"):
        export_kitti_gt(root, split_dir / "test_files.txt", tmp_path / "x.npz", progress=False)


def test_eval_image_dataset_reports_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    dataset = EvalImageDataset([bad], H, W, check_files=False)
    with pytest.raises(GasMonoError, match="cannot read image"):
        dataset[0]
