"""KITTI training data on drives rendered here in KITTI's raw layout (synthetic.kitti): items, stereo
pairs, validation depth from velodyne scans, bad input, the odometry layout, coarse poses from the
calibration, and a short training run whose checkpoint goes through the Eigen evaluation path."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import evaluate_depth
from coarse_poses.evaluation import load_gt_poses
from coarse_poses.pose_files import coarse_poses_from_extrinsics, relative_pose, write_coarse_poses
from datasets.eval_kitti import kitti_eigen_test_set, velodyne_to_depth_map
from datasets.kitti_dataset import KITTI_DEPTH_SIZE, KITTI_NORMALISED_INTRINSICS, KittiOdomDataset, KittiRawDataset
from datasets.kitti_ground_truth import export_kitti_gt
from evaluation.evaluator import predict_disparities
from inference import DepthEstimator, resize_disparity
from layers import disp_to_depth
from options import GasMonoOptions
from synthetic.kitti import generate_kitti_raw
from tools import make_coarse_poses
from trainer import Trainer
from utils import GasMonoError

HEIGHT, WIDTH = 96, 320  # rendered size (KITTI's aspect ratio)
FRAMES = 6
STEREO = [0, -1, 1, "s"]


@pytest.fixture(scope="module")
def kitti(tmp_path_factory) -> dict:
    """Two drives of 6 stereo frames; train (both sides), val (left) and test lists."""
    root = tmp_path_factory.mktemp("kitti_raw")
    summary = generate_kitti_raw(root, num_drives=2, frames_per_drive=FRAMES, height=HEIGHT, width=WIDTH, seed=0,
                                 progress=False)
    drives = summary["drives"]
    split_dir = root / "splits"
    split_dir.mkdir()
    train_lines = [f"{drive} {frame} {side}" for drive in drives for frame in range(1, FRAMES - 1) for side in "lr"]
    (split_dir / "train_files.txt").write_text("\n".join(train_lines) + "\n")
    (split_dir / "val_files.txt").write_text("".join(f"{drive} {frame} l\n" for drive in drives for frame in (2, 3)))
    (split_dir / "test_files.txt").write_text("".join(f"{drive} {frame} l\n" for drive in drives for frame in (0, 5)))
    return {"root": root, "drives": drives, "split_dir": split_dir, "lines": train_lines, "summary": summary}


def make_dataset(kitti: dict, lines=None, frame_idxs=STEREO, data_path=None, **kwargs) -> KittiRawDataset:
    return KittiRawDataset(data_path or kitti["root"], lines or kitti["lines"], HEIGHT, WIDTH, frame_idxs, 1,
                           augmentation="none", **kwargs)


def test_items_have_stereo_pairs_and_monodepth2_intrinsics(kitti):
    dataset = make_dataset(kitti)
    left, right = dataset[0], dataset[1]  # the same frame, sides l and r
    assert {("color", frame, 0) for frame in STEREO} <= set(left) and "stereo_T" in left
    np.testing.assert_allclose(left[("K", 0)][:2].numpy(), KITTI_NORMALISED_INTRINSICS[:2] * [[WIDTH], [HEIGHT]])
    np.testing.assert_allclose(left[("K", 0)].numpy()[:3, :3], kitti["summary"]["intrinsics"], rtol=1e-6)
    # "s" is the other camera's image of the same frame; stereo_T has baseline 0.1, its sign by side
    assert torch.equal(left[("color", "s", 0)], right[("color", 0, 0)])
    assert torch.equal(right[("color", "s", 0)], left[("color", 0, 0)])
    assert left["stereo_T"][0, 3] == pytest.approx(-0.1) and right["stereo_T"][0, 3] == pytest.approx(0.1)
    assert torch.equal(left["stereo_T"] - torch.diag(torch.ones(4)), torch.tensor([[0, 0, 0, -0.1]] + [[0] * 4] * 3))
    assert ("color", "s", 0) not in make_dataset(kitti, frame_idxs=[0, -1, 1])[0]


def _stereo_error(item: dict, depth: np.ndarray, transform: np.ndarray) -> float:
    """Mean absolute difference between the target's pixels with a scan point and the
    other camera's image sampled where ``K @ transform`` projects those points."""
    K = item[("K", 0)].numpy().astype(np.float64)
    rows, cols = np.nonzero(depth)
    z = depth[rows, cols]
    points = np.stack([(cols - K[0, 2]) * z / K[0, 0], (rows - K[1, 2]) * z / K[1, 1], z, np.ones_like(z)])
    projected = K @ transform @ points
    u, v = projected[0] / projected[2], projected[1] / projected[2]
    grid = torch.tensor(np.stack([u / (WIDTH - 1) * 2 - 1, v / (HEIGHT - 1) * 2 - 1], -1)[None, None],
                        dtype=torch.float32)
    sampled = F.grid_sample(item[("color", "s", 0)][None], grid, align_corners=True)[0, :, 0].numpy()
    return float(np.abs(sampled - item[("color", 0, 0)].numpy()[:, rows, cols]).mean())


@pytest.mark.parametrize("side", ["l", "r"])
def test_stereo_transform_maps_the_target_into_the_other_camera(kitti, side):
    drive = kitti["drives"][0]
    item = make_dataset(kitti, lines=[f"{drive} 2 {side}"])[0]
    camera = 2 if side == "l" else 3
    depth = velodyne_to_depth_map(kitti["root"] / drive.split("/")[0],
                                  kitti["root"] / drive / "velodyne_points" / "data" / "0000000002.bin", camera)
    transform = item["stereo_T"].numpy().astype(np.float64)
    flipped = transform.copy()
    flipped[0, 3] *= -1
    error = _stereo_error(item, depth, transform)
    assert error < 0.04 and error < 0.5 * _stereo_error(item, depth, np.eye(4))
    assert error < 0.5 * _stereo_error(item, depth, flipped)


def test_validation_depth_is_the_projected_scan_at_monodepth2_size(kitti):
    drive = kitti["drives"][1]
    dataset = make_dataset(kitti, lines=[f"{drive} 3 l", f"{drive} 3 r"], load_depth=True)
    assert dataset.load_depth
    for index, camera in enumerate((2, 3)):
        native = velodyne_to_depth_map(kitti["root"] / drive.split("/")[0],
                                       kitti["root"] / drive / "velodyne_points" / "data" / "0000000003.bin", camera)
        depth = dataset[index]["depth_gt"]
        assert depth.shape == (1, *KITTI_DEPTH_SIZE)
        expected = cv2.resize(native, KITTI_DEPTH_SIZE[::-1], interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(depth[0].numpy(), expected)
    # camera 2's scan points land exactly on the pixels they were sampled from (every 4th row, 2nd column)
    left = velodyne_to_depth_map(kitti["root"] / drive.split("/")[0],
                                 kitti["root"] / drive / "velodyne_points" / "data" / "0000000003.bin", 2)
    sampled = np.zeros_like(left, dtype=bool)
    sampled[2::4, ::2] = True
    assert np.array_equal(left > 0, sampled)
    assert 0.5 < left[sampled].min() and left[sampled].max() < 8.0


def test_missing_scans_and_calibration_files(kitti, tmp_path, caplog):
    root = tmp_path / "kitti"
    shutil.copytree(kitti["root"], root)
    drive = kitti["drives"][0]
    (root / drive / "velodyne_points" / "data" / "0000000002.bin").unlink()
    lines = [f"{drive} 2 l", f"{drive} 3 l"]
    with caplog.at_level(logging.WARNING, logger="datasets.kitti_dataset"):
        dataset = make_dataset(kitti, lines=lines, data_path=root, load_depth=True)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "1 of 2 items have no velodyne scan" in warnings[0]
    assert "0000000002.bin" in warnings[0] and "without depth" in warnings[0]
    assert float(dataset[0]["depth_gt"].abs().sum()) == 0.0 and float(dataset[1]["depth_gt"].max()) > 0.5
    assert len(caplog.records) == 1  # said once, not per item

    calib = root / drive.split("/")[0] / "calib_velo_to_cam.txt"
    calib.unlink()
    with pytest.raises(GasMonoError, match=re.escape(f"calibration file not found: {calib}")):
        make_dataset(kitti, lines=lines, data_path=root, load_depth=True)
    (root / drive.split("/")[0] / "calib_cam_to_cam.txt").unlink()
    with pytest.raises(GasMonoError, match="calib_cam_to_cam.txt"):
        KittiRawDataset.image_sequences(root)
    (root / drive / "image_03" / "data" / "0000000004.jpg").unlink()
    with pytest.raises(GasMonoError, match="missing stereo frame .*image_03/data/0000000004.jpg"):
        make_dataset(kitti, lines=[f"{drive} 4 l"], data_path=root)


def test_odometry_layout(kitti, tmp_path):
    drive = kitti["root"] / kitti["drives"][0]
    sequence = tmp_path / "odom" / "sequences" / "08"
    for camera in (2, 3):
        (sequence / f"image_{camera}").mkdir(parents=True)
        for frame in range(FRAMES):
            image = Image.open(drive / f"image_0{camera}" / "data" / f"{frame:010d}.jpg")
            image.save(sequence / f"image_{camera}" / f"{frame:06d}.png")
    intrinsics = np.asarray(kitti["summary"]["intrinsics"])
    projection = np.concatenate([intrinsics, np.zeros((3, 1))], 1)
    (sequence / "calib.txt").write_text("".join(f"P{k}: {' '.join(map(str, projection.ravel()))}\n" for k in range(4)))
    dataset = KittiOdomDataset(tmp_path / "odom", ["8 2 l", "8 2 r"], HEIGHT, WIDTH, STEREO, 1, img_ext=".png",
                               augmentation="none", load_depth=True)
    assert not dataset.load_depth
    assert torch.equal(dataset[0][("color", "s", 0)], dataset[1][("color", 0, 0)])
    sequences = KittiOdomDataset.image_sequences(tmp_path / "odom")
    assert [entry.scene for entry in sequences] == ["sequences/08/image_2", "sequences/08/image_3"]
    np.testing.assert_allclose(sequences[0].intrinsics, intrinsics)
    assert KittiOdomDataset.coarse_pose_scene("8", "r") == "sequences/08/image_3"
    with pytest.raises(GasMonoError, match="odometry sequence 'x8' is not a number"):
        KittiOdomDataset(tmp_path / "odom", ["x8 2 l"], HEIGHT, WIDTH, [0], 1)


def test_coarse_poses_per_camera_are_read_for_each_side(kitti, tmp_path):
    sequences = KittiRawDataset.image_sequences(kitti["root"])
    assert [entry.scene for entry in sequences] == [f"{drive}/image_0{camera}" for drive in kitti["drives"]
                                                    for camera in (2, 3)]
    expected = np.asarray(kitti["summary"]["intrinsics"]) + [[0, 0, 1], [0, 0, 1], [0, 0, 0]]  # P_rect, 1-based
    np.testing.assert_allclose(sequences[0].intrinsics, expected)
    drive = kitti["drives"][0]
    left_extrinsics = load_gt_poses(kitti["root"] / drive / "poses.txt")
    to_right = np.eye(4)
    to_right[0, 3] = -0.1
    cpose_dir = tmp_path / "cpose"
    for camera, extrinsics in ((2, left_extrinsics), (3, to_right @ left_extrinsics)):
        write_coarse_poses(coarse_poses_from_extrinsics(dict(enumerate(extrinsics))),
                           cpose_dir / drive / f"image_0{camera}")
    dataset = make_dataset(kitti, lines=[f"{drive} 2 l", f"{drive} 2 r"], cpose_dir=cpose_dir)
    left, right = dataset[0], dataset[1]
    np.testing.assert_allclose(left[("pose_gt", 1)].numpy(), relative_pose(left_extrinsics[2], left_extrinsics[3]),
                               atol=1e-6)
    right_pose = relative_pose(to_right @ left_extrinsics[2], to_right @ left_extrinsics[3])
    np.testing.assert_allclose(right[("pose_gt", 1)].numpy(), right_pose, atol=1e-6)
    assert not np.allclose(right_pose, left[("pose_gt", 1)].numpy(), atol=1e-4)


def test_make_coarse_poses_runs_colmap_on_kitti_drives_with_the_calibration(tmp_path, capsys):
    root = tmp_path / "kitti"
    drive = generate_kitti_raw(root, num_drives=1, frames_per_drive=12, height=144, width=480, seed=3,
                               progress=False)["drives"][0]
    split = tmp_path / "train_files.txt"
    split.write_text("".join(f"{drive} {frame} l\n" for frame in range(1, 11)))
    make_coarse_poses.main(["--dataset", "kitti", "--data_path", str(root), "--split_files", str(split),
                            "--cpose_dir", str(tmp_path / "cpose"), "--threads", "2"])
    assert "10 of 10 listed items have the poses of both neighbours" in capsys.readouterr().out
    extrinsics = load_gt_poses(root / drive / "poses.txt")
    dataset = KittiRawDataset(root, split, 64, 192, [0, -1, 1], 1, cpose_dir=tmp_path / "cpose", augmentation="none")
    for index, (_, frame, _) in enumerate(dataset.items):
        for offset in (-1, 1):
            estimate = dataset[index][("pose_gt", offset)].numpy().astype(np.float64)
            truth = relative_pose(extrinsics[frame], extrinsics[frame + offset])
            cosine = (np.trace(estimate[:3, :3].T @ truth[:3, :3]) - 1) / 2
            assert np.degrees(np.arccos(np.clip(cosine, -1, 1))) < 0.5
    with pytest.raises(SystemExit):
        make_coarse_poses.main(["--dataset", "kitti", "--data_path", str(root)])
    assert "--dataset kitti needs --split_files" in capsys.readouterr().err


def _kitti_flags(kitti: dict, log_dir: Path, *extra: str) -> list[str]:
    return ["--dataset", "kitti", "--data_path", str(kitti["root"]), "--split_dir", str(kitti["split_dir"]),
            "--log_dir", str(log_dir), "--model_name", "kitti", "--height", "64", "--width", "192",
            "--batch_size", "2", "--num_workers", "0", "--no_cuda", "--weights_init", "scratch",
            "--depth_encoder", "resnet18", "--max_depth", "100", "--num_epochs", "1", "--max_train_steps", "2",
            "--log_frequency", "1", *extra]


def test_kitti_training_validates_on_scans_and_its_checkpoint_runs_the_eigen_evaluation(kitti, tmp_path, capsys):
    trainer = Trainer(GasMonoOptions().parse(_kitti_flags(kitti, tmp_path)))
    assert isinstance(trainer.train_loader.dataset, KittiRawDataset) and trainer.val_loader.dataset.load_depth
    trainer.train()
    val = [entry for entry in trainer.history if entry["mode"] == "val"]
    assert len(val) == 2 and all(0 < entry["val/abs_rel"] < 1 for entry in val)

    # Monodepth2's KITTI validation: only the Garg crop counts, gt > 0, predictions clamped to 80 m
    trainer.set_eval()
    batch = next(iter(trainer.val_loader))
    with torch.no_grad():
        outputs, _, _ = trainer.process_batch(batch)
    scaled_disp, _ = disp_to_depth(outputs[("disp", 0)], 0.1, 100.0)
    gt = torch.stack([0.7 / torch.from_numpy(resize_disparity(disp[0].numpy(), *KITTI_DEPTH_SIZE))
                      for disp in scaled_disp])[:, None]
    gt[:, :, :150] *= 5.0  # rows above the Garg crop (0.408 x 375 = 153)
    gt[:, :, :, 300:310] = 0.0
    perfect = trainer.compute_depth_metrics({"depth_gt": gt}, outputs)
    assert perfect["val/abs_rel"] < 1e-5 and perfect["val/a1"] == 1.0

    # the Eigen path: ground truth exported from the scans, predictions of the checkpoint, evaluate_depth.py
    weights = tmp_path / "kitti" / "models" / "weights_0"
    gt_path = tmp_path / "gt_depths.npz"
    maps = export_kitti_gt(kitti["root"], kitti["split_dir"] / "test_files.txt", gt_path, progress=False)
    assert len(maps) == 4 and all(depth.shape == (HEIGHT, WIDTH) for depth in maps)
    estimator = DepthEstimator.from_checkpoint(weights, "cpu", 0.1, 100.0)
    test_set = kitti_eigen_test_set(kitti["root"], estimator.height, estimator.width, gt_path,
                                    split_dir=kitti["split_dir"])
    disps_path = tmp_path / "disps.npy"
    np.save(disps_path, predict_disparities(estimator, test_set.dataset, 2, progress=False))
    results = evaluate_depth.main(["--eval_split", "eigen", "--ext_disp_to_eval", str(disps_path),
                                   "--gt_depths", str(gt_path), "--eval_out_dir", str(tmp_path / "eval")])
    assert results["protocol"] == "eigen" and results["num_images"] == 4
    assert 0 < results["metrics"]["abs_rel"] < 1


def _coarse_poses_of_both_cameras(kitti: dict, cpose_dir: Path) -> Path:
    """Coarse poses from the rendered ground truth, per drive and camera (the layout make_coarse_poses writes)."""
    to_right = np.eye(4)
    to_right[0, 3] = -0.1
    for drive in kitti["drives"]:
        left = load_gt_poses(kitti["root"] / drive / "poses.txt")
        for camera, extrinsics in ((2, left), (3, to_right @ left)):
            write_coarse_poses(coarse_poses_from_extrinsics(dict(enumerate(extrinsics))),
                               cpose_dir / drive / f"image_0{camera}")
    return cpose_dir


@pytest.mark.parametrize("mode", ["mono", "stereo", "mono+stereo", "mono+stereo with coarse poses"])
def test_kitti_mono_stereo_and_mono_plus_stereo_train_and_save(kitti, tmp_path, mode):
    extra = {"mono": [], "stereo": ["--use_stereo", "--frame_ids", "0"],
             "mono+stereo": ["--use_stereo", "--frame_ids", "0", "-1", "1"],
             "mono+stereo with coarse poses": ["--use_stereo", "--use_posegt", "--selfpp", "--cpose_dir",
                                               str(_coarse_poses_of_both_cameras(kitti, tmp_path / "cpose"))]}[mode]
    options = GasMonoOptions().parse(_kitti_flags(kitti, tmp_path, "--max_train_steps", "1", "--log_frequency",
                                                  "100", *extra))
    trainer = Trainer(options)
    stereo = "--use_stereo" in extra
    assert trainer.source_frames == [-1, 1] * (mode != "stereo") + ["s"] * stereo
    assert ("pose" in trainer.models) == (mode != "stereo")
    assert ("trans" in trainer.models) == ("coarse" in mode)
    batch = next(iter(trainer.train_loader))
    outputs, losses, _ = trainer.process_batch(batch)
    if stereo:
        assert torch.equal(outputs[("cam_T_cam", 0, "s")], trainer.to_device(batch)["stereo_T"])
        assert ("irw_img", "s") not in outputs and ("color", "s", 3) in outputs
    assert torch.isfinite(losses["loss"])
    trainer.train()
    weights = tmp_path / "kitti" / "models" / "weights_0"
    assert (weights / "encoder.pth").is_file() and (weights / "pose.pth").is_file() == (mode != "stereo")
    assert torch.load(weights / "encoder.pth", map_location="cpu")["use_stereo"] == stereo
