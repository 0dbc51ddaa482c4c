"""Your own videos (datasets.sequence_preparation, tools/prepare_sequences.py) and the folder data set:
videos and image folders in, NYU-layout sequences out; bad input; and a rendered video through the
whole path: prepare -> coarse poses with unknown intrinsics -> split -> training -> predict.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PROJECT_ROOT
from PIL import Image

import predict
import train
from coarse_poses.sequences import read_intrinsics_file
from datasets.folder_dataset import FolderDataset
from datasets.sequence_preparation import fov_intrinsics, natural_key, prepare_sequence, prepare_sequences
from synthetic.video import render_video
from tools import make_coarse_poses, make_split, prepare_sequences as prepare_cli
from utils import GasMonoError


def _frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([(cols * 4 + 40 * index) % 256, rows * 5 % 256, np.full_like(rows, 20 * index)], -1).astype(
        np.uint8)


def _write_video(path: Path, frames: int, height: int = 48, width: int = 64) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for index in range(frames):
        writer.write(cv2.cvtColor(_frame(index, height, width), cv2.COLOR_RGB2BGR))
    writer.release()


def test_a_video_becomes_a_sequence_with_stride_limit_resize_and_fov(tmp_path):
    video = tmp_path / "walk.mp4"
    _write_video(video, 11)
    prepared = prepare_sequence(video, tmp_path / "data", stride=2, max_frames=5, width=32, fov=90.0)
    folder = tmp_path / "data" / "walk"
    assert prepared.folder == folder and prepared.frames == 5 and prepared.size == (32, 24)
    assert sorted(path.name for path in folder.glob("*.jpg")) == [f"{index:06d}.jpg" for index in range(5)]
    assert Image.open(folder / "000004.jpg").size == (32, 24)
    lines = (folder / "frames.txt").read_text().splitlines()
    assert lines[1:] == [f"{index:06d}.jpg {2 * index}" for index in range(5)]  # every 2nd video frame
    np.testing.assert_allclose(read_intrinsics_file(folder / "cam.txt"), [[16, 0, 16], [0, 16, 12], [0, 0, 1]])
    # the written frame is the video frame (MPEG-4 compression aside), resized
    expected = cv2.resize(_frame(8), (32, 24), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(np.asarray(Image.open(folder / "000004.jpg"), dtype=float) - expected).mean() < 12


def test_an_image_folder_is_renumbered_in_natural_order_with_its_camera_scaled(tmp_path):
    photos = tmp_path / "hallway"
    photos.mkdir()
    names = ["img_10.png", "img_2.png", "img_1.png", "IMG_3.jpg"]
    for index, name in enumerate(names):
        Image.fromarray(_frame(index)).save(photos / name, quality=100)
    (photos / "notes.txt").write_text("not an image")
    cam = tmp_path / "cam.txt"
    np.savetxt(cam, [[50.0, 0, 32], [0, 50, 24], [0, 0, 1]])
    prepared = prepare_sequences([photos], tmp_path / "data", height=96, cam_file=cam)[0]
    assert prepared.size == (128, 96) and prepared.frames == 4
    mapping = (tmp_path / "data" / "hallway" / "frames.txt").read_text().splitlines()[1:]
    assert [line.split()[1] for line in mapping] == ["img_1.png", "img_2.png", "IMG_3.jpg", "img_10.png"]
    np.testing.assert_allclose(prepared.intrinsics, [[100, 0, 64], [0, 100, 48], [0, 0, 1]])
    assert sorted(["a10", "a2", "B1"], key=natural_key) == ["a2", "a10", "B1"]
    np.testing.assert_allclose(fov_intrinsics(60.0, 640, 480)[0, 0], 320 / np.tan(np.radians(30)))


def test_bad_inputs_are_one_line_errors_naming_the_file(tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    with pytest.raises(GasMonoError, match=f"cannot open video {broken}"):
        prepare_sequence(broken, tmp_path / "out")
    short = tmp_path / "short"
    short.mkdir()
    for index in range(4):
        Image.fromarray(_frame(index)).save(short / f"{index}.png")
    with pytest.raises(GasMonoError, match=f"{short}: 4 image\\(s\\), 2 with --stride 2; a training item needs 3"):
        prepare_sequence(short, tmp_path / "out", stride=2)
    two_frames = tmp_path / "two.mp4"
    _write_video(two_frames, 2)
    with pytest.raises(GasMonoError, match=f"{two_frames}: only 2 frame\\(s\\)"):
        prepare_sequence(two_frames, tmp_path / "out")
    assert not (tmp_path / "out" / "two").exists()
    Image.fromarray(_frame(9, 30, 40)).save(short / "9.png")
    with pytest.raises(GasMonoError, match="frame 9.png is 40x30, the first one 64x48"):
        prepare_sequence(short, tmp_path / "out", overwrite=True)
    (short / "5.png").write_bytes(b"truncated")
    with pytest.raises(GasMonoError, match="cannot read image .*5.png"):
        prepare_sequence(short, tmp_path / "out", overwrite=True)
    (short / "5.png").unlink()
    (short / "9.png").unlink()
    prepare_sequence(short, tmp_path / "out2", max_frames=3)
    with pytest.raises(GasMonoError, match="is not empty"):
        prepare_sequence(short, tmp_path / "out2", max_frames=3)
    (tmp_path / "bad_cam.txt").write_text("1 0 0\n0 1 0\n")
    with pytest.raises(GasMonoError, match=r"bad_cam.txt: shape \(2, 3\), expected 3x3"):
        prepare_sequence(short, tmp_path / "out3", cam_file=tmp_path / "bad_cam.txt")
    with pytest.raises(GasMonoError, match="--cam or --fov, not both"):
        prepare_sequence(short, tmp_path / "out3", cam_file=tmp_path / "bad_cam.txt", fov=60)

    # the command line: one line, naming the file
    result = subprocess.run([sys.executable, "tools/prepare_sequences.py", str(broken), "--out", str(tmp_path / "o")],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot open video {broken}")


def test_the_folder_dataset_needs_its_camera(tmp_path):
    (tmp_path / "seq").mkdir()
    for index in range(3):
        Image.fromarray(_frame(index)).save(tmp_path / "seq" / f"{index:06d}.jpg")
    with pytest.raises(GasMonoError, match="intrinsics not found: .*seq/cam.txt .*--fov"):
        FolderDataset(tmp_path, ["seq 1 l"], 32, 64, [0, -1, 1], 1)
    (tmp_path / "seq" / "cam.txt").write_text("50 0 32\n0 50 nan\n0 0 1\n")
    with pytest.raises(GasMonoError, match="cam.txt: NaN or infinity in the matrix"):
        FolderDataset(tmp_path, ["seq 1 l"], 32, 64, [0, -1, 1], 1)
    np.savetxt(tmp_path / "seq" / "cam.txt", [[32.0, 0, 32], [0, 32, 24], [0, 0, 1]])
    item = FolderDataset(tmp_path, ["seq 1 l"], 32, 64, [0, -1, 1], 1)[0]
    np.testing.assert_allclose(item[("K", 0)].numpy()[:3, :3], [[32, 0, 32], [0, 32 * 32 / 48, 16], [0, 0, 1]],
                               rtol=1e-6)


def test_a_rendered_video_goes_from_prepare_to_predict(tmp_path, capsys):
    """prepare_sequences -> make_coarse_poses (unknown intrinsics: COLMAP's estimate)
    -> make_split -> train.py --dataset folder -> predict.py."""
    renderer_intrinsics = render_video(tmp_path / "walk.mp4", num_frames=20, height=240, width=320, seed=3)
    data, cpose, split = tmp_path / "data", tmp_path / "cpose", tmp_path / "split"
    prepare_cli.main([str(tmp_path / "walk.mp4"), "--out", str(data)])
    assert not (data / "walk" / "cam.txt").exists()
    make_coarse_poses.main(["--dataset", "folder", "--data_path", str(data), "--cpose_dir", str(cpose),
                            "--split_dir", str(tmp_path / "colmap_split"), "--threads", "2"])
    record = json.loads((cpose / "walk" / "colmap.json").read_text())
    estimate = read_intrinsics_file(data / "walk" / "cam.txt")
    focal = renderer_intrinsics[0, 0]
    assert record["status"] == "ok" and record["registered"] == 20
    assert abs(estimate[0, 0] / focal - 1) < 0.05 and estimate[0, 0] == estimate[1, 1]
    assert abs(record["estimated_focal_length"] - estimate[0, 0]) < 1e-2
    assert f"walk: focal length estimated by COLMAP, {estimate[0, 0]:.1f} px" in capsys.readouterr().out
    print(f"focal length: COLMAP {estimate[0, 0]:.2f} px, renderer {focal:.2f} px "
          f"({100 * (estimate[0, 0] / focal - 1):+.2f}%)")

    make_split.main([str(data), str(split), "--cpose_dir", str(cpose), "--val_fraction", "0.2"])
    log_dir = tmp_path / "logs"
    train.main(["--dataset", "folder", "--data_path", str(data), "--split_dir", str(split), "--cpose_dir", str(cpose),
                "--use_posegt", "--log_dir", str(log_dir), "--model_name", "mine", "--height", "64", "--width", "96",
                "--batch_size", "2", "--num_workers", "0", "--no_cuda", "--weights_init", "scratch",
                "--depth_encoder", "resnet18", "--num_epochs", "1", "--max_train_steps", "2", "--log_frequency", "1"])
    weights = log_dir / "mine" / "models" / "weights_0"
    written = predict.main(["--load_weights_folder", str(weights), "--input", str(data / "walk" / "000005.jpg"),
                            "--output_dir", str(tmp_path / "predictions")])
    depth = np.load(next(path for path in written if path.name.endswith("_depth.npy")))
    assert depth.shape == (240, 320) and np.isfinite(depth).all() and depth.min() > 0
