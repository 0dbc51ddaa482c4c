"""Reading camera intrinsics files (``cam.txt``: a 3 x 3 pixel matrix, one row a line).

A matrix that cannot serve as intrinsics is a one-line :class:`GasMonoError`
naming the file, when the data set is built: not numbers, not 3 x 3, NaN or
infinity, a focal length that is zero or negative, or a last row other than
``0 0 1``. (Left alone, such a matrix fails later, inside a loader worker,
as ``LinAlgError: SVD did not converge`` without naming the file, or trains
on nonsense.)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from utils import GasMonoError

__all__ = ["intrinsics_problem", "read_pixel_intrinsics"]


def intrinsics_problem(K: np.ndarray) -> str | None:
    """What makes ``K`` unusable as ``3 x 3`` pixel intrinsics, or None when it is fine."""
    if K.shape != (3, 3):
        return f"shape {K.shape}, expected 3x3"
    if not np.isfinite(K).all():
        return "NaN or infinity in the matrix"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return f"focal lengths fx = {K[0, 0]:g}, fy = {K[1, 1]:g}; both must be positive"
    if not np.allclose(K[2], (0.0, 0.0, 1.0)):
        return f"last row {K[2].tolist()}, expected [0, 0, 1]"
    return None


def read_pixel_intrinsics(path: str | os.PathLike) -> np.ndarray:
    """The ``3 x 3`` float64 pixel intrinsics in a text file, checked.

    Raises:
        GasMonoError: an unreadable file or an unusable matrix (see the module notes), naming the file.
    """
    path = Path(path)
    try:
        K = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as error:
        raise GasMonoError(f"cannot read intrinsics {path}: {error}") from None
    problem = intrinsics_problem(K)
    if problem is not None:
        raise GasMonoError(f"intrinsics {path}: {problem}")
    return K
