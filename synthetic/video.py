"""A rendered room as a video file, to try the own-video path (``tools/prepare_sequences.py``) on data made here."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from synthetic.renderer import render
from synthetic.rooms import TEXTURED, make_room
from synthetic.trajectories import make_trajectory
from utils import GasMonoError, nyu_pixel_intrinsics

__all__ = ["render_video"]


def render_video(path: str | Path, num_frames: int = 20, height: int = 240, width: int = 320, seed: int = 3,
                 fps: float = 10.0) -> np.ndarray:
    """Render a handheld walk through one textured room into an MPEG-4 video.

    Returns:
        the ``3 x 3`` pixel intrinsics of the rendering camera (NYUv2's at this size).
    """
    room = make_room(seed, TEXTURED)
    poses = make_trajectory(room, num_frames, np.random.default_rng([seed, 7]))
    intrinsics = nyu_pixel_intrinsics(height, width)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise GasMonoError(f"OpenCV cannot write the video {path}")
    try:
        for extrinsics in poses:
            rgb, _ = render(room, extrinsics, intrinsics, height, width)
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return intrinsics
