"""The demo's training and evaluation stages and the whole demo (:func:`run_demo`).

:func:`train_and_evaluate` trains one run with ``train.py``'s flags (built by
:func:`training_flags` from the settings and the components switched on) and
evaluates its last checkpoint on the two evaluation sets and its poses
against the rendered ground truth (:func:`evaluation.poses.evaluate_poses`);
the ablation (:mod:`experiments.ablation`) calls it once per variant and seed.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

import networks
from coarse_poses.evaluation import format_pose_kinds_table
from evaluation import evaluate_checkpoint
from evaluation.poses import evaluate_poses
from experiments.data import prepare_data
from experiments.report import (
    compare_evaluations,
    plot_predictions,
    plot_training_curve,
    results_markdown,
    target_result,
)
from experiments.reproducibility import determinism_record
from experiments.seed_distribution import load_reference, place_run
from experiments.settings import (
    EVAL_PROTOCOLS,
    EVAL_SPLIT,
    TEST_SET,
    VAL_FRAMES_SET,
    DemoPaths,
    DemoSettings,
    StageTimer,
)
from options import GasMonoOptions
from trainer import Trainer
from utils import atomic_write_text

logger = logging.getLogger(__name__)


def training_flags(
    paths: DemoPaths,
    settings: DemoSettings,
    run_name: str,
    use_coarse_pose: bool = True,
    use_self_distillation: bool = True,
    extra_flags: Sequence[str] = (),
    seed: int | None = None,
) -> list[str]:
    """The ``train.py`` flags of one demo run (every GasMono component on by default), then
    ``extra_flags`` (for a repeated flag the last value wins); ``seed`` is the
    training seed (default: ``settings.seed``, also the seed of the data)."""
    flags = [
        "--data_path", str(paths.train_data),
        "--cpose_dir", str(paths.cpose),
        "--split_dir", str(paths.splits),
        "--log_dir", str(paths.logs),
        "--model_name", run_name,
        "--height", str(settings.height),
        "--width", str(settings.width),
        "--batch_size", str(settings.batch_size),
        "--num_epochs", str(settings.num_epochs),
        "--learning_rate", repr(settings.learning_rate),
        "--decoder_learning_rate", repr(settings.decoder_learning_rate),
        "--lr_gamma", repr(settings.lr_gamma),
        "--disparity_smoothness", repr(settings.disparity_smoothness),
        "--augmentation", settings.augmentation,
        "--weights_init", "scratch",
        "--num_workers", str(settings.num_workers),
        "--device", settings.device,
        "--log_frequency", str(settings.log_frequency),
        "--save_frequency", str(settings.num_epochs),
        "--seed", str(settings.seed if seed is None else seed),
    ]
    if settings.deterministic:
        flags.append("--deterministic")
    if settings.max_train_steps is not None:
        flags += ["--max_train_steps", str(settings.max_train_steps)]
    if use_coarse_pose:
        flags += ["--use_posegt", "--www", repr(settings.www)]
    if use_self_distillation:
        flags += ["--selfpp", "--wpp", repr(settings.wpp), "--wpp_ramp_epochs", str(settings.wpp_ramp_epochs),
                  "--iiters", str(settings.iiters), "--iiters_start_epoch", str(settings.iiters_start_epoch)]
    else:
        flags += ["--iiters", "1"]
    return flags + list(extra_flags)


def save_initial_weights(trainer: Trainer, folder: Path) -> Path:
    """Save the trainer's networks before any step, as a weights folder."""
    return networks.save_weights_folder(folder, trainer.models, trainer.height, trainer.width, use_stereo=False,
                                        depth_encoder=trainer.depth_encoder)


def evaluate_weights(weights: Path, name: str, paths: DemoPaths, settings: DemoSettings,
                     progress: bool = True) -> dict[str, dict]:
    """Evaluate a weights folder on the held-out test rooms (``"test"``) and on
    the validation frames of the training rooms (``"val_frames"``); results in
    ``paths.eval / name / <set>``."""
    data = {TEST_SET: paths.test_data, VAL_FRAMES_SET: paths.val_frames_data}
    return {
        eval_set: evaluate_checkpoint(
            weights,
            data[eval_set],
            split=EVAL_SPLIT,
            protocol=protocol,
            batch_size=settings.eval_batch_size,
            num_workers=0,
            device=settings.device,
            out_dir=str(paths.eval / name / eval_set),
            progress=progress,
        )
        for eval_set, protocol in EVAL_PROTOCOLS.items()
    }


def _abs_rel_a1(evaluation: dict[str, dict]) -> str:
    return "; ".join(f"{eval_set}: abs_rel {result['metrics']['abs_rel']:.4f}, a1 {result['metrics']['a1']:.4f}"
                     for eval_set, result in evaluation.items())


@dataclass
class RunResult:
    """One training run and its evaluation."""

    name: str
    flags: list[str]
    weights: Path
    history: list[dict]
    evaluation: dict[str, dict]
    poses: dict
    seconds: dict[str, float]
    steps: int
    untrained_weights: Path | None = None
    untrained_evaluation: dict[str, dict] | None = None


def train_and_evaluate(
    paths: DemoPaths,
    settings: DemoSettings,
    run_name: str,
    timer: StageTimer,
    use_coarse_pose: bool = True,
    use_self_distillation: bool = True,
    evaluate_untrained: bool = False,
    progress: bool = True,
    extra_flags: Sequence[str] = (),
    seed: int | None = None,
) -> RunResult:
    """Train one run (stage names prefixed with ``run_name``; a previous run of
    that name under ``paths.logs`` is removed) and evaluate the depth and the
    poses of its last checkpoint (the poses also go to ``eval_pose.json`` in it,
    as ``evaluate_pose.py`` writes them).

    With ``evaluate_untrained`` the networks are first saved untouched to
    ``paths.untrained_of(run_name)`` and their depth evaluated: the same seed,
    architecture and initialisation as the trained run. ``extra_flags`` and
    ``seed`` (the training seed) go to :func:`training_flags`.
    """
    flags = training_flags(paths, settings, run_name, use_coarse_pose, use_self_distillation, extra_flags, seed)
    with timer.stage(f"{run_name}: setup", verbose=False):
        shutil.rmtree(paths.logs / run_name, ignore_errors=True)
        trainer = Trainer(GasMonoOptions().parse(flags))
    untrained_weights = untrained_evaluation = None
    if evaluate_untrained:
        with timer.stage(f"{run_name}: evaluate the untrained network"):
            untrained_weights = save_initial_weights(trainer, paths.untrained_of(run_name))
            untrained_evaluation = evaluate_weights(untrained_weights, f"untrained_{run_name}", paths, settings,
                                                    progress)
            logger.info(f"untrained: {_abs_rel_a1(untrained_evaluation)}")
    with timer.stage(f"{run_name}: training"):
        batches = len(trainer.train_loader)
        if settings.max_train_steps:
            batches = min(batches, settings.max_train_steps)
        logger.info(f"{run_name}: {settings.num_epochs} epochs x {batches} batches of {settings.batch_size} at "
                    f"{settings.height}x{settings.width}; coarse poses {'on' if use_coarse_pose else 'off'}, "
                    f"self-distillation {'on' if use_self_distillation else 'off'}"
                    + (f"; {' '.join(extra_flags)}" if extra_flags else ""))
        trainer.train()
    weights = paths.logs / run_name / "models" / f"weights_{settings.num_epochs - 1}"
    with timer.stage(f"{run_name}: evaluation"):
        evaluation = evaluate_weights(weights, run_name, paths, settings, progress)
        logger.info(f"{run_name}: {_abs_rel_a1(evaluation)}")
        poses = evaluate_poses(paths.train_data, paths.cpose, weights, device=settings.device,
                               batch_size=settings.eval_batch_size, progress=progress)
        atomic_write_text(json.dumps(poses, indent=2) + "\n", weights / "eval_pose.json")
        logger.info(format_pose_kinds_table(poses, poses["descriptions"]))
    seconds = {key.split(": ", 1)[1]: value for key, value in timer.seconds.items()
               if key.startswith(f"{run_name}: ")}
    return RunResult(run_name, flags, weights, list(trainer.history), evaluation, poses, seconds, trainer.step,
                     untrained_weights, untrained_evaluation)


def machine_info(settings: DemoSettings) -> dict:
    """CPU cores, torch threads, device and torch version, as recorded in the results."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": settings.device,
        "torch": torch.__version__,
    }


def run_demo(out: str | os.PathLike, settings: DemoSettings, preset: str = "full", progress: bool = True) -> dict:
    """Run every stage and write the results under ``out``; returns the ``results.json`` content
    (``preset`` names the settings' preset there)."""
    paths = DemoPaths.create(out)
    load_start = [round(value, 2) for value in os.getloadavg()]
    timer = StageTimer()
    start = time.perf_counter()

    prepared = prepare_data(paths, settings, timer, progress)
    run = train_and_evaluate(paths, settings, "gasmono", timer, evaluate_untrained=True, progress=progress)

    with timer.stage("figures and results"):
        history_path = paths.out / "training_history.json"
        atomic_write_text(json.dumps(run.history, indent=1) + "\n", history_path)
        curve = plot_training_curve(run.history, paths.out / "training_curve.png", settings)
        predictions = plot_predictions(paths, {"untrained": run.untrained_weights, "trained": run.weights},
                                       paths.out / "predictions.png", settings.num_prediction_examples,
                                       settings.num_prediction_val_frames, settings.device)
    timer.seconds["total"] = round(time.perf_counter() - start, 2)

    evaluation = compare_evaluations(run.untrained_evaluation, run.evaluation)
    colmap = prepared["colmap"]
    results = {
        "preset": preset,
        "quick": preset == "quick",
        "settings": dataclasses.asdict(settings),
        "machine": {**machine_info(settings), "load_average_start": load_start,
                    "load_average_end": [round(value, 2) for value in os.getloadavg()]},
        "determinism": determinism_record(settings),
        "dataset": {**prepared["data"], "root": paths.relative(paths.data)},
        "colmap": {"summary": colmap["summary"], "pose_accuracy": colmap["pose_accuracy"],
                   "summary_file": paths.relative(paths.cpose / "summary.json")},
        "splits": prepared["splits"],
        "training": {
            "flags": [paths.relative(Path(flag)) if flag.startswith(str(paths.out)) else flag for flag in run.flags],
            "steps": run.steps,
            "final_train_loss": next((e["loss"] for e in reversed(run.history) if e["mode"] == "train"), None),
            "history_file": paths.relative(history_path),
        },
        "evaluation": evaluation,
        "improvement": {
            "abs_rel_relative_reduction": evaluation[TEST_SET]["relative_change"]["abs_rel"],
            "val_frames_abs_rel_relative_reduction": evaluation[VAL_FRAMES_SET]["relative_change"]["abs_rel"],
        },
        "target": target_result(evaluation),
        "poses": run.poses,
        "checkpoints": {"untrained": paths.relative(run.untrained_weights), "trained": paths.relative(run.weights)},
        "figures": {"training_curve": paths.relative(curve), "predictions": paths.relative(predictions)},
        "timings_s": timer.seconds,
    }
    results["seed_distribution"] = place_run(results, load_reference())
    atomic_write_text(json.dumps(results, indent=2) + "\n", paths.out / "results.json")
    atomic_write_text(results_markdown(results), paths.out / "results.md")
    return results
