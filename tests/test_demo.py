"""The demo end to end (``bash run.sh demo --quick``) and run.sh's usage errors."""
from __future__ import annotations

import json
import math
import re
import subprocess

import pytest
import torch
from conftest import PROJECT_ROOT
from PIL import Image

RUN_SH = PROJECT_ROOT / "run.sh"
NETWORK_FILES = {"encoder.pth", "depth.pth", "pose_encoder.pth", "pose.pth", "trans_encoder.pth", "trans.pth"}


def _run(*arguments: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RUN_SH), *arguments], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("arguments", [("no_such_command",), ()])
def test_run_sh_without_a_known_command_prints_usage_and_fails(arguments):
    result = _run(*arguments, timeout=30)
    assert result.returncode == 2
    assert "usage: bash run.sh <command>" in result.stderr
    for command in ("demo [--quick]", "ablate [--quick]", "train DATA_PATH", "train_ddp NGPUS DATA_PATH"):
        assert command in result.stderr
    if arguments:
        assert "error: unknown command 'no_such_command'" in result.stderr


def _finite_numbers(value, where: str) -> list[str]:
    """Paths of the non-finite numbers inside a JSON value."""
    if isinstance(value, dict):
        return [bad for key, item in value.items() for bad in _finite_numbers(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [bad for index, item in enumerate(value) for bad in _finite_numbers(item, f"{where}[{index}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [where]
    return []


def test_quick_demo_writes_every_artefact(tmp_path):
    out = tmp_path / "demo"
    result = _run("demo", "--quick", "--out", str(out), "--no_progress", timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True
    assert _finite_numbers(results, "results") == []
    metrics = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3")
    assert set(results["evaluation"]) == {"test", "val_frames"}
    for entry in results["evaluation"].values():
        for model in ("untrained", "trained"):
            assert set(entry[model]) == set(metrics)
            assert 0 < entry[model]["abs_rel"] < 1 and 0 <= entry[model]["a1"] <= 1
    assert results["evaluation"]["test"]["num_images"] == results["settings"]["num_test"] == 4
    assert results["evaluation"]["val_frames"]["num_images"] == results["splits"]["val_items"] >= 2
    assert results["improvement"]["abs_rel_relative_reduction"] == \
        results["evaluation"]["test"]["relative_change"]["abs_rel"]
    settings = results["settings"]
    assert results["training"]["steps"] == settings["num_epochs"] * settings["max_train_steps"] == 6
    for stage in ("synthetic data", "coarse poses (COLMAP)", "gasmono: training", "total"):
        assert results["timings_s"][stage] > 0
    flags = results["training"]["flags"]
    for flag in ("--use_posegt", "--selfpp", "--iiters", "--iiters_start_epoch", "--wpp_ramp_epochs"):
        assert flag in flags

    # the report, the figures
    report = (out / "results.md").read_text()
    assert report.count("| untrained (same initialisation) |") == report.count("| trained (GasMono, all") == 2
    for figure in ("training_curve.png", "predictions.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG" and min(image.size) > 200
    history = json.loads((out / "training_history.json").read_text())
    assert [entry["step"] for entry in history if entry["mode"] == "train"] == list(range(6))
    assert {entry["epoch"] for entry in history} == {0, 1}
    assert any(entry["mode"] == "val" for entry in history)

    # COLMAP: one textured scene reconstructed, the low-texture one listed too
    summary = json.loads((out / "cpose" / "summary.json").read_text())
    by_scene = {record["scene"]: record for record in summary["sequences"]}
    low_texture = set(results["dataset"]["low_texture_scenes"])
    assert len(by_scene) == 2 and len(low_texture) == 1
    textured = (set(by_scene) - low_texture).pop()
    assert by_scene[textured]["status"] == "ok" and by_scene[textured]["items_written"] >= 6
    assert textured in result.stdout and low_texture.pop() in result.stdout
    assert "coarse poses vs rendered ground truth" in result.stdout

    # splits list only items with coarse poses
    lines = [line.split() for name in ("train_files.txt", "val_files.txt")
             for line in (out / "splits" / name).read_text().splitlines()]
    assert len(lines) == by_scene[textured]["items_written"]
    assert all((out / "cpose" / scene / f"{frame}.npy").is_file() for scene, frame, _ in lines)

    # checkpoints: the untrained and the trained networks differ
    trained, untrained = out / results["checkpoints"]["trained"], out / results["checkpoints"]["untrained"]
    assert NETWORK_FILES <= {path.name for path in trained.iterdir()}
    assert NETWORK_FILES <= {path.name for path in untrained.iterdir()}
    before = torch.load(untrained / "depth.pth", weights_only=True)
    after = torch.load(trained / "depth.pth", weights_only=True)
    assert any(not torch.equal(before[key], after[key]) for key in before if before[key].is_floating_point())

    # the final summary
    assert "== summary ==" in result.stdout
    trained_abs_rel = results["evaluation"]["test"]["trained"]["abs_rel"]
    assert re.search(rf"trained\s+{trained_abs_rel:.4f}\s", result.stdout)
    assert "target (abs_rel on the held-out rooms at least 30% lower than untrained): " in result.stdout


def test_demo_refuses_a_file_as_output_folder(tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("not a folder")
    result = _run("demo", "--quick", "--out", str(out), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: --out must be a folder, but {out} is a file"
    assert out.read_text() == "not a folder"


def _metrics(abs_rel: float) -> dict[str, float]:
    from evaluation.metrics import DEPTH_METRIC_NAMES

    return {name: (abs_rel if name == "abs_rel" else 0.5) for name in DEPTH_METRIC_NAMES}


def test_ablation_table_reports_the_change_of_abs_rel_with_its_sign():
    from experiments.ablation import comparison_table
    from experiments.settings import TEST_SET, VAL_FRAMES_SET

    untrained = {TEST_SET: _metrics(0.2), VAL_FRAMES_SET: _metrics(0.1)}
    results = {
        "untrained": untrained,
        "variants": {
            "full": {"metrics": {TEST_SET: _metrics(0.1), VAL_FRAMES_SET: _metrics(0.11)},
                     "abs_rel_reduction_vs_untrained": {TEST_SET: 0.5, VAL_FRAMES_SET: -0.1},
                     "train_seconds": 12.4, "batches": 7},
        },
    }
    table = comparison_table(results).splitlines()
    assert table[0].startswith("| model | abs_rel |") and table[0].endswith("| train s | batches |")
    untrained_row = [cell.strip() for cell in table[2].strip("|").split("|")]
    full_row = [cell.strip() for cell in table[3].strip("|").split("|")]
    assert untrained_row[:2] == ["untrained", "0.2000"] and untrained_row[-5:] == ["", "0.1000", "", "", ""]
    assert full_row[:2] == ["full", "0.1000"]
    assert full_row[-5:] == ["-50.0%", "0.1100", "+10.0%", "12", "7"]


@pytest.mark.parametrize("reduction, expected", [
    (0.35, "reached (35.0% lower)"),
    (0.12, "not reached (12.0% lower)"),
    (-0.023, "not reached (2.3% higher)"),
])
def test_demo_summary_states_whether_the_target_is_reached(reduction, expected):
    from experiments.report import target_verdict

    verdict = target_verdict({"improvement": {"abs_rel_relative_reduction": reduction}})
    assert verdict == f"target (abs_rel on the held-out rooms at least 30% lower than untrained): {expected}"
