"""Camera trajectories through a room: smooth handheld-like sequences and single test views.

Poses are ``4 x 4`` world-to-camera matrices ``E`` (world frame: see :mod:`synthetic.rooms`).
"""
from __future__ import annotations

import numpy as np

from synthetic.rooms import Room

_STEP_RANGE = (0.038, 0.052)  # camera translation between consecutive frames (m)


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation: yaw about the vertical ``y`` axis, then pitch
    about the camera ``x`` axis (positive looks up), then roll about the optical axis."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_yaw @ r_pitch @ r_roll


def world_to_camera(rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """4 x 4 world-to-camera extrinsics from a camera-to-world rotation and the camera centre."""
    extrinsics = np.eye(4)
    extrinsics[:3, :3] = rotation.T
    extrinsics[:3, 3] = -rotation.T @ centre
    return extrinsics


def _smooth_jitter(rng: np.random.Generator, num_frames: int, std: float) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, num_frames + 8)
    kernel = np.hanning(9)
    smooth = np.convolve(noise, kernel / np.sqrt((kernel**2).sum()), mode="valid")[:num_frames]
    return std * smooth


def _equal_steps(path: np.ndarray, step: float, count: int) -> np.ndarray | None:
    """``count x 3`` points of a densely sampled ``path`` (``N x 3``), each the first one at least ``step``
    from the previous; ``None`` when the path ends first."""
    chosen = [0]
    for _ in range(count - 1):
        start = chosen[-1]
        ahead = np.nonzero(np.linalg.norm(path[start + 1:] - path[start], axis=1) >= step)[0]
        if ahead.size == 0:
            return None
        chosen.append(start + 1 + int(ahead[0]))
    return path[chosen]


def make_trajectory(room: Room, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth handheld-like trajectory: ``num_frames x 4 x 4`` world-to-camera matrices.

    The centre follows a curve made of slow sinusoids inside :meth:`Room.safe_region`,
    walked in steps of 3.8-5.2 cm per frame (equal chords along the curve, so the
    camera never stalls where the curve slows down or turns: short baselines make the
    translation direction of SfM poses unreliable, and COLMAP needs about 8
    degrees of triangulation angle between frames ten apart to start a model
    of a room 3 m away). The view pans (yaw) at 1.5-3.5 degrees per frame with
    swaying pitch and roll and a little jitter, so consecutive frames differ by
    a few degrees of rotation and a few centimetres of translation.
    """
    lo, hi = room.safe_region()
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    amplitudes = rng.uniform(0.6, 0.9, (3, 2)) * np.array([0.6, 0.4]) * half[:, None]
    omegas = rng.uniform(0.5, 1.5, (3, 2))
    phases = rng.uniform(0, 2 * np.pi, (3, 2))

    def position(t: np.ndarray) -> np.ndarray:
        return centre[None] + (amplitudes[None] * np.sin(omegas[None] * t[:, None, None] + phases[None])).sum(-1)

    step = float(rng.uniform(*_STEP_RANGE))
    one_period = position(np.linspace(0.0, 2 * np.pi, 2001))
    mean_speed = np.linalg.norm(np.diff(one_period, axis=0), axis=1).sum() / (2 * np.pi)
    duration = 2.0 * num_frames * step / max(mean_speed, 1e-6)
    while True:
        centres = _equal_steps(position(np.linspace(0.0, duration, 64 * num_frames + 1)), step, num_frames)
        if centres is not None:
            break
        duration *= 2

    frames = np.arange(num_frames)
    yaw_rate = np.deg2rad(rng.uniform(1.5, 3.5)) * rng.choice([-1.0, 1.0])
    yaw = rng.uniform(0, 2 * np.pi) + yaw_rate * frames
    yaw += np.deg2rad(15) * np.sin(0.08 * frames + rng.uniform(0, 2 * np.pi))
    pitch = np.deg2rad(rng.uniform(-12, 0)) + np.deg2rad(8) * np.sin(0.11 * frames + rng.uniform(0, 2 * np.pi))
    roll = np.deg2rad(3) * np.sin(0.07 * frames + rng.uniform(0, 2 * np.pi))
    yaw += _smooth_jitter(rng, num_frames, np.deg2rad(0.3))
    pitch += _smooth_jitter(rng, num_frames, np.deg2rad(0.3))
    centres += np.stack([_smooth_jitter(rng, num_frames, 0.002) for _ in range(3)], 1)
    centres = np.clip(centres, lo, hi)
    return np.stack([world_to_camera(rotation_from_euler(*angles), c) for *angles, c in zip(yaw, pitch, roll, centres)])


def random_view(room: Room, rng: np.random.Generator) -> np.ndarray:
    """One random 4 x 4 world-to-camera pose for a test image.

    The camera stands near one end of the room's longer horizontal axis and
    looks across the room (yaw within 30 degrees of the far wall's direction),
    tilted 5-25 degrees down, so that test views span the room's depth range
    (floor, far wall, furniture) as NYUv2's test images do.
    """
    lo, hi = room.safe_region()
    centre = rng.uniform(lo, hi)
    axis = 0 if room.size[0] >= room.size[2] else 2
    near_low_end = bool(rng.integers(2))
    fraction = rng.uniform(0.0, 0.2) if near_low_end else rng.uniform(0.8, 1.0)
    centre[axis] = lo[axis] + (hi[axis] - lo[axis]) * fraction
    target = (lo + hi) / 2
    target[axis] = room.size[axis] if near_low_end else 0.0
    yaw = np.arctan2(target[0] - centre[0], target[2] - centre[2]) + np.deg2rad(rng.uniform(-30, 30))
    pitch, roll = np.deg2rad(rng.uniform(-25, -5)), np.deg2rad(rng.uniform(-3, 3))
    return world_to_camera(rotation_from_euler(yaw, pitch, roll), centre)
