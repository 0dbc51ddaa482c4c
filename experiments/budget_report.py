"""The budget curve's figure and markdown (the runs: :mod:`experiments.budget_curve`)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from experiments.ablation_report import mean_std

# per evaluation set: the record's key and the panel's title
PANELS = {"val_frames_abs_rel": "training rooms, validation frames", "test_abs_rel": "held-out rooms"}


def _by_budget(results: dict, metric: str, supervised: bool = False) -> dict[int, list[float]]:
    """Budget (batches asked for) -> the metric of each seed's run (or of its supervised reference)."""
    values: dict[int, list[float]] = defaultdict(list)
    for point in results["points"].values():
        record = point["supervised"] if supervised else point
        if record is not None:
            values[point["budget"]].append(record[metric])
    return dict(sorted(values.items()))


def _batches(results: dict) -> dict[int, int]:
    """Budget -> the batches its runs trained (whole epochs)."""
    return {point["budget"]: point["batches"] for point in results["points"].values()}


def plot_budget_curve(results: dict, path: Path) -> Path:
    """abs_rel against training batches (log axis), one panel per evaluation set: every seed's
    self-supervised run (dots) and their mean (line), the supervised reference (dashed) and the
    untrained networks' mean (dotted)."""
    figure = Figure(figsize=(10, 4.2), dpi=110)
    panels = figure.subplots(1, len(PANELS), squeeze=False)[0]
    batches = _batches(results)
    for axes, (metric, title) in zip(panels, PANELS.items()):
        runs = _by_budget(results, metric)
        for budget, values in runs.items():
            axes.plot([batches[budget]] * len(values), values, "o", color="tab:blue", alpha=0.45, markersize=4)
        if runs:
            axes.plot([batches[budget] for budget in runs], [np.mean(values) for values in runs.values()], "-",
                      color="tab:blue", linewidth=1.8, label="GasMono, self-supervised (dots: seeds, line: mean)")
        supervised = _by_budget(results, metric, supervised=True)
        if supervised:
            axes.plot([batches[budget] for budget in supervised], [np.mean(values) for values in supervised.values()],
                      "s--", color="tab:orange", linewidth=1.5, markersize=5,
                      label="same network on ground-truth depth (supervised bound)")
        untrained = [entry[metric] for entry in results["untrained"].values()]
        if untrained:
            axes.axhline(float(np.mean(untrained)), color="gray", linestyle=":", linewidth=1.3,
                         label="untrained (same initialisation)")
        axes.set_xscale("log")
        axes.set_xticks(sorted(set(batches.values())), [str(value) for value in sorted(set(batches.values()))])
        axes.minorticks_off()
        axes.set_xlabel("training batches")
        axes.set_ylabel("abs_rel (median-scaled)")
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3, which="both")
    panels[0].legend(fontsize=7, loc="best")
    figure.suptitle(f"budget curve: the demo's data and schedule (preset {results['preset']}, stretched to more "
                    f"batches), deterministic", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    return path


def _cell(values: list[float], digits: int = 4) -> str:
    """``mean ± std (n=N)`` of ``values`` (empty for none)."""
    if not values:
        return ""
    stats = mean_std(values)
    spread = "" if stats["std"] is None else f" ± {stats['std']:.{digits}f}"
    return f"{stats['mean']:.{digits}f}{spread} (n={stats['n']})"


def budget_markdown(results: dict) -> str:
    """``budget_curve.md``: the table of the points, the untrained reference, the figures."""
    batches = _batches(results)
    epochs = {point["budget"]: point["epochs"] for point in results["points"].values()}
    lines = [
        f"# Budget curve (preset {results['preset']}, deterministic)",
        "",
        f"The demo's data and schedule stretched to whole epochs of {results['batches_per_epoch']} batches "
        "(self-distillation and the distillation-weight ramp at the same fractions of the run, the same total "
        "learning-rate decay); the supervised bound trains the same depth network on the rendered depth for the "
        "same batches (scale-invariant log loss). abs_rel with per-image median scaling, mean ± std over the seeds.",
        "",
        "| batches asked | batches (epochs) | val-frame abs_rel | held-out abs_rel | supervised val-frame | "
        "supervised held-out | train s (self-supervised) |",
        "|---|---|---|---|---|---|---|",
    ]
    for budget in sorted(batches):
        points = [point for point in results["points"].values() if point["budget"] == budget]
        lines.append(
            f"| {budget} | {batches[budget]} ({epochs[budget]}) | "
            f"{_cell([point['val_frames_abs_rel'] for point in points])} | "
            f"{_cell([point['test_abs_rel'] for point in points])} | "
            f"{_cell([point['supervised']['val_frames_abs_rel'] for point in points if point['supervised']])} | "
            f"{_cell([point['supervised']['test_abs_rel'] for point in points if point['supervised']])} | "
            f"{_cell([point['train_seconds'] for point in points], digits=0)} |")
    untrained = list(results["untrained"].values())
    lines += [
        f"| untrained | 0 | {_cell([entry['val_frames_abs_rel'] for entry in untrained])} | "
        f"{_cell([entry['test_abs_rel'] for entry in untrained])} | | | |",
        "",
        "![budget curve](budget_curve.png)",
        "",
        "Prediction grids (untrained, self-supervised, supervised, ground truth):",
        "",
        *(f"- {point['batches']} batches, seed {point['seed']}: [{point['predictions']}]({point['predictions']})"
          for point in results["points"].values()),
        "",
        "A budget as a preset of the full preset's data: one entry of `PRESETS` in `experiments/settings.py`, e.g. "
        + ", ".join(f'`"long": stretched_schedule(DemoSettings(), {epochs[budget]})` ({batches[budget]} batches)'
                    for budget in sorted(batches)) + ".",
        "",
    ]
    return "\n".join(lines)
