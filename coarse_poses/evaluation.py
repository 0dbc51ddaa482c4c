"""Accuracy of relative camera poses against ground truth.

Ground truth is a sequence's ``poses.txt``: one line per frame (frames numbered
from 0), 16 numbers, the row-major 4x4 world-to-camera matrix ``E_i``. A
relative pose ``T_{t->s}`` (target camera to source camera) is compared with
``E_s inv(E_t)`` from the ground truth:

- rotation error: the angle of ``R_est R_gt^T``, in degrees;
- translation direction error: the angle between the two translation vectors,
  in degrees (monocular SfM has an arbitrary scale per sequence, so only the
  direction is comparable);
- scale consistency: the standard deviation of ``log(|t_est| / |t_gt|)`` over
  all pairs of all sequences. One global scale ``s`` shifts every log ratio by
  ``log s`` and leaves the deviation unchanged, so it measures how far the
  estimates are from sharing one scale: 0 when every pair has the same ratio;
  ``log 2 = 0.69`` for two equal halves, one at scale 2 and one at 0.5. Each
  COLMAP reconstruction has its own scale (large values); AlignNet exists to
  put the poses on the depth network's single scale.

:func:`relative_pose_errors` works on any ``N x 4 x 4`` arrays of relative
poses; :func:`evaluate_coarse_poses` applies it to coarse-pose files (both
stored transforms ``T_{t->t-1}`` and ``T_{t->t+1}`` of every item) and
:func:`format_pose_table` prints the statistics per scene.
:func:`evaluate_pose_kinds` scores several kinds of estimates of the same
pairs (coarse, refined, network poses; :func:`item_poses` gives their ground
truth and coarse poses) and :func:`format_pose_kinds_table` prints one row
per kind.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from coarse_poses.pose_files import (
    SOURCE_FRAME_SLOTS,
    coarse_pose_path,
    list_pose_frames,
    pose_file_name,
    read_coarse_poses,
    relative_pose,
)
from utils import GasMonoError

GT_POSES_FILE = "poses.txt"
METRIC_NAMES = ("rotation_deg", "translation_direction_deg")
SCALE_CONSISTENCY = "scale_consistency"


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


def item_truths(gt_poses: np.ndarray, frame: int, where: str | os.PathLike) -> np.ndarray:
    """``2 x 4 x 4`` true ``T_{t->t-1}``, ``T_{t->t+1}`` of target frame ``frame``
    (the slot order of the pose files) from ``N x 4 x 4`` world-to-camera poses.

    Raises:
        GasMonoError: naming ``where`` when a neighbour has no ground truth.
    """
    sources = [frame + offset for offset in SOURCE_FRAME_SLOTS]
    if min(sources) < 0 or max(sources) >= len(gt_poses):
        raise GasMonoError(f"{where}: frame {frame} needs ground-truth poses {frame - 1} and {frame + 1}")
    return np.stack([relative_pose(gt_poses[frame], gt_poses[source]) for source in sources])


def scene_errors(cpose_scene_dir: Path, gt_poses: np.ndarray) -> dict[str, list[float]]:
    """Errors of every stored transform of one scene against ``gt_poses`` (``N x 4 x 4``
    world-to-camera), frame by frame in the slot order of the pose files."""
    estimates, truths = [], []
    for frame in list_pose_frames(cpose_scene_dir):
        path = Path(cpose_scene_dir) / pose_file_name(frame)
        truths.extend(item_truths(gt_poses, frame, path))
        estimates.extend(read_coarse_poses(path).astype(np.float64))
    return relative_pose_errors(np.asarray(estimates), np.asarray(truths))


def pose_scenes(cpose_dir: str | os.PathLike) -> list[str]:
    """The scene folders of ``cpose_dir`` that hold pose files, sorted.

    Raises:
        GasMonoError: a missing folder, or one without pose files.
    """
    cpose_dir = Path(cpose_dir)
    if not cpose_dir.is_dir():
        raise GasMonoError(f"coarse-pose folder not found: {cpose_dir}")
    scenes = sorted(child.name for child in cpose_dir.iterdir() if child.is_dir() and list_pose_frames(child))
    if not scenes:
        raise GasMonoError(f"no coarse-pose files under {cpose_dir}")
    return scenes


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
    scenes = pose_scenes(cpose_dir) if scenes is None else list(scenes)

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


# ---------------------------------------------------------------------------
# Several kinds of estimates of the same pairs, with scale consistency
# ---------------------------------------------------------------------------


def translation_log_ratios(estimates: np.ndarray, truths: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``log(|t_est| / |t_gt|)`` per pose of ``N x 4 x 4`` arrays (``nan`` where a
    translation is zero)."""
    est_norm = np.linalg.norm(np.asarray(estimates, dtype=np.float64)[:, :3, 3], axis=1)
    gt_norm = np.linalg.norm(np.asarray(truths, dtype=np.float64)[:, :3, 3], axis=1)
    valid = (est_norm > eps) & (gt_norm > eps)
    ratios = np.full(len(est_norm), np.nan)
    ratios[valid] = np.log(est_norm[valid] / gt_norm[valid])
    return ratios


def scale_consistency(log_ratios: Sequence[float]) -> dict[str, float | None]:
    """``{"std_log", "global_scale", "count"}`` of per-pair log scale ratios:
    their standard deviation (invariant to one global scale, see the module
    docstring) and the global scale ``exp(mean)`` that best maps the truth
    onto the estimates, over the finite values."""
    finite = np.asarray([value for value in log_ratios if np.isfinite(value)], dtype=np.float64)
    if finite.size == 0:
        return {"std_log": None, "global_scale": None, "count": 0}
    return {"std_log": float(finite.std()), "global_scale": float(np.exp(finite.mean())), "count": int(finite.size)}


def item_poses(
    data_path: str | os.PathLike, cpose_dir: str | os.PathLike, items: Sequence[tuple[str, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and coarse poses of ``(scene, frame)`` items, two pairs per
    item in the slot order of the pose files (``T_{t->t-1}``, ``T_{t->t+1}``).

    Returns:
        ``(truths, coarse)``, each ``2N x 4 x 4`` float64.

    Raises:
        GasMonoError: a missing or malformed ``poses.txt`` or pose file.
    """
    data_path, cpose_dir = Path(data_path), Path(cpose_dir)
    gt: dict[str, np.ndarray] = {}
    truths, coarse = [], []
    for scene, frame in items:
        if scene not in gt:
            gt[scene] = load_gt_poses(data_path / scene / GT_POSES_FILE)
        path = coarse_pose_path(cpose_dir, scene, frame)
        truths.extend(item_truths(gt[scene], frame, path))
        coarse.extend(read_coarse_poses(path).astype(np.float64))
    return np.asarray(truths), np.asarray(coarse)


def evaluate_pose_kinds(estimates: dict[str, np.ndarray], truths: np.ndarray, pair_scenes: Sequence[str]) -> dict:
    """Score several kinds of estimates of the same relative poses.

    Args:
        estimates: kind -> ``N x 4 x 4`` estimated ``T_{t->s}``.
        truths: ``N x 4 x 4`` true ``T_{t->s}``.
        pair_scenes: the scene of each pair (``N`` names).

    Returns:
        ``{"pairs": N, "scenes": [...], "kinds": {kind: {"rotation_deg": stats,
        "translation_direction_deg": stats, "scale_consistency": {"std_log",
        "global_scale", "count"}, "scene_scales": {scene: exp(mean log ratio)}}}}``
        with the statistics of :func:`statistics` (degrees).
    """
    if len(pair_scenes) != len(truths):
        raise ValueError(f"{len(pair_scenes)} scene names for {len(truths)} pairs")
    scenes = np.asarray(pair_scenes)
    report: dict = {"pairs": len(truths), "scenes": sorted(set(pair_scenes)), "kinds": {}}
    for kind, estimate in estimates.items():
        errors = relative_pose_errors(np.asarray(estimate, dtype=np.float64), truths)
        log_ratios = translation_log_ratios(estimate, truths)
        entry = {name: statistics(errors[name]) for name in METRIC_NAMES}
        entry[SCALE_CONSISTENCY] = scale_consistency(log_ratios)
        entry["scene_scales"] = {scene: scale_consistency(log_ratios[scenes == scene])["global_scale"]
                                 for scene in report["scenes"]}
        report["kinds"][kind] = entry
    return report


def format_pose_kinds_table(report: dict, descriptions: dict[str, str] | None = None) -> str:
    """A plain-text table of :func:`evaluate_pose_kinds` output: one row per kind."""
    descriptions = descriptions or {}
    header = ["kind", "pairs", "rot med (deg)", "tdir med (deg)", "scale std (log)", "what"]

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = [[kind, str(entry["rotation_deg"]["count"]), number(entry["rotation_deg"]["median"], 3),
             number(entry["translation_direction_deg"]["median"], 2),
             number(entry[SCALE_CONSISTENCY]["std_log"], 3), descriptions.get(kind, "")]
            for kind, entry in report["kinds"].items()]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [cell.ljust(widths[i]) if i in (0, len(row) - 1) else cell.rjust(widths[i])
                 for i, cell in enumerate(row)]
        return "  ".join(cells).rstrip()

    return "\n".join([f"{report['pairs']} pairs of {len(report['scenes'])} sequences; scale std: standard "
                      "deviation of log(|t_est| / |t_gt|) over all pairs (0 = one scale for all)",
                      line(header), "-" * len(line(header)), *(line(row) for row in rows)])
