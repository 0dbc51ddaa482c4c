"""The ablation: the demo's data and schedule trained once per variant, and the comparison.

The data are rendered and the coarse poses computed once (reused when the
folder already holds them, as for the demo); every variant of
:data:`VARIANTS` is trained on the same split from the same initialisation
and evaluated on the held-out test rooms and the validation frames of the
training rooms. A new variant is one entry of :data:`VARIANTS` (components
on or off, plus any ``train.py`` flags).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Sequence

from experiments.data import prepare_data
from experiments.pipeline import RunResult, machine_info, train_and_evaluate
from experiments.report import finite_metrics, markdown_metrics_table, metric_changes
from experiments.settings import TEST_SET, VAL_FRAMES_SET, DemoPaths, DemoSettings, StageTimer
from utils import atomic_write_text


@dataclass(frozen=True)
class Variant:
    """One ablation run: which GasMono components are on, and any further ``train.py`` flags."""

    name: str
    use_coarse_pose: bool
    use_self_distillation: bool
    description: str
    extra_flags: tuple[str, ...] = ()


VARIANTS = (
    Variant("full", True, True, "coarse poses + self-distillation (GasMono)"),
    Variant("no_coarse_poses", False, True, "without coarse poses (PoseNet on raw frames)"),
    Variant("no_self_distillation", True, False, "without self-distillation"),
    Variant("neither", False, False, "without both (Monodepth2 losses, MPViT depth net)"),
)


def run_ablation(out: str | os.PathLike, settings: DemoSettings, variants: Sequence[Variant] = VARIANTS,
                 quick: bool = False, progress: bool = True) -> dict:
    """Train and evaluate every variant; returns the ``ablation.json`` content."""
    paths = DemoPaths.create(out)
    load_start = [round(value, 2) for value in os.getloadavg()]
    timer = StageTimer()
    start = time.perf_counter()
    prepared = prepare_data(paths, settings, timer, progress)
    runs: dict[str, RunResult] = {}
    for index, variant in enumerate(variants):
        runs[variant.name] = train_and_evaluate(paths, settings, variant.name, timer, variant.use_coarse_pose,
                                                variant.use_self_distillation, evaluate_untrained=index == 0,
                                                progress=progress, extra_flags=variant.extra_flags)
    timer.seconds["total"] = round(time.perf_counter() - start, 2)

    untrained = runs[variants[0].name].untrained_evaluation
    untrained_metrics = {eval_set: finite_metrics(result, f"untrained on {eval_set}")
                         for eval_set, result in untrained.items()}
    results = {
        "quick": quick,
        "settings": dataclasses.asdict(settings),
        "machine": {**machine_info(settings), "load_average_start": load_start,
                    "load_average_end": [round(value, 2) for value in os.getloadavg()]},
        "splits": prepared["splits"],
        "colmap_total": prepared["colmap"]["summary"]["total"],
        "protocols": {eval_set: result["protocol"] for eval_set, result in untrained.items()},
        "untrained": untrained_metrics,
        "variants": {},
        "timings_s": timer.seconds,
    }
    for variant in variants:
        run = runs[variant.name]
        metrics = {eval_set: finite_metrics(result, f"{variant.name} on {eval_set}")
                   for eval_set, result in run.evaluation.items()}
        results["variants"][variant.name] = {
            "description": variant.description,
            "use_coarse_pose": variant.use_coarse_pose,
            "use_self_distillation": variant.use_self_distillation,
            "extra_flags": list(variant.extra_flags),
            "metrics": metrics,
            "abs_rel_reduction_vs_untrained": {
                eval_set: metric_changes(untrained_metrics[eval_set], metrics[eval_set])["abs_rel"]
                for eval_set in metrics
            },
            "train_seconds": run.seconds["training"],
            "batches": run.steps,
            "weights": paths.relative(run.weights),
        }
    atomic_write_text(json.dumps(results, indent=2) + "\n", paths.out / "ablation.json")
    atomic_write_text(ablation_markdown(results), paths.out / "ablation.md")
    return results


def comparison_table(results: dict) -> str:
    """Markdown table: the test-set metrics per variant, the change of abs_rel
    against the untrained network (test rooms and validation frames of the
    training rooms) and the training time."""
    names = ("test abs_rel vs untrained", "val frames abs_rel", "val frames vs untrained", "train s", "batches")
    rows = {"untrained": results["untrained"][TEST_SET]}
    extra = {"untrained": dict.fromkeys(names, "")}
    extra["untrained"]["val frames abs_rel"] = f"{results['untrained'][VAL_FRAMES_SET]['abs_rel']:.4f}"
    for name, variant in results["variants"].items():
        change = variant["abs_rel_reduction_vs_untrained"]
        rows[name] = variant["metrics"][TEST_SET]
        extra[name] = {
            "test abs_rel vs untrained": f"{-100 * change[TEST_SET]:+.1f}%",
            "val frames abs_rel": f"{variant['metrics'][VAL_FRAMES_SET]['abs_rel']:.4f}",
            "val frames vs untrained": f"{-100 * change[VAL_FRAMES_SET]:+.1f}%",
            "train s": f"{variant['train_seconds']:.0f}",
            "batches": str(variant["batches"]),
        }
    return markdown_metrics_table(rows, extra)


def ablation_markdown(results: dict) -> str:
    """``ablation.md`` of an ablation run."""
    settings = results["settings"]
    lines = [
        "# GasMono ablation on synthetic indoor data" + (" (quick)" if results["quick"] else ""),
        "",
        f"Same data, split ({results['splits']['train_items']} training items with coarse poses), "
        f"initialisation and schedule for every run: {settings['num_epochs']} epochs at "
        f"{settings['height']}x{settings['width']}, batch {settings['batch_size']}, learning rates "
        f"{settings['learning_rate']:g} / {settings['decoder_learning_rate']:g}; self-distillation with "
        f"{settings['iiters']} passes per batch from epoch {settings['iiters_start_epoch']}. "
        f"Metrics on the held-out test rooms ({results['protocols'][TEST_SET]} protocol, median scaling); the "
        f"validation frames of the training rooms ({results['protocols'][VAL_FRAMES_SET]} protocol) show how "
        "well each run fits the rooms it trained on.",
        "",
        comparison_table(results),
        "",
        "The \"vs untrained\" columns are the relative change of abs_rel (negative: lower, better).",
        "",
        *(f"- `{name}`: {variant['description']}" for name, variant in results["variants"].items()),
        "",
        f"Total wall time {results['timings_s']['total']:.0f} s; load average at start "
        f"{results['machine']['load_average_start']}.",
        "",
    ]
    return "\n".join(lines)
