"""The demo end to end (``bash run.sh demo --quick``) and run.sh's usage errors."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys

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
    for command in ("demo [--quick]", "ablate [--seeds N]", "train DATA_PATH", "train_ddp NGPUS DATA_PATH"):
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


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> tuple:
    """``bash run.sh demo --quick --deterministic`` into a folder that the ablation and budget-curve tests
    reuse (same data and COLMAP)."""
    out = tmp_path_factory.mktemp("quick") / "demo"
    return out, _run("demo", "--quick", "--deterministic", "--out", str(out), "--no_progress", timeout=400)


@pytest.fixture(scope="module")
def quick_demo_again(tmp_path_factory) -> tuple:
    """The same deterministic quick demo through ``tools/demo.py``, into another folder (rendered and
    reconstructed again)."""
    out = tmp_path_factory.mktemp("quick_again") / "demo"
    command = [sys.executable, str(PROJECT_ROOT / "tools" / "demo.py"), "--quick", "--deterministic", "--out",
               str(out), "--no_progress"]
    return out, subprocess.run(command, capture_output=True, text=True, timeout=400)


def test_quick_demo_writes_every_artefact(quick_demo):
    out, result = quick_demo
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True and results["preset"] == "quick"
    assert _finite_numbers(results, "results") == []
    metrics = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3")
    assert list(results["evaluation"]) == ["val_frames", "test"]
    for entry in results["evaluation"].values():
        for model in ("untrained", "trained"):
            assert set(entry[model]) == set(metrics)
            assert 0 < entry[model]["abs_rel"] < 1 and 0 <= entry[model]["a1"] <= 1
    assert results["evaluation"]["test"]["num_images"] == results["settings"]["num_test"] == 4
    assert results["evaluation"]["val_frames"]["num_images"] == results["splits"]["val_items"] >= 2
    assert results["improvement"]["abs_rel_relative_reduction"] == \
        results["evaluation"]["test"]["relative_change"]["abs_rel"]
    reduction = results["evaluation"]["val_frames"]["relative_change"]["abs_rel"]
    assert results["target"] == {"eval_set": "val_frames", "required_reduction": 0.25, "reduction": reduction,
                                 "reached": reduction >= 0.25}
    assert results["seed_distribution"] == {"available": False,
                                            "reason": "no seed distribution recorded for preset quick"}
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
    val = [entry for entry in history if entry["mode"] == "val"]
    assert val and all(0 < entry["val/abs_rel"] < 1 for entry in val)

    # poses of the trained networks against the rendered ground truth
    poses = results["poses"]
    assert list(poses["kinds"]) == ["coarse", "refined", "final"]
    assert poses["pairs"] == 2 * (results["splits"]["train_items"] + results["splits"]["val_items"])
    assert "## Poses against the rendered ground truth" in report and "| final |" in report

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
    assert "seed distribution: no seed distribution recorded for preset quick" in result.stdout
    assert "deterministic (--deterministic): every stage repeatable on this machine" in result.stdout
    assert re.search(r"\n  final\s+\d+\.\d{3} deg, \d+\.\d{2} deg, std log scale \d\.\d{3}\n", result.stdout)


def _without_seconds(summary: dict) -> list[dict]:
    return [{key: value for key, value in record.items() if key != "seconds"} for record in summary["sequences"]]


def test_two_deterministic_quick_demos_are_identical(quick_demo, quick_demo_again):
    (first, first_run), (second, second_run) = quick_demo, quick_demo_again
    assert first_run.returncode == 0, first_run.stdout[-2000:] + first_run.stderr[-3000:]
    assert second_run.returncode == 0, second_run.stdout[-2000:] + second_run.stderr[-3000:]
    one, two = (json.loads((out / "results.json").read_text()) for out in (first, second))
    # what was made repeatable, and how, is recorded
    determinism = one["determinism"]
    assert one["settings"]["deterministic"] is True and determinism["deterministic"] is True
    assert all(stage["repeatable"] for stage in determinism["stages"].values())
    assert determinism["threads"]["colmap_threads_per_process"] == 1
    assert determinism["seeds"] == {"data": 0, "colmap": 0, "split": 0, "training": [0]}
    assert "--deterministic" in one["training"]["flags"]
    # the same metrics, pose errors, COLMAP registration and coarse poses, bit for bit
    assert one["evaluation"] == two["evaluation"]
    for report in (one["poses"], two["poses"]):
        report.pop("checkpoint", None)
    assert one["poses"] == two["poses"]
    assert _without_seconds(one["colmap"]["summary"]) == _without_seconds(two["colmap"]["summary"])
    assert one["colmap"]["pose_accuracy"] == two["colmap"]["pose_accuracy"]
    poses = sorted(path.relative_to(first) for path in (first / "cpose").rglob("*.npy"))
    assert poses and poses == sorted(path.relative_to(second) for path in (second / "cpose").rglob("*.npy"))
    assert all((first / path).read_bytes() == (second / path).read_bytes() for path in poses)
    assert [(entry["mode"], entry["loss"]) for entry in json.loads((first / "training_history.json").read_text())] \
        == [(entry["mode"], entry["loss"]) for entry in json.loads((second / "training_history.json").read_text())]


def test_quick_budget_curve_and_seed_runs_reuse_the_demo(quick_demo, tmp_path):
    out, demo = quick_demo
    assert demo.returncode == 0
    figure = tmp_path / "curve.png"
    command = [sys.executable, str(PROJECT_ROOT / "tools" / "budget_curve.py"), "--quick", "--out", str(out),
               "--budgets", "2", "1", "--set", "max_train_steps=1", "num_prediction_examples=1",
               "num_prediction_val_frames=1", "--figure", str(figure), "--no_progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "reused 2 training sequences" in result.stdout
    curve = json.loads((out / "budget_curve.json").read_text())
    assert curve["batches_per_epoch"] == 1 and curve["determinism"]["deterministic"]
    assert list(curve["points"]) == ["1/0", "2/0"]
    for key, batches in (("1/0", 1), ("2/0", 2)):
        point = curve["points"][key]
        assert point["batches"] == point["epochs"] == batches and point["supervised"]["batches"] == batches
        for record in (point, point["supervised"]):
            assert 0 < record["val_frames_abs_rel"] < 1 and 0 < record["test_abs_rel"] < 1
        with Image.open(out / point["predictions"]) as image:
            # two rows, five columns (input, untrained, self-supervised, supervised, ground truth) of 2.6 x 2.1 in
            assert image.size == (round(100 * (2.6 * 5 + 0.6)), round(100 * 2.1 * 2))
    # the supervised bound starts from the self-supervised run's initialisation, so it moves off the untrained value
    untrained = curve["untrained"]["0"]
    assert curve["points"]["2/0"]["supervised"]["val_frames_abs_rel"] != untrained["val_frames_abs_rel"]
    untrained_demo = json.loads((out / "results.json").read_text())["evaluation"]["val_frames"]["untrained"]
    assert untrained["val_frames_abs_rel"] == untrained_demo["abs_rel"]
    for path in (figure, out / "budget_curve.png"):
        with Image.open(path) as image:
            assert image.format == "PNG"
    assert "| 2 | 2 (2) |" in (out / "budget_curve.md").read_text()
    # a second run keeps the points it has
    again = subprocess.run(command, capture_output=True, text=True, timeout=200)
    assert again.returncode == 0 and again.stdout.count("kept from the earlier run") == 2

    # tools/seed_runs.py keeps a deterministic run of the same settings and writes its distribution
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "seed0").symlink_to(out)
    seeds = subprocess.run([sys.executable, str(PROJECT_ROOT / "tools" / "seed_runs.py"), "--quick", "--seeds", "0",
                            "--out", str(tmp_path / "runs"), "--no_progress"], capture_output=True, text=True,
                           timeout=200)
    assert seeds.returncode == 0, seeds.stdout[-2000:] + seeds.stderr[-3000:]
    assert "seed 0: kept the run in" in seeds.stdout
    distribution = json.loads((tmp_path / "runs" / "seed_distribution.json").read_text())
    assert distribution["preset"] == "quick" and distribution["seeds"] == [0] and distribution["deterministic"]
    abs_rel = json.loads((out / "results.json").read_text())["evaluation"]["test"]["trained"]["abs_rel"]
    assert distribution["statistics"]["test_abs_rel"]["values"] == [abs_rel]


def test_demo_refuses_a_file_as_output_folder(tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("not a folder")
    result = _run("demo", "--quick", "--out", str(out), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: --out must be a folder, but {out} is a file"
    assert out.read_text() == "not a folder"


def test_quick_ablation_with_two_seeds_reuses_the_demo_data(quick_demo):
    out, demo = quick_demo
    assert demo.returncode == 0
    result = _run("ablate", "--quick", "--seeds", "2", "--variants", "no_coarse_poses", "--out", str(out),
                  "--set", "num_epochs=1", "max_train_steps=2", "--deterministic", "--no_progress", timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "reused 2 training sequences" in result.stdout
    results = json.loads((out / "ablation.json").read_text())
    assert results["determinism"]["deterministic"] and results["determinism"]["seeds"]["training"] == [0, 1]
    assert results["seeds"] == [0, 1] and list(results["variants"]) == ["full", "no_coarse_poses"]
    assert set(results["untrained"]) == {"mpvit_small"}
    assert set(results["untrained"]["mpvit_small"]["runs"]) == {"0", "1"}
    for name, variant in results["variants"].items():
        assert set(variant["runs"]) == {"0", "1"}
        assert all(run["batches"] == 2 for run in variant["runs"].values())
        stats = results["summary"][name]["val_frames_abs_rel"]
        assert stats["n"] == 2 and stats["std"] is not None
        assert stats["mean"] == pytest.approx(sum(stats["values"]) / 2)
    assert list(results["summary"]["full"]["poses"]) == ["refined", "final"]
    assert list(results["summary"]["no_coarse_poses"]["poses"]) == ["posenet"]
    # the two seeds start from different networks
    untrained = results["untrained"]["mpvit_small"]["runs"]
    assert untrained["0"]["val_frames_abs_rel"] != untrained["1"]["val_frames_abs_rel"]
    report = (out / "ablation.md").read_text()
    assert "| untrained (mpvit_small) | 2 |" in report and "| COLMAP | coarse |" in report
    assert "Rule: a difference counts when" in report
    assert "| no_coarse_poses | posenet |" in result.stdout


def _runs(values: dict[str, list[float]], kinds: tuple[str, ...] = ("refined", "final")) -> dict:
    """Per-seed run records with the given val-frame abs_rel values (and fixed other metrics)."""
    return {str(seed): {"val_frames_abs_rel": value, "test_abs_rel": 0.2, "train_seconds": 10.0,
                        "poses": {"coarse": {}, **{kind: {"rotation_deg": 1.0, "translation_direction_deg": 5.0,
                                                           "scale_std_log": 0.1 + 0.01 * seed} for kind in kinds}}}
            for seed, value in enumerate(values)}


def test_ablation_statistics_apply_the_spread_rule():
    from experiments.ablation_report import compare, depth_table, findings, mean_std, pose_table, summarize_runs

    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3, "values": [1.0, 2.0, 3.0]}
    assert mean_std([0.5])["std"] is None
    assert compare(mean_std([3.0, 5.0]), mean_std([1.0, 1.2]))["beyond_spread"] is True  # |4 - 1.1| > 1.41 + 0.14
    assert compare(mean_std([1.0, 3.0]), mean_std([0.5, 1.0]))["beyond_spread"] is False  # |2 - 0.75| < 1.41 + 0.35
    assert compare(mean_std([2.0]), mean_std([1.0]))["beyond_spread"] is None

    results = {
        "variants": {
            "full": {"depth_encoder": "mpvit_small", "runs": _runs([0.090, 0.092, 0.094])},
            "no_coarse_poses": {"depth_encoder": "mpvit_small", "runs": _runs([0.120, 0.124, 0.128], ("posenet",))},
            "resnet18": {"depth_encoder": "resnet18", "runs": _runs([0.093, 0.095, 0.097])},
        },
        "untrained": {"mpvit_small": {"runs": {str(seed): {"val_frames_abs_rel": value, "test_abs_rel": 0.2}
                                               for seed, value in enumerate([0.121, 0.123, 0.125])}},
                      "resnet18": {"runs": {str(seed): {"val_frames_abs_rel": 0.13, "test_abs_rel": 0.2}
                                            for seed in range(3)}}},
        "coarse_poses": {"rotation_deg": 0.02, "translation_direction_deg": 0.7, "scale_std_log": 0.8},
    }
    results.update(summarize_runs(results))
    comparisons = results["comparisons"]
    full_vs_untrained = comparisons["full"]["val_frames_abs_rel"]["vs_untrained"]
    assert full_vs_untrained["relative"] == pytest.approx(0.092 / 0.123 - 1) and full_vs_untrained["beyond_spread"]
    assert comparisons["no_coarse_poses"]["val_frames_abs_rel"]["vs_untrained"]["beyond_spread"] is False
    assert comparisons["no_coarse_poses"]["val_frames_abs_rel"]["vs_full"]["beyond_spread"] is True
    assert comparisons["resnet18"]["val_frames_abs_rel"]["vs_full"]["beyond_spread"] is False  # 0.003 < 0.002 + 0.002
    assert comparisons["resnet18"]["val_frames_abs_rel"]["vs_untrained"]["difference"] == pytest.approx(0.095 - 0.13)
    assert "vs_full" not in comparisons["full"]["val_frames_abs_rel"]
    # PoseNet alone is compared with full's final poses; equal metrics are never beyond the spread
    posenet = comparisons["no_coarse_poses"]["poses"]["posenet"]["scale_std_log"]
    assert posenet["full_kind"] == "final" and posenet["vs_full"]["beyond_spread"] is False

    table = depth_table(results).splitlines()
    assert table[2].startswith("| untrained (mpvit_small) | 3 | 0.1230 ± 0.0020 |")
    full_row = [cell.strip() for cell in table[4].strip("|").split("|")]
    assert full_row[:5] == ["full", "3", "0.0920 ± 0.0020", "-25.2% (beyond spread)", ""]
    no_coarse = [cell.strip() for cell in table[5].strip("|").split("|")]
    assert no_coarse[3:5] == ["+0.8% (within spread)", "+34.8% (beyond spread)"]
    poses = pose_table(results).splitlines()
    assert poses[2] == "| COLMAP | coarse | 0.020 | 0.700 | 0.800 | |"
    assert poses[5].startswith("| no_coarse_poses | posenet | 1.000 ± 0.000 |") and poses[5].endswith("| none |")
    lines = findings(results)
    assert any(line.startswith("full: val-frame abs_rel 0.0920 ± 0.0020 is 25.2% lower than untrained")
               for line in lines)
    assert any(line.startswith("no_coarse_poses: val-frame abs_rel 0.1240 ± 0.0040 is 34.8% higher than full")
               for line in lines)
    assert lines[-1].endswith("other comparisons are within their spread.")


def test_presets_and_settings_overrides_from_the_command_line():
    from experiments.settings import add_settings_arguments, settings_from_arguments
    from utils import GasMonoError, OneLineErrorParser

    parser = OneLineErrorParser()
    add_settings_arguments(parser)

    def settings(*argv: str):
        return settings_from_arguments(parser.parse_args(list(argv)))

    assert settings()[0] == "full" and settings()[1].device == "cpu"
    assert settings("--quick")[0] == "quick"
    preset, gpu = settings("--device", "cuda")
    assert preset == "gpu" and gpu.device == "cuda" and (gpu.height, gpu.width) == (256, 320)
    assert gpu.num_scenes > settings()[1].num_scenes and (gpu.render_height, gpu.render_width) == (480, 640)
    preset, tiny = settings("--preset", "gpu", "--device", "cpu", "--set", "num_scenes=2", "max_train_steps=None",
                            "learning_rate=1e-4", "--set", "augmentation=none")
    assert preset == "gpu" and tiny.device == "cpu" and tiny.num_scenes == 2 and tiny.max_train_steps is None
    assert tiny.learning_rate == 1e-4 and tiny.augmentation == "none" and tiny.height == 256
    for argv, message in ((["--set", "num_scenes"], "expected NAME=VALUE"),
                          (["--set", "scenes=3"], "unknown setting 'scenes'"),
                          (["--set", "num_scenes=2.5"], "num_scenes takes a int"),
                          (["--quick", "--preset", "gpu"], "--quick contradicts --preset gpu")):
        with pytest.raises(GasMonoError, match=message):
            settings(*argv)


def test_the_gpu_preset_runs_on_a_cpu_at_tiny_size(tmp_path):
    from experiments.pipeline import run_demo
    from experiments.settings import preset_settings

    settings = preset_settings("gpu", device="cpu", num_scenes=2, num_low_texture=1, frames_per_scene=8, num_test=2,
                               batch_size=2, num_epochs=1, max_train_steps=1, num_workers=0, eval_batch_size=2,
                               num_prediction_examples=1, num_prediction_val_frames=1)
    results = run_demo(tmp_path / "gpu", settings, preset="gpu", progress=False)
    assert results["preset"] == "gpu" and results["training"]["steps"] == 1
    assert results["settings"]["height"] == 256 and results["dataset"]["train_image_size"] == [480, 640]
    flags = results["training"]["flags"]
    assert flags[flags.index("--height") + 1] == "256" and flags[flags.index("--augmentation") + 1] == "strong"
    assert results["poses"]["height"] == 256 and results["evaluation"]["test"]["num_images"] == 2
