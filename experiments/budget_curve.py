"""The budget curve: the demo's data and schedule trained for more batches, deterministically.

Does the network learn the rooms' depth, and generalise, with more compute?
:func:`run_budget_curve` renders the demo's data and runs COLMAP once (both
reused from an earlier run into the same folder), then, for every point
``(budget, seed)``, trains GasMono with the demo's schedule stretched to about
``budget`` batches (:func:`experiments.settings.stretched_schedule`: whole
epochs of the split) and, as the reference line, the same depth network on
the ground-truth depth for the same number of batches
(:mod:`experiments.supervised`); both are evaluated like the demo (val frames
of the training rooms, held-out rooms), and a prediction grid is drawn per
point. The first seed runs at every budget; the others at the budgets up to
``more_seeds_up_to``. Every run is deterministic, so a point is the same
whoever runs it on the same machine and thread count.

``budget_curve.json`` is written after every point; a second run into the
same folder with the same settings skips the points it holds (a long curve
can be stopped and resumed).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

from experiments.budget_report import budget_markdown, plot_budget_curve
from experiments.data import prepare_data
from experiments.pipeline import evaluate_weights, machine_info, train_and_evaluate, training_flags
from experiments.report import finite_metrics, plot_predictions
from experiments.reproducibility import determinism_record
from experiments.settings import TEST_SET, VAL_FRAMES_SET, DemoPaths, DemoSettings, StageTimer, stretched_schedule
from experiments.supervised import train_supervised
from utils import GasMonoError, atomic_write_text

logger = logging.getLogger(__name__)

RESULTS_FILE = "budget_curve.json"


def plan_points(budgets: Sequence[int], seeds: Sequence[int], more_seeds_up_to: int | None = None) -> list[tuple]:
    """``(budget, seed)`` in the order they run: the first seed at every budget (smallest first), then
    each further seed at the budgets up to ``more_seeds_up_to`` (all budgets when None).

    Raises:
        GasMonoError: no budget or seed, a budget below 1, or a repeated budget or seed.
    """
    if not budgets or not seeds:
        raise GasMonoError("a budget curve needs at least one budget and one seed")
    if min(budgets) < 1 or len(set(budgets)) != len(budgets) or len(set(seeds)) != len(seeds):
        raise GasMonoError(f"budgets must be distinct positive batch counts and seeds distinct, got {list(budgets)} "
                           f"and {list(seeds)}")
    budgets = sorted(budgets)
    limit = max(budgets) if more_seeds_up_to is None else more_seeds_up_to
    return [(budget, seeds[0]) for budget in budgets] + [(budget, seed) for seed in seeds[1:]
                                                          for budget in budgets if budget <= limit]


def batches_per_epoch(settings: DemoSettings, train_items: int) -> int:
    """Batches of one epoch of ``train_items`` items (the last partial batch dropped, ``max_train_steps`` cap)."""
    batches = train_items // settings.batch_size
    return min(batches, settings.max_train_steps) if settings.max_train_steps else batches


def budget_settings(settings: DemoSettings, budget: int, epoch_batches: int) -> DemoSettings:
    """The settings stretched to the whole number of epochs closest to ``budget`` batches (at least one)."""
    return dataclasses.replace(settings, **stretched_schedule(settings, max(1, round(budget / epoch_batches))))


def _depth_record(evaluation: dict[str, dict], label: str) -> dict:
    metrics = {eval_set: finite_metrics(result, label) for eval_set, result in evaluation.items()}
    return {"val_frames_abs_rel": metrics[VAL_FRAMES_SET]["abs_rel"], "test_abs_rel": metrics[TEST_SET]["abs_rel"]}


def _load_previous(path: Path, settings: DemoSettings) -> dict:
    """The results of an earlier curve with the same settings in ``path`` (else an empty start)."""
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous.get("settings") == dataclasses.asdict(settings):
            return previous
        logger.info("%s holds a curve of other settings: it is replaced", path)
    return {"points": {}, "untrained": {}}


def run_point(paths: DemoPaths, settings: DemoSettings, budget: int, seed: int, epoch_batches: int,
              timer: StageTimer, untrained: dict, supervised: bool, progress: bool) -> dict:
    """Train and evaluate one point of the curve (and its supervised reference when ``supervised``), draw
    its prediction grid; the untrained network of ``seed`` is evaluated into ``untrained`` if not there."""
    point_settings = budget_settings(settings, budget, epoch_batches)
    name = f"budget{budget}_seed{seed}"
    first_of_seed = str(seed) not in untrained
    run = train_and_evaluate(paths, point_settings, name, timer, evaluate_untrained=first_of_seed,
                             progress=progress, seed=seed)
    if first_of_seed:
        untrained[str(seed)] = {**_depth_record(run.untrained_evaluation, f"untrained seed {seed}"),
                                "weights": paths.relative(run.untrained_weights)}
    record = {"budget": budget, "seed": seed, "batches": run.steps, "epochs": point_settings.num_epochs,
              "schedule": stretched_schedule(settings, point_settings.num_epochs),
              **_depth_record(run.evaluation, name), "train_seconds": run.seconds["training"],
              "weights": paths.relative(run.weights), "supervised": None}
    grid = {"untrained": paths.out / untrained[str(seed)]["weights"], "self-supervised": run.weights}
    if supervised:
        supervised_name = f"supervised{budget}_seed{seed}"
        with timer.stage(f"{supervised_name}: training"):
            flags = training_flags(paths, point_settings, supervised_name, seed=seed)
            trained = train_supervised(flags, paths.logs / supervised_name / "weights", progress)
        with timer.stage(f"{supervised_name}: evaluation"):
            evaluation = evaluate_weights(trained["weights"], supervised_name, paths, point_settings, progress)
        record["supervised"] = {**_depth_record(evaluation, supervised_name), "batches": trained["batches"],
                                "final_loss": trained["final_loss"],
                                "train_seconds": timer.seconds[f"{supervised_name}: training"],
                                "weights": paths.relative(trained["weights"])}
        grid["supervised"] = trained["weights"]
    with timer.stage(f"{name}: prediction grid", verbose=False):
        figure = plot_predictions(paths, grid, paths.out / f"predictions_{name}.png", settings.num_prediction_examples,
                                  settings.num_prediction_val_frames, settings.device)
    record["predictions"] = paths.relative(figure)
    return record


def run_budget_curve(out: str | os.PathLike, settings: DemoSettings, budgets: Sequence[int], seeds: Sequence[int],
                     more_seeds_up_to: int | None = None, supervised_seeds: Sequence[int] | None = None,
                     preset: str = "full", figure: Path | None = None, progress: bool = True) -> dict:
    """Run the points of :func:`plan_points` (deterministic; ``supervised_seeds``: the seeds with a supervised
    reference, default the first) and write ``budget_curve.json``, ``budget_curve.md`` and
    ``budget_curve.png`` (also to ``figure`` when given) under ``out`` after every point."""
    settings = dataclasses.replace(settings, deterministic=True)
    points = plan_points(budgets, seeds, more_seeds_up_to)
    supervised_seeds = [seeds[0]] if supervised_seeds is None else list(supervised_seeds)
    paths = DemoPaths.create(out)
    results_path = paths.out / RESULTS_FILE
    results = _load_previous(results_path, settings)
    timer = StageTimer()
    start = time.perf_counter()
    prepared = prepare_data(paths, settings, timer, progress)
    epoch_batches = batches_per_epoch(settings, prepared["splits"]["train_items"])
    results.update({
        "preset": preset,
        "settings": dataclasses.asdict(settings),
        "batches_per_epoch": epoch_batches,
        "machine": machine_info(settings),
        "determinism": determinism_record(settings, sorted({seed for _, seed in points})),
        "splits": prepared["splits"],
        "colmap_total": prepared["colmap"]["summary"]["total"],
    })
    for budget, seed in points:
        key = f"{budget}/{seed}"
        if key in results["points"]:
            logger.info("point %s batches, seed %s: kept from the earlier run", budget, seed)
            continue
        results["points"][key] = run_point(paths, settings, budget, seed, epoch_batches, timer, results["untrained"],
                                           seed in supervised_seeds, progress)
        results["timings_s"] = {**results.get("timings_s", {}), **timer.seconds,
                                "total (this run)": round(time.perf_counter() - start, 2)}
        write_outputs(paths, results, figure)
    write_outputs(paths, results, figure)
    return results


def write_outputs(paths: DemoPaths, results: dict, figure: Path | None = None) -> None:
    """``budget_curve.json``, ``budget_curve.md`` and ``budget_curve.png`` (also copied to ``figure``)."""
    atomic_write_text(json.dumps(results, indent=2) + "\n", paths.out / RESULTS_FILE)
    plot_budget_curve(results, paths.out / "budget_curve.png")
    if figure is not None:
        plot_budget_curve(results, figure)
    atomic_write_text(budget_markdown(results), paths.out / "budget_curve.md")
