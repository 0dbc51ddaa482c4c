"""The pair networks, PoseNet and AlignNet: each a ResNet encoder of two
stacked RGB images (``pose_encoder.pth`` / ``trans_encoder.pth``) and a
regression head (``pose.pth`` / ``trans.pth``), built and loaded by name.

Built as in the release: ``num_input_features=1``, ``num_frames_to_predict_for=2``
(the trainer reads frame slot 0).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from .align_net import TransDecoder
from .checkpoints import load_weights_folder
from .pose_decoder import PoseDecoder
from .resnet_encoder import ResnetEncoder

__all__ = ["PAIR_NETWORKS", "build_pair_network", "load_pair_networks"]

# head name -> (checkpoint name of its encoder, head class)
PAIR_NETWORKS: dict[str, tuple[str, type[nn.Module]]] = {
    "pose": ("pose_encoder", PoseDecoder),
    "trans": ("trans_encoder", TransDecoder),
}


def build_pair_network(name: str, num_layers: int = 18, pretrained: bool = False,
                       pretrained_path: str | os.PathLike | None = None) -> tuple[ResnetEncoder, nn.Module]:
    """``(encoder, head)`` of PoseNet (``name="pose"``) or AlignNet (``"trans"``).

    Args:
        num_layers: ResNet depth of the encoder (18 in GasMono).
        pretrained, pretrained_path: ImageNet initialisation of the encoder
            (see :class:`ResnetEncoder`).
    """
    _, head_class = PAIR_NETWORKS[name]
    path = None if pretrained_path is None else str(pretrained_path)
    encoder = ResnetEncoder(num_layers, pretrained, num_input_images=2, pretrained_path=path)
    return encoder, head_class(encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)


def load_pair_networks(folder: str | os.PathLike, num_layers: int = 18) -> dict[str, nn.Module]:
    """PoseNet and, when the weights folder holds ``trans.pth`` (a run with
    coarse poses), AlignNet, keyed by checkpoint name (``pose_encoder``,
    ``pose``, ``trans_encoder``, ``trans``), in evaluation mode.

    Raises:
        GasMonoError: a missing folder or PoseNet file, an unreadable file, or
            weights of another architecture (one-line message).
    """
    folder = Path(folder)
    names = ["pose"] + (["trans"] if (folder / "trans.pth").is_file() else [])
    models: dict[str, nn.Module] = {}
    for name in names:
        encoder_name, _ = PAIR_NETWORKS[name]
        models[encoder_name], models[name] = build_pair_network(name, num_layers)
    load_weights_folder(folder, models)
    return {key: model.eval() for key, model in models.items()}
