"""Small helpers and names shared by every part of the project.

This module imports nothing of ours, so that every other module may import
it: user-facing errors, the command-line parser and entry point, the names of
the networks in a checkpoint and of the colour augmentations, NYUv2
intrinsics, reading text files, seeding, atomic file writes, devices and
formatting helpers.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import random
import re
import secrets
import sys
from pathlib import Path
from typing import IO, Any, Callable, Iterator, NoReturn, TypeVar

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parent

F = TypeVar("F", bound=Callable[..., Any])

# the networks of a GasMono weights folder, each saved as <name>.pth (the release's names)
MODEL_NAMES = ("encoder", "depth", "pose_encoder", "pose", "trans_encoder", "trans")
# the colour augmentations of the training data (--augmentation)
AUGMENTATIONS = ("strong", "colorjitter", "none")
# the depth encoders (--depth_encoder; built by networks.build_depth_encoder)
DEPTH_ENCODERS = ("mpvit_small", "resnet18", "resnet50")
# the kernel switch (--kernels; see accel.guard)
KERNEL_MODES = ("auto", "reference", "fast")
# GasMono's depth encoder: the default of --depth_encoder, and the encoder of
# an encoder.pth that names none (the release's, and ours before names were saved)
DEFAULT_DEPTH_ENCODER = "mpvit_small"


class GasMonoError(Exception):
    """An error caused by the user's input (a path, a file, an option).

    Command-line entry points print its message on one line, without a
    traceback, and exit with status 2 (see :func:`cli_entry_point`).

    A ``GasMonoError`` raised in a DataLoader worker reaches the main process
    rebuilt from a message that wraps the worker's whole traceback; the
    constructor recovers the original message from it, so that the error
    stays one line wherever it is raised.

    Subclasses may change what the command line prints before the message
    (``prefix``) and its exit status (``exit_code``), e.g. a training stopped
    by a signal after saving a checkpoint.
    """

    prefix = "error"
    exit_code = 2

    def __init__(self, message: str = "") -> None:
        super().__init__(_unwrap_worker_message(str(message)))


_WORKER_MESSAGE = re.compile(r"^Caught (?P<name>\w+) in DataLoader worker")


def _unwrap_worker_message(message: str) -> str:
    """The original message of an error re-raised by a DataLoader worker, or
    ``message`` itself.

    Such a message reads ``Caught GasMonoError in DataLoader worker process 0.``,
    then the worker's traceback, whose last line is
    ``utils.GasMonoError: <original message>``.
    """
    match = _WORKER_MESSAGE.match(message)
    if match is None:
        return message
    _, found, original = message.rpartition(f"{match['name']}: ")
    return original.strip() if found else message


# NYUv2 Kinect intrinsics normalised by the image size: fx and cx by the width,
# fy and cy by the height (518.9 / 640, 325.6 / 640, 519.5 / 480, 253.7 / 480,
# rounded as in the release). Row 0 scales with the width, row 1 with the height.
NYU_NORMALISED_INTRINSICS = np.array(
    [[0.81, 0.0, 0.51, 0.0], [0.0, 1.08, 0.53, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=np.float32
)


def nyu_pixel_intrinsics(height: int, width: int) -> np.ndarray:
    """``3 x 3`` float64 pixel intrinsics of the NYUv2 camera for a ``height x width`` image."""
    K = NYU_NORMALISED_INTRINSICS[:3, :3].astype(np.float64)
    K[0] *= width
    K[1] *= height
    return K


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single ``error: ... (see --help)`` line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def cli_entry_point(main: F) -> F:
    """Decorate a command-line ``main`` so that :class:`GasMonoError` ends the
    program with a one-line ``error: ...`` message and exit status 2 (a
    subclass's own ``prefix`` and ``exit_code`` where it sets them)."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except GasMonoError as error:
            print(f"{error.prefix}: {error}", file=sys.stderr)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The contents of a UTF-8 text file; a missing, unreadable or non-UTF-8
    file is a :class:`GasMonoError` naming it (and the line of a bad byte)."""
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"{what} not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise GasMonoError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise GasMonoError(
            f"{what} {path} line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); is it a text file?"
        ) from None


def readlines(path: str | os.PathLike, what: str = "file") -> list[str]:
    """Return the non-empty lines of a UTF-8 text file, without line endings
    (errors as in :func:`read_text`)."""
    return [line for line in read_text(path, what).splitlines() if line.strip()]


def require_path(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a Path, raising a :class:`GasMonoError` naming
    ``what`` when it does not exist."""
    path = Path(path)
    if not path.exists():
        raise GasMonoError(f"{what} not found: {path}")
    return path


def prepare_output_folder(path: str | os.PathLike, what: str) -> Path:
    """Create the output folder ``path`` (and its parents) if needed and check
    that it can be written to, before any work that ends by writing there.

    Raises:
        GasMonoError: naming ``what`` when ``path`` is a file, cannot be
            created or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GasMonoError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GasMonoError(f"cannot create {what} {path}: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise GasMonoError(f"{what} {path} is not writable")
    return path


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def hidden_sibling(path: Path, suffix: str) -> Path:
    """A fresh hidden name beside ``path``: ``.<name>.<random hex><suffix>``."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"


def _create_temporary_file(path: Path) -> tuple[int, str]:
    """Create ``.<name>.<random>.tmp`` beside ``path`` for writing, with the
    permissions of any new file (``0o666`` less the umask; ``tempfile``
    would give ``0o600``). Returns ``(descriptor, name)``."""
    name = str(hidden_sibling(path, ".tmp"))
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), name


@contextlib.contextmanager
def atomic_output_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a hidden temporary file beside ``path`` for writing and rename it
    over ``path`` when the block ends without error (after an ``fsync``): a
    crash, a kill or a full disk never leaves a half-written file, and an
    existing file stays as it was. The file gets the permissions of any new
    file (``0o666`` less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = _create_temporary_file(path)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(handle, mode, encoding=encoding) as tmp_file:
            yield tmp_file
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write a UTF-8 text file through :func:`atomic_output_file`."""
    with atomic_output_file(path, "w") as handle:
        handle.write(text)


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez_compressed(path, **arrays)`` through :func:`atomic_output_file`."""
    with atomic_output_file(path) as handle:
        np.savez_compressed(handle, **arrays)


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


def resolve_device(device: str | None = "auto", no_cuda: bool = False) -> torch.device:
    """``"auto"``/None: CUDA when available (and not ``no_cuda``), else CPU;
    otherwise the named device (a CUDA request without CUDA is a user error)."""
    if device in (None, "auto"):
        return select_device(no_cuda)
    if no_cuda and device.startswith("cuda"):
        raise GasMonoError(f"--no_cuda contradicts --device {device}")
    return require_cuda_if_requested(device)


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


def cpu_fields() -> dict[str, str]:
    """The first processor's entries of ``/proc/cpuinfo`` (``model name``, ``cpu family``,
    ``model``, ``stepping``, ``flags``, ...); empty where there is no such file."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if key.strip() == "flags":
                break
    except OSError:
        pass
    return fields


def describe_cpu() -> str:
    """The CPU in words, e.g. ``AMD EPYC (family 25, model 17, AVX-512, 2 cores)``: what a speed figure names."""
    fields = cpu_fields()
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = fields.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    details = [f"family {fields['cpu family']}, model {fields['model']}"] if "cpu family" in fields else []
    details += [isa] if isa else []
    details.append(f"{os.cpu_count()} cores")
    return f"{name} ({', '.join(details)})"
