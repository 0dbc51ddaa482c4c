"""The networks a run trains and their optimiser.

The depth encoder (``--depth_encoder``, built by
:func:`networks.build_depth_encoder`) and GasMono's depth decoder; PoseNet (a
ResNet pair encoder and a pose decoder); with coarse poses (``--use_posegt``)
AlignNet (a second pair encoder and the translation decoder). Parameters that
the loss never reaches are frozen, so that DDP needs no unused-parameter search.
"""
from __future__ import annotations

import argparse
import logging

import torch
import torch.nn as nn

import accel
import networks
from options import depth_encoder_of
from utils import require_path

__all__ = ["UNUSED_PARAMETER_PREFIXES", "depth_encoder_of", "build_models", "build_optimizer"]

logger = logging.getLogger(__name__)

# Parameters the release builds but never uses in the loss: the depth
# decoder's scale-0 mask head and level-0 edge convolutions, and
# the ResNets' ImageNet classifier. They never receive a gradient, so AdamW
# skips them; marking them frozen lets DDP run without unused-parameter search.
UNUSED_PARAMETER_PREFIXES = {
    "encoder": ("encoder.fc.",),
    "depth": ("decoder.21.", "decoder.24.", "decoder.26."),
    "pose_encoder": ("encoder.fc.",),
    "trans_encoder": ("encoder.fc.",),
}


def _depth_encoder(options: argparse.Namespace) -> nn.Module:
    """The depth encoder, from the ImageNet weights of ``--mpvit_pretrained`` /
    ``--depth_encoder_pretrained`` or from scratch (with a warning)."""
    name = depth_encoder_of(options)
    if name == "mpvit_small":
        option, path = "--mpvit_pretrained", options.mpvit_pretrained
    else:
        option, path = "--depth_encoder_pretrained", options.depth_encoder_pretrained
        if path is not None:
            require_path(path, f"ResNet ImageNet weights ({option})")
    if path is None:
        logger.warning("no %s given: the %s depth encoder starts from scratch", option, name)
    return networks.build_depth_encoder(name, path)


def build_models(options: argparse.Namespace, device: torch.device) -> dict[str, nn.Module]:
    """The networks of the run by checkpoint name (``encoder``, ``depth``,
    ``pose_encoder``, ``pose`` unless training on stereo pairs alone
    (``--frame_ids 0 --use_stereo``) and, with ``--use_posegt``, ``trans_encoder``,
    ``trans``), on ``device`` in ``--memory_format`` (MPViT runs NCHW with ``contiguous``).

    Raises:
        GasMonoError: a pretrained-weights file given but missing or unreadable.
    """
    encoder = _depth_encoder(options)
    models: dict[str, nn.Module] = {
        "encoder": encoder,
        "depth": networks.DepthDecoder(encoder.num_ch_enc, options.scales),
    }
    pretrained = options.weights_init == "pretrained"
    if pretrained and options.resnet_pretrained is not None:
        require_path(options.resnet_pretrained, "ResNet ImageNet weights (--resnet_pretrained)")
    pair_networks = ["pose"] if len(options.frame_ids) > 1 else []
    for name in pair_networks + (["trans"] if options.use_posegt else []):
        encoder_name, _ = networks.PAIR_NETWORKS[name]
        models[encoder_name], models[name] = networks.build_pair_network(name, options.num_layers, pretrained,
                                                                         options.resnet_pretrained)
    for name, model in models.items():
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.startswith(UNUSED_PARAMETER_PREFIXES.get(name, ())):
                parameter.requires_grad_(False)
        model.to(device)
        if options.memory_format == "channels_last":
            model.to(memory_format=torch.channels_last)
        elif isinstance(model, networks.MPViT):
            model.channels_last = False
    return models


def build_optimizer(models: dict[str, nn.Module], options: argparse.Namespace, fast: bool = False
                    ) -> torch.optim.Optimizer:
    """AdamW: group 0 = depth decoder, PoseNet, AlignNet at
    ``--decoder_learning_rate``; group 1 = the depth encoder at
    ``--learning_rate`` (the release's order).

    The library's fused implementation (several times faster than its
    per-tensor loop on the CPU and on CUDA); with ``fast``,
    :class:`accel.AdamW`, which spares it the copies of the channels-last weights."""
    rest = [p for name in ("depth", "pose_encoder", "pose", "trans_encoder", "trans")
            if name in models for p in models[name].parameters()]
    optimizer_class = accel.AdamW if fast else torch.optim.AdamW
    return optimizer_class(
        [
            {"params": rest, "lr": options.decoder_learning_rate},
            {"params": list(models["encoder"].parameters()), "lr": options.learning_rate},
        ],
        weight_decay=options.weight_decay,
        fused=True,
    )
