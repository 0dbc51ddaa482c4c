"""The coarse-pose file format, in one place.

One file per training item, the target frame ``t`` of a scene::

    <cpose_dir>/<scene>/<frame:04d>.npy     float32 (2, 4, 4)
    [0] = T_{t->t-1},  [1] = T_{t->t+1}     (slot of each source frame: SOURCE_FRAME_SLOTS)

``T_{t->s} = E_s inv(E_t)`` from world-to-camera extrinsics ``E``: it maps a
3-D point expressed in the target camera ``t`` into the source camera ``s``,
the transform with which the photometric loss warps frame ``s`` into frame
``t``. An item has a file only when both neighbours have extrinsics. A scene
folder may hold other files too (COLMAP's record and log); only names
``<frame:04d>.npy`` are pose files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from utils import GasMonoError, require_path

COARSE_POSE_SHAPE = (2, 4, 4)
SOURCE_FRAME_SLOTS: dict[int, int] = {-1: 0, 1: 1}
"""Source frame offset (relative to the target frame) -> index of its transform in a pose file."""


def pose_file_name(frame: int) -> str:
    """File name of the coarse poses of target frame ``frame``: ``<frame:04d>.npy``."""
    return f"{frame:04d}.npy"


def coarse_pose_path(cpose_dir: str | os.PathLike, scene: str, frame: int) -> Path:
    """``<cpose_dir>/<scene>/<frame:04d>.npy``."""
    return Path(cpose_dir) / scene / pose_file_name(frame)


def to_homogeneous(matrix: np.ndarray) -> np.ndarray:
    """A ``3 x 4`` ``[R|t]`` or ``4 x 4`` matrix -> ``4 x 4`` float64."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape == (4, 4):
        return matrix
    if matrix.shape != (3, 4):
        raise ValueError(f"expected a 3x4 or 4x4 pose, got shape {matrix.shape}")
    full = np.eye(4)
    full[:3] = matrix
    return full


def relative_pose(extrinsic_target: np.ndarray, extrinsic_source: np.ndarray) -> np.ndarray:
    """``T_{t->s} = E_s inv(E_t)`` from two ``4 x 4`` world-to-camera matrices.

    The result maps a 3-D point in the target camera ``t`` into the source camera ``s``.
    """
    return extrinsic_source @ np.linalg.inv(extrinsic_target)


def coarse_poses_from_extrinsics(extrinsics: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Per-item coarse poses from world-to-camera extrinsics of one model.

    Args:
        extrinsics: frame number -> ``4 x 4`` (or ``3 x 4``) world-to-camera ``E``.

    Returns:
        frame number ``t`` -> float32 ``2 x 4 x 4`` ``[T_{t->t-1}, T_{t->t+1}]``, only
        for frames whose neighbours ``t-1`` and ``t+1`` are both in ``extrinsics``.
    """
    full = {frame: to_homogeneous(matrix) for frame, matrix in extrinsics.items()}
    poses = {}
    for frame in sorted(full):
        if all(frame + offset in full for offset in SOURCE_FRAME_SLOTS):
            transforms = [relative_pose(full[frame], full[frame + offset]) for offset in SOURCE_FRAME_SLOTS]
            poses[frame] = np.stack(transforms).astype(np.float32)
    return poses


def write_coarse_poses(poses: dict[int, np.ndarray], scene_dir: str | os.PathLike) -> int:
    """Write one ``<frame:04d>.npy`` (float32 ``2 x 4 x 4``) per entry of ``poses`` into
    ``scene_dir``; returns how many."""
    scene_dir = Path(scene_dir)
    scene_dir.mkdir(parents=True, exist_ok=True)
    for frame, pose in poses.items():
        if pose.shape != COARSE_POSE_SHAPE:
            raise ValueError(f"coarse poses of frame {frame} have shape {pose.shape}, expected {COARSE_POSE_SHAPE}")
        np.save(scene_dir / pose_file_name(frame), pose.astype(np.float32))
    return len(poses)


def read_coarse_poses(path: str | os.PathLike) -> np.ndarray:
    """Read one coarse-pose file: ``2 x 4 x 4`` float32 ``[T_{t->t-1}, T_{t->t+1}]``.

    Raises:
        GasMonoError: naming the file when it cannot be read as a ``.npy``, has
            another shape, is not floating point or holds NaN or infinity.
    """
    try:
        poses = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise GasMonoError(f"cannot read coarse poses {path}: {error}") from None
    if poses.shape != COARSE_POSE_SHAPE:
        raise GasMonoError(f"coarse poses {path} have shape {poses.shape}, expected {COARSE_POSE_SHAPE}")
    if poses.dtype.kind != "f":
        raise GasMonoError(f"coarse poses {path} have dtype {poses.dtype}, expected float32")
    if not np.isfinite(poses).all():
        raise GasMonoError(f"coarse poses {path} contain non-finite values")
    return poses.astype(np.float32)


def list_pose_frames(scene_dir: str | os.PathLike) -> list[int]:
    """Frame numbers that have a coarse-pose file in ``scene_dir``, sorted (none when
    the folder does not exist)."""
    scene_dir = Path(scene_dir)
    if not scene_dir.is_dir():
        return []
    frames = []
    for name in os.listdir(scene_dir):
        stem = name.removesuffix(".npy")
        if stem.isascii() and stem.isdigit() and pose_file_name(int(stem)) == name:
            frames.append(int(stem))
    return sorted(frames)


def filter_items_with_coarse_poses(
    items: Iterable[tuple[str, int]], cpose_dir: str | os.PathLike
) -> list[tuple[str, int]]:
    """Keep the ``(scene, frame)`` items that have a coarse-pose file, in order.

    Raises:
        GasMonoError: when ``cpose_dir`` does not exist.
    """
    cpose_dir = require_path(cpose_dir, "coarse pose folder")
    frames: dict[str, frozenset[int]] = {}
    kept = []
    for scene, frame in items:
        if scene not in frames:
            frames[scene] = frozenset(list_pose_frames(cpose_dir / scene))
        if frame in frames[scene]:
            kept.append((scene, frame))
    return kept


def list_pose_items(cpose_dir: str | os.PathLike, scenes: Iterable[str]) -> list[tuple[str, int]]:
    """``(scene, frame)`` for every coarse-pose file of the given scenes, in scene order."""
    return [(scene, frame) for scene in scenes for frame in list_pose_frames(Path(cpose_dir) / scene)]
