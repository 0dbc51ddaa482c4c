"""Checkpoint I/O: release-compatible weight folders (ImageNet initialisation
is in :mod:`networks.pretrained`).

A weights folder (``weights_<epoch>/``) holds one ``torch.save``d state dict per
network, named as in the GasMono release:

* ``encoder.pth`` (the depth encoder, followed by ``height``, ``width``,
  ``use_stereo`` and, ours only, ``depth_encoder``: its name, e.g.
  ``"resnet18"``; a file without it holds MPViT-small), ``depth.pth``,
  ``pose_encoder.pth``, ``pose.pth``, ``trans_encoder.pth``, ``trans.pth``;
* ``adam.pth``: the optimiser state dict (optional);
* ``training_state.pth``: scheduler / epoch / step / RNG states (optional,
  ours; the release has no such file).

Folders are written atomically: everything goes into a hidden staging
sibling ``.weights_<epoch>.<random>.tmp`` that is renamed into place at the
end (an existing folder is first moved to ``.weights_<epoch>.<random>.old``).
A process killed during a save leaves those behind;
:func:`remove_stale_staging` clears them. Weights with a NaN or an infinity
are never written (:class:`NonFiniteWeightsError`).
"""
from __future__ import annotations

import logging
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn

from utils import DEFAULT_DEPTH_ENCODER, MODEL_NAMES, GasMonoError, hidden_sibling

__all__ = [
    "MODEL_NAMES",
    "ENCODER_EXTRA_KEYS",
    "OPTIMIZER_FILE",
    "TRAINING_STATE_FILE",
    "NonFiniteWeightsError",
    "CheckpointWriteError",
    "non_finite_entries",
    "describe_non_finite",
    "remove_stale_staging",
    "save_weights_folder",
    "load_weights_folder",
    "load_optimizer_state",
    "load_training_state",
    "read_depth_encoder_name",
    "read_file",
    "read_state_dict",
    "load_strict",
    "shape_text",
]

logger = logging.getLogger(__name__)

# plain python values stored after the tensors of encoder.pth
ENCODER_EXTRA_KEYS = ("height", "width", "use_stereo", "depth_encoder")
OPTIMIZER_FILE = "adam.pth"
TRAINING_STATE_FILE = "training_state.pth"
# how many keys of each kind a mismatch message names
MAX_KEYS_IN_MESSAGE = 3


# --------------------------------------------------------------------------
# reading and writing single files
# --------------------------------------------------------------------------


def _first_sentence(error: BaseException) -> str:
    """``<type>: <first sentence of the message>`` (torch's load errors go on
    for several sentences of advice)."""
    text = str(error).strip().splitlines()
    if not text:
        return type(error).__name__
    sentence, _, _ = text[0].partition(". ")
    return f"{type(error).__name__}: {sentence.rstrip('.')}"


def _numpy_safe_globals() -> list[Any]:
    """Globals needed to unpickle NumPy arrays (e.g. ``np.random.get_state()``)
    with ``weights_only=True``."""
    reconstruct = np.ndarray((0,)).__reduce__()[0]
    dtype_classes = [type(np.dtype(kind)) for kind in (np.uint32, np.int64, np.float32, np.float64, np.bool_)]
    return [reconstruct, np.ndarray, np.dtype, *dtype_classes]


def read_file(path: Path, what: str, weights_only: bool = True) -> Any:
    """``torch.load`` on CPU with a one-line :class:`GasMonoError` on failure.

    A file that the weights-only unpickler refuses holds objects other than
    tensors and plain values: it is reported as not being a checkpoint of
    ours or the release's (torch's own advice, to load it with
    ``weights_only=False``, would run whatever code the file contains).
    """
    if not path.is_file():
        raise GasMonoError(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError:
        raise GasMonoError(
            f"cannot read {what} {path}: it is corrupt or holds objects other than tensors and plain values "
            "(not a file written by this project or the GasMono release)"
        ) from None
    except Exception as error:  # corrupt, truncated or foreign file
        raise GasMonoError(f"cannot read {what} {path} ({_first_sentence(error)}; truncated or corrupt?)") from None


def read_state_dict(path: Path, what: str) -> dict[str, Any]:
    state = read_file(path, what)
    if not isinstance(state, Mapping):
        raise GasMonoError(f"{path}: expected a state dict, found {type(state).__name__}")
    return dict(state)


def _write(obj: Any, path: Path) -> None:
    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


class CheckpointWriteError(GasMonoError, OSError):
    """A file of a weights folder could not be written (disk full, I/O error,
    permissions); ``path`` is the file as it would have been named in the
    finished folder. Nothing of the folder was kept. Also an ``OSError``, as
    what :func:`save_weights_folder` raised before it had one line to say."""

    def __init__(self, message: str = "", path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


def _write_failure(error: BaseException, where: Path) -> str:
    """Why a write failed, in a few words, with the free space left there
    (``torch.save`` reports a full disk as ``PytorchStreamWriter failed
    writing file ...``, without the system's reason)."""
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    else:
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        if "PytorchStreamWriter" in reason:
            reason = reason[reason.find("PytorchStreamWriter"):]
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return reason
    return f"{reason}; {free / 1e6:.0f} MB free on that disk"


def _mismatch_message(path: Path, missing: list[str], unexpected: list[str], shape: list[str]) -> str:
    """One line naming the file, the number of mismatches and the first keys."""
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shape)):
        if keys:
            shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
            more = f" (+{len(keys) - MAX_KEYS_IN_MESSAGE} more)" if len(keys) > MAX_KEYS_IN_MESSAGE else ""
            parts.append(f"{label}: {shown}{more}")
    total = len(missing) + len(unexpected) + len(shape)
    return (
        f"{path}: checkpoint does not match the network ({total} mismatched keys; "
        + "; ".join(parts)
        + ") - was it saved from another architecture?"
    )


def shape_text(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def _compare(model: nn.Module, state: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, shape-mismatched) keys of ``state`` against ``model``."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shape = [
        f"{key} {shape_text(state[key])} vs {shape_text(expected[key])}"
        for key in expected
        if key in state
        and (not isinstance(state[key], torch.Tensor) or state[key].shape != expected[key].shape)
    ]
    return missing, unexpected, shape


def load_strict(model: nn.Module, state: Mapping[str, Any], path: Path) -> None:
    missing, unexpected, shape = _compare(model, state)
    if missing or unexpected or shape:
        raise GasMonoError(_mismatch_message(path, missing, unexpected, shape))
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------
# weights folders
# --------------------------------------------------------------------------


STAGING_SUFFIX = ".tmp"
BACKUP_SUFFIX = ".old"


class NonFiniteWeightsError(GasMonoError):
    """Weights or optimiser state with a NaN or an infinity, refused by
    :func:`save_weights_folder`; ``names`` lists the tensors concerned."""

    def __init__(self, message: str = "", names: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.names = list(names)


def _non_finite_keys(state: Mapping[str, Any], prefix: str) -> list[str]:
    return [
        f"{prefix}{key}"
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def non_finite_entries(
    models: Mapping[str, nn.Module], optimizer_state: dict | None = None, include_buffers: bool = True
) -> list[str]:
    """Names of the state-dict tensors (parameters and, with
    ``include_buffers``, buffers such as BatchNorm statistics) and optimiser
    state tensors holding a NaN or an infinity, e.g.
    ``["encoder.stem.0.conv.weight", "adam.state.12.exp_avg_sq"]``; empty when
    everything is finite.

    One exact pass over every tensor (0.19 s for GasMono's 54 M parameters,
    their buffers and 108 M AdamW moments on two CPU cores; 0.06 s for the
    parameters alone), meant for save time and diagnostics, not for every
    training step. A norm-based check would be faster but reports finite
    values above about 1e19 as infinite.
    """
    names = []
    for name, model in models.items():
        state = model.state_dict() if include_buffers else dict(model.named_parameters())
        names += _non_finite_keys(state, f"{name}.")
    if optimizer_state is not None:
        for index, entry in optimizer_state.get("state", {}).items():
            names += _non_finite_keys(entry, f"adam.state.{index}.")
    return names


def describe_non_finite(names: list[str]) -> str:
    """``"<n> tensor(s) with NaN or infinity: <the first names>"`` for messages."""
    shown = ", ".join(names[:MAX_KEYS_IN_MESSAGE])
    more = f" (+{len(names) - MAX_KEYS_IN_MESSAGE} more)" if len(names) > MAX_KEYS_IN_MESSAGE else ""
    return f"{len(names)} tensor(s) with NaN or infinity: {shown}{more}"


def remove_stale_staging(models_dir: str | os.PathLike) -> list[str]:
    """Clear what interrupted saves left in a run's ``models`` folder.

    Staging folders (``.weights_<epoch>.<random>.tmp``) and temporary files
    (``.<name>.<random>.tmp``) are deleted. A backup
    ``.weights_<epoch>.<random>.old`` is deleted when ``weights_<epoch>``
    exists and renamed back to ``weights_<epoch>`` when it does not (the
    process died between the two renames of a replacement).

    Call it only when no other process is saving into ``models_dir``.

    Returns:
        one description per entry handled, e.g. ``"removed .weights_3.9f2c.tmp"``.
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    handled = []
    for entry in sorted(models_dir.glob(f".*{STAGING_SUFFIX}")):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        handled.append(f"removed {entry.name}")
    for entry in sorted(models_dir.glob(f".weights_*{BACKUP_SUFFIX}")):
        original = models_dir / entry.name[1:].split(".")[0]
        if original.exists():
            shutil.rmtree(entry)
            handled.append(f"removed {entry.name}")
        else:
            os.rename(entry, original)
            handled.append(f"restored {original.name} from {entry.name}")
    return handled


def _replace_folder(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, replacing an existing ``target`` folder.

    The old folder is first moved aside and deleted only after the new one is
    in place; if the second rename fails the old folder is put back.
    """
    if target.exists() and not target.is_dir():
        raise GasMonoError(f"cannot save weights: {target} exists and is not a folder")
    if not target.exists():
        os.rename(new, target)
        return
    backup = hidden_sibling(target, BACKUP_SUFFIX)
    os.rename(target, backup)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def save_weights_folder(
    folder: str | os.PathLike,
    models: Mapping[str, nn.Module],
    height: int,
    width: int,
    use_stereo: bool,
    optimizer_state: dict | None = None,
    extra_state: dict | None = None,
    depth_encoder: str = DEFAULT_DEPTH_ENCODER,
) -> Path:
    """Save networks (and optionally optimiser / training state) as a weights folder.

    Args:
        folder: destination, e.g. ``<log_dir>/<model_name>/models/weights_3``;
            an existing folder is replaced as a whole.
        models: networks keyed by names from :data:`MODEL_NAMES`; each is saved
            as ``<name>.pth`` (its ``state_dict()``, release layout).
        height, width, use_stereo: stored after the tensors of ``encoder.pth``.
        optimizer_state: written to ``adam.pth`` when given.
        extra_state: written to ``training_state.pth`` when given (scheduler,
            epoch, step, RNG states; tensors, NumPy arrays and python values).
        depth_encoder: the name ``models["encoder"]`` was built with
            (:func:`networks.build_depth_encoder`), stored in ``encoder.pth``.

    Returns:
        The folder path.

    Raises:
        NonFiniteWeightsError: a network or the optimiser state holds a NaN or
            an infinity; nothing is written.
        CheckpointWriteError: a file could not be written (disk full, ...);
            the staging folder is removed, an earlier ``folder`` stays.
    """
    folder = Path(folder)
    unknown = [name for name in models if name not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model names {unknown}; expected names from {MODEL_NAMES}")
    non_finite = non_finite_entries(models, optimizer_state)
    if non_finite:
        raise NonFiniteWeightsError(f"{folder} not saved: {describe_non_finite(non_finite)}", non_finite)
    staging = hidden_sibling(folder, STAGING_SUFFIX)
    current = folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        for name in MODEL_NAMES:
            if name not in models:
                continue
            state = models[name].state_dict()
            if name == "encoder":
                state["height"] = int(height)
                state["width"] = int(width)
                state["use_stereo"] = bool(use_stereo)
                state["depth_encoder"] = str(depth_encoder)
            current = folder / f"{name}.pth"
            _write(state, staging / current.name)
        for file_name, state in ((OPTIMIZER_FILE, optimizer_state), (TRAINING_STATE_FILE, extra_state)):
            if state is not None:
                current = folder / file_name
                _write(state, staging / file_name)
        current = folder
        _replace_folder(staging, folder)
    except (OSError, RuntimeError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise CheckpointWriteError(f"cannot write {current} ({_write_failure(error, folder.parent)})",
                                   current) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved weights to %s", folder)
    return folder


def load_weights_folder(
    folder: str | os.PathLike,
    models: Mapping[str, nn.Module],
    names: Iterable[str] | None = None,
    depth_encoder: str | None = None,
) -> dict[str, Any]:
    """Load networks from a weights folder, strictly on the network keys.

    Args:
        folder: a folder written by :func:`save_weights_folder` or by the release.
        models: networks keyed by :data:`MODEL_NAMES` names.
        names: which of them to load (default: all of ``models``).
        depth_encoder: the name ``models["encoder"]`` was built with; when
            given, ``encoder.pth`` must hold that encoder.

    Returns:
        ``{"height": int, "width": int, "use_stereo": bool, "depth_encoder":
        str}`` read from ``encoder.pth`` when the encoder was loaded (the
        entries present; ``depth_encoder`` always, ``"mpvit_small"`` for a
        file without a name), else an empty dict.

    Raises:
        GasMonoError: missing folder or file, unreadable file, a checkpoint
            of another depth encoder than ``depth_encoder``, or one whose keys
            / shapes differ from the network (one-line message with the file,
            the number of mismatches and the first mismatched keys).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GasMonoError(f"weights folder not found: {folder}")
    names = list(models) if names is None else list(names)
    for name in names:
        if name not in MODEL_NAMES:
            raise GasMonoError(f"unknown model name {name!r} (expected one of {', '.join(MODEL_NAMES)})")
        if name not in models:
            raise ValueError(f"no network given for {name!r}")
    extras: dict[str, Any] = {}
    for name in names:
        path = folder / f"{name}.pth"
        state = read_state_dict(path, f"{name} checkpoint")
        if name == "encoder":
            extras = {key: state.pop(key) for key in ENCODER_EXTRA_KEYS if key in state}
            extras.setdefault("depth_encoder", DEFAULT_DEPTH_ENCODER)
            if depth_encoder is not None and extras["depth_encoder"] != depth_encoder:
                raise GasMonoError(f"{path} holds the {extras['depth_encoder']} depth encoder, not {depth_encoder}")
        load_strict(models[name], state, path)
        logger.info("loaded %s from %s", name, path)
    return extras


def read_depth_encoder_name(folder: str | os.PathLike) -> str:
    """The name of the depth encoder in a weights folder's ``encoder.pth``
    (``"mpvit_small"`` for a file without one, e.g. the release's).

    Raises:
        GasMonoError: a missing or unreadable file, or a name that is not a string.
    """
    path = Path(folder) / "encoder.pth"
    name = read_state_dict(path, "encoder checkpoint").get("depth_encoder", DEFAULT_DEPTH_ENCODER)
    if not isinstance(name, str):
        raise GasMonoError(f"{path}: the depth encoder's name is a {type(name).__name__}, not a string")
    return name


def load_optimizer_state(folder: str | os.PathLike) -> dict | None:
    """The optimiser state dict of a weights folder (``adam.pth``), or None when
    the folder has none (a warning is logged)."""
    path = Path(folder) / OPTIMIZER_FILE
    if not path.is_file():
        logger.warning("%s not found: the optimiser starts from scratch", path)
        return None
    return read_file(path, "optimiser state")


def load_training_state(folder: str | os.PathLike) -> dict | None:
    """The ``extra_state`` saved in a weights folder, or None when absent."""
    path = Path(folder) / TRAINING_STATE_FILE
    if not path.is_file():
        return None
    return read_file(path, "training state")
