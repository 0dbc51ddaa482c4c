"""Accuracy of relative camera poses against ground truth.

Ground truth is a sequence's ``poses.txt``: one line per frame (frames numbered
from 0), 16 numbers, the row-major 4x4 world-to-camera matrix ``E_i``. A
relative pose ``T_{t->s}`` (target camera to source camera) is compared with
``E_s inv(E_t)`` from the ground truth:

- rotation error: the angle of ``R_est R_gt^T``, in degrees;
- translation direction error: the angle between the two translation vectors,
  in degrees (monocular SfM has an arbitrary scale per sequence, so only the
  direction is comparable).

:func:`relative_pose_errors` works on any ``N x 4 x 4`` arrays of relative
poses; :func:`evaluate_coarse_poses` applies it to coarse-pose files (both
stored transforms ``T_{t->t-1}`` and ``T_{t->t+1}`` of every item) and
:func:`format_pose_table` prints the statistics per scene.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from coarse_poses.pose_files import (
    SOURCE_FRAME_SLOTS,
    list_pose_frames,
    pose_file_name,
    read_coarse_poses,
    relative_pose,
)
from utils import GasMonoError

GT_POSES_FILE = "poses.txt"
METRIC_NAMES = ("rotation_deg", "translation_direction_deg")


def load_gt_poses(path: str | os.PathLike) -> np.ndarray:
    """Read ``poses.txt`` -> ``N x 4 x 4`` world-to-camera matrices (float64).

    Raises :class:`GasMonoError` naming the file and line when a line does not
    hold 16 numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"ground-truth poses not found: {path}")
    poses = []
    with open(path, "r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                values = [float(value) for value in line.split()]
            except ValueError:
                raise GasMonoError(f"{path}, line {number}: not a list of numbers") from None
            if len(values) != 16:
                raise GasMonoError(f"{path}, line {number}: expected 16 numbers (a 4x4 matrix), got {len(values)}")
            poses.append(np.array(values).reshape(4, 4))
    if not poses:
        raise GasMonoError(f"{path}: no poses")
    return np.stack(poses)


def rotation_error_deg(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Angle of ``R_est R_gt^T`` in degrees for two ``4 x 4`` (or ``3 x 3``) poses.

    Uses ``atan2(sin, cos)`` so that tiny angles keep their precision.
    """
    difference = estimate[:3, :3] @ truth[:3, :3].T
    skew = difference - difference.T
    sine = 0.5 * np.linalg.norm([skew[2, 1], skew[0, 2], skew[1, 0]])
    cosine = 0.5 * (np.trace(difference) - 1.0)
    return float(np.degrees(np.arctan2(sine, cosine)))


def translation_direction_error_deg(estimate: np.ndarray, truth: np.ndarray, eps: float = 1e-12) -> float:
    """Angle in degrees between the translations of two ``4 x 4`` poses
    (``nan`` when either translation is zero)."""
    a, b = estimate[:3, 3].astype(np.float64), truth[:3, 3].astype(np.float64)
    if np.linalg.norm(a) * np.linalg.norm(b) < eps:
        return float("nan")
    return float(np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b)), float(a @ b))))


def statistics(values: Sequence[float]) -> dict[str, float | None]:
    """``median``, ``mean``, ``max`` and ``count`` of the finite values (``None`` when none)."""
    finite = np.asarray([value for value in values if np.isfinite(value)], dtype=np.float64)
    if finite.size == 0:
        return {"median": None, "mean": None, "max": None, "count": 0}
    return {
        "median": float(np.median(finite)),
        "mean": float(finite.mean()),
        "max": float(finite.max()),
        "count": int(finite.size),
    }


def relative_pose_errors(estimates: np.ndarray, truths: np.ndarray) -> dict[str, list[float]]:
    """Per pose, the rotation and translation-direction errors (degrees) of ``N x 4 x 4``
    estimated relative poses against ``N x 4 x 4`` true ones (keys :data:`METRIC_NAMES`)."""
    if len(estimates) != len(truths):
        raise ValueError(f"{len(estimates)} estimates against {len(truths)} true poses")
    return {
        "rotation_deg": [rotation_error_deg(estimate, truth) for estimate, truth in zip(estimates, truths)],
        "translation_direction_deg": [
            translation_direction_error_deg(estimate, truth) for estimate, truth in zip(estimates, truths)
        ],
    }


def scene_errors(cpose_scene_dir: Path, gt_poses: np.ndarray) -> dict[str, list[float]]:
    """Errors of every stored transform of one scene against ``gt_poses`` (``N x 4 x 4``
    world-to-camera), frame by frame in the slot order of the pose files."""
    estimates, truths = [], []
    for frame in list_pose_frames(cpose_scene_dir):
        path = Path(cpose_scene_dir) / pose_file_name(frame)
        sources = [frame + offset for offset in SOURCE_FRAME_SLOTS]
        if min(sources) < 0 or max(sources) >= len(gt_poses):
            raise GasMonoError(f"{path}: frame {frame} needs ground-truth poses {frame - 1} and {frame + 1}")
        for estimate, source in zip(read_coarse_poses(path).astype(np.float64), sources):
            estimates.append(estimate)
            truths.append(relative_pose(gt_poses[frame], gt_poses[source]))
    return relative_pose_errors(np.asarray(estimates), np.asarray(truths))


def evaluate_coarse_poses(
    cpose_dir: str | os.PathLike, data_path: str | os.PathLike, scenes: Sequence[str] | None = None
) -> dict:
    """Rotation and translation-direction errors of coarse poses, per scene and overall.

    Args:
        cpose_dir: root of ``<scene>/<frame:04d>.npy`` coarse poses.
        data_path: root of the sequences, each with its ``poses.txt``.
        scenes: scenes to evaluate; default every scene folder of ``cpose_dir``
            holding pose files.

    Returns:
        ``{"scenes": {scene: {metric: {median, mean, max, count}, "items": n}},
        "overall": {...}}``, errors in degrees.
    """
    cpose_dir, data_path = Path(cpose_dir), Path(data_path)
    if not cpose_dir.is_dir():
        raise GasMonoError(f"coarse-pose folder not found: {cpose_dir}")
    if not data_path.is_dir():
        raise GasMonoError(f"data path not found: {data_path}")
    if scenes is None:
        scenes = sorted(child.name for child in cpose_dir.iterdir() if child.is_dir() and list_pose_frames(child))
    if not scenes:
        raise GasMonoError(f"no coarse-pose files under {cpose_dir}")

    report: dict = {"scenes": {}}
    overall: dict[str, list[float]] = {name: [] for name in METRIC_NAMES}
    for scene in scenes:
        errors = scene_errors(cpose_dir / scene, load_gt_poses(data_path / scene / GT_POSES_FILE))
        entry = {name: statistics(errors[name]) for name in METRIC_NAMES}
        entry["items"] = len(errors["rotation_deg"]) // len(SOURCE_FRAME_SLOTS)
        report["scenes"][scene] = entry
        for name in METRIC_NAMES:
            overall[name].extend(errors[name])
    report["overall"] = {name: statistics(overall[name]) for name in METRIC_NAMES}
    report["overall"]["items"] = len(overall["rotation_deg"]) // len(SOURCE_FRAME_SLOTS)
    return report


def format_pose_table(report: dict) -> str:
    """A plain-text table of :func:`evaluate_coarse_poses` output."""
    header = ["scene", "items", "rot med", "rot mean", "rot max", "tdir med", "tdir mean", "tdir max"]

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = []
    for scene, entry in [*report["scenes"].items(), ("overall", report["overall"])]:
        rotation, direction = entry["rotation_deg"], entry["translation_direction_deg"]
        rows.append(
            [scene, str(entry["items"])]
            + [number(rotation[key], 3) for key in ("median", "mean", "max")]
            + [number(direction[key], 2) for key in ("median", "mean", "max")]
        )
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))

    separator = "-" * len(line(header))
    return "\n".join(
        ["errors in degrees (rot: relative rotation, tdir: translation direction)", line(header), separator]
        + [line(row) for row in rows[:-1]]
        + [separator, line(rows[-1])]
    )
