"""GasMono depth decoder: channel-attention U-Net with convex upsampling.

Two branches run from the deepest encoder feature: a disparity branch with
skip connections and an "edge" branch without skips that (a) conditions the
disparity branch through a channel-attention module at every level and (b)
predicts the convex-combination masks that upsample the coarse disparities to
full resolution. State-dict keys match the published ``depth.pth`` files
(the module-list layout is described in :class:`DepthDecoder`). It works with
any encoder of five feature maps at strides 2..32 (``num_ch_enc``).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DepthDecoder", "convex_upsample", "DECODER_CHANNELS"]

DECODER_CHANNELS = [16, 32, 64, 128, 256]

# the release multiplies the disparity by 8 before every convex upsampling
# (whatever the ratio), so scales 1..3 live in (0, 8)
CONVEX_UPSAMPLE_GAIN = 8.0
# the mask logits are scaled by this factor before the softmax
MASK_LOGIT_SCALE = 0.25


def convex_upsample(disp: torch.Tensor, mask: torch.Tensor, ratio: int) -> torch.Tensor:
    """RAFT-style convex upsampling of a disparity map.

    Every output pixel ``(y*r + a, x*r + b)`` is a convex combination (softmax
    weights from ``mask``) of the 3 x 3 zero-padded neighbourhood of ``8 * disp``
    around the coarse pixel ``(y, x)``.

    Args:
        disp: B x 1 x h x w coarse disparity.
        mask: B x (9*r*r) x h x w mask logits; channel ``k*r*r + a*r + b`` with
            neighbour ``k = 3*dy + dx`` (offset ``(dy-1, dx-1)``) and sub-pixel
            row/column ``(a, b)``.
        ratio: upsampling factor r.

    Returns:
        B x 1 x (h*r) x (w*r) disparity (multiplied by 8, see module notes).
    """
    batch, _, height, width = disp.shape
    weights = torch.softmax(mask.view(batch, 1, 9, ratio, ratio, height, width), dim=2)
    neighbours = F.unfold(CONVEX_UPSAMPLE_GAIN * disp, kernel_size=3, padding=1)
    neighbours = neighbours.view(batch, 1, 9, 1, 1, height, width)
    upsampled = torch.sum(weights * neighbours, dim=2)  # B x 1 x r x r x h x w
    upsampled = upsampled.permute(0, 1, 4, 2, 5, 3)  # B x 1 x h x r x w x r
    return upsampled.reshape(batch, 1, height * ratio, width * ratio)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour upsampling by 2."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


class Conv3x3(nn.Module):
    """1-pixel reflection padding followed by a 3 x 3 convolution (with bias)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 followed by ELU (in place)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


class ChannelAttentionFusion(nn.Module):
    """Squeeze-and-excitation over the concatenation of two same-size maps,
    fused back to ``channels`` by a 1 x 1 conv:
    ``relu(conv_se(z * sigmoid(fc(avgpool(z)))))`` with ``z = cat(a, b)``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        both = 2 * channels
        self.fc = nn.Sequential(
            nn.Linear(both, both // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(both // reduction, both, bias=False),
            nn.Sigmoid(),
        )
        self.conv_se = nn.Conv2d(both, channels, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: B x C x h x w -> B x C x h x w."""
        z = torch.cat([a, b], dim=1)
        weights = self.fc(z.mean(dim=(2, 3)))
        return self.relu(self.conv_se(z * weights[:, :, None, None]))


def mask_head(channels: int, ratio: int) -> nn.Sequential:
    """Convex-upsampling mask predictor: conv3x3 (zero pad) -> ReLU -> 1x1 to
    ``9 * ratio**2`` logits."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, 9 * ratio * ratio, 1),
    )


class DepthDecoder(nn.Module):
    """GasMono's depth decoder.

    Args:
        num_ch_enc: encoder channels, ``[64, 128, 216, 288, 288]`` for MPViT-small.
        scales: output scales (subset of ``range(4)``).

    Forward: list of 5 encoder maps (strides 2..32) -> dict with
    ``("disp", s)`` of shape B x 1 x H x W for every scale s (all at full
    resolution; scale 0 in (0, 1), scales 1..3 in (0, 8) because of the x8
    convex upsampling).

    All modules live in one ``nn.ModuleList`` ``decoder`` (release layout):
    five per level i = 4..0 (upconv 0, edge upconv 0, attention, upconv 1,
    edge upconv 1), then per scale s = 0..3 the disparity conv and the mask
    head. The scale-0 mask head and the level-0 edge convs exist only for
    checkpoint compatibility; their outputs would never be used, so they are
    not run.
    """

    def __init__(self, num_ch_enc: Sequence[int], scales: Iterable[int] = range(4)):
        super().__init__()
        self.num_ch_enc = list(num_ch_enc)
        self.num_ch_dec = list(DECODER_CHANNELS)
        self.scales = list(scales)
        if any(s not in range(4) for s in self.scales):
            raise ValueError(f"scales must be in 0..3, got {self.scales}")

        modules: list[nn.Module] = []
        for level in range(4, -1, -1):
            in_channels = self.num_ch_enc[-1] if level == 4 else self.num_ch_dec[level + 1]
            out_channels = self.num_ch_dec[level]
            skip_channels = self.num_ch_enc[level - 1] if level > 0 else 0
            modules += [
                ConvBlock(in_channels, out_channels),
                ConvBlock(in_channels, out_channels),
                ChannelAttentionFusion(in_channels),
                ConvBlock(out_channels + skip_channels, out_channels),
                ConvBlock(out_channels, out_channels),
            ]
        for scale in range(4):
            modules += [Conv3x3(self.num_ch_dec[scale], 1), mask_head(self.num_ch_dec[scale], 2**scale)]
        self.decoder = nn.ModuleList(modules)

    def _level(self, level: int) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module, nn.Module]:
        """(upconv 0, edge upconv 0, attention, upconv 1, edge upconv 1) of a level."""
        base = 5 * (4 - level)
        return tuple(self.decoder[base + offset] for offset in range(5))  # type: ignore[return-value]

    def _disp_conv(self, scale: int) -> nn.Module:
        return self.decoder[25 + 2 * scale]

    def _mask_head(self, scale: int) -> nn.Module:
        return self.decoder[26 + 2 * scale]

    def upsampled_conv(self, block: nn.Module, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """``block(cat([upsample2(x), skip]))`` (``block(upsample2(x))`` without ``skip``).

        x: B x C x h x w, skip: B x C_skip x 2h x 2w -> the block's B x C_out x 2h x 2w.
        """
        x = upsample2(x)
        return block(x if skip is None else torch.cat([x, skip], dim=1))

    def forward(self, input_features: list[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
        outputs: dict[tuple[str, int], torch.Tensor] = {}
        x = edge = input_features[-1]
        for level in range(4, -1, -1):
            upconv0, edge_upconv0, attention, upconv1, edge_upconv1 = self._level(level)
            x = self.upsampled_conv(upconv1, upconv0(attention(x, edge)),
                                    input_features[level - 1] if level > 0 else None)
            if level > 0:
                edge = self.upsampled_conv(edge_upconv1, edge_upconv0(edge))
            if level in self.scales:
                disp = torch.sigmoid(self._disp_conv(level)(x))
                if level > 0:
                    mask = MASK_LOGIT_SCALE * self._mask_head(level)(edge)
                    disp = convex_upsample(disp, mask, 2**level)
                outputs[("disp", level)] = disp
        return outputs
