"""Tests of the coarse-pose library (coarse_poses/: file format, COLMAP runner, evaluation)
and of its command lines (tools/make_coarse_poses.py, evaluate_pose.py)."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

import evaluate_pose as evaluate_pose_cli
import layers
import losses
from coarse_poses.colmap import (
    SEQUENCE_LOG_FILE,
    SEQUENCE_RECORD_FILE,
    ColmapSettings,
    SequenceResult,
    find_sequences,
    load_intrinsics,
    read_intrinsics_file,
)
from coarse_poses.evaluation import evaluate_coarse_poses, load_gt_poses
from coarse_poses.pose_files import (
    SOURCE_FRAME_SLOTS,
    coarse_pose_path,
    coarse_poses_from_extrinsics,
    filter_items_with_coarse_poses,
    list_pose_frames,
    read_coarse_poses,
    write_coarse_poses,
)
from coarse_poses.runner import Shard, make_coarse_poses, needs_processing
from coarse_poses.summary import format_summary_table, summarize
from datasets.nyu_dataset import NYUDataset
from synthetic.dataset import generate_dataset
from synthetic.rooms import LOW_TEXTURE, TEXTURED
from tools import make_coarse_poses as make_coarse_poses_cli
from utils import PROJECT_ROOT, GasMonoError


def random_extrinsics(rng: np.random.Generator, count: int) -> dict[int, np.ndarray]:
    """World-to-camera 4x4 matrices with rotations of up to ~30 degrees."""
    extrinsics = {}
    for frame in range(count):
        matrix = np.eye(4)
        matrix[:3, :3] = Rotation.from_rotvec(rng.normal(scale=0.3, size=3)).as_matrix()
        matrix[:3, 3] = rng.normal(size=3)
        extrinsics[frame] = matrix
    return extrinsics


# ----------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------


def test_relative_poses_compose_to_identity_and_map_points():
    rng = np.random.default_rng(0)
    extrinsics = random_extrinsics(rng, 6)
    poses = coarse_poses_from_extrinsics(extrinsics)
    assert sorted(poses) == [1, 2, 3, 4]
    for frame, pose in poses.items():
        assert pose.shape == (2, 4, 4) and pose.dtype == np.float32
    for frame in (1, 2, 3):
        forward = poses[frame][1].astype(np.float64)  # T_{t->t+1}
        backward = poses[frame + 1][0].astype(np.float64)  # T_{t+1->t}
        np.testing.assert_allclose(backward @ forward, np.eye(4), atol=1e-5)

    world = np.append(rng.normal(size=3), 1.0)
    for frame in (1, 4):
        in_target = extrinsics[frame] @ world
        for pose, source in zip(poses[frame], (frame - 1, frame + 1)):
            np.testing.assert_allclose(pose @ in_target, extrinsics[source] @ world, atol=1e-5)


def test_only_frames_with_both_neighbours_registered_get_poses():
    rng = np.random.default_rng(1)
    extrinsics = random_extrinsics(rng, 9)
    for missing in (3, 7):
        del extrinsics[missing]
    three_by_four = {frame: matrix[:3] for frame, matrix in extrinsics.items()}
    poses = coarse_poses_from_extrinsics(three_by_four)
    assert sorted(poses) == [1, 5]
    np.testing.assert_allclose(
        poses[5][1], extrinsics[6] @ np.linalg.inv(extrinsics[5]), atol=1e-5
    )


def test_pose_files_round_trip_and_listing(tmp_path):
    """The writer's files are what the reader, the listing and the path convention agree on;
    other files of a scene folder are not pose files."""
    poses = coarse_poses_from_extrinsics(random_extrinsics(np.random.default_rng(2), 5))
    scene_dir = tmp_path / "cpose" / "room"
    assert write_coarse_poses(poses, scene_dir) == 3
    for name in ("colmap.json", "1.npy", "00002.npy", "notes.npy"):
        (scene_dir / name).write_text("not a pose file")
    assert list_pose_frames(scene_dir) == [1, 2, 3] and list_pose_frames(tmp_path / "missing") == []
    for frame, pose in poses.items():
        path = coarse_pose_path(tmp_path / "cpose", "room", frame)
        assert path == scene_dir / f"{frame:04d}.npy"
        np.testing.assert_array_equal(read_coarse_poses(path), pose)
    assert SOURCE_FRAME_SLOTS == {-1: 0, 1: 1}
    items = [("room", 0), ("room", 2), ("hall", 2)]
    assert filter_items_with_coarse_poses(items, tmp_path / "cpose") == [("room", 2)]
    np.save(scene_dir / "0004.npy", np.full((2, 4, 4), np.nan, np.float32))
    with pytest.raises(GasMonoError, match=f"coarse poses {scene_dir / '0004.npy'} contain non-finite values"):
        read_coarse_poses(scene_dir / "0004.npy")



# ----------------------------------------------------------------------------
# Synthetic data from the project's generator, and one run of the tool on it
# ----------------------------------------------------------------------------

GENERATOR_SEED = 3  # its textured room reconstructs reliably at this size (checked over repeated runs)


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """One textured and one low-texture sequence, 15 frames at 320 x 240."""
    root = tmp_path_factory.mktemp("synthetic")
    summary = generate_dataset(
        root, num_scenes=2, frames_per_scene=15, num_test=0, height=240, width=320,
        num_low_texture=1, seed=GENERATOR_SEED, progress=False,
    )
    kinds = {name: entry["kind"] for name, entry in summary["scenes"].items()}
    return root / "train", kinds


def scene_of_kind(kinds: dict[str, str], kind: str) -> str:
    return next(name for name, scene_kind in kinds.items() if scene_kind == kind)


@pytest.fixture(scope="module")
def tool_run(synthetic_data, tmp_path_factory) -> SimpleNamespace:
    """Run the command-line tool once on the synthetic sequences."""
    data_path, kinds = synthetic_data
    out = tmp_path_factory.mktemp("coarse_poses")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        make_coarse_poses_cli.main([
            "--data_path", str(data_path), "--cpose_dir", str(out / "cpose"), "--split_dir", str(out / "split"),
            "--work_dir", str(out / "work"), "--jobs", "1", "--threads", "2", "--val_fraction", "0.25",
        ])
    summary = json.loads((out / "cpose" / "summary.json").read_text())
    records = {record["scene"]: record for record in summary["sequences"]}
    return SimpleNamespace(
        data_path=data_path, out=out, cpose_dir=out / "cpose", kinds=kinds, records=records,
        summary=summary, stdout=output.getvalue(),
        textured=scene_of_kind(kinds, TEXTURED), low_texture=scene_of_kind(kinds, LOW_TEXTURE),
    )


def load_rgb(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def test_pose_convention_matches_the_photometric_warp(synthetic_data):
    """Warping frame t-1 into frame t with t's GT depth and the converted GT pose
    ``T_{t->t-1}`` through the loss's layers lowers the photometric error well
    below the identity's; the inverted pose does not."""
    data_path, kinds = synthetic_data
    scene_dir = data_path / scene_of_kind(kinds, TEXTURED)
    target = 7
    extrinsics = dict(enumerate(load_gt_poses(scene_dir / "poses.txt")))
    pose = coarse_poses_from_extrinsics(extrinsics)[target][0]
    depth_mm = cv2.imread(str(scene_dir / "depth" / f"{target:06d}.png"), cv2.IMREAD_UNCHANGED)
    depth = torch.from_numpy(depth_mm.astype(np.float32) / 1000.0).view(1, 1, *depth_mm.shape)
    height, width = depth_mm.shape
    K = torch.eye(4).unsqueeze(0)
    K[0, :3, :3] = torch.from_numpy(read_intrinsics_file(scene_dir / "cam.txt")).float()
    inv_K = torch.linalg.inv(K)
    source = load_rgb(scene_dir / f"{target - 1:06d}.jpg")
    image = load_rgb(scene_dir / f"{target:06d}.jpg")
    backproject, project, ssim = layers.BackprojectDepth(height, width), layers.Project3D(height, width), losses.SSIM()

    def error(prediction: torch.Tensor) -> float:
        return losses.photometric_error(prediction, image, ssim)[..., 16:-16, 16:-16].mean().item()

    def warped_error(matrix: np.ndarray) -> float:
        T = torch.from_numpy(matrix.astype(np.float32)).unsqueeze(0)
        return error(layers.warp_image(source, depth, K, inv_K, T, backproject, project))

    identity_error = error(source)
    assert warped_error(pose) < 0.4 * identity_error
    assert warped_error(np.linalg.inv(pose)) > 2.0 * warped_error(pose)


def test_textured_sequence_registers_with_accurate_poses(tool_run):
    record = tool_run.records[tool_run.textured]
    assert record["status"] == "ok", record
    assert record["registered"] >= 0.9 * record["frames"]
    assert record["models"] >= 1 and record["mean_reprojection_error"] < 1.0
    frames = list_pose_frames(tool_run.cpose_dir / tool_run.textured)
    assert record["items_written"] == len(frames) >= 0.8 * (record["frames"] - 2)
    pose = np.load(tool_run.cpose_dir / tool_run.textured / f"{frames[0]:04d}.npy")
    assert pose.shape == (2, 4, 4) and pose.dtype == np.float32
    report = evaluate_coarse_poses(tool_run.cpose_dir, tool_run.data_path, [tool_run.textured])
    overall = report["overall"]
    assert overall["items"] == len(frames)
    assert overall["rotation_deg"]["median"] < 0.5
    assert overall["translation_direction_deg"]["median"] < 10.0
    assert (tool_run.cpose_dir / tool_run.textured / SEQUENCE_LOG_FILE).stat().st_size > 0


def test_low_texture_sequence_is_reported_failed(tool_run):
    record = tool_run.records[tool_run.low_texture]
    assert record["status"] == "failed" and record["reason"]
    assert record["items_written"] == 0
    assert list_pose_frames(tool_run.cpose_dir / tool_run.low_texture) == []
    assert tool_run.summary["total"]["ok"] == 1 and tool_run.summary["total"]["failed"] == 1
    failed_rows = [line for line in tool_run.stdout.splitlines() if line.startswith(tool_run.low_texture)]
    assert len(failed_rows) == 1 and "failed" in failed_rows[0]


def read_split(path: Path) -> list[tuple[str, int]]:
    items = []
    for line in path.read_text().splitlines():
        scene, frame, side = line.split()
        assert side == "l" and len(frame) == 4
        items.append((scene, int(frame)))
    return items


def test_split_files_list_exactly_the_items_with_poses(tool_run):
    train = read_split(tool_run.out / "split" / "train_files.txt")
    val = read_split(tool_run.out / "split" / "val_files.txt")
    with_poses = {(scene, frame) for scene in tool_run.kinds for frame in list_pose_frames(tool_run.cpose_dir / scene)}
    assert len(val) >= 1 and not set(train) & set(val)
    assert set(train) | set(val) == with_poses
    assert len(train) + len(val) == len(with_poses)


def test_split_files_mode_keeps_the_lists_and_reports_the_items_without_poses(tool_run, tmp_path, capsys):
    """``--split_files``: poses only for the sequences the lists name (the other one is not run), the lists
    unchanged, coverage per list, the items without poses written out; training on one of them is a
    one-line error naming it."""
    textured = tool_run.textured
    cpose_dir = tmp_path / "cpose"
    shutil.copytree(tool_run.cpose_dir / textured, cpose_dir / textured)  # recorded as done: not run again
    (cpose_dir / textured / "0005.npy").unlink()  # as if frame 5 had lacked a registered neighbour
    with_poses = set(list_pose_frames(cpose_dir / textured))
    lists = tmp_path / "lists"
    lists.mkdir()
    train = [f"{textured} {frame:04d} l" for frame in range(1, 14)] + ["absent_room 0003 l"]
    val = [f"{textured} {min(with_poses):04d} l"]
    (lists / "train_files.txt").write_text("".join(line + "\n" for line in train))
    (lists / "val_files.txt").write_text("".join(line + "\n" for line in val))
    before = {path.name: path.read_bytes() for path in lists.iterdir()}

    make_coarse_poses_cli.main(["--data_path", str(tool_run.data_path), "--split_files", str(lists),
                                "--cpose_dir", str(cpose_dir), "--split_dir", str(tmp_path / "unused"),
                                "--jobs", "1", "--threads", "2"])
    stdout = capsys.readouterr().out

    assert not (cpose_dir / tool_run.low_texture).exists()
    summary = json.loads((cpose_dir / "summary.json").read_text())
    assert [record["scene"] for record in summary["sequences"]] == [textured]
    assert {path.name: path.read_bytes() for path in lists.iterdir()} == before
    assert not (tmp_path / "unused").exists()
    missing = [line for line in train if line.split()[0] != textured or int(line.split()[1]) not in with_poses]
    assert f"{textured} 0005 l" in missing and train[-1] in missing
    assert (cpose_dir / "missing_train_files.txt").read_text().splitlines() == missing
    assert (cpose_dir / "missing_val_files.txt").read_text() == ""
    assert f"{lists / 'train_files.txt'}: {len(train) - len(missing)} of {len(train)} listed items" in stdout
    assert f"{lists / 'val_files.txt'}: 1 of 1 listed items" in stdout
    assert "1 of 2 listed sequence(s) are not under" in stdout

    with pytest.raises(GasMonoError, match=f"coarse pose file missing: {cpose_dir / textured / '0005.npy'} "
                                           f"\\(needed by .* line 1: '{textured} 0005 l'\\)"):
        NYUDataset(tool_run.data_path, [f"{textured} 0005 l"], 48, 64, [0, -1, 1], 4, cpose_dir=cpose_dir)

    with pytest.raises(SystemExit) as exit_info:
        make_coarse_poses_cli.main(["--data_path", str(tool_run.data_path), "--split_dir", str(lists),
                                    "--cpose_dir", str(cpose_dir)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {lists / 'train_files.txt'} exists: pass --split_files {lists} to compute poses for its items "
        "and keep it, --split_dir for new lists elsewhere, or --replace_splits")


def test_a_second_run_skips_done_sequences(tool_run):
    scene_dir = tool_run.cpose_dir / tool_run.textured
    before = {path.name: path.stat().st_mtime_ns for path in scene_dir.iterdir()}
    results = make_coarse_poses(
        tool_run.data_path, tool_run.cpose_dir, tool_run.out / "work", ColmapSettings(), progress=False
    )
    assert {path.name: path.stat().st_mtime_ns for path in scene_dir.iterdir()} == before
    assert [result.to_dict() for result in results] == tool_run.summary["sequences"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_colmap_log_goes_to_per_sequence_files(synthetic_data, tmp_path, capfd, jobs):
    """In this process (one job) and in worker processes (two jobs), COLMAP's
    C++ log lands in ``<cpose_dir>/<scene>/colmap.log``, not on the terminal."""
    data_path, kinds = synthetic_data
    root = tmp_path / "data"
    root.mkdir()
    for name in ("first", "second"):
        (root / name).symlink_to(data_path / scene_of_kind(kinds, LOW_TEXTURE), target_is_directory=True)
    results = make_coarse_poses(root, tmp_path / "cpose", tmp_path / "work", ColmapSettings(), jobs=jobs,
                                progress=False)
    assert [(result.scene, result.status) for result in results] == [("first", "failed"), ("second", "failed")]
    terminal = capfd.readouterr()
    glog_line = re.compile(r"^[IWEF]\d{8} ", re.MULTILINE)
    assert not glog_line.search(terminal.err) and not glog_line.search(terminal.out)
    for name in ("first", "second"):
        assert len(glog_line.findall((tmp_path / "cpose" / name / SEQUENCE_LOG_FILE).read_text())) > 10
    assert not any((tmp_path / "work").iterdir())


def test_shards_are_disjoint_balanced_and_cover_every_sequence():
    scenes = [f"scene_{index:04d}" for index in range(464)]  # as many as NYUv2's raw scenes
    shards = [Shard(index, 8).select(list(reversed(scenes))) for index in range(8)]
    assert sorted(scene for shard in shards for scene in shard) == scenes
    assert {len(shard) for shard in shards} == {58}
    assert Shard.parse("3/8") == Shard(3, 8) and Shard(1, 3).select(["c", "a", "b", "d"]) == ["b"]
    for text in ("8/8", "-1/8", "3", "a/b", "3/0"):
        with pytest.raises(GasMonoError, match="--shard must be K/N"):
            Shard.parse(text)


def test_sharded_runs_and_their_merge_give_the_unsharded_result(tool_run, tmp_path, capsys):
    out = tmp_path / "sharded"
    flags = ["--data_path", str(tool_run.data_path), "--cpose_dir", str(out / "cpose"), "--split_dir",
             str(out / "split"), "--jobs", "1", "--threads", "2", "--val_fraction", "0.25"]
    first, second = Shard(0, 2).select(tool_run.kinds), Shard(1, 2).select(tool_run.kinds)
    make_coarse_poses_cli.main(flags + ["--shard", "0/2"])
    shard_summary = json.loads((out / "cpose" / "summary.shard-0-of-2.json").read_text())
    assert [record["scene"] for record in shard_summary["sequences"]] == first
    assert not (out / "cpose" / "summary.json").exists() and not (out / "split").exists()
    assert "run the same command with --merge_shards" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        make_coarse_poses_cli.main(flags + ["--merge_shards"])
    assert re.search(f"^error: 1 of 2 sequence.*no current record.*{second[0]}", capsys.readouterr().err)
    make_coarse_poses_cli.main(flags + ["--shard", "1/2"])
    make_coarse_poses_cli.main(flags + ["--merge_shards"])
    merged = json.loads((out / "cpose" / "summary.json").read_text())
    assert [(r["scene"], r["status"]) for r in merged["sequences"]] == [
        (r["scene"], r["status"]) for r in tool_run.summary["sequences"]]
    train, val = read_split(out / "split" / "train_files.txt"), read_split(out / "split" / "val_files.txt")
    with_poses = {(scene, frame) for scene in tool_run.kinds for frame in list_pose_frames(out / "cpose" / scene)}
    assert with_poses and set(train) | set(val) == with_poses and not set(train) & set(val)
    with pytest.raises(SystemExit):
        make_coarse_poses_cli.main(flags + ["--shard", "0/2", "--merge_shards"])
    assert "exclude each other" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# Resume logic, summaries, user errors
# ----------------------------------------------------------------------------


def make_sequence(root: Path, name: str, frames: int) -> Path:
    sequence = root / name
    sequence.mkdir(parents=True)
    for frame in range(frames):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(sequence / f"{frame:06d}.jpg")
    return sequence


def write_record(cpose_dir: Path, result: SequenceResult) -> None:
    (cpose_dir / result.scene).mkdir(parents=True, exist_ok=True)
    (cpose_dir / result.scene / SEQUENCE_RECORD_FILE).write_text(json.dumps(result.to_dict()))


def test_which_sequences_are_redone(tmp_path):
    sequence = make_sequence(tmp_path / "data", "room", 4)
    cpose_dir = tmp_path / "cpose"
    assert needs_processing(sequence, cpose_dir, overwrite=False, retry_failed=False) == (True, None)
    done = SequenceResult("room", frames=4, registered=4, models=1, items_written=2, status="ok")
    write_record(cpose_dir, done)
    assert needs_processing(sequence, cpose_dir, overwrite=False, retry_failed=True) == (False, done)
    assert needs_processing(sequence, cpose_dir, overwrite=True, retry_failed=False)[0]
    failed = SequenceResult("room", frames=4, reason="no model")
    write_record(cpose_dir, failed)
    assert needs_processing(sequence, cpose_dir, overwrite=False, retry_failed=False) == (False, failed)
    assert needs_processing(sequence, cpose_dir, overwrite=False, retry_failed=True)[0]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(sequence / "000004.jpg")
    assert needs_processing(sequence, cpose_dir, overwrite=False, retry_failed=False)[0]


def test_summary_totals_and_table():
    results = [
        SequenceResult("a", frames=10, registered=9, models=2, mean_reprojection_error=0.5, items_written=7,
                       seconds=4.0, status="ok"),
        SequenceResult("b", frames=30, registered=0, seconds=2.0, reason="no model"),
    ]
    total = summarize(results)["total"]
    assert total["frames"] == 40 and total["registered"] == 9 and total["registered_percent"] == 22.5
    assert total["ok"] == 1 and total["failed"] == 1 and total["items_written"] == 7
    assert total["seconds_per_frame"] == pytest.approx(0.15)
    table = format_summary_table(results).splitlines()
    row_a = next(line for line in table if line.startswith("a "))
    assert row_a.split()[:8] == ["a", "10", "9", "90.0", "2", "0.500", "7", "4.0"]
    assert "failed: no model" in next(line for line in table if line.startswith("b "))
    assert table[-1].split()[:3] == ["total", "40", "9"]


def test_user_errors_are_one_line_gasmono_errors(tmp_path):
    with pytest.raises(GasMonoError, match="data path not found"):
        find_sequences(tmp_path / "missing")
    make_sequence(tmp_path / "out" / "train", "room", 3)
    with pytest.raises(GasMonoError, match="no sequences .*did you mean .*train"):
        find_sequences(tmp_path / "out")
    data_path = tmp_path / "out" / "train"
    (data_path / "room" / "cam.txt").write_text("500 0 320\n0 500 240\n")
    with pytest.raises(GasMonoError, match="cam.txt.*3x3"):
        make_coarse_poses(data_path, tmp_path / "cpose", tmp_path / "work", ColmapSettings(), progress=False)
    (data_path / "room" / "cam.txt").write_text("500 0 x\n0 500 240\n0 0 1\n")
    with pytest.raises(GasMonoError, match="cam.txt"):
        load_intrinsics(data_path / "room", 8, 8)
    np.testing.assert_allclose(
        load_intrinsics(tmp_path, 640, 480), [[518.4, 0, 326.4], [0, 518.4, 254.4], [0, 0, 1]]
    )

    completed = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tools" / "make_coarse_poses.py"), "--data_path", str(tmp_path / "none")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [f"error: data path not found: {tmp_path / 'none'}"]


# ----------------------------------------------------------------------------
# Pose evaluation
# ----------------------------------------------------------------------------


def write_gt_and_estimates(root: Path, extrinsics: dict[int, np.ndarray], estimates: dict[int, np.ndarray]) -> None:
    (root / "data" / "room").mkdir(parents=True)
    np.savetxt(root / "data" / "room" / "poses.txt", np.stack([extrinsics[i].reshape(16) for i in sorted(extrinsics)]))
    (root / "cpose" / "room").mkdir(parents=True)
    for frame, pose in estimates.items():
        np.save(root / "cpose" / "room" / f"{frame:04d}.npy", pose)


def test_pose_errors_of_exact_scaled_and_rotated_estimates(tmp_path):
    rng = np.random.default_rng(3)
    extrinsics = random_extrinsics(rng, 5)
    estimates = coarse_poses_from_extrinsics(extrinsics)
    estimates[1][:, :3, 3] *= 7.0  # an arbitrary SfM scale changes nothing
    tilt = np.eye(4, dtype=np.float32)
    tilt[:3, :3] = Rotation.from_rotvec([0.0, 0.0, np.radians(2.0)]).as_matrix()
    estimates[2][1] = tilt @ estimates[2][1]  # 2 degrees of rotation, translation rotated by 2 degrees too
    write_gt_and_estimates(tmp_path, extrinsics, estimates)

    report = evaluate_coarse_poses(tmp_path / "cpose", tmp_path / "data")
    rotation = report["scenes"]["room"]["rotation_deg"]
    direction = report["scenes"]["room"]["translation_direction_deg"]
    assert report["overall"]["items"] == 3 and rotation["count"] == 6
    assert rotation["max"] == pytest.approx(2.0, abs=1e-3) and rotation["median"] < 1e-3
    assert 0.0 < direction["max"] <= 2.0 + 1e-3 and direction["median"] < 1e-3

    output = tmp_path / "errors.json"
    evaluate_pose_cli.main(["--cpose_dir", str(tmp_path / "cpose"), "--data_path", str(tmp_path / "data"),
                            "--out", str(output), "--no_progress"])
    written = json.loads(output.read_text())
    assert written["coarse_per_scene"]["overall"]["rotation_deg"]["max"] == pytest.approx(2.0, abs=1e-3)
    assert written["kinds"]["coarse"]["rotation_deg"]["max"] == pytest.approx(2.0, abs=1e-3)


def test_malformed_ground_truth_names_file_and_line(tmp_path):
    path = tmp_path / "poses.txt"
    path.write_text(" ".join(["1"] * 16) + "\n" + " ".join(["1"] * 12) + "\n")
    with pytest.raises(GasMonoError, match=r"poses.txt, line 2: expected 16 numbers"):
        load_gt_poses(path)
