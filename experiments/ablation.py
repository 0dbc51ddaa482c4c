"""The seeded ablation: the demo's data and schedule trained once per variant and seed.

The data are rendered and the coarse poses computed once (reused when the
folder already holds them, as for the demo); every variant of
:data:`VARIANTS` is trained on the same split with each training seed
``settings.seed + k`` (``k < seeds``; the data keep ``settings.seed``) and
evaluated on the validation frames of the training rooms, on the held-out
rooms and, for its poses, against the rendered ground truth. The untrained
network of every depth encoder and seed (the same initialisation as the
trained runs) is evaluated too. Statistics over the seeds and the
comparisons are in :mod:`experiments.ablation_report`. A new variant is one
entry of :data:`VARIANTS` (components on or off, plus any ``train.py`` flags).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Sequence

from experiments.ablation_report import ablation_markdown, summarize_runs
from experiments.data import prepare_data
from experiments.pipeline import RunResult, machine_info, train_and_evaluate
from experiments.report import finite_metrics
from experiments.reproducibility import determinism_record
from experiments.settings import TEST_SET, VAL_FRAMES_SET, DemoPaths, DemoSettings, StageTimer
from utils import DEFAULT_DEPTH_ENCODER, GasMonoError, atomic_write_text


@dataclass(frozen=True)
class Variant:
    """One ablation run: which GasMono components are on, and any further ``train.py`` flags."""

    name: str
    use_coarse_pose: bool
    use_self_distillation: bool
    description: str
    extra_flags: tuple[str, ...] = ()

    @property
    def depth_encoder(self) -> str:
        """The depth encoder the variant trains (``--depth_encoder`` among its flags, else GasMono's)."""
        flags = list(self.extra_flags)
        positions = [index for index, flag in enumerate(flags) if flag == "--depth_encoder"]
        return flags[positions[-1] + 1] if positions else DEFAULT_DEPTH_ENCODER


VARIANTS = (
    Variant("full", True, True, "coarse poses + self-distillation (GasMono)"),
    Variant("no_coarse_poses", False, True, "without coarse poses (PoseNet on raw frames)"),
    Variant("no_self_distillation", True, False, "without self-distillation"),
    Variant("neither", False, False, "without both (Monodepth2 losses, MPViT depth net)"),
    Variant("resnet18", True, True, "the full recipe with a ResNet-18 depth encoder (from scratch)",
            ("--depth_encoder", "resnet18")),
)
VARIANT_NAMES = tuple(variant.name for variant in VARIANTS)


def select_variants(names: Sequence[str] | None) -> tuple[Variant, ...]:
    """The variants of :data:`VARIANTS` named (all of them for None), in the table's order;
    ``full`` is always included (the reference of the comparisons).

    Raises:
        GasMonoError: an unknown name.
    """
    if names is None:
        return VARIANTS
    unknown = sorted(set(names) - set(VARIANT_NAMES))
    if unknown:
        raise GasMonoError(f"unknown variant(s) {', '.join(unknown)} (choose from {', '.join(VARIANT_NAMES)})")
    return tuple(variant for variant in VARIANTS if variant.name in {"full", *names})


def run_record(paths: DemoPaths, run: RunResult) -> dict:
    """What the ablation keeps of one run: abs_rel on both sets, the network poses, time and checkpoint."""
    metrics = {eval_set: finite_metrics(result, run.name) for eval_set, result in run.evaluation.items()}
    return {
        "val_frames_abs_rel": metrics[VAL_FRAMES_SET]["abs_rel"],
        "test_abs_rel": metrics[TEST_SET]["abs_rel"],
        "poses": {kind: {"rotation_deg": entry["rotation_deg"]["median"],
                         "translation_direction_deg": entry["translation_direction_deg"]["median"],
                         "scale_std_log": entry["scale_consistency"]["std_log"]}
                  for kind, entry in run.poses["kinds"].items()},
        "train_seconds": run.seconds["training"],
        "batches": run.steps,
        "weights": paths.relative(run.weights),
    }


def run_ablation(out: str | os.PathLike, settings: DemoSettings, variants: Sequence[Variant] = VARIANTS,
                 seeds: int = 1, preset: str = "full", progress: bool = True) -> dict:
    """Train and evaluate every variant with ``seeds`` training seeds; returns the ``ablation.json`` content
    (also written, with ``ablation.md``, under ``out``); ``preset`` names the settings' preset in the results."""
    if seeds < 1:
        raise GasMonoError(f"--seeds must be at least 1, got {seeds}")
    paths = DemoPaths.create(out)
    load_start = [round(value, 2) for value in os.getloadavg()]
    timer = StageTimer()
    start = time.perf_counter()
    prepared = prepare_data(paths, settings, timer, progress)
    training_seeds = [settings.seed + index for index in range(seeds)]
    # per variant (per depth encoder for the untrained networks) and training seed (a string, as in the JSON)
    runs: dict[str, dict[str, dict]] = {variant.name: {} for variant in variants}
    untrained: dict[str, dict[str, dict]] = {}
    for seed in training_seeds:
        for variant in variants:
            encoder = variant.depth_encoder
            first_of_encoder = str(seed) not in untrained.get(encoder, {})
            run = train_and_evaluate(paths, settings, f"{variant.name}_seed{seed}", timer, variant.use_coarse_pose,
                                     variant.use_self_distillation, evaluate_untrained=first_of_encoder,
                                     progress=progress, extra_flags=variant.extra_flags, seed=seed)
            runs[variant.name][str(seed)] = run_record(paths, run)
            if first_of_encoder:
                metrics = {eval_set: finite_metrics(result, f"untrained {encoder}")
                           for eval_set, result in run.untrained_evaluation.items()}
                untrained.setdefault(encoder, {})[str(seed)] = {
                    "val_frames_abs_rel": metrics[VAL_FRAMES_SET]["abs_rel"],
                    "test_abs_rel": metrics[TEST_SET]["abs_rel"],
                    "weights": paths.relative(run.untrained_weights),
                }
    timer.seconds["total"] = round(time.perf_counter() - start, 2)

    coarse = next(iter(next(iter(runs.values())).values()))["poses"]["coarse"]
    results = {
        "preset": preset,
        "quick": preset == "quick",
        "settings": dataclasses.asdict(settings),
        "seeds": training_seeds,
        "machine": {**machine_info(settings), "load_average_start": load_start,
                    "load_average_end": [round(value, 2) for value in os.getloadavg()]},
        "determinism": determinism_record(settings, training_seeds),
        "splits": prepared["splits"],
        "colmap_total": prepared["colmap"]["summary"]["total"],
        "coarse_poses": coarse,
        "variants": {variant.name: {"description": variant.description,
                                    "use_coarse_pose": variant.use_coarse_pose,
                                    "use_self_distillation": variant.use_self_distillation,
                                    "depth_encoder": variant.depth_encoder,
                                    "extra_flags": list(variant.extra_flags),
                                    "runs": runs[variant.name]} for variant in variants},
        "untrained": {encoder: {"runs": by_seed} for encoder, by_seed in untrained.items()},
        "timings_s": timer.seconds,
    }
    results.update(summarize_runs(results))
    atomic_write_text(json.dumps(results, indent=2) + "\n", paths.out / "ablation.json")
    atomic_write_text(ablation_markdown(results), paths.out / "ablation.md")
    return results
