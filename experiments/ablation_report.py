"""Statistics of the seeded ablation: mean and spread over the seeds, the
comparisons that exceed their spread, and the markdown tables.

The rule: a difference between two means counts as real when
``|mean_a - mean_b| > std_a + std_b``, with the sample standard deviations
(``ddof = 1``) over the seeds. With one seed there is no spread, and no
difference is judged.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["DEPTH_METRICS", "POSE_METRICS", "mean_std", "compare", "summarize_runs", "depth_table", "pose_table",
           "findings", "ablation_markdown"]

# per-run depth metrics and their column titles
DEPTH_METRICS = {"val_frames_abs_rel": "val-frame abs_rel", "test_abs_rel": "held-out abs_rel"}
# per-run pose metrics (of each pose kind) and their column titles
POSE_METRICS = {"rotation_deg": "rotation error median (deg)",
                "translation_direction_deg": "translation direction error median (deg)",
                "scale_std_log": "scale consistency (std of log ratio)"}
REFERENCE = "full"
RULE = ("a difference counts when |mean difference| > the sum of the two standard deviations over the seeds "
        "(sample std); with one seed there is no spread and nothing is judged")


def mean_std(values: Sequence[float]) -> dict:
    """``{"mean", "std", "n", "values"}``; ``std`` (``ddof = 1``) is None for one value."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else None,
            "n": len(array), "values": [float(value) for value in array]}


def compare(a: dict, b: dict) -> dict:
    """``a`` against ``b`` (two :func:`mean_std`): ``{"difference", "relative", "spread", "beyond_spread"}``,
    ``relative = difference / mean_b``; ``beyond_spread`` is None without a spread (one seed)."""
    difference = a["mean"] - b["mean"]
    spread = None if a["std"] is None or b["std"] is None else a["std"] + b["std"]
    return {"difference": difference, "relative": difference / b["mean"] if b["mean"] else math.inf,
            "spread": spread, "beyond_spread": None if spread is None else abs(difference) > spread}


def _pose_reference_kind(kind: str, reference_kinds: Sequence[str]) -> str | None:
    """The kind of the reference run a pose kind is compared with: the same kind,
    else (PoseNet alone) the reference's final pose."""
    if kind in reference_kinds:
        return kind
    return "final" if "final" in reference_kinds else None


def summarize_runs(results: dict) -> dict:
    """Statistics of the runs of :func:`experiments.ablation.run_ablation`:
    ``{"summary": {variant: {metric: mean_std, "poses": {kind: {metric: mean_std}}}},
    "untrained_summary": {encoder: {metric: mean_std}},
    "comparisons": {variant: {metric: {"vs_untrained", "vs_full"}, "poses": {kind: {metric: {"vs_full"}}}}}}``
    (no ``vs_full`` for ``full`` itself; the untrained network is that of the variant's depth encoder)."""
    summary, untrained_summary, comparisons = {}, {}, {}
    for encoder, entry in results["untrained"].items():
        untrained_summary[encoder] = {metric: mean_std([run[metric] for run in entry["runs"].values()])
                                      for metric in DEPTH_METRICS}
    for name, variant in results["variants"].items():
        runs = list(variant["runs"].values())
        kinds = [kind for kind in runs[0]["poses"] if kind != "coarse"]
        summary[name] = {metric: mean_std([run[metric] for run in runs]) for metric in DEPTH_METRICS}
        summary[name]["poses"] = {kind: {metric: mean_std([run["poses"][kind][metric] for run in runs])
                                         for metric in POSE_METRICS} for kind in kinds}
    reference = summary.get(REFERENCE)
    for name, variant in results["variants"].items():
        entry: dict = {"poses": {}}
        for metric in DEPTH_METRICS:
            entry[metric] = {"vs_untrained": compare(summary[name][metric],
                                                     untrained_summary[variant["depth_encoder"]][metric])}
            if reference is not None and name != REFERENCE:
                entry[metric]["vs_full"] = compare(summary[name][metric], reference[metric])
        if reference is not None and name != REFERENCE:
            for kind, metrics in summary[name]["poses"].items():
                reference_kind = _pose_reference_kind(kind, list(reference["poses"]))
                if reference_kind is not None:
                    entry["poses"][kind] = {metric: {"vs_full": compare(metrics[metric],
                                                                        reference["poses"][reference_kind][metric]),
                                                     "full_kind": reference_kind} for metric in POSE_METRICS}
        comparisons[name] = entry
    return {"summary": summary, "untrained_summary": untrained_summary, "comparisons": comparisons}


def _value(stats: dict, digits: int) -> str:
    if stats["std"] is None:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _change(comparison: dict | None) -> str:
    if comparison is None:
        return ""
    verdict = {True: "beyond spread", False: "within spread", None: "one seed"}[comparison["beyond_spread"]]
    return f"{100 * comparison['relative']:+.1f}% ({verdict})"


def depth_table(results: dict) -> str:
    """Markdown: mean ± std of abs_rel per variant on both evaluation sets, their change against the
    untrained network and against ``full`` (with the verdict of the spread rule), and the training time."""
    header = ["variant", "seeds"]
    for title in DEPTH_METRICS.values():
        header += [title, "vs untrained", "vs full"]
    header.append("train s")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for encoder, stats in results["untrained_summary"].items():
        cells = [f"untrained ({encoder})", str(stats["val_frames_abs_rel"]["n"])]
        for metric in DEPTH_METRICS:
            cells += [_value(stats[metric], 4), "", ""]
        lines.append("| " + " | ".join(cells + [""]) + " |")
    for name, variant in results["variants"].items():
        stats, comparison = results["summary"][name], results["comparisons"][name]
        cells = [name, str(stats["val_frames_abs_rel"]["n"])]
        for metric in DEPTH_METRICS:
            cells += [_value(stats[metric], 4), _change(comparison[metric]["vs_untrained"]),
                      _change(comparison[metric].get("vs_full"))]
        cells.append(_value(mean_std([run["train_seconds"] for run in variant["runs"].values()]), 0))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pose_table(results: dict) -> str:
    """Markdown: the coarse poses, then the network poses of every variant (mean ± std over the seeds),
    with the metrics whose difference from ``full`` exceeds the spread."""
    header = ["variant", "kind", *POSE_METRICS.values(), "differs from full beyond the spread"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    coarse = results["coarse_poses"]
    lines.append("| COLMAP | coarse | " + " | ".join(f"{coarse[metric]:.3f}" for metric in POSE_METRICS) + " | |")
    for name in results["variants"]:
        for kind, stats in results["summary"][name]["poses"].items():
            compared = results["comparisons"][name]["poses"].get(kind, {})
            beyond = [metric for metric, entry in compared.items() if entry["vs_full"]["beyond_spread"]]
            judged = any(entry["vs_full"]["beyond_spread"] is not None for entry in compared.values())
            verdict = ", ".join(beyond) if beyond else ("none" if judged else "")
            cells = [name, kind, *(_value(stats[metric], 3) for metric in POSE_METRICS), verdict]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings(results: dict) -> list[str]:
    """One sentence per comparison (depth vs untrained and vs full, poses vs full) whose
    difference exceeds the spread, then the number that do not."""
    beyond, within = [], 0
    for name, entry in results["comparisons"].items():
        for metric, title in DEPTH_METRICS.items():
            stats = results["summary"][name][metric]
            for against, label in (("vs_untrained", "untrained"), ("vs_full", "full")):
                comparison = entry[metric].get(against)
                if comparison is None or comparison["beyond_spread"] is None:
                    continue
                if comparison["beyond_spread"]:
                    beyond.append(f"{name}: {title} {_value(stats, 4)} is {100 * abs(comparison['relative']):.1f}% "
                                  f"{'lower' if comparison['difference'] < 0 else 'higher'} than {label} "
                                  f"(|difference| {abs(comparison['difference']):.4f} > spread "
                                  f"{comparison['spread']:.4f})")
                else:
                    within += 1
        for kind, metrics in entry["poses"].items():
            for metric, compared in metrics.items():
                comparison = compared["vs_full"]
                if comparison["beyond_spread"] is None:
                    continue
                if comparison["beyond_spread"]:
                    beyond.append(f"{name} ({kind} poses): {POSE_METRICS[metric]} differs from full's "
                                  f"{compared['full_kind']} by {comparison['difference']:+.3f} (spread "
                                  f"{comparison['spread']:.3f})")
                else:
                    within += 1
    if not beyond and not within:
        return ["With one seed there is no spread: no difference is judged."]
    return [*beyond, f"{within} other comparisons are within their spread."]


def ablation_markdown(results: dict) -> str:
    """``ablation.md`` of a seeded ablation run."""
    settings = results["settings"]
    lines = [
        f"# GasMono ablation on synthetic indoor data (preset {results['preset']})",
        "",
        f"Same data, split ({results['splits']['train_items']} training items with coarse poses) and schedule for "
        f"every run: {settings['num_epochs']} epochs at {settings['height']}x{settings['width']}, batch "
        f"{settings['batch_size']}, learning rates {settings['learning_rate']:g} / "
        f"{settings['decoder_learning_rate']:g}; self-distillation with {settings['iiters']} passes per batch from "
        f"epoch {settings['iiters_start_epoch']}. Training seeds {', '.join(map(str, results['seeds']))}; each "
        "untrained network has the initialisation of its seed. Mean ± standard deviation over the seeds; "
        "abs_rel with per-image median scaling on the validation frames of the training rooms and on the "
        "held-out rooms.",
        "",
        depth_table(results),
        "",
        "Poses of every item with coarse poses against the rendered ground truth (see `evaluate_pose.py`):",
        "",
        pose_table(results),
        "",
        f"Rule: {RULE}.",
        "",
        *(f"- {line}" for line in findings(results)),
        "",
        *(f"- `{name}`: {variant['description']}" for name, variant in results["variants"].items()),
        "",
        f"Total wall time {results['timings_s']['total']:.0f} s; load average at start "
        f"{results['machine']['load_average_start']}, at the end {results['machine']['load_average_end']}.",
        "",
    ]
    return "\n".join(lines)
