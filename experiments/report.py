"""What a demo or ablation run shows: figures, metric comparisons, markdown tables, the console summary.

The progress of the stages is logged under the ``experiments`` logger;
:func:`configure_console` shows it on standard output (warnings on standard
error), as the demo's command line does.
"""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from evaluation.metrics import DEPTH_METRIC_NAMES
from evaluation.protocols import resolve_protocol
from experiments.reproducibility import describe_determinism
from experiments.seed_distribution import placement_lines
from experiments.settings import (
    EVAL_PROTOCOLS,
    EVAL_SET_TITLES,
    EVAL_SPLIT,
    TARGET_ABS_REL_REDUCTION,
    TARGET_SET,
    TEST_SET,
    VAL_FRAMES_SET,
    DemoPaths,
    DemoSettings,
)
from inference import DepthEstimator
from utils import sec_to_hm_str

logger = logging.getLogger(__name__)

HIGHER_IS_BETTER = ("a1", "a2", "a3")
WARNING_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_console() -> None:
    """Show the progress of the experiments (``experiments.*`` loggers, INFO) as plain lines on
    standard output, and warnings (of every logger) with their level and origin on standard error."""
    logging.basicConfig(level=logging.WARNING, format=WARNING_FORMAT)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(lambda record: record.levelno < logging.WARNING)
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    warnings.setFormatter(logging.Formatter(WARNING_FORMAT))
    experiments = logging.getLogger("experiments")
    experiments.setLevel(logging.INFO)
    experiments.propagate = False
    experiments.handlers = [console, warnings]


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_training_curve(history: Sequence[dict], path: Path, settings: DemoSettings) -> Path:
    """Train loss per step, validation losses, epoch boundaries and the start of
    the self-distillation passes (and the end of the distillation weight ramp);
    on a second axis the median-scaled ``val/abs_rel`` of the validation
    batches, where the history has it."""
    train = [entry for entry in history if entry["mode"] == "train"]
    val = [entry for entry in history if entry["mode"] == "val"]
    figure = Figure(figsize=(9, 4.5), dpi=110)
    axes = figure.add_subplot()
    if train:
        steps = np.array([entry["step"] for entry in train])
        losses = np.array([entry["loss"] for entry in train])
        axes.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=0.8, label="train loss (per step)")
        window = max(1, min(15, len(train) // 8))
        axes.plot(steps, _moving_average(losses, window), color="tab:blue", linewidth=1.8,
                  label=f"train loss ({window}-step mean)")
    if val:
        axes.plot([entry["step"] for entry in val], [entry["loss"] for entry in val], "o", color="tab:orange",
                  markersize=4, label="validation loss (one batch)")
    first_step = {}
    for entry in train:
        first_step.setdefault(entry["epoch"], entry["step"])
    for epoch, step in sorted(first_step.items())[1:]:
        axes.axvline(step - 0.5, color="gray", linestyle=":", linewidth=0.8)
    for epoch, step in sorted(first_step.items()):
        axes.annotate(f"ep {epoch}", (step, 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="gray",
                      va="top", ha="left")
    if settings.iiters > 1 and settings.iiters_start_epoch in first_step:
        step = first_step[settings.iiters_start_epoch]
        axes.axvline(step - 0.5, color="tab:red", linewidth=1.5,
                     label=f"self-distillation: {settings.iiters} passes per batch from here")
    if settings.wpp_ramp_epochs in first_step:
        axes.axvline(first_step[settings.wpp_ramp_epochs] - 0.5, color="tab:green", linestyle="--",
                     linewidth=1.2, label=f"distillation weight reaches wpp = {settings.wpp:g}")
    handles, labels = axes.get_legend_handles_labels()
    depth = [entry for entry in val if "val/abs_rel" in entry]
    if depth:
        depth_axes = axes.twinx()
        steps = np.array([entry["step"] for entry in depth])
        abs_rel = np.array([entry["val/abs_rel"] for entry in depth])
        depth_axes.plot(steps, abs_rel, "s", color="tab:purple", markersize=3, alpha=0.45)
        window = max(1, min(5, len(depth) // 4))
        depth_axes.plot(steps, _moving_average(abs_rel, window), color="tab:purple", linewidth=1.6,
                        label=f"validation abs_rel (median-scaled, {window}-batch mean)")
        depth_axes.set_ylabel("validation abs_rel", color="tab:purple")
        depth_axes.tick_params(axis="y", colors="tab:purple")
        depth_handles, depth_labels = depth_axes.get_legend_handles_labels()
        handles, labels = handles + depth_handles, labels + depth_labels
    axes.set_xlabel("step (batch)")
    axes.set_ylabel("total loss")
    axes.set_title("GasMono training")
    axes.grid(alpha=0.3)
    axes.legend(handles, labels, fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    return path


def _median_scaled(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, clamp: tuple[float, float]) -> np.ndarray:
    ratio = np.median(gt[valid]) / max(float(np.median(pred[valid])), 1e-12)
    return np.clip(pred * ratio, *clamp)


def _example_rows(folder: Path, eval_set: str, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``count`` evenly spaced ``(label, image, gt)`` of an NYUv2-layout test folder."""
    names = [line.split()[1] for line in (folder / "test_files.txt").read_text(encoding="utf-8").splitlines()]
    gt_depths = np.load(folder / "gt_depths.npz")["data"]
    indices = np.unique(np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int))
    rows = []
    for index in indices:
        with Image.open(folder / "color" / f"{names[index]}.png") as image:
            rows.append((f"{eval_set} {names[index]}", np.asarray(image.convert("RGB")), gt_depths[index]))
    return rows


def plot_predictions(paths: DemoPaths, checkpoints: dict[str, Path], path: Path, num_test: int = 4,
                     num_val_frames: int = 2, device: str = "cpu") -> Path:
    """A grid with one row per image (``num_test`` views of the held-out rooms,
    then ``num_val_frames`` validation frames of the training rooms): the
    input, the depth of each checkpoint (median-scaled to the ground truth, as
    in the evaluation) and the ground truth, with one colour scale per row."""
    rows = []
    for eval_set, folder, count in ((TEST_SET, paths.test_data, num_test),
                                    (VAL_FRAMES_SET, paths.val_frames_data, num_val_frames)):
        protocol = resolve_protocol(EVAL_SPLIT, EVAL_PROTOCOLS[eval_set])
        rows += [(*row, protocol) for row in _example_rows(folder, eval_set, count)] if count else []
    estimators = {label: DepthEstimator.from_checkpoint(folder, device=device) for label, folder in checkpoints.items()}
    columns = ["input", *checkpoints, "ground truth"]
    figure = Figure(figsize=(2.6 * len(columns) + 0.6, 2.1 * len(rows)), dpi=100)
    grid = figure.subplots(len(rows), len(columns), squeeze=False)
    for row, (label, image, gt, protocol) in enumerate(rows):
        valid = protocol.valid_mask(gt)
        low, high = np.percentile(gt[valid], [1, 99])
        panels = [_median_scaled(estimator.predict(image), gt, valid, protocol.clamp)
                  for estimator in estimators.values()]
        panels.append(np.where(gt > 0, gt, np.nan))
        grid[row, 0].imshow(image)
        for column, panel in enumerate(panels, start=1):
            shown = grid[row, column].imshow(panel, cmap="magma_r", vmin=low, vmax=high)
        for column, axes in enumerate(grid[row]):
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(columns[column], fontsize=9)
        grid[row, 0].set_ylabel(label, fontsize=8)
        figure.colorbar(shown, ax=grid[row, -1], fraction=0.046, pad=0.03, label="m")
    figure.suptitle("depth (median-scaled to the ground truth), colour scale shared per row; "
                    "test: held-out rooms, val_frames: training rooms", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    return path


# ---------------------------------------------------------------------------
# Metrics, tables and summaries
# ---------------------------------------------------------------------------


def metric_changes(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Relative change of every metric, positive = better (lower errors, higher accuracies)."""
    changes = {}
    for name in DEPTH_METRIC_NAMES:
        old, new = before[name], after[name]
        if name in HIGHER_IS_BETTER:
            changes[name] = (new - old) / old if old else math.inf
        else:
            changes[name] = (old - new) / old if old else 0.0
    return changes


def markdown_metrics_table(rows: dict[str, dict[str, float]], extra: dict[str, dict[str, str]] | None = None) -> str:
    """A markdown table, one row per label, the depth metrics as columns (plus ``extra`` columns)."""
    extra = extra or {}
    extra_names = list(next(iter(extra.values()), {}))
    header = ["model", *DEPTH_METRIC_NAMES, *extra_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, metrics in rows.items():
        cells = [label, *(f"{metrics[name]:.4f}" for name in DEPTH_METRIC_NAMES),
                 *(extra.get(label, {}).get(name, "") for name in extra_names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _colmap_markdown(colmap: dict) -> str:
    lines = ["| scene | frames | registered | items | seconds | status |", "|---|---|---|---|---|---|"]
    for record in colmap["summary"]["sequences"]:
        status = record["status"] if record["status"] == "ok" else f"{record['status']}: {record['reason']}"
        lines.append(f"| {record['scene']} | {record['frames']} | {record['registered']} | "
                     f"{record['items_written']} | {record['seconds']:.1f} | {status} |")
    total = colmap["summary"]["total"]
    lines.append(f"| total | {total['frames']} | {total['registered']} | {total['items_written']} | "
                 f"{total['seconds']:.1f} | {total['ok']} ok, {total['failed']} failed |")
    accuracy = colmap["pose_accuracy"]
    if accuracy is not None:
        overall = accuracy["overall"]
        lines.append("")
        lines.append(f"Coarse poses vs rendered ground truth ({overall['items']} items): relative rotation error "
                     f"median {overall['rotation_deg']['median']:.3f} deg, translation direction error median "
                     f"{overall['translation_direction_deg']['median']:.2f} deg.")
    return "\n".join(lines)


def describe_abs_rel_change(reduction: float) -> str:
    """``"12.3% lower"`` / ``"4.5% higher"`` for a relative reduction of abs_rel (positive = lower)."""
    return f"{100 * abs(reduction):.1f}% {'lower' if reduction >= 0 else 'higher'}"


def target_result(evaluation: dict[str, dict]) -> dict:
    """Whether abs_rel on :data:`TARGET_SET` fell by :data:`TARGET_ABS_REL_REDUCTION`:
    ``{"eval_set", "required_reduction", "reduction", "reached"}``."""
    reduction = evaluation[TARGET_SET]["relative_change"]["abs_rel"]
    return {"eval_set": TARGET_SET, "required_reduction": TARGET_ABS_REL_REDUCTION, "reduction": reduction,
            "reached": reduction >= TARGET_ABS_REL_REDUCTION}


def _metrics_section(evaluation: dict, eval_set: str) -> list[str]:
    entry = evaluation[eval_set]
    change = entry["relative_change"]["abs_rel"]
    return [
        f"### {EVAL_SET_TITLES[eval_set]}",
        "",
        f"{entry['num_images']} images, protocol {entry['protocol']} ({entry['protocol_description']}), "
        "per-image median scaling.",
        "",
        markdown_metrics_table({"untrained (same initialisation)": entry["untrained"],
                                "trained (GasMono, all components)": entry["trained"]}),
        "",
        f"abs_rel {describe_abs_rel_change(change)} after training ({entry['untrained']['abs_rel']:.4f} -> "
        f"{entry['trained']['abs_rel']:.4f}); a1 {entry['untrained']['a1']:.4f} -> {entry['trained']['a1']:.4f}.",
        "",
    ]


def results_markdown(results: dict) -> str:
    """``results.md`` of a demo run."""
    settings = results["settings"]
    dataset = results["dataset"]
    lines = [
        f"# GasMono demo on synthetic indoor data (preset {results['preset']})",
        "",
        f"Trained from scratch on {results['splits']['train_items']} items with coarse poses "
        f"({len(dataset['train_scenes'])} rendered sequences of {settings['frames_per_scene']} frames, "
        f"{len(dataset['low_texture_scenes'])} of them low-texture) at {settings['height']}x{settings['width']}, "
        f"batch {settings['batch_size']}, {settings['num_epochs']} epochs ({results['training']['steps']} batches) "
        f"on {settings['device']}.",
        "",
        "## Depth metrics",
        "",
        *_metrics_section(results["evaluation"], VAL_FRAMES_SET),
        *_metrics_section(results["evaluation"], TEST_SET),
        *placement_lines(results["seed_distribution"]),
        "",
        "![predictions](predictions.png)",
        "",
        "## Poses against the rendered ground truth",
        "",
        pose_markdown(results["poses"]),
        "",
        "## Training",
        "",
        f"All components on: coarse poses with AlignNet (www {settings['www']}), residual PoseNet, iterative "
        f"self-distillation (wpp {settings['wpp']} reached after {settings['wpp_ramp_epochs']} epochs, "
        f"{settings['iiters']} passes per batch from epoch {settings['iiters_start_epoch']}). "
        f"Learning rates {settings['learning_rate']:g} (encoder) / {settings['decoder_learning_rate']:g} (rest), "
        f"smoothness {settings['disparity_smoothness']:g}, augmentation {settings['augmentation']}.",
        "",
        "![training curve](training_curve.png)",
        "",
        "`train.py` flags: `" + " ".join(results["training"]["flags"]) + "`",
        "",
        "## Coarse poses (COLMAP)",
        "",
        _colmap_markdown(results["colmap"]),
        "",
        "## Wall time per stage",
        "",
        "| stage | seconds |",
        "|---|---|",
        *(f"| {stage} | {seconds:.1f} |" for stage, seconds in results["timings_s"].items()),
        "",
        f"Machine: {results['machine']['cpu_count']} CPU cores, {results['machine']['torch_threads']} torch threads; "
        f"load average (1, 5, 15 min) at start {results['machine']['load_average_start']}, "
        f"at the end {results['machine']['load_average_end']}.",
        "",
        "## Repeatability",
        "",
        describe_determinism(results["determinism"]) + ".",
        "",
        "| stage | repeatable | how |",
        "|---|---|---|",
        *(f"| {stage} | {'yes' if entry['repeatable'] else 'no'} | {entry['how']} |"
          for stage, entry in results["determinism"]["stages"].items()),
        "",
    ]
    return "\n".join(lines)


def pose_markdown(report: dict) -> str:
    """A markdown table of :func:`evaluation.poses.evaluate_poses` output, one row per kind, and what it means."""
    lines = ["| kind | pairs | rotation error median (deg) | translation direction error median (deg) | "
             "scale consistency (std of log ratio) | what |", "|---|---|---|---|---|---|"]
    for kind, entry in report["kinds"].items():
        lines.append(f"| {kind} | {entry['rotation_deg']['count']} | {entry['rotation_deg']['median']:.3f} | "
                     f"{entry['translation_direction_deg']['median']:.2f} | "
                     f"{entry['scale_consistency']['std_log']:.3f} | {report['descriptions'][kind]} |")
    lines += ["", f"{report['pairs']} pairs (every item with coarse poses, both neighbours) of "
              f"{len(report['scenes'])} sequences, at the network's {report['height']}x{report['width']}. "
              "Scale consistency: the standard deviation of log(|t_est| / |t_gt|) over all pairs of all sequences, "
              "which one global scale does not change; each COLMAP reconstruction has its own scale, AlignNet's "
              "refinement should bring the poses to the depth network's single scale."]
    return "\n".join(lines)


def finite_metrics(evaluation: dict, label: str) -> dict[str, float]:
    """The depth metrics of an evaluation result as floats; a non-finite one is logged with ``label``."""
    metrics = {name: float(evaluation["metrics"][name]) for name in DEPTH_METRIC_NAMES}
    bad = [name for name, value in metrics.items() if not math.isfinite(value)]
    if bad:
        logger.warning("%s: non-finite metrics %s", label, bad)
    return metrics


def compare_evaluations(untrained: dict[str, dict], trained: dict[str, dict]) -> dict[str, dict]:
    """Per evaluation set: protocol, image count, both metric sets and their relative change."""
    comparison = {}
    for eval_set, result in trained.items():
        before = finite_metrics(untrained[eval_set], f"untrained on {eval_set}")
        after = finite_metrics(result, f"trained on {eval_set}")
        comparison[eval_set] = {
            "description": EVAL_SET_TITLES[eval_set],
            "protocol": result["protocol"],
            "protocol_description": result["protocol_definition"]["description"],
            "num_images": result["num_images"],
            "untrained": before,
            "trained": after,
            "relative_change": metric_changes(before, after),
            "scale_ratios": {"untrained": untrained[eval_set]["scale_ratios"], "trained": result["scale_ratios"]},
        }
    return comparison


def format_final_summary(results: dict) -> str:
    """A few lines: untrained vs trained abs_rel and a1 per evaluation set, and wall time per stage."""
    lines = ["", "== summary ==", f"{'':<22} {'abs_rel':>8} {'a1':>8}"]
    for eval_set, entry in results["evaluation"].items():
        lines.append(f"{entry['description']}:")
        for model in ("untrained", "trained"):
            lines.append(f"  {model:<20} {entry[model]['abs_rel']:>8.4f} {entry[model]['a1']:>8.4f}")
        lines.append(f"  abs_rel {describe_abs_rel_change(entry['relative_change']['abs_rel'])} after training")
    lines.append("poses (median rotation / translation-direction error, scale consistency):")
    for kind, entry in results["poses"]["kinds"].items():
        lines.append(f"  {kind:<20} {entry['rotation_deg']['median']:.3f} deg, "
                     f"{entry['translation_direction_deg']['median']:.2f} deg, "
                     f"std log scale {entry['scale_consistency']['std_log']:.3f}")
    lines += [
        *placement_lines(results["seed_distribution"]),
        describe_determinism(results["determinism"]),
        f"training: {results['training']['steps']} batches",
        "wall time: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in results["timings_s"].items()
                                  if stage != "total"),
        f"total {sec_to_hm_str(results['timings_s']['total'])} "
        f"(load average at start {results['machine']['load_average_start'][0]:.2f})",
    ]
    return "\n".join(lines)
