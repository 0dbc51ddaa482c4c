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

__all__ = ["DepthDecoder", "UpsampledConvBlock", "convex_upsample", "upsampled_conv", "DECODER_CHANNELS"]

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


class _ELUFunction(torch.autograd.Function):
    """ELU (alpha 1) in place: ``max(x, exp(min(x, 0)) - 1)``, the gradient from the result."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        torch.maximum(x, x.clamp(max=0).exp_().sub_(1), out=x)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (result,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, result)


class ELU(nn.Module):
    """``nn.ELU(inplace=True)`` (alpha 1) computed as ``max(x, exp(min(x, 0)) - 1)``,
    which equals ``x`` for ``x > 0`` and ``exp(x) - 1`` otherwise: the
    library's ELU uses ``expm1``, which on the project's CPU runs about ten
    times slower than ``exp`` (measured); the results differ by float
    rounding near 0 (at most 6e-8 absolute). The gradient is the library's
    (``elu_backward`` from the result). Modifies its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ELUFunction.apply(x)


class Conv3x3(nn.Module):
    """1-pixel reflection padding followed by a 3 x 3 convolution (with bias)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 followed by ELU (in place, :class:`ELU`)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


class UpsampledConvBlock(nn.Module):
    """A :class:`ConvBlock` applied to ``cat([upsample2(x), skip])``, computed from the
    low-resolution ``x`` (eval-mode inference only; built by ``networks.fusion``).

    A 3 x 3 convolution of a nearest-upsampled map with 1-pixel reflection padding
    reads, for each of the four output phases ``(a, b)`` (row / column parity), a
    2 x 2 neighbourhood of the low-resolution map with edge-replicate padding, with
    the 3 x 3 kernel's rows and columns summed pairwise (phase 0: ``[k0, k1 + k2]``
    at offsets -1, 0; phase 1: ``[k0 + k1, k2]`` at offsets 0, +1). The four phases
    are one 2 x 2 convolution with ``4 * C_out`` outputs at low resolution: 16 instead
    of 36 multiply-adds per low-resolution pixel and input channel, and no upsampled
    or concatenated map. The skip channels are convolved at full resolution as before.
    The result equals the block's up to float rounding.

    Args:
        block: the ConvBlock (its weight's first ``upsampled_channels`` input channels
            see the upsampled map, the rest the skip connection).
        upsampled_channels: channels of ``x``.
    """

    def __init__(self, block: ConvBlock, upsampled_channels: int):
        super().__init__()
        weight, bias = block.conv.conv.weight.detach(), block.conv.conv.bias.detach()
        self.out_channels = weight.shape[0]
        up = weight[:, :upsampled_channels]
        rows = [torch.stack([up[:, :, 0], up[:, :, 1] + up[:, :, 2]], dim=2),
                torch.stack([up[:, :, 0] + up[:, :, 1], up[:, :, 2]], dim=2)]  # C_out x C_up x 2 x 3
        phases = [torch.stack(pair, dim=3) for row in rows
                  for pair in ((row[..., 0], row[..., 1] + row[..., 2]), (row[..., 0] + row[..., 1], row[..., 2]))]
        # phase k = 2a + b holds output channels k*C_out .. (k+1)*C_out - 1
        self.register_buffer("phase_weight", torch.cat(phases).contiguous(memory_format=torch.channels_last))
        self.register_buffer("phase_bias", bias.repeat(4))
        skip = weight[:, upsampled_channels:].contiguous(memory_format=torch.channels_last)
        self.register_buffer("skip_weight", skip if skip.shape[1] else None)
        self.nonlin = block.nonlin

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """x: B x C_up x h x w, skip: B x C_skip x 2h x 2w (or None) -> B x C_out x 2h x 2w."""
        batch, _, height, width = x.shape
        phases = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.phase_weight, self.phase_bias)
        phases = phases.permute(0, 2, 3, 1)  # B x (h+1) x (w+1) x 4*C_out
        if skip is None:
            out = torch.empty(batch, self.out_channels, 2 * height, 2 * width, device=x.device, dtype=x.dtype,
                              memory_format=torch.channels_last)
        else:
            out = F.conv2d(F.pad(skip, (1, 1, 1, 1), mode="reflect"), self.skip_weight)
            out = out.contiguous(memory_format=torch.channels_last)
        # the output pixel (2i + a, 2j + b) is the phase (a, b) at the low-resolution (i + a, j + b)
        pixels = out.permute(0, 2, 3, 1).view(batch, height, 2, width, 2, self.out_channels)
        for a in (0, 1):
            for b in (0, 1):
                k = 2 * a + b
                phase = phases[:, a : a + height, b : b + width, k * self.out_channels : (k + 1) * self.out_channels]
                if skip is None:
                    pixels[:, :, a, :, b].copy_(phase)
                else:
                    pixels[:, :, a, :, b].add_(phase)
        return self.nonlin(out)


def upsampled_conv(block: nn.Module, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
    """``block(cat([upsample2(x), skip]))`` (``block(upsample2(x))`` without ``skip``); an
    :class:`UpsampledConvBlock` computes it from ``x`` directly.

    x: B x C x h x w, skip: B x C_skip x 2h x 2w -> the block's B x C_out x 2h x 2w.
    """
    if isinstance(block, UpsampledConvBlock):
        return block(x, skip)
    x = upsample2(x)
    return block(x if skip is None else torch.cat([x, skip], dim=1))


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

    def forward(self, input_features: list[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
        outputs: dict[tuple[str, int], torch.Tensor] = {}
        x = edge = input_features[-1]
        for level in range(4, -1, -1):
            upconv0, edge_upconv0, attention, upconv1, edge_upconv1 = self._level(level)
            x = upsampled_conv(upconv1, upconv0(attention(x, edge)), input_features[level - 1] if level > 0 else None)
            if level > 0:
                edge = upsampled_conv(edge_upconv1, edge_upconv0(edge))
            if level in self.scales:
                disp = torch.sigmoid(self._disp_conv(level)(x))
                if level > 0:
                    mask = MASK_LOGIT_SCALE * self._mask_head(level)(edge)
                    disp = convex_upsample(disp, mask, 2**level)
                outputs[("disp", level)] = disp
        return outputs
