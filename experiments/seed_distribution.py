"""Where a demo run stands among deterministic runs of the same settings with other seeds.

One run of the demo says little: the same schedule gives val-frame abs_rel
reductions of 1.5-33.5% depending on the seed (seeds 0-4). :data:`REFERENCE_PATH`
(``experiments/seed_distribution.json``, committed) holds, per preset, the
mean, standard deviation and range over seeds of the trained network's
val-frame and held-out abs_rel and of the val-frame reduction, and how many
seeds reached the demo's target, written by ``tools/seed_runs.py``
(:func:`distribution_from_runs`). :func:`place_run` puts a run among them, and
the demo's summary and ``results.md`` say where (:func:`placement_lines`).

A distribution applies to runs of the same settings but for the seed, the
``deterministic`` switch and the figures' sizes (:func:`comparable_settings`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from experiments.ablation_report import mean_std
from experiments.settings import EVAL_SET_NAMES, TEST_SET, VAL_FRAMES_SET
from utils import GasMonoError, atomic_write_text

REFERENCE_PATH = Path(__file__).resolve().parent / "seed_distribution.json"
# the trained network's abs_rel per evaluation set, and the name of each statistic
METRICS = {VAL_FRAMES_SET: "val_frames_abs_rel", TEST_SET: "test_abs_rel"}
# settings that do not change the trained network
IGNORED_SETTINGS = ("seed", "deterministic", "num_prediction_examples", "num_prediction_val_frames")


def comparable_settings(settings: dict) -> dict:
    """The settings (as recorded in ``results.json``) that a seed distribution must share with a run."""
    return {name: value for name, value in settings.items() if name not in IGNORED_SETTINGS}


def statistics(values: Sequence[float]) -> dict:
    """:func:`experiments.ablation_report.mean_std` of ``values`` with their ``"min"`` and ``"max"``."""
    return {**mean_std(values), "min": float(min(values)), "max": float(max(values))}


def trained_abs_rel(results: dict) -> dict[str, float]:
    """The trained network's abs_rel per :data:`METRICS` name, from a demo's ``results.json``."""
    return {name: float(results["evaluation"][eval_set]["trained"]["abs_rel"]) for eval_set, name in METRICS.items()}


def distribution_from_runs(runs: Sequence[dict], command: str, commit: str | None = None) -> dict:
    """The seed distribution of demo runs (their ``results.json`` contents), which must share their
    settings but for the seed (see :func:`comparable_settings`).

    Raises:
        GasMonoError: no run, runs of different settings, or a seed twice.
    """
    if not runs:
        raise GasMonoError("no demo run to build a seed distribution from")
    settings = comparable_settings(runs[0]["settings"])
    seeds = [run["settings"]["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise GasMonoError(f"a seed appears twice among the runs: {seeds}")
    for run in runs[1:]:
        if comparable_settings(run["settings"]) != settings:
            raise GasMonoError(f"the runs of seeds {seeds[0]} and {run['settings']['seed']} differ in settings "
                               "other than the seed")
    values = [trained_abs_rel(run) for run in runs]
    reductions = [float(run["target"]["reduction"]) for run in runs]
    return {
        "preset": runs[0]["preset"],
        "command": command,
        "commit": commit,
        "deterministic": all(run["settings"].get("deterministic", False) for run in runs),
        "machine": runs[0]["machine"],
        "seeds": seeds,
        "statistics": {name: statistics([value[name] for value in values]) for name in METRICS.values()},
        "target": {"required_reduction": runs[0]["target"]["required_reduction"],
                   "reached": sum(run["target"]["reached"] for run in runs), "reduction": statistics(reductions)},
        "settings": settings,
    }


def load_reference(path: Path = REFERENCE_PATH) -> dict[str, dict]:
    """Preset name -> seed distribution, from ``path`` (empty when it holds none)."""
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("distributions", {})


def update_reference(distribution: dict, path: Path = REFERENCE_PATH) -> Path:
    """Write ``distribution`` into ``path`` as the one of its preset (the other presets' are kept)."""
    content = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    content.setdefault("distributions", {})[distribution["preset"]] = distribution
    atomic_write_text(json.dumps(content, indent=2) + "\n", path)
    return path


def place_run(results: dict, reference: dict[str, dict]) -> dict:
    """Where a demo run (its ``results.json`` content) stands in the seed distribution of its preset:
    ``{"available": True, "preset", "seeds", "deterministic", "metrics": {name: {"value", "mean", "std",
    "min", "max", "std_from_mean", "position"}}, "target": {"required_reduction", "reached", "reduction",
    "this_run"}}`` with ``position`` ``"below"``, ``"within"`` or ``"above"`` the range and ``reached`` the
    number of seeds that reached the demo's target; ``{"available": False, "reason"}`` when no distribution applies."""
    preset = results["preset"]
    distribution = reference.get(preset)
    if distribution is None:
        return {"available": False, "reason": f"no seed distribution recorded for preset {preset}"}
    if distribution["settings"] != comparable_settings(results["settings"]):
        return {"available": False, "reason": f"the seed distribution of preset {preset} was recorded with other "
                                              "settings"}
    metrics = {}
    for name, value in trained_abs_rel(results).items():
        stats = distribution["statistics"][name]
        position = "below" if value < stats["min"] else "above" if value > stats["max"] else "within"
        std_from_mean = (value - stats["mean"]) / stats["std"] if stats["std"] else None
        metrics[name] = {"value": value, **{key: stats[key] for key in ("mean", "std", "min", "max")},
                         "std_from_mean": std_from_mean, "position": position}
    return {"available": True, "preset": preset, "seeds": distribution["seeds"],
            "deterministic": distribution["deterministic"], "metrics": metrics,
            "target": {**distribution["target"], "this_run": results["target"]["reduction"]}}


def placement_lines(placement: dict) -> list[str]:
    """The lines of the demo's summary (and ``results.md``) that place the run in its seed distribution."""
    if not placement["available"]:
        return [f"seed distribution: {placement['reason']} ({REFERENCE_PATH.name}; tools/seed_runs.py writes it)"]
    seeds = ", ".join(str(seed) for seed in placement["seeds"])
    lines = [f"seed distribution of preset {placement['preset']} (seeds {seeds}"
             f"{', deterministic' if placement['deterministic'] else ''}): trained abs_rel"]
    for eval_set, name in METRICS.items():
        entry = placement["metrics"][name]
        spread = "" if entry["std"] is None else f" ± {entry['std']:.4f}"
        distance = "" if entry["std_from_mean"] is None else f", {entry['std_from_mean']:+.1f} std from the mean"
        lines.append(f"  {EVAL_SET_NAMES[eval_set]}: this run {entry['value']:.4f}; over the seeds "
                     f"{entry['mean']:.4f}{spread}, range {entry['min']:.4f}-{entry['max']:.4f}: "
                     f"{entry['position']} the range{distance}")
    target = placement["target"]
    reduction = target["reduction"]
    spread = "" if reduction["std"] is None else f" ± {100 * reduction['std']:.1f}"
    lines.append(f"  target (val-frame abs_rel {100 * target['required_reduction']:.0f}% below the untrained network): "
                 f"reached by {target['reached']} of the {len(placement['seeds'])} seeds; their reductions "
                 f"{100 * reduction['mean']:.1f}%{spread}, range {100 * reduction['min']:.1f}-"
                 f"{100 * reduction['max']:.1f}%; this run {100 * target['this_run']:.1f}%")
    return lines
