"""The inference API (DepthEstimator) and predict.py on an image, a folder and a video."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from deterministic_weights import fill_
from PIL import Image
from skimage.data import stereo_motorcycle

import networks
import predict
from evaluation import evaluate_image, resolve_protocol
from inference import DepthEstimator, colorize_disparity
from utils import GasMonoError, resolve_device

NET_H, NET_W = 64, 96


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny inputs: one thread avoids OpenMP oversubscription on busy 2-core machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("predict") / "weights_0"
    encoder = networks.mpvit_small()
    decoder = networks.DepthDecoder(encoder.num_ch_enc)
    fill_(encoder, salt="encoder")
    fill_(decoder, salt="depth")
    networks.save_weights_folder(folder, {"encoder": encoder, "depth": decoder}, NET_H, NET_W, False)
    return folder


@pytest.fixture(scope="module")
def estimator(weights) -> DepthEstimator:
    return DepthEstimator.from_checkpoint(weights)


def _image(height: int, width: int, seed: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([(cols * (seed + 2)) % 256, (rows * 3) % 256, (rows * cols // 7 + 40 * seed) % 256], -1)
    return image.astype(np.uint8)


def test_estimator_from_checkpoint_predicts_at_input_size(weights):
    estimator = DepthEstimator.from_checkpoint(weights, device="cpu")
    assert (estimator.height, estimator.width) == (NET_H, NET_W) and estimator.checkpoint == weights
    image = _image(50, 70, seed=0)
    disp = estimator.predict_disparity(image)
    depth = estimator.predict(image)
    assert disp.shape == depth.shape == (50, 70) and depth.dtype == np.float32
    np.testing.assert_allclose(depth * disp, 1.0, rtol=1e-5)
    assert 0.1 <= depth.min() and depth.max() <= 10.0 and depth.std() > 1e-3
    # same as running the batch API on the resized image, then resizing back
    batch = torch.from_numpy(np.array(Image.fromarray(image).resize((NET_W, NET_H), Image.Resampling.LANCZOS)))
    net_disp = estimator.disparity_batch(batch.permute(2, 0, 1)[None].float() / 255.0)[0, 0].numpy()
    np.testing.assert_allclose(disp, cv2.resize(net_disp, (70, 50), interpolation=cv2.INTER_LINEAR), rtol=1e-5)


def test_estimator_rejects_bad_images(estimator):
    with pytest.raises(GasMonoError, match="uint8 RGB"):
        estimator.predict(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(GasMonoError, match="uint8 RGB"):
        estimator.predict(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(GasMonoError, match=f"B x 3 x {NET_H} x {NET_W}"):
        estimator.disparity_batch(torch.zeros(1, 3, 32, 32))


def test_estimator_missing_checkpoint_file(tmp_path):
    with pytest.raises(GasMonoError, match="not found"):
        DepthEstimator.from_checkpoint(tmp_path)


def test_device_resolution():
    assert resolve_device("auto", no_cuda=True).type == "cpu"
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(GasMonoError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_colorize_disparity_range():
    disp = np.linspace(0.0, 1.0, 100, dtype=np.float32).reshape(10, 10)
    colored = colorize_disparity(disp, "gray")
    assert colored.shape == (10, 10, 3) and colored.dtype == np.uint8
    assert colored[0, 0].tolist() == [0, 0, 0] and colored[-1, -1].tolist() == [255, 255, 255]
    with pytest.raises(GasMonoError, match="colormap"):
        colorize_disparity(disp, "no_such_map")


def test_predict_cli_on_image_writes_outputs(weights, estimator, tmp_path):
    image = _image(40, 60, seed=1)
    Image.fromarray(image).save(tmp_path / "room.png")
    written = predict.main(["--load_weights_folder", str(weights), "--input", str(tmp_path / "room.png"),
                            "--side_by_side", "--device", "cpu"])
    assert sorted(path.name for path in written) == ["room_depth.npy", "room_disp.npy", "room_disp.png"]
    disp = np.load(tmp_path / "room_disp.npy")
    depth = np.load(tmp_path / "room_depth.npy")
    assert disp.shape == depth.shape == (40, 60)
    np.testing.assert_allclose(disp * depth, 1.0, rtol=1e-5)
    expected = estimator.predict(image)
    np.testing.assert_allclose(depth, expected, rtol=1e-5)
    png = np.asarray(Image.open(tmp_path / "room_disp.png"))
    assert png.shape == (40, 120, 3)
    np.testing.assert_array_equal(png[:, :60], image)


def test_predict_folder_skips_own_outputs_and_video(estimator, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, seed in (("a.jpg", 0), ("b.png", 1)):
        Image.fromarray(_image(30, 40, seed)).save(folder / name)
    Image.fromarray(_image(30, 40, 2)).save(folder / "old_disp.png")
    written = predict.predict_path(estimator, folder, tmp_path / "out", progress=False)
    assert sorted(path.name for path in written if path.suffix == ".png") == ["a_disp.png", "b_disp.png"]
    assert np.asarray(Image.open(tmp_path / "out" / "a_disp.png")).shape == (30, 40, 3)

    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (40, 30))
    for frame in range(5):
        writer.write(_image(30, 40, frame)[..., ::-1].copy())
    writer.release()
    written = predict.predict_path(estimator, video, tmp_path / "frames", video_stride=2, progress=False)
    assert sorted(path.name for path in written if path.suffix == ".png") == [
        "walk_000000_disp.png", "walk_000002_disp.png", "walk_000004_disp.png"]
    assert np.load(tmp_path / "frames" / "walk_000002_depth.npy").shape == (30, 40)


def test_predict_bad_inputs(estimator, tmp_path):
    with pytest.raises(GasMonoError, match="input not found"):
        predict.predict_path(estimator, tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(GasMonoError, match="not a folder, image"):
        predict.predict_path(estimator, tmp_path / "notes.txt")
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    with pytest.raises(GasMonoError, match="cannot read image"):
        predict.predict_path(estimator, tmp_path / "broken.jpg")
    (tmp_path / "broken.mp4").write_bytes(b"nope")
    with pytest.raises(GasMonoError, match="video"):
        predict.predict_path(estimator, tmp_path / "broken.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GasMonoError, match="no images"):
        predict.predict_path(estimator, empty)


def test_real_image_prediction_and_invalid_ground_truth(estimator):
    """Middlebury 'Motorcycle' (ships with scikit-image): a real photo with metric
    ground truth whose invalid pixels (inf disparity) must be left out."""
    left, _, disparity = stereo_motorcycle()
    focal, doffs, baseline_m = 994.978, 31.086, 0.193001
    valid = np.isfinite(disparity)
    gt = np.zeros(disparity.shape, np.float32)
    gt[valid] = focal * baseline_m / (disparity[valid] + doffs)
    disp = estimator.predict_disparity(left)
    assert disp.shape == left.shape[:2] and np.isfinite(disp).all()
    result = evaluate_image(disp, gt, resolve_protocol("scannet"))
    assert result.num_valid == int(valid.sum()) < gt.size
    assert all(np.isfinite(value) for value in result.errors.values()) and 0.0 <= result.errors["a1"] <= 1.0
    perfect = evaluate_image(np.where(valid, 1.0 / np.maximum(gt, 1e-3), 123.0), gt, resolve_protocol("scannet"))
    assert perfect.errors["abs_rel"] < 1e-6 and perfect.ratio == pytest.approx(1.0)


def test_sixteen_bit_grey_png_is_scaled_not_clipped(estimator, tmp_path):
    grey = _image(40, 60, seed=3)[..., 0]
    cv2.imwrite(str(tmp_path / "grey16.png"), grey.astype(np.uint16) * 257)
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    written = predict.predict_path(estimator, tmp_path / "grey16.png", progress=False)
    expected = estimator.predict_disparity(np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_allclose(np.load(written[0]), expected, rtol=1e-6)


def test_predict_folder_reports_unreadable_images_after_processing_the_others(estimator, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_broken.jpg").write_bytes(b"nope")
    for name, seed in (("b.png", 1), ("c.jpg", 2)):
        Image.fromarray(_image(30, 40, seed)).save(folder / name)
    with pytest.raises(predict.UnreadableImagesError) as info:
        predict.predict_path(estimator, folder, tmp_path / "out", progress=False)
    assert str(info.value) == (
        f"1 of 3 images could not be read: a_broken.jpg (first: cannot read image {folder / 'a_broken.jpg'}: "
        f"not an image file); the other 2 were processed (6 files written to {tmp_path / 'out'})")
    assert sorted(path.name for path in info.value.written if path.suffix == ".png") == ["b_disp.png", "c_disp.png"]
    assert (tmp_path / "out" / "c_depth.npy").is_file()


def test_predict_cli_one_line_errors_for_folders_and_output_dir(weights, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"nope")
    Image.fromarray(_image(30, 40, 0)).save(folder / "fine.png")
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--load_weights_folder", str(weights), "--input", str(folder), "--device", "cpu"])
    assert exit_info.value.code == 2
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert error_lines[-1].startswith("error: 1 of 2 images could not be read: broken.png")
    assert (folder / "fine_disp.png").is_file()

    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--load_weights_folder", str(weights), "--input", str(folder / "fine.png"),
                      "--output_dir", str(tmp_path / "taken"), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --output_dir {tmp_path / 'taken'} is a file, not a folder"]
