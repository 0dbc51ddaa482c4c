"""Small helpers shared by every part of the project.

This module imports nothing of ours (see the dependency rule in the README):
user-facing errors, reading split files, seeding, atomic file writes and
formatting helpers.
"""
from __future__ import annotations

import functools
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parent

F = TypeVar("F", bound=Callable[..., Any])


class GasMonoError(Exception):
    """An error caused by the user's input (a path, a file, an option).

    Command-line entry points print its message on one line, without a
    traceback, and exit with status 2 (see :func:`cli_entry_point`).
    """


def cli_entry_point(main: F) -> F:
    """Decorate a command-line ``main`` so that :class:`GasMonoError` ends the
    program with a one-line ``error: ...`` message and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except GasMonoError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def readlines(path: str | os.PathLike) -> list[str]:
    """Return the non-empty lines of a text file, without line endings."""
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"file not found: {path}")
    with open(path, "r", encoding="utf-8") as handle:
        return [line.rstrip("\r\n") for line in handle if line.strip()]


def require_path(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a Path, raising a :class:`GasMonoError` naming
    ``what`` when it does not exist."""
    path = Path(path)
    if not path.exists():
        raise GasMonoError(f"{what} not found: {path}")
    return path


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the target folder, then rename it
    over ``path``: a crash never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp_file:
            torch.save(obj, tmp_file)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as tmp_file:
            tmp_file.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez_compressed(path, **arrays)`` through a temporary file in the
    target folder renamed over ``path``: a crash or a full disk never leaves a
    half-written archive behind, and an existing file stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp_file:
            np.savez_compressed(tmp_file, **arrays)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def select_device(no_cuda: bool) -> torch.device:
    """CUDA unless ``no_cuda`` or no GPU is present (then CPU)."""
    if not no_cuda and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def require_cuda_if_requested(device: str) -> torch.device:
    """Parse a device string; a CUDA request without CUDA is a user error."""
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise GasMonoError(f"invalid device {device!r}: {error}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise GasMonoError(f"device {device!r} requested but CUDA is not available on this machine")
    return parsed


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """Rescale a tensor to [0, 1] by its own min and max (for visualisation)."""
    low, high = float(image.min()), float(image.max())
    span = high - low if high != low else 1e5
    return (image - low) / span


def sec_to_hm_str(seconds: float) -> str:
    """Format seconds as ``HHhMMmSSs``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}h{minutes:02d}m{secs:02d}s"
