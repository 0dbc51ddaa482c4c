"""Checkpoint I/O: release-compatible weight folders and ImageNet initialisation.

A weights folder (``weights_<epoch>/``) holds one ``torch.save``d state dict per
network, named as in the GasMono release (see ``shared/spec/networks.md``
section 4):

* ``encoder.pth`` (MPViT, followed by ``height``, ``width``, ``use_stereo``),
  ``depth.pth``, ``pose_encoder.pth``, ``pose.pth``, ``trans_encoder.pth``,
  ``trans.pth``;
* ``adam.pth``: the optimiser state dict (optional);
* ``training_state.pth``: scheduler / epoch / step / RNG states (optional,
  ours; the release has no such file).

Folders are written atomically: everything goes into a temporary sibling
folder that is renamed into place at the end.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn

from utils import GasMonoError

__all__ = [
    "MODEL_NAMES",
    "ENCODER_EXTRA_KEYS",
    "OPTIMIZER_FILE",
    "TRAINING_STATE_FILE",
    "save_weights_folder",
    "load_weights_folder",
    "load_optimizer_state",
    "load_training_state",
    "load_mpvit_imagenet",
    "load_resnet_imagenet",
]

logger = logging.getLogger(__name__)

MODEL_NAMES = ("encoder", "depth", "pose_encoder", "pose", "trans_encoder", "trans")
# plain python values stored after the tensors of encoder.pth
ENCODER_EXTRA_KEYS = ("height", "width", "use_stereo")
OPTIMIZER_FILE = "adam.pth"
TRAINING_STATE_FILE = "training_state.pth"
# keys of the ImageNet classifier head, absent from the depth encoder
MPVIT_HEAD_PREFIX = "cls_head."
# how many keys of each kind a mismatch message names
MAX_KEYS_IN_MESSAGE = 3


# --------------------------------------------------------------------------
# reading and writing single files
# --------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _numpy_safe_globals() -> list[Any]:
    """Globals needed to unpickle NumPy arrays (e.g. ``np.random.get_state()``)
    with ``weights_only=True``."""
    reconstruct = np.ndarray((0,)).__reduce__()[0]
    dtype_classes = [type(np.dtype(kind)) for kind in (np.uint32, np.int64, np.float32, np.float64, np.bool_)]
    return [reconstruct, np.ndarray, np.dtype, *dtype_classes]


def _read(path: Path, what: str, weights_only: bool = True) -> Any:
    """``torch.load`` on CPU with a one-line :class:`GasMonoError` on failure."""
    if not path.is_file():
        raise GasMonoError(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # corrupt, truncated or foreign file
        raise GasMonoError(f"cannot read {what} {path} ({_first_line(error)})") from None


def _read_state_dict(path: Path, what: str) -> dict[str, Any]:
    state = _read(path, what)
    if not isinstance(state, Mapping):
        raise GasMonoError(f"{path}: expected a state dict, found {type(state).__name__}")
    return dict(state)


def _write(obj: Any, path: Path) -> None:
    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


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


def _shape_text(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def _compare(model: nn.Module, state: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, shape-mismatched) keys of ``state`` against ``model``."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shape = [
        f"{key} {_shape_text(state[key])} vs {_shape_text(expected[key])}"
        for key in expected
        if key in state
        and (not isinstance(state[key], torch.Tensor) or state[key].shape != expected[key].shape)
    ]
    return missing, unexpected, shape


def _load_strict(model: nn.Module, state: Mapping[str, Any], path: Path) -> None:
    missing, unexpected, shape = _compare(model, state)
    if missing or unexpected or shape:
        raise GasMonoError(_mismatch_message(path, missing, unexpected, shape))
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------
# weights folders
# --------------------------------------------------------------------------


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
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    backup.rmdir()
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

    Returns:
        The folder path.
    """
    folder = Path(folder)
    unknown = [name for name in models if name not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model names {unknown}; expected names from {MODEL_NAMES}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for name in MODEL_NAMES:
            if name not in models:
                continue
            state = models[name].state_dict()
            if name == "encoder":
                state["height"] = int(height)
                state["width"] = int(width)
                state["use_stereo"] = bool(use_stereo)
            _write(state, staging / f"{name}.pth")
        if optimizer_state is not None:
            _write(optimizer_state, staging / OPTIMIZER_FILE)
        if extra_state is not None:
            _write(extra_state, staging / TRAINING_STATE_FILE)
        _replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved weights to %s", folder)
    return folder


def load_weights_folder(
    folder: str | os.PathLike,
    models: Mapping[str, nn.Module],
    names: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Load networks from a weights folder, strictly on the network keys.

    Args:
        folder: a folder written by :func:`save_weights_folder` or by the release.
        models: networks keyed by :data:`MODEL_NAMES` names.
        names: which of them to load (default: all of ``models``).

    Returns:
        ``{"height": int, "width": int, "use_stereo": bool}`` read from
        ``encoder.pth`` when the encoder was loaded (the entries present),
        else an empty dict.

    Raises:
        GasMonoError: missing folder or file, unreadable file, or a checkpoint
            whose keys / shapes differ from the network (one-line message with
            the file, the number of mismatches and the first mismatched keys).
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
        state = _read_state_dict(path, f"{name} checkpoint")
        if name == "encoder":
            extras = {key: state.pop(key) for key in ENCODER_EXTRA_KEYS if key in state}
        _load_strict(models[name], state, path)
        logger.info("loaded %s from %s", name, path)
    return extras


def load_optimizer_state(folder: str | os.PathLike) -> dict | None:
    """The optimiser state dict of a weights folder (``adam.pth``), or None when
    the folder has none (a warning is logged)."""
    path = Path(folder) / OPTIMIZER_FILE
    if not path.is_file():
        logger.warning("%s not found: the optimiser starts from scratch", path)
        return None
    return _read(path, "optimiser state")


def load_training_state(folder: str | os.PathLike) -> dict | None:
    """The ``extra_state`` saved in a weights folder, or None when absent."""
    path = Path(folder) / TRAINING_STATE_FILE
    if not path.is_file():
        return None
    return _read(path, "training state")


# --------------------------------------------------------------------------
# ImageNet initialisation
# --------------------------------------------------------------------------


def _shared_key_groups(model: nn.Module) -> dict[str, list[str]]:
    """Map every state-dict key to all keys naming the same tensor (aliases)."""
    by_tensor: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        by_tensor.setdefault(id(value), []).append(key)
    return {key: keys for keys in by_tensor.values() for key in keys}


def load_mpvit_imagenet(model: nn.Module, path: str | os.PathLike | None) -> dict[str, list[str]] | None:
    """Initialise the MPViT encoder from an ImageNet ``mpvit_small.pth``.

    The file's ``"model"`` entry (or the file itself when it is a plain state
    dict) is loaded non-strictly: keys the encoder lacks (the ``cls_head.*``
    classifier) are dropped, keys with a different shape are skipped (listed
    in ``shape_mismatch`` only), encoder keys absent from the file keep their
    initial values. A key counts as missing only when none of its aliases
    (shared position encodings) was loaded.

    Returns:
        ``{"dropped": [...], "missing": [...], "shape_mismatch": [...],
        "loaded": [...]}``, or None (with a warning) when the file is missing.
    """
    if path is None or not Path(path).is_file():
        logger.warning("MPViT ImageNet checkpoint not found: %s; the encoder starts from scratch", path)
        return None
    path = Path(path)
    try:
        checkpoint = _read(path, "MPViT ImageNet checkpoint")
    except GasMonoError:
        # the original file may pickle training arguments; it is a trusted download
        logger.info("%s: weights-only load refused, retrying with full unpickling", path)
        checkpoint = _read(path, "MPViT ImageNet checkpoint", weights_only=False)
    if isinstance(checkpoint, Mapping) and "model" in checkpoint:
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, Mapping):
        raise GasMonoError(f"{path}: expected a state dict under 'model', found {type(checkpoint).__name__}")

    expected = model.state_dict()
    dropped = [key for key in checkpoint if key not in expected]
    shape_mismatch = [
        key
        for key, value in checkpoint.items()
        if key in expected and (not isinstance(value, torch.Tensor) or value.shape != expected[key].shape)
    ]
    skipped = set(shape_mismatch)
    filtered = {key: value for key, value in checkpoint.items() if key in expected and key not in skipped}
    model.load_state_dict(filtered, strict=False)

    aliases = _shared_key_groups(model)
    missing = [
        key for key in expected if key not in skipped and not any(alias in filtered for alias in aliases[key])
    ]
    head = [key for key in dropped if key.startswith(MPVIT_HEAD_PREFIX)]
    other_dropped = [key for key in dropped if not key.startswith(MPVIT_HEAD_PREFIX)]
    logger.info("loaded %d MPViT tensors from %s (dropped head keys: %s)", len(filtered), path, head)
    if other_dropped:
        logger.warning("%s: %d keys unknown to the encoder were dropped: %s", path, len(other_dropped), other_dropped)
    if shape_mismatch:
        logger.warning(
            "%s: %d keys skipped because of a shape mismatch: %s",
            path,
            len(shape_mismatch),
            [f"{key} {_shape_text(checkpoint[key])} vs {_shape_text(expected[key])}" for key in shape_mismatch],
        )
    if missing:
        logger.warning("%s: %d encoder keys missing from the file keep their init: %s", path, len(missing), missing)
    return {"dropped": dropped, "missing": missing, "shape_mismatch": shape_mismatch, "loaded": list(filtered)}


def load_resnet_imagenet(encoder: nn.Module, path: str | os.PathLike | None, num_input_images: int) -> bool:
    """Initialise a ``ResnetEncoder`` from a local torchvision ResNet state dict.

    ``conv1.weight`` is repeated ``num_input_images`` times along the input
    channels and divided by ``num_input_images``; the result is loaded strictly
    into ``encoder.encoder``. Nothing is ever downloaded.

    Returns:
        True when loaded; False (with a warning) when the file is missing.

    Raises:
        GasMonoError: unreadable file or keys / shapes of another architecture.
    """
    if path is None or not Path(path).is_file():
        logger.warning("ResNet ImageNet weights not found: %s; the encoder starts from scratch", path)
        return False
    path = Path(path)
    state = _read_state_dict(path, "ResNet ImageNet weights")
    conv1 = state.get("conv1.weight")
    if isinstance(conv1, torch.Tensor) and num_input_images > 1:
        state["conv1.weight"] = torch.cat([conv1] * num_input_images, dim=1) / num_input_images
    _load_strict(encoder.encoder, state, path)
    logger.info("loaded ResNet ImageNet weights from %s", path)
    return True
