"""--deterministic's settings, the seed distribution, the stretched schedules of the budget curve and the
supervised bound's loss (the runs themselves: tests/test_demo.py)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from experiments.budget_curve import budget_settings, plan_points
from experiments.pipeline import training_flags
from experiments.seed_distribution import distribution_from_runs, place_run, placement_lines
from experiments.settings import (
    PRESETS,
    DemoPaths,
    DemoSettings,
    add_settings_arguments,
    preset_settings,
    settings_from_arguments,
    stretched_schedule,
)
from experiments.supervised import scale_invariant_log_loss
from utils import GasMonoError, OneLineErrorParser


def _settings(*argv: str) -> DemoSettings:
    parser = OneLineErrorParser()
    add_settings_arguments(parser)
    return settings_from_arguments(parser.parse_args(list(argv)))[1]


def test_deterministic_runs_colmap_on_one_thread_per_process_and_trains_with_the_flag(tmp_path):
    default, deterministic = _settings(), _settings("--deterministic")
    assert not default.deterministic and deterministic.deterministic
    assert default.colmap_settings().threads == default.colmap_threads == 2 and default.colmap_processes == 1
    colmap = deterministic.colmap_settings()
    assert colmap.deterministic and colmap.threads == 1 and colmap.seed == 0
    assert deterministic.colmap_processes == 2  # the same two cores, one sequence each
    assert _settings("--quick", "--deterministic").colmap_processes == 1  # two sequences: no process started
    paths = DemoPaths(tmp_path)
    assert "--deterministic" in training_flags(paths, deterministic, "run")
    assert "--deterministic" not in training_flags(paths, default, "run")
    assert _settings("--set", "deterministic=True").deterministic
    with pytest.raises(GasMonoError, match="deterministic takes True or False"):
        _settings("--set", "deterministic=yes")


def test_stretched_schedules_keep_the_fractions_and_the_total_decay():
    full = DemoSettings()
    assert stretched_schedule(full, full.num_epochs) == {"num_epochs": 10, "iiters_start_epoch": 7,
                                                         "wpp_ramp_epochs": 5, "lr_gamma": 0.9}
    long = stretched_schedule(full, 34)
    assert (long["iiters_start_epoch"], long["wpp_ramp_epochs"]) == (24, 17)
    assert long["lr_gamma"] ** 34 == pytest.approx(0.9 ** 10)
    assert stretched_schedule(full, 1)["iiters_start_epoch"] == 0
    with pytest.raises(GasMonoError, match="at least one epoch"):
        stretched_schedule(full, 0)
    # a budget becomes whole epochs of the split; a preset of it is one entry
    assert budget_settings(full, 1000, 29).num_epochs == 34 and budget_settings(full, 3, 29).num_epochs == 1
    assert dataclasses.replace(DemoSettings(), **PRESETS["long"]) == budget_settings(full, 1000, 29)


def test_budget_points_run_the_first_seed_at_every_budget_first():
    assert plan_points([3000, 290, 1000], [0, 1, 2], more_seeds_up_to=1000) == [
        (290, 0), (1000, 0), (3000, 0), (290, 1), (1000, 1), (290, 2), (1000, 2)]
    assert plan_points([5, 10], [3, 4]) == [(5, 3), (10, 3), (5, 4), (10, 4)]
    for budgets, seeds in (([], [0]), ([5], []), ([0], [0]), ([5, 5], [0]), ([5], [1, 1])):
        with pytest.raises(GasMonoError):
            plan_points(budgets, seeds)


def _results(seed: int, val_frames: float, test: float, preset: str = "full") -> dict:
    settings = dataclasses.asdict(preset_settings(preset, seed=seed, deterministic=True))
    reduction = 1 - val_frames / 0.12
    return {"preset": preset, "settings": settings, "machine": {"cpu_count": 2},
            "evaluation": {"val_frames": {"trained": {"abs_rel": val_frames}}, "test": {"trained": {"abs_rel": test}}},
            "target": {"eval_set": "val_frames", "required_reduction": 0.25, "reduction": reduction,
                       "reached": reduction >= 0.25}}


def test_a_run_is_placed_in_the_seed_distribution_of_its_preset():
    runs = [_results(seed, value, 0.18 + 0.001 * seed) for seed, value in enumerate([0.08, 0.09, 0.10])]
    distribution = distribution_from_runs(runs, "python tools/seed_runs.py", "abc123")
    stats = distribution["statistics"]["val_frames_abs_rel"]
    assert (stats["mean"], stats["min"], stats["max"], stats["n"]) == (pytest.approx(0.09), 0.08, 0.10, 3)
    assert stats["std"] == pytest.approx(0.01) and distribution["seeds"] == [0, 1, 2] and distribution["deterministic"]

    placement = place_run(_results(7, 0.075, 0.181), {"full": distribution})
    assert placement["available"] and placement["seeds"] == [0, 1, 2]
    val_frames = placement["metrics"]["val_frames_abs_rel"]
    assert val_frames["position"] == "below" and val_frames["std_from_mean"] == pytest.approx(-1.5)
    assert placement["metrics"]["test_abs_rel"]["position"] == "within"
    lines = placement_lines(placement)
    assert lines[0] == "seed distribution of preset full (seeds 0, 1, 2, deterministic): trained abs_rel"
    assert lines[1] == ("  the validation frames of the training rooms: this run 0.0750; over the seeds "
                        "0.0900 ± 0.0100, range 0.0800-0.1000: below the range, -1.5 std from the mean")
    # reductions 1 - 0.08 / 0.12 etc.: 33.3%, 25.0%, 16.7%; the first two reach the 25% target
    assert distribution["target"]["reached"] == 2
    assert lines[3] == ("  target (val-frame abs_rel 25% below the untrained network): reached by 2 of the 3 seeds; "
                        "their reductions 25.0% ± 8.3, range 16.7-33.3%; this run 37.5%")

    # another preset, or other settings, have no distribution
    assert place_run(_results(0, 0.1, 0.2, "quick"), {"full": distribution}) == {
        "available": False, "reason": "no seed distribution recorded for preset quick"}
    other = _results(0, 0.1, 0.2)
    other["settings"]["num_epochs"] = 20
    assert not place_run(other, {"full": distribution})["available"]
    mixed = copy.deepcopy(runs)
    mixed[1]["settings"]["learning_rate"] = 1e-3
    with pytest.raises(GasMonoError, match="differ in settings other than the seed"):
        distribution_from_runs(mixed, "command")
    with pytest.raises(GasMonoError, match="a seed appears twice"):
        distribution_from_runs([runs[0], runs[0]], "command")


def test_the_supervised_loss_ignores_one_scale_per_image_and_invalid_pixels():
    generator = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 1, 6, 8, generator=generator) * 5 + 0.5
    gt[0, 0, 0, :4] = 0.0  # no depth there
    scaled = gt * torch.tensor([2.0, 0.3]).view(2, 1, 1, 1)
    assert scale_invariant_log_loss(scaled.clamp(min=0.1), gt, 0.1, 10.0) == pytest.approx(0.0, abs=1e-10)
    noisy = scaled * torch.exp(0.1 * torch.randn(gt.shape, generator=generator))
    loss = scale_invariant_log_loss(noisy.clamp(min=0.1), gt, 0.1, 10.0)
    assert loss > 0
    wrong_where_invalid = noisy.clone()
    wrong_where_invalid[0, 0, 0, :4] = 9.0
    assert scale_invariant_log_loss(wrong_where_invalid.clamp(min=0.1), gt, 0.1, 10.0) == loss
