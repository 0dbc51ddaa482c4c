"""ResNet encoder (Monodepth2's): of stacked image pairs for PoseNet and
AlignNet, of single images as a depth encoder (``--depth_encoder resnet18``).

A torchvision ResNet (built without weights) whose stem takes ``3 * n``
channels. State-dict keys match the published ``pose_encoder.pth`` /
``trans_encoder.pth`` files (``encoder.`` + torchvision keys, the unused
``fc`` classifier included); the input is normalised inside, from [0, 1] RGB
with mean 0.45 and standard deviation 0.225.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn
from torchvision import models

from utils import GasMonoError

from .pretrained import load_resnet_imagenet

__all__ = ["ResnetEncoder", "IMAGE_MEAN", "IMAGE_STD"]

logger = logging.getLogger(__name__)

RESNET_BUILDERS = {
    18: models.resnet18,
    34: models.resnet34,
    50: models.resnet50,
    101: models.resnet101,
    152: models.resnet152,
}

# the input normalisation of the Monodepth2 ResNet encoders
IMAGE_MEAN = 0.45
IMAGE_STD = 0.225


class ResnetEncoder(nn.Module):
    """ResNet encoder returning five feature maps (strides 2..32).

    Args:
        num_layers: 18, 34, 50, 101 or 152.
        pretrained: start from torchvision ImageNet weights read from the local
            file ``pretrained_path`` (never downloaded); without a path a
            warning is logged and the network starts from scratch, a path to
            a missing file is a :class:`utils.GasMonoError`.
        num_input_images: number n of stacked RGB images (input has 3n channels).
        pretrained_path: torchvision ResNet state-dict file.

    Forward: B x 3n x H x W in [0, 1] -> [B x 64 x H/2 x W/2, B x 64 x H/4 x W/4,
    B x 128 x H/8 x W/8, B x 256 x H/16 x W/16, B x 512 x H/32 x W/32] for
    ResNet-18/34 (channels x4 after the stem for deeper ones, see ``num_ch_enc``).
    """

    def __init__(
        self,
        num_layers: int,
        pretrained: bool,
        num_input_images: int = 1,
        pretrained_path: str | None = None,
    ):
        super().__init__()
        if num_layers not in RESNET_BUILDERS:
            raise GasMonoError(f"unsupported ResNet depth {num_layers} (choose from {sorted(RESNET_BUILDERS)})")
        if num_input_images < 1:
            raise ValueError(f"num_input_images must be >= 1, got {num_input_images}")
        self.num_input_images = num_input_images
        self.num_ch_enc = [64, 64, 128, 256, 512]
        if num_layers > 34:
            self.num_ch_enc[1:] = [channels * 4 for channels in self.num_ch_enc[1:]]

        self.encoder = RESNET_BUILDERS[num_layers](weights=None)
        if num_input_images > 1:
            # reassigning keeps conv1 first in the state dict
            self.encoder.conv1 = nn.Conv2d(3 * num_input_images, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.encoder.conv1.weight, mode="fan_out", nonlinearity="relu")

        if pretrained:
            if pretrained_path is None:
                logger.warning(
                    "ResNet-%d: pretrained weights requested but no file given; training from scratch",
                    num_layers,
                )
            else:
                load_resnet_imagenet(self, pretrained_path, num_input_images)

    def forward(self, input_image: torch.Tensor) -> list[torch.Tensor]:
        x = (input_image - IMAGE_MEAN) / IMAGE_STD
        net = self.encoder
        features = [net.relu(net.bn1(net.conv1(x)))]
        features.append(net.layer1(net.maxpool(features[-1])))
        features.append(net.layer2(features[-1]))
        features.append(net.layer3(features[-1]))
        features.append(net.layer4(features[-1]))
        return features
