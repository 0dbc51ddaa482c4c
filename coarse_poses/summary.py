"""Summaries of a COLMAP run over many sequences: totals, a plain-text table, ``summary.json``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from coarse_poses.colmap import SequenceResult
from utils import atomic_write_text

SUMMARY_FILE = "summary.json"


def summarize(results: Sequence[SequenceResult]) -> dict:
    """Per-sequence records and totals (frames, registered %, items, seconds per frame)."""
    frames = sum(result.frames for result in results)
    registered = sum(result.registered for result in results)
    seconds = sum(result.seconds for result in results)
    return {
        "sequences": [result.to_dict() for result in results],
        "total": {
            "sequences": len(results),
            "ok": sum(result.status == "ok" for result in results),
            "failed": sum(result.status != "ok" for result in results),
            "frames": frames,
            "registered": registered,
            "registered_percent": round(100.0 * registered / frames, 2) if frames else 0.0,
            "items_written": sum(result.items_written for result in results),
            "seconds": round(seconds, 3),
            "seconds_per_frame": round(seconds / frames, 4) if frames else 0.0,
        },
    }


def format_summary_table(results: Sequence[SequenceResult]) -> str:
    """A plain-text table with one row per sequence and a total row."""
    header = ("scene", "frames", "reg", "reg %", "models", "reproj px", "items", "seconds", "status")
    rows = []
    for result in results:
        reproj = "-" if result.mean_reprojection_error is None else f"{result.mean_reprojection_error:.3f}"
        status = result.status if result.status == "ok" else f"{result.status}: {result.reason}"
        rows.append(
            (
                result.scene,
                str(result.frames),
                str(result.registered),
                f"{result.registered_percent:.1f}",
                str(result.models),
                reproj,
                str(result.items_written),
                f"{result.seconds:.1f}",
                status,
            )
        )
    total = summarize(results)["total"]
    rows.append(
        (
            "total",
            str(total["frames"]),
            str(total["registered"]),
            f"{total['registered_percent']:.1f}",
            "",
            "",
            str(total["items_written"]),
            f"{total['seconds']:.1f}",
            f"{total['ok']} ok, {total['failed']} failed, {total['seconds_per_frame']:.2f} s/frame",
        )
    )
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header) - 1)]

    def line(row: Sequence[str]) -> str:
        cells = [cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row[:-1])]
        return "  ".join([*cells, row[-1]])

    separator = "-" * len(line(header))
    return "\n".join([line(header), separator, *(line(row) for row in rows[:-1]), separator, line(rows[-1])])


def write_summary(results: Sequence[SequenceResult], cpose_dir: str | os.PathLike, name: str = SUMMARY_FILE) -> Path:
    """Write ``<cpose_dir>/<name>`` (``summary.json`` by default); returns its path."""
    path = Path(cpose_dir) / name
    atomic_write_text(json.dumps(summarize(results), indent=2) + "\n", path)
    return path
