"""The image sequences COLMAP runs on, and where their coarse poses go.

An :class:`ImageSequence` is the frames of one camera, ``<image_dir>/<frame
number><suffix>``, whose coarse poses are written to ``<cpose_dir>/<scene>``.
Its pixel intrinsics come from, in this order: ``intrinsics`` (known from a
calibration file, e.g. KITTI's), ``<image_dir>/cam.txt`` when present, else
``unknown_intrinsics``: ``"nyu"`` (NYUv2's camera, the release's layout) or
``"estimate"`` (COLMAP refines one focal length shared by all frames; the
estimate is written back to ``<image_dir>/cam.txt``).

:func:`find_sequences` finds the sequences of the NYUv2 layout
(``<data_path>/<scene>/<frame:06d>.jpg``); other layouts list their own (see
``MonoDataset.image_sequences`` in :mod:`datasets.mono_dataset`). A library
over :mod:`utils` only, read by :mod:`datasets` too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils import GasMonoError

__all__ = [
    "IMAGE_SUFFIX",
    "INTRINSICS_FILE",
    "UNKNOWN_INTRINSICS",
    "ImageSequence",
    "list_frames",
    "find_sequences",
    "intrinsics_problem",
    "read_intrinsics_file",
]

IMAGE_SUFFIX = ".jpg"
INTRINSICS_FILE = "cam.txt"
UNKNOWN_INTRINSICS = ("nyu", "estimate")
"""What a sequence without known intrinsics and without ``cam.txt`` uses."""


def list_frames(image_dir: str | os.PathLike, suffix: str = IMAGE_SUFFIX) -> list[Path]:
    """The ``*<suffix>`` frames of a folder, sorted by frame number.

    Raises :class:`GasMonoError` when a frame name is not an integer.
    """
    frames = []
    for path in Path(image_dir).glob(f"*{suffix}"):
        if not path.stem.isdigit():
            raise GasMonoError(f"frame name is not a frame number: {path}")
        frames.append(path)
    return sorted(frames, key=lambda path: int(path.stem))


@dataclass(frozen=True, eq=False)
class ImageSequence:
    """The frames of one camera and the folder of their coarse poses.

    Attributes:
        scene: ``<cpose_dir>/<scene>`` receives the poses (may hold ``/``, e.g.
            KITTI's ``<date>/<drive>/image_02``); also the name in summaries.
        image_dir: folder of the frames ``<frame number><suffix>``.
        suffix: image file suffix.
        intrinsics: ``3 x 3`` pixel K when known from calibration, else None.
        unknown_intrinsics: without ``intrinsics`` and ``cam.txt``: ``"nyu"`` or ``"estimate"``.
    """

    scene: str
    image_dir: Path
    suffix: str = IMAGE_SUFFIX
    intrinsics: np.ndarray | None = None
    unknown_intrinsics: str = "nyu"

    def __post_init__(self) -> None:
        if self.unknown_intrinsics not in UNKNOWN_INTRINSICS:
            raise GasMonoError(
                f"unknown_intrinsics must be one of {UNKNOWN_INTRINSICS}, got {self.unknown_intrinsics!r}")

    @property
    def intrinsics_file(self) -> Path:
        """``<image_dir>/cam.txt``: read when present, written when estimated."""
        return Path(self.image_dir) / INTRINSICS_FILE

    def frames(self) -> list[Path]:
        """The frames, sorted by frame number."""
        return list_frames(self.image_dir, self.suffix)


def find_sequences(
    data_path: str | os.PathLike, suffix: str = IMAGE_SUFFIX, unknown_intrinsics: str = "nyu"
) -> list[ImageSequence]:
    """The sub-folders of ``data_path`` holding ``*<suffix>`` frames (the NYUv2
    layout), sorted by name; each one's scene is its folder name.

    Raises :class:`GasMonoError` when ``data_path`` is missing or holds none.
    """
    root = Path(data_path)
    if not root.is_dir():
        raise GasMonoError(f"data path not found: {root}")
    folders = sorted(child for child in root.iterdir() if child.is_dir() and any(child.glob(f"*{suffix}")))
    if not folders:
        nested = sorted(child for child in root.glob(f"*/*/*{suffix}"))
        hint = f" (did you mean {nested[0].parent.parent}?)" if nested else ""
        raise GasMonoError(f"no sequences (sub-folders with {suffix} frames) under {root}{hint}")
    return [ImageSequence(folder.name, folder, suffix, unknown_intrinsics=unknown_intrinsics) for folder in folders]


def intrinsics_problem(K: np.ndarray) -> str | None:
    """What makes ``K`` unusable as ``3 x 3`` pinhole pixel intrinsics, or None when it is fine."""
    if K.shape != (3, 3):
        return f"shape {K.shape}, expected 3x3"
    if not np.isfinite(K).all():
        return "NaN or infinity in the matrix"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return f"focal lengths fx = {K[0, 0]:g}, fy = {K[1, 1]:g}; both must be positive"
    if not np.allclose(K[2], (0.0, 0.0, 1.0)):
        return f"last row {K[2].tolist()}, expected [0, 0, 1]"
    if K[1, 0] != 0 or K[0, 1] != 0:
        return "not a pinhole matrix [[fx 0 cx] [0 fy cy] [0 0 1]] (skew is not supported)"
    return None


def read_intrinsics_file(path: str | os.PathLike) -> np.ndarray:
    """The ``3 x 3`` float64 pixel pinhole K in a text file (``np.savetxt`` layout; ``#`` starts a comment).

    A matrix that cannot serve as intrinsics (not numbers, not 3 x 3, NaN or infinity, a focal
    length that is zero or negative, a last row other than ``0 0 1``, skew) is a one-line
    :class:`GasMonoError` naming the file, when a data set is built (left alone, a NaN matrix fails
    later inside a loader worker as ``LinAlgError: SVD did not converge``, naming no file).
    """
    path = Path(path)
    try:
        matrix = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as error:
        raise GasMonoError(f"cannot read intrinsics {path}: {error}") from None
    problem = intrinsics_problem(matrix)
    if problem is not None:
        raise GasMonoError(f"intrinsics {path}: {problem}")
    return matrix
