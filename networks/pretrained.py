"""ImageNet initialisation of the encoders from local files (nothing is downloaded).

* MPViT-small: the official ``mpvit_small.pth`` (state dict under ``model``),
  loaded non-strictly: the classifier head is dropped and what was skipped is
  logged.
* ResNets: a torchvision state dict (e.g. ``resnet18-f37072fd.pth``), loaded
  strictly; for an encoder of ``n`` stacked images the first convolution is
  repeated ``n`` times along the input channels and divided by ``n``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from utils import GasMonoError

from .checkpoints import load_strict, read_file, read_state_dict, shape_text

__all__ = ["load_mpvit_imagenet", "load_resnet_imagenet"]

logger = logging.getLogger(__name__)

# keys of the ImageNet classifier head, absent from the depth encoder
MPVIT_HEAD_PREFIX = "cls_head."


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
        "loaded": [...]}``, or None (with a warning) when no file is given.

    Raises:
        GasMonoError: a file given but missing or unreadable.
    """
    if path is None:
        logger.warning("no MPViT ImageNet checkpoint given; the encoder starts from scratch")
        return None
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"MPViT ImageNet checkpoint not found: {path} (--mpvit_pretrained)")
    try:
        checkpoint = read_file(path, "MPViT ImageNet checkpoint")
    except GasMonoError:
        # the original file may pickle training arguments; it is a trusted download
        logger.info("%s: weights-only load refused, retrying with full unpickling", path)
        checkpoint = read_file(path, "MPViT ImageNet checkpoint", weights_only=False)
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
            [f"{key} {shape_text(checkpoint[key])} vs {shape_text(expected[key])}" for key in shape_mismatch],
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
        True when loaded; False (with a warning) when no file is given.

    Raises:
        GasMonoError: a file given but missing or unreadable, or keys /
            shapes of another architecture.
    """
    if path is None:
        logger.warning("no ResNet ImageNet weights given; the encoder starts from scratch")
        return False
    path = Path(path)
    state = read_state_dict(path, "ResNet ImageNet weights")
    conv1 = state.get("conv1.weight")
    if isinstance(conv1, torch.Tensor) and num_input_images > 1:
        state["conv1.weight"] = torch.cat([conv1] * num_input_images, dim=1) / num_input_images
    load_strict(encoder.encoder, state, path)
    logger.info("loaded ResNet ImageNet weights from %s", path)
    return True
