"""Evaluation: metrics, protocol masks, median scaling, post-processing, the
checkpoint evaluator end to end (in-process and CLI) and its one-line errors."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from deterministic_weights import fill_
from PIL import Image

import evaluate_depth
import networks
from evaluation import (
    EvalConfig,
    evaluate,
    evaluate_depth_batch,
    evaluate_depth_maps,
    evaluate_image,
    format_results,
    resolve_protocol,
    validation_protocol,
)
from inference import DepthEstimator, post_process_disparity
from utils import GasMonoError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NET_H, NET_W = 64, 96


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny inputs: one thread avoids OpenMP oversubscription on busy 2-core machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _disp(depth: np.ndarray) -> np.ndarray:
    return (1.0 / np.asarray(depth, dtype=np.float64)).astype(np.float32)


# --------------------------------------------------------------------------
# metrics and protocols on small arrays
# --------------------------------------------------------------------------


def test_metrics_match_hand_computed_values():
    gt = np.array([[1.0, 2.0, 4.0]], dtype=np.float32)
    pred = np.array([[1.2, 2.0, 6.0]], dtype=np.float32)
    result = evaluate_image(_disp(pred), gt, resolve_protocol("nyu", "release"), median_scaling=False)
    errors = result.errors
    assert errors["abs_rel"] == pytest.approx((0.2 + 0.0 + 0.5) / 3, rel=1e-5)
    assert errors["sq_rel"] == pytest.approx((0.04 + 0.0 + 1.0) / 3, rel=1e-5)
    assert errors["rmse"] == pytest.approx(math.sqrt((0.04 + 4.0) / 3), rel=1e-5)
    assert errors["rmse_log"] == pytest.approx(math.sqrt((math.log(1.2) ** 2 + math.log(1.5) ** 2) / 3), rel=1e-5)
    assert errors["log10"] == pytest.approx((math.log10(1.2) + math.log10(1.5)) / 3, rel=1e-5)
    # max(gt/pred, pred/gt) = 1.2, 1.0, 1.5
    assert (errors["a1"], errors["a2"], errors["a3"]) == (pytest.approx(2 / 3), 1.0, 1.0)
    assert result.ratio is None and result.num_valid == 3


def test_metrics_are_averaged_over_images_not_pixels():
    gt = [np.array([[1.0, 1.0, 1.0, 0.0]], np.float32), np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)]
    preds = [_disp(np.full((1, 4), 1.0)), _disp(np.full((1, 4), 2.0))]
    summary = evaluate_depth_maps(preds, gt, resolve_protocol("nyu", "release"), median_scaling=False, progress=False)
    assert summary["metrics"]["abs_rel"] == pytest.approx(0.5)  # (0 + 1) / 2, not (0*3 + 1) / 4
    assert summary["num_images"] == 2


def test_nyu_eigen_mask_crop_and_range():
    protocol = resolve_protocol("nyu", "eigen")
    gt = np.full((480, 640), 5.0, dtype=np.float32)
    assert protocol.valid_mask(gt).sum() == (471 - 45) * (601 - 41)
    gt[100, 100], gt[101, 100], gt[102, 100], gt[103, 100] = 0.1, 10.0, 0.11, 9.99
    gt[44, 300], gt[45, 300] = 5.0, 5.0
    mask = protocol.valid_mask(gt)
    assert not mask[100, 100] and not mask[101, 100] and mask[102, 100] and mask[103, 100]
    assert not mask[44, 300] and mask[45, 300] and not mask[300, 40] and mask[300, 41] and not mask[300, 601]
    assert protocol.clamp == (0.1, 10.0)


def test_nyu_release_and_p2net_masks():
    gt = np.zeros((480, 640), dtype=np.float32)
    gt[0, 0], gt[240, 320], gt[479, 639] = 50.0, 0.01, 3.0
    release = resolve_protocol("nyu", "release")
    assert release.valid_mask(gt).sum() == 3 and release.crop_gt(gt) is gt
    p2net = resolve_protocol("nyu", "p2net")
    cropped = p2net.crop_gt(gt)
    assert cropped.shape == (427, 561) and cropped[240 - 44, 320 - 40] == pytest.approx(0.01)
    assert p2net.valid_mask(cropped).sum() == 1
    assert p2net.input_crop_pixels() == (44, 471, 40, 601)


def test_other_split_masks():
    scannet = resolve_protocol("scannet")
    assert scannet.valid_mask(np.array([[0.0, 0.05, 30.0]])).tolist() == [[False, True, True]]
    seven = resolve_protocol("7scenes")
    assert seven.valid_mask(np.array([[0.0, 0.05, 9.9, 10.0, 65.535]])).tolist() == [[False, True, True, False, False]]
    kitti = resolve_protocol("eigen")
    assert kitti.gt_crop.pixels(375, 1242) == (153, 371, 44, 1197)
    gt = np.full((375, 1242), 20.0)
    gt[200, 600], gt[201, 600] = 80.0, 79.9
    mask = kitti.valid_mask(gt)
    assert mask.sum() == (371 - 153) * (1197 - 44) - 1 and not mask[200, 600] and mask[201, 600]
    assert kitti.clamp == (1e-3, 80.0)


def test_protocol_resolution_and_errors():
    assert resolve_protocol("nyu").name == "eigen"
    assert resolve_protocol("scannet", "eigen").name == "standard"
    assert resolve_protocol("eigen", "eigen").gt_crop.relative
    with pytest.raises(GasMonoError, match="unknown protocol 'p2net' for split 'scannet'"):
        resolve_protocol("scannet", "p2net")
    with pytest.raises(GasMonoError, match="unknown evaluation split"):
        resolve_protocol("kitti")
    with pytest.raises(GasMonoError, match="needs 480x640"):
        evaluate_image(_disp(np.ones((4, 4))), np.ones((240, 320), np.float32), resolve_protocol("nyu", "eigen"))


def test_perfect_prediction_and_median_scaling():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 8.0, size=(480, 640)).astype(np.float32)
    protocol = resolve_protocol("nyu", "eigen")
    perfect = evaluate_depth_maps([_disp(gt)], [gt], protocol, progress=False)
    assert perfect["metrics"]["abs_rel"] < 1e-6 and perfect["metrics"]["a1"] == 1.0
    assert perfect["scale_ratios"]["median"] == pytest.approx(1.0, rel=1e-6)

    scaled = [_disp(gt * 3.0), _disp(gt * 0.5)]
    fixed = evaluate_depth_maps(scaled, [gt, gt], protocol, progress=False)
    assert fixed["metrics"]["abs_rel"] < 1e-6 and fixed["metrics"]["a1"] == 1.0
    assert fixed["scale_ratios"]["median"] == pytest.approx((1 / 3 + 2) / 2, rel=1e-5)
    unscaled = evaluate_depth_maps(scaled[:1], [gt], protocol, median_scaling=False, progress=False)
    assert unscaled["metrics"]["a1"] < 0.5 and unscaled["scale_ratios"] is None
    factor = evaluate_depth_maps(scaled[:1], [gt], protocol, median_scaling=False, scale_factor=1 / 3, progress=False)
    assert factor["metrics"]["abs_rel"] < 1e-6


def test_a_validation_batch_is_scored_like_the_evaluator_scores_its_maps():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.5, 12.0, size=(3, 1, 24, 32)).astype(np.float32)
    gt[2] = 0.0  # an image without valid ground truth is left out
    pred = rng.uniform(0.5, 8.0, size=(3, 1, 12, 16)).astype(np.float32)
    protocol = validation_protocol(0.1, 10.0)
    assert protocol.valid_mask(np.array([0.0, 0.1, 0.2, 9.9, 10.0, 11.0])).tolist() == [False, False, True, True,
                                                                                        False, False]
    assert protocol.clamp == (0.1, 10.0) and protocol.gt_crop is None
    batch = evaluate_depth_batch(torch.from_numpy(1 / pred), torch.from_numpy(gt), protocol)
    maps = evaluate_depth_maps([1 / p[0] for p in pred[:2]], [g[0] for g in gt[:2]], protocol, progress=False)
    assert batch == maps["metrics"]
    assert evaluate_depth_batch(torch.from_numpy(1 / pred), torch.zeros_like(torch.from_numpy(gt)), protocol) is None
    perfect = evaluate_depth_batch(torch.from_numpy(0.5 / gt[:2]), torch.from_numpy(gt[:2]), protocol)
    assert perfect["abs_rel"] < 1e-6 and perfect["a1"] == 1.0


def test_prediction_is_resized_and_clamped_after_scaling():
    gt = np.full((4, 4), 2.0, dtype=np.float32)
    gt[0, 0] = 9.0
    pred = np.full((2, 2), 1.0, dtype=np.float32)
    pred[1, 1] = 100.0  # resized bilinearly to 4x4; far values are clamped to 10 after scaling
    result = evaluate_image(_disp(pred), gt, resolve_protocol("scannet"), median_scaling=False)
    assert result.num_valid == 16
    assert 0.0 < result.errors["abs_rel"] < 5.0  # 100 m would give abs_rel > 10 without the clamp


def test_post_process_blend():
    disp = torch.full((1, 1, 2, 40), 1.0)
    flipped = torch.arange(40, dtype=torch.float32).view(1, 1, 1, 40).expand(1, 1, 2, 40) * 0 + 3.0
    flipped = flipped.clone()
    flipped[..., -1] = 7.0  # its mirror is column 0
    out = post_process_disparity(disp, flipped)
    assert out[0, 0, 0, 0] == pytest.approx(7.0)  # left border: the mirrored prediction only
    assert out[0, 0, 0, -1] == pytest.approx(1.0)  # right border: the original only
    assert out[0, 0, 0, 20] == pytest.approx(2.0)  # centre: the mean
    same = post_process_disparity(disp, torch.flip(disp, dims=[3]))
    assert torch.allclose(same, disp)


# --------------------------------------------------------------------------
# checkpoint end to end
# --------------------------------------------------------------------------


def _save_checkpoint(folder: Path) -> None:
    """Deterministic weights (the parity fixtures' fill) whose prediction varies with the image."""
    encoder = networks.mpvit_small()
    decoder = networks.DepthDecoder(encoder.num_ch_enc)
    fill_(encoder, salt="encoder")
    fill_(decoder, salt="depth")
    networks.save_weights_folder(folder, {"encoder": encoder, "depth": decoder}, NET_H, NET_W, False)


@pytest.fixture(scope="module")
def nyu_setup(tmp_path_factory):
    """A checkpoint and a 3-image NYU-layout test set whose ground truth is the
    checkpoint's own prediction times a per-image scale (so that a correct
    evaluator reports abs_rel 0 and ratio medians 2, 3, 4)."""
    root = tmp_path_factory.mktemp("eval")
    weights = root / "weights_0"
    _save_checkpoint(weights)
    estimator = DepthEstimator.from_checkpoint(weights)
    data = root / "nyu"
    (data / "color").mkdir(parents=True)
    rows, cols = np.mgrid[0:480, 0:640]
    gts = []
    for index in range(1, 4):
        image = np.stack([(cols * index // 3) % 256, (rows * 2 // index) % 256, (rows + cols) // 5 % 256], -1)
        image = image.astype(np.uint8)
        Image.fromarray(image).save(data / "color" / f"{index:04d}.png")
        gts.append(estimator.predict(image) * (index + 1))
    (data / "test_files.txt").write_text("".join(f"color {index:04d} l\n" for index in range(1, 4)))
    np.savez(data / "gt_depths.npz", data=np.stack(gts).astype(np.float32))
    return weights, data


def test_evaluate_cli_writes_json_and_ext_disps_agree(nyu_setup, tmp_path, capsys):
    weights, data = nyu_setup
    results = evaluate_depth.main([
        "--load_weights_folder", str(weights), "--data_path", str(data), "--eval_out_dir", str(tmp_path),
        "--batch_size", "2", "--num_workers", "0", "--eval_mono", "--save_pred_disps",
    ])
    printed = capsys.readouterr().out
    assert "split nyu | protocol eigen" in printed and "3 images" in printed and f"{NET_H}x{NET_W}" in printed
    saved = json.loads((tmp_path / "eval_nyu_eigen.json").read_text())
    assert saved["split"] == "nyu" and saved["protocol"] == "eigen" and saved["num_images"] == 3
    assert saved["protocol_definition"]["gt_crop"]["top"] == 45
    assert (saved["height"], saved["width"]) == (NET_H, NET_W) and saved["checkpoint"] == str(weights)
    assert saved["metrics"]["abs_rel"] < 1e-5 and saved["metrics"]["a1"] == 1.0
    assert saved["scale_ratios"]["median"] == pytest.approx(3.0, rel=1e-4)
    assert saved["metrics"] == results["metrics"]
    disps_path = tmp_path / "disps_nyu_eigen.npy"
    assert np.load(disps_path).shape == (3, NET_H, NET_W)

    # the saved disparities evaluate identically through --ext_disp_to_eval
    external = evaluate(EvalConfig(ext_disp_to_eval=str(disps_path), data_path=str(data), progress=False))
    assert external["checkpoint"] is None and external["num_images"] == 3
    assert external["metrics"] == pytest.approx(results["metrics"])
    assert (tmp_path / "eval_nyu_eigen.json").is_file()
    release = evaluate(EvalConfig(ext_disp_to_eval=str(disps_path), data_path=str(data), protocol="release",
                                  progress=False))
    assert release["metrics"]["abs_rel"] < 1e-5 and (tmp_path / "eval_nyu_release.json").is_file()
    # a swapped prediction order is detected by the metrics
    np.save(tmp_path / "swapped.npy", np.load(disps_path)[[1, 0, 2]])
    swapped = evaluate(EvalConfig(ext_disp_to_eval=str(tmp_path / "swapped.npy"), data_path=str(data),
                                  progress=False))
    assert swapped["metrics"]["abs_rel"] > 1e-3


def test_evaluate_p2net_with_post_processing(nyu_setup, tmp_path):
    weights, data = nyu_setup
    results = evaluate(EvalConfig(load_weights_folder=str(weights), data_path=str(data), protocol="p2net",
                                  post_process=True, batch_size=3, out_dir=str(tmp_path), progress=False))
    # p2net crops the input: the prediction is no longer the full-image one the GT was made from
    assert results["post_process"] and results["num_images"] == 3
    assert 1e-4 < results["metrics"]["abs_rel"] < 0.5
    assert json.loads((tmp_path / "eval_nyu_p2net.json").read_text())["protocol"] == "p2net"


def test_evaluate_bad_inputs_are_one_line_errors(nyu_setup, tmp_path):
    weights, data = nyu_setup
    np.save(tmp_path / "four.npy", np.ones((4, 8, 8), dtype=np.float32))
    with pytest.raises(GasMonoError, match="4 predictions but 3 ground-truth maps"):
        evaluate(EvalConfig(ext_disp_to_eval=str(tmp_path / "four.npy"), data_path=str(data), progress=False))
    with pytest.raises(GasMonoError, match="give a checkpoint"):
        evaluate(EvalConfig(data_path=str(data)))
    with pytest.raises(GasMonoError, match="test data folder not found"):
        evaluate(EvalConfig(load_weights_folder=str(weights), data_path=str(tmp_path / "none")))
    other = tmp_path / "other_arch"
    other.mkdir()
    torch.save(networks.PoseDecoder([64, 64, 128, 256, 512], 1, 2).state_dict(), other / "depth.pth")
    (other / "encoder.pth").write_bytes((weights / "encoder.pth").read_bytes())
    with pytest.raises(GasMonoError, match="another architecture") as info:
        evaluate(EvalConfig(load_weights_folder=str(other), data_path=str(data)))
    assert "\n" not in str(info.value)
    with pytest.raises(GasMonoError, match="encoder.pth"):
        evaluate(EvalConfig(load_weights_folder=str(tmp_path), data_path=str(data)))


def test_evaluate_cli_subprocess_missing_weights(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "evaluate_depth.py"), "--load_weights_folder", str(tmp_path / "missing"),
         "--data_path", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [f"error: weights folder not found: {tmp_path / 'missing'}"]


def test_ext_disps_on_scannet_and_seven_scenes_layouts(tmp_path):
    """Split wiring end to end: millimetre PNGs, 65535 = invalid, prediction resized to the GT size."""
    scannet = tmp_path / "scannet"
    scannet.mkdir()
    for frame in (10, 20):
        Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(scannet / f"scene0001_00_color_{frame}.jpg")
        raw = np.full((12, 16), 1500, np.uint16)
        raw[:, :4] = 0
        cv2.imwrite(str(scannet / f"scene0001_00_depth_{frame}.png"), raw)
    np.save(tmp_path / "scannet.npy", np.full((2, 8, 8), 1 / 1.5, np.float32))
    results = evaluate(EvalConfig(split="scannet", data_path=str(scannet), median_scaling=False,
                                  ext_disp_to_eval=str(tmp_path / "scannet.npy"), progress=False))
    assert results["protocol"] == "standard" and results["num_images"] == 2
    assert results["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert (tmp_path / "eval_scannet_standard.json").is_file()

    seven = tmp_path / "7scenes" / "chess"
    (seven / "seq-01").mkdir(parents=True)
    (seven / "TestSplit.txt").write_text("sequence1\n")
    for frame in range(4):
        Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(seven / "seq-01" / f"frame-{frame:06d}.color.png")
        raw = np.full((24, 32), 2000, np.uint16)
        raw[0] = 65535
        raw[1] = 12000  # 12 m: outside 0 < gt < 10
        cv2.imwrite(str(seven / "seq-01" / f"frame-{frame:06d}.depth.png"), raw)
    np.save(tmp_path / "seven.npy", np.stack([np.full((8, 8), 1 / 2.0), np.full((8, 8), 1 / 4.0)]).astype(np.float32))
    results = evaluate(EvalConfig(split="7scenes", data_path=str(tmp_path / "7scenes"), frame_stride=3,
                                  ext_disp_to_eval=str(tmp_path / "seven.npy"), median_scaling=False, progress=False))
    assert results["frame_stride"] == 3 and results["num_images"] == 2
    assert results["metrics"]["abs_rel"] == pytest.approx(0.5, rel=1e-6)  # image 1 exact, image 2 twice too far
    assert results["metrics"]["a1"] == pytest.approx(0.5)


def test_no_eval_returns_predictions_only(nyu_setup, tmp_path):
    _, data = nyu_setup
    np.save(tmp_path / "disps.npy", np.full((3, 8, 8), 0.5, np.float32))
    results = evaluate(EvalConfig(ext_disp_to_eval=str(tmp_path / "disps.npy"), data_path=str(data), no_eval=True))
    assert "metrics" not in results and results["num_predictions"] == 3
    assert not (tmp_path / "eval_nyu_eigen.json").exists()
    assert "evaluation disabled" in format_results(results)


# --------------------------------------------------------------------------
# no silently wrong results, no wasted inference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad_value", [0.0, float("nan"), -0.5, float("inf")])
def test_external_disparities_must_be_finite_and_positive(nyu_setup, tmp_path, bad_value):
    _, data = nyu_setup
    disps = np.full((3, 8, 8), 0.5, np.float32)
    disps[1, 2, 3] = bad_value
    path = tmp_path / "disps.npy"
    np.save(path, disps)
    kind = {0.0: "1 zero", -0.5: "1 negative"}.get(bad_value, "1 NaN or infinite")
    with pytest.raises(GasMonoError) as info:
        evaluate(EvalConfig(ext_disp_to_eval=str(path), data_path=str(data), progress=False))
    assert str(info.value) == (f"{path}: disparities must be finite and > 0, found {kind} in 1 of 3 image(s) "
                               "(first: image 1)")
    assert not (tmp_path / "eval_nyu_eigen.json").exists()


def test_results_file_is_strict_json(nyu_setup, tmp_path):
    _, data = nyu_setup
    np.save(tmp_path / "disps.npy", np.random.default_rng(0).uniform(0.2, 1.0, (3, 8, 8)).astype(np.float32))
    evaluate(EvalConfig(ext_disp_to_eval=str(tmp_path / "disps.npy"), data_path=str(data), progress=False))

    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in the results file")

    results = json.loads((tmp_path / "eval_nyu_eigen.json").read_text(), parse_constant=refuse)
    assert all(math.isfinite(value) for value in results["metrics"].values())


def test_ground_truth_is_checked_before_inference(nyu_setup, tmp_path, monkeypatch):
    weights, data = nyu_setup
    small = tmp_path / "nyu_small_gt"
    small.mkdir()
    (small / "color").symlink_to(data / "color")
    (small / "test_files.txt").write_text((data / "test_files.txt").read_text())
    np.savez(small / "gt_depths.npz", data=np.ones((3, 240, 320), np.float32))

    def no_inference(*args, **kwargs):
        raise AssertionError("inference ran before the ground truth was checked")

    monkeypatch.setattr("evaluation.evaluator.predict_disparities", no_inference)
    message = r"ground-truth map 0 is 240x320 \(H x W\); protocol nyu/eigen needs 480x640"
    with pytest.raises(GasMonoError, match=message):
        evaluate(EvalConfig(load_weights_folder=str(weights), data_path=str(small), out_dir=str(tmp_path),
                            progress=False))
    np.savez(small / "gt_depths.npz", data=np.ones((2, 480, 640), np.float32))
    with pytest.raises(GasMonoError, match="3 test images but 2 ground-truth maps"):
        evaluate(EvalConfig(load_weights_folder=str(weights), data_path=str(small), out_dir=str(tmp_path),
                            progress=False))
    (tmp_path / "results").write_text("a file")
    np.savez(small / "gt_depths.npz", data=np.ones((3, 480, 640), np.float32))
    with pytest.raises(GasMonoError, match=f"results folder {tmp_path / 'results'} is a file, not a folder"):
        evaluate(EvalConfig(load_weights_folder=str(weights), data_path=str(small),
                            out_dir=str(tmp_path / "results"), progress=False))


def test_truncated_ground_truth_and_disparity_files_are_one_line_errors(nyu_setup, tmp_path):
    _, data = nyu_setup
    np.save(tmp_path / "disps.npy", np.full((3, 8, 8), 0.5, np.float32))
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes((tmp_path / "disps.npy").read_bytes()[:200])
    with pytest.raises(GasMonoError, match=f"cannot read disparities {truncated}: Failed to read all data"):
        evaluate(EvalConfig(ext_disp_to_eval=str(truncated), data_path=str(data), progress=False))
    gt = tmp_path / "gt_depths.npz"
    gt.write_bytes((data / "gt_depths.npz").read_bytes()[:1000])
    with pytest.raises(GasMonoError, match=f"cannot read ground-truth file {gt}: File is not a zip file"):
        evaluate(EvalConfig(ext_disp_to_eval=str(tmp_path / "disps.npy"), data_path=str(data), gt_depths=str(gt),
                            progress=False))
