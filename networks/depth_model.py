"""The depth network: an encoder chosen by name and GasMono's depth decoder.

``--depth_encoder`` names the encoder; :data:`DEPTH_ENCODER_FACTORIES` maps
each name to a factory ``(pretrained_path) -> encoder``. An encoder takes a
``B x 3 x H x W`` RGB image in [0, 1] and returns five feature maps at strides
2, 4, 8, 16 and 32 whose channel counts are its ``num_ch_enc``, which sizes
the decoder:

* ``mpvit_small``: GasMono's MPViT-small, ``[64, 128, 216, 288, 288]``;
* ``resnet18`` / ``resnet50``: Monodepth2's ResNet encoders of one image,
  ``[64, 64, 128, 256, 512]`` / ``[64, 256, 512, 1024, 2048]``.

A new encoder is one factory here and its name in ``utils.DEPTH_ENCODERS``.
The name is saved in ``encoder.pth``, so that a checkpoint is loaded with the
encoder it was trained with (:func:`load_depth_model`).
"""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

import torch.nn as nn

from utils import DEPTH_ENCODERS, GasMonoError

from .checkpoints import load_weights_folder, read_depth_encoder_name
from .depth_decoder import DepthDecoder
from .mpvit import mpvit_small
from .resnet_encoder import ResnetEncoder

__all__ = ["DEPTH_ENCODER_FACTORIES", "resnet_depth_encoder", "build_depth_encoder", "load_depth_model"]


def resnet_depth_encoder(num_layers: int, pretrained_path: str | os.PathLike | None = None) -> ResnetEncoder:
    """Monodepth2's depth encoder: a ResNet of one image, initialised from a
    local torchvision ImageNet state dict when ``pretrained_path`` is given."""
    path = None if pretrained_path is None else str(pretrained_path)
    return ResnetEncoder(num_layers, pretrained=path is not None, num_input_images=1, pretrained_path=path)


DEPTH_ENCODER_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "mpvit_small": mpvit_small,
    "resnet18": partial(resnet_depth_encoder, 18),
    "resnet50": partial(resnet_depth_encoder, 50),
}


def build_depth_encoder(name: str, pretrained_path: str | os.PathLike | None = None) -> nn.Module:
    """The depth encoder ``name`` (one of ``utils.DEPTH_ENCODERS``), from
    ImageNet weights in ``pretrained_path`` (``mpvit_small.pth`` for MPViT, a
    torchvision state dict for the ResNets) or from scratch when None.

    Raises:
        GasMonoError: an unknown name, or a weights file that is missing,
            unreadable or of another architecture.
    """
    if name not in DEPTH_ENCODER_FACTORIES:
        raise GasMonoError(f"unknown depth encoder {name!r} (choose from {', '.join(DEPTH_ENCODERS)})")
    path = None if pretrained_path is None else str(pretrained_path)
    return DEPTH_ENCODER_FACTORIES[name](pretrained_path=path)


def load_depth_model(
    folder: str | os.PathLike, scales: Iterable[int] = (0,), depth_encoder: str | None = None
) -> tuple[nn.Module, DepthDecoder, dict[str, Any]]:
    """The depth encoder and decoder of a weights folder (ours or the release's).

    Args:
        folder: holds ``encoder.pth`` and ``depth.pth``.
        scales: the decoder's output scales.
        depth_encoder: the encoder expected; None takes the one named in
            ``encoder.pth`` (MPViT-small when it names none).

    Returns:
        ``(encoder, decoder, extras)`` with the ``encoder.pth`` entries of
        :func:`networks.load_weights_folder` (``height``, ``width``, ...).

    Raises:
        GasMonoError: a missing or unreadable file, a checkpoint of another
            encoder than ``depth_encoder``, or of another architecture.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GasMonoError(f"weights folder not found: {folder}")
    name = depth_encoder if depth_encoder is not None else read_depth_encoder_name(folder)
    if name not in DEPTH_ENCODER_FACTORIES:
        raise GasMonoError(f"{folder / 'encoder.pth'} holds an unknown depth encoder {name!r} "
                           f"(known: {', '.join(DEPTH_ENCODERS)})")
    encoder = build_depth_encoder(name)
    decoder = DepthDecoder(encoder.num_ch_enc, scales)
    extras = load_weights_folder(folder, {"encoder": encoder, "depth": decoder}, depth_encoder=name)
    return encoder, decoder, extras
