"""Pose evaluation (``evaluate_pose.py``): errors and scale consistency against
hand-made poses, the composition of the refined pose with PoseNet's residual,
the network poses equal to the trainer's, and the command line on tiny
trained checkpoints."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import evaluate_pose
import networks
from coarse_poses.evaluation import evaluate_pose_kinds, format_pose_kinds_table, load_gt_poses
from coarse_poses.pose_files import coarse_poses_from_extrinsics, relative_pose, write_coarse_poses
from datasets.nyu_dataset import NYUDataset
from datasets.splits import find_sequence_items, write_split_files
from evaluation.poses import SOURCE_FRAMES, PoseModel, evaluate_poses
from layers import BackprojectDepth, Project3D, warp_image
from options import GasMonoOptions
from synthetic.dataset import generate_dataset
from trainer import Trainer
from utils import GasMonoError


def _trajectory(rng: np.random.Generator, count: int) -> dict[int, np.ndarray]:
    """World-to-camera poses of a camera moving 5-10 cm and turning a few degrees per frame."""
    extrinsics, camera_to_world = {}, np.eye(4)
    for frame in range(count):
        extrinsics[frame] = np.linalg.inv(camera_to_world)
        step = np.eye(4)
        step[:3, :3] = Rotation.from_rotvec(rng.normal(scale=0.04, size=3)).as_matrix()
        step[:3, 3] = rng.uniform(0.05, 0.1) * rng.normal(size=3) / math.sqrt(3)
        camera_to_world = camera_to_world @ step
    return extrinsics


def _perturbed(truth: np.ndarray, scale: float, rotation_deg: float, direction_deg: float) -> np.ndarray:
    """``truth`` with its rotation turned by ``rotation_deg`` (about z) and its
    translation turned by ``direction_deg`` (about an axis orthogonal to it) and scaled by ``scale``."""
    estimate = truth.copy()
    estimate[:3, :3] = Rotation.from_rotvec([0, 0, math.radians(rotation_deg)]).as_matrix() @ truth[:3, :3]
    translation = truth[:3, 3]
    axis = np.cross(translation, [1.0, 0.0, 0.0])
    turn = Rotation.from_rotvec(axis / np.linalg.norm(axis) * math.radians(direction_deg)).as_matrix()
    estimate[:3, 3] = scale * (turn @ translation)
    return estimate


def test_known_errors_and_per_sequence_scales_give_the_expected_report():
    rng = np.random.default_rng(0)
    truths, scenes, estimates = [], [], {"scaled": [], "one_scale": []}
    for scene, scale in (("a", 2.0), ("b", 0.5)):
        extrinsics = _trajectory(rng, 7)
        for frame in range(1, 6):
            for source in (frame - 1, frame + 1):
                truth = relative_pose(extrinsics[frame], extrinsics[source])
                truths.append(truth)
                scenes.append(scene)
                estimates["scaled"].append(_perturbed(truth, scale, 1.5, 4.0))
                estimates["one_scale"].append(_perturbed(truth, 3.0, 0.0, 0.0))
    report = evaluate_pose_kinds({kind: np.stack(poses) for kind, poses in estimates.items()}, np.stack(truths),
                                 scenes)
    assert report["pairs"] == 20 and report["scenes"] == ["a", "b"]
    scaled = report["kinds"]["scaled"]
    assert scaled["rotation_deg"]["median"] == pytest.approx(1.5, abs=1e-6)
    assert scaled["translation_direction_deg"]["median"] == pytest.approx(4.0, abs=1e-6)
    # ten pairs at log 2 and ten at log 0.5: the standard deviation is log 2, the global scale 1
    assert scaled["scale_consistency"]["std_log"] == pytest.approx(np.std([math.log(2)] * 10 + [math.log(0.5)] * 10))
    assert scaled["scale_consistency"]["std_log"] == pytest.approx(math.log(2))
    assert scaled["scale_consistency"]["global_scale"] == pytest.approx(1.0)
    assert scaled["scene_scales"] == {"a": pytest.approx(2.0), "b": pytest.approx(0.5)}
    # one global scale for every pair is perfectly consistent, whatever the scale
    one_scale = report["kinds"]["one_scale"]
    assert one_scale["scale_consistency"]["std_log"] == pytest.approx(0.0, abs=1e-9)
    assert one_scale["scale_consistency"]["global_scale"] == pytest.approx(3.0)
    assert one_scale["rotation_deg"]["median"] < 1e-5 and one_scale["translation_direction_deg"]["median"] < 1e-5

    table = format_pose_kinds_table(report, {"scaled": "hand-made"}).splitlines()
    assert table[0].startswith("20 pairs of 2 sequences")
    assert table[3].split() == ["scaled", "20", "1.500", "4.00", "0.693", "hand-made"]


def test_coarse_poses_of_two_reconstructions_with_their_own_scales(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for scene, scale in (("room_a", 2.0), ("room_b", 0.5)):
        extrinsics = _trajectory(rng, 6)
        (tmp_path / "data" / scene).mkdir(parents=True)
        np.savetxt(tmp_path / "data" / scene / "poses.txt", np.stack([extrinsics[i].reshape(16) for i in range(6)]))
        reconstructed = {frame: pose.copy() for frame, pose in extrinsics.items()}
        for pose in reconstructed.values():
            pose[:3, 3] *= scale  # a reconstruction at another scale: every camera centre scaled
        write_coarse_poses(coarse_poses_from_extrinsics(reconstructed), tmp_path / "cpose" / scene)
    out = tmp_path / "poses.json"
    evaluate_pose.main(["--cpose_dir", str(tmp_path / "cpose"), "--data_path", str(tmp_path / "data"),
                        "--out", str(out), "--no_progress"])
    report = json.loads(out.read_text())
    coarse = report["kinds"]["coarse"]
    assert set(report["kinds"]) == {"coarse"} and report["checkpoint"] is None and report["pairs"] == 16
    assert coarse["rotation_deg"]["median"] < 1e-4 and coarse["translation_direction_deg"]["median"] < 1e-4
    assert coarse["scale_consistency"]["std_log"] == pytest.approx(math.log(2), rel=1e-5)
    assert coarse["scene_scales"] == {"room_a": pytest.approx(2.0, rel=1e-5), "room_b": pytest.approx(0.5, rel=1e-5)}
    assert report["coarse_per_scene"]["overall"]["items"] == 8

    with pytest.raises(SystemExit) as exit_info:
        evaluate_pose.main(["--cpose_dir", str(tmp_path / "cpose"), "--data_path", str(tmp_path / "data"),
                            "--load_weights_folder", str(tmp_path / "none")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"error: weights folder (--load_weights_folder) not found: {tmp_path / 'none'}"
    with pytest.raises(GasMonoError, match="coarse-pose folder \\(--cpose_dir\\) not found"):
        evaluate_poses(tmp_path / "data", tmp_path / "nowhere")


def test_the_two_training_warps_compose_into_refined_then_residual():
    """warp(warp(source, D, T_r), D, C) = warp(source, D, T_r @ C) where the depth
    is the same at both pixels: a fronto-parallel plane and a residual ``C``
    parallel to it."""
    height, width = 48, 64
    ys, xs = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    source = torch.stack([torch.sin(6 * xs + 1), torch.cos(3 * ys + 6 * xs), torch.sin(6 * ys)])[None] * 0.5 + 0.5
    depth = torch.full((1, 1, height, width), 3.0)
    K = torch.tensor([[[0.8 * width, 0, 0.5 * width, 0], [0, 1.0 * height, 0.5 * height, 0], [0, 0, 1, 0],
                       [0, 0, 0, 1.0]]])
    inv_K = torch.linalg.inv(K)
    refined = torch.eye(4)[None].clone()
    refined[0, :3, :3] = torch.from_numpy(Rotation.from_rotvec([0.02, 0.3, 0.05]).as_matrix()).float()
    refined[0, :3, 3] = torch.tensor([0.08, -0.03, 0.05])
    residual = torch.eye(4)[None].clone()
    residual[0, :3, 3] = torch.tensor([0.3, 0.15, 0.0])
    backproject, project = BackprojectDepth(height, width), Project3D(height, width)

    def warp(image, pose):
        return warp_image(image, depth, K, inv_K, pose, backproject, project)

    two_warps = warp(warp(source, refined), residual)[..., 8:-8, 8:-8]
    composed = (warp(source, refined @ residual)[..., 8:-8, 8:-8] - two_warps).abs().mean()
    other_order = (warp(source, residual @ refined)[..., 8:-8, 8:-8] - two_warps).abs().mean()
    assert composed < 1e-3 and other_order > 10 * composed


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> dict:
    """A tiny synthetic set with ground-truth coarse poses, and checkpoints of
    two short runs, with and without coarse poses."""
    root = tmp_path_factory.mktemp("pose_eval")
    generate_dataset(root, num_scenes=2, frames_per_scene=5, num_test=1, height=64, width=96, num_low_texture=0,
                     seed=5, progress=False)
    train_root, cpose_dir = root / "train", root / "cpose"
    for scene_dir in sorted(path for path in train_root.iterdir() if path.is_dir()):
        write_coarse_poses(coarse_poses_from_extrinsics(dict(enumerate(load_gt_poses(scene_dir / "poses.txt")))),
                           cpose_dir / scene_dir.name)
    write_split_files(find_sequence_items(train_root), root / "splits", val_fraction=0.2, seed=0)
    flags = ["--data_path", str(train_root), "--cpose_dir", str(cpose_dir), "--split_dir", str(root / "splits"),
             "--log_dir", str(root / "logs"), "--height", "64", "--width", "96", "--batch_size", "2",
             "--num_workers", "0", "--no_cuda", "--weights_init", "scratch", "--num_epochs", "1",
             "--max_train_steps", "1", "--log_frequency", "100"]
    weights = {}
    for name, extra in (("gasmono", ["--use_posegt"]), ("posenet", [])):
        Trainer(GasMonoOptions().parse(flags + ["--model_name", name, *extra])).train()
        weights[name] = root / "logs" / name / "models" / "weights_0"
    return {"data_path": train_root, "cpose_dir": cpose_dir, "flags": flags, "weights": weights}


def test_network_poses_are_the_trainers(tiny_checkpoints):
    weights = tiny_checkpoints["weights"]["gasmono"]
    model = PoseModel.from_checkpoint(weights)
    trainer = Trainer(GasMonoOptions().parse(tiny_checkpoints["flags"] + ["--use_posegt", "--model_name", "check",
                                                                           "--load_weights_folder", str(weights)]),
                      with_data=False)
    trainer.set_eval()
    dataset = NYUDataset(tiny_checkpoints["data_path"], ["scene_0000 1 l", "scene_0001 2 l"], 64, 96, [0, -1, 1], 4,
                         cpose_dir=tiny_checkpoints["cpose_dir"], augmentation="none")
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    with torch.no_grad():
        outputs, _, _ = trainer.process_batch(batch)
    poses = model.predict(batch)
    assert model.kinds == ("refined", "final") and (model.height, model.width) == (64, 96)
    for slot, frame_id in enumerate(SOURCE_FRAMES):
        torch.testing.assert_close(poses["refined"][:, slot], outputs[("coarse_T", frame_id)])
        torch.testing.assert_close(poses["final"][:, slot],
                                   outputs[("coarse_T", frame_id)] @ outputs[("cam_T_cam", 0, frame_id)])


def test_pose_cli_on_trained_checkpoints(tiny_checkpoints, capsys):
    common = ["--cpose_dir", str(tiny_checkpoints["cpose_dir"]), "--data_path", str(tiny_checkpoints["data_path"]),
              "--device", "cpu", "--no_progress"]
    gasmono = tiny_checkpoints["weights"]["gasmono"]
    evaluate_pose.main(common + ["--load_weights_folder", str(gasmono)])
    printed = capsys.readouterr().out
    report = json.loads((gasmono / "eval_pose.json").read_text())
    assert list(report["kinds"]) == ["coarse", "refined", "final"] and report["pairs"] == 12
    assert report["checkpoint"] == str(gasmono) and (report["height"], report["width"]) == (64, 96)
    for kind, entry in report["kinds"].items():
        assert entry["rotation_deg"]["count"] == 12 and entry["scale_consistency"]["count"] == 12
        assert f"\n{kind} " in printed
    # ground-truth coarse poses are exact; AlignNet keeps their rotation
    assert report["kinds"]["coarse"]["rotation_deg"]["median"] < 1e-3
    assert report["kinds"]["refined"]["rotation_deg"]["median"] < 1e-3
    assert report["kinds"]["coarse"]["scale_consistency"]["std_log"] < 1e-4

    posenet = tiny_checkpoints["weights"]["posenet"]
    assert not (posenet / "trans.pth").exists()
    report = evaluate_pose.main(common + ["--load_weights_folder", str(posenet), "--out",
                                          str(posenet.parent / "poses.json")])
    assert list(report["kinds"]) == ["coarse", "posenet"]
    assert json.loads((posenet.parent / "poses.json").read_text())["kinds"]["posenet"]["rotation_deg"]["count"] == 12
    assert networks.read_depth_encoder_name(posenet) == "mpvit_small"
