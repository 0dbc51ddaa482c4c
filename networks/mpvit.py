"""MPViT-small depth encoder, as GasMono builds it.

Multi-Path Vision Transformer (Lee et al., CVPR 2022) with GasMono's changes:
a stride-2+1 stem, a stride-2 patch embedding in every stage and no
classification head, so that it returns five feature maps at strides 2..32.
State-dict keys (including the aliased keys of the shared position encodings)
match the published GasMono ``encoder.pth`` files.

The file reads top to bottom: building blocks, the model, the factory.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from .pretrained import load_mpvit_imagenet

__all__ = ["MPViT", "mpvit_small"]

# relative-position windows of ConvRelPosEnc: kernel size -> number of heads
CRPE_WINDOWS = {3: 2, 5: 3, 7: 3}


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Per-sample stochastic depth: zero whole samples with probability
    ``rate`` and rescale the kept ones by ``1 / (1 - rate)``."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(mask_shape).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module wrapper of :func:`drop_path` (active in training mode only)."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


def _normal_fan_out_(conv: nn.Conv2d, divide_by_groups: bool) -> None:
    """He-normal init with fan-out ``k*k*cout`` (optionally divided by groups)."""
    fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
    if divide_by_groups:
        fan_out //= conv.groups
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_out))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _reset_batchnorm_(bn: nn.BatchNorm2d) -> None:
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)


def _tokens_to_map(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """B x N x C tokens (row-major, N = H*W) -> B x C x H x W, a channels-last
    view of contiguous tokens (no copy)."""
    return x.reshape(x.shape[0], height, width, x.shape[2]).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------
# convolutional building blocks
# --------------------------------------------------------------------------


class Conv2d_BN(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional activation."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        act_layer: type[nn.Module] | None = None,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = act_layer() if act_layer is not None else nn.Identity()
        _normal_fan_out_(self.conv, divide_by_groups=False)
        _reset_batchnorm_(self.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv2d_BN(nn.Module):
    """Depthwise k x k conv -> pointwise 1 x 1 conv -> BatchNorm -> Hardswish."""

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.dwconv = nn.Conv2d(
            channels, channels, kernel_size, stride, (kernel_size - 1) // 2, groups=channels, bias=False
        )
        self.pwconv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.Hardswish()
        # the release's fan-out is not divided by the groups here (unlike ResBlock)
        _normal_fan_out_(self.dwconv, divide_by_groups=False)
        _normal_fan_out_(self.pwconv, divide_by_groups=False)
        _reset_batchnorm_(self.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pwconv(self.dwconv(x))))


class DWCPatchEmbed(nn.Module):
    """Depthwise-separable patch embedding (one path input)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.patch_conv = DWConv2d_BN(channels, 3, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_conv(x)


class Patch_Embed_stage(nn.Module):
    """The P chained patch embeddings of a stage; the first one halves the
    resolution. Returns the list of the P outputs, all B x C x H/2 x W/2."""

    def __init__(self, channels: int, num_path: int):
        super().__init__()
        self.patch_embeds = nn.ModuleList(
            [DWCPatchEmbed(channels, stride=2 if idx == 0 else 1) for idx in range(num_path)]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        path_inputs = []
        for embed in self.patch_embeds:
            x = embed(x)
            path_inputs.append(x)
        return path_inputs


class ResBlock(nn.Module):
    """Inverted-residual local branch ("InvRes"):
    ``x + conv2(hswish(norm(dwconv(conv1(x)))))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = Conv2d_BN(channels, channels, act_layer=nn.Hardswish)
        self.dwconv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.Hardswish()
        self.conv2 = Conv2d_BN(channels, channels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _normal_fan_out_(module, divide_by_groups=True)
            elif isinstance(module, nn.BatchNorm2d):
                _reset_batchnorm_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.norm(self.dwconv(self.conv1(x)))))


# --------------------------------------------------------------------------
# transformer building blocks
# --------------------------------------------------------------------------


class ConvPosEnc(nn.Module):
    """Convolutional position encoding: ``x + dwconv3x3(x)`` on the token map."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x: B x N x C tokens -> B x N x C."""
        feat = _tokens_to_map(x, *size)
        return (self.proj(feat) + feat).flatten(2).transpose(1, 2)


class ConvRelPosEnc(nn.Module):
    """Convolutional relative position encoding of the factorised attention.

    The value map (head-major channels) is split by heads into windows of
    3x3 (2 heads), 5x5 (3 heads) and 7x7 (3 heads) depthwise convolutions.
    """

    def __init__(self, head_dim: int, num_heads: int = 8, windows: dict[int, int] = CRPE_WINDOWS):
        super().__init__()
        if sum(windows.values()) != num_heads:
            raise ValueError(f"windows {windows} must cover exactly {num_heads} heads")
        self.channel_splits = [heads * head_dim for heads in windows.values()]
        self.conv_list = nn.ModuleList(
            [
                nn.Conv2d(split, split, kernel, padding=kernel // 2, groups=split)
                for kernel, split in zip(windows.keys(), self.channel_splits)
            ]
        )

    def forward(self, q: torch.Tensor, v: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """q, v: B x h x N x Ch -> B x h x N x Ch."""
        batch, heads, tokens, head_dim = q.shape
        height, width = size
        v_map = v.transpose(2, 3).reshape(batch, heads * head_dim, height, width)
        conv_v = torch.cat(
            [conv(part) for conv, part in zip(self.conv_list, torch.split(v_map, self.channel_splits, dim=1))],
            dim=1,
        )
        conv_v = conv_v.reshape(batch, heads, head_dim, tokens).transpose(2, 3)
        return q * conv_v


class FactorAtt_ConvRelPosEnc(nn.Module):
    """Factorised attention ``q (softmax_N(k)^T v)`` plus the conv relative
    position term ``q * crpe(v)``; ``crpe`` is the path's shared module."""

    def __init__(self, dim: int, num_heads: int, shared_crpe: ConvRelPosEnc):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.crpe = shared_crpe

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x: B x N x C tokens -> B x N x C."""
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each B x h x N x Ch
        context = torch.matmul(k.softmax(dim=2).transpose(-2, -1), v)  # B x h x Ch x Ch
        factor_att = torch.matmul(q, context)
        out = self.scale * factor_att + self.crpe(q, v, size)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, channels))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MHCABlock(nn.Module):
    """One transformer layer of a path: shared position encoding, factorised
    attention and MLP with pre-LayerNorm residuals and stochastic depth."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path_rate: float,
        shared_cpe: ConvPosEnc,
        shared_crpe: ConvRelPosEnc,
    ):
        super().__init__()
        # registration order fixes the state-dict key order
        self.cpe = shared_cpe
        self.crpe = shared_crpe
        self.factoratt_crpe = FactorAtt_ConvRelPosEnc(dim, num_heads, shared_crpe)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x: B x N x C tokens -> B x N x C."""
        x = self.cpe(x, size)
        x = x + self.drop_path(self.factoratt_crpe(self.norm1(x), size))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MHCAEncoder(nn.Module):
    """One path: L MHCABlocks that all hold this path's ``cpe`` and ``crpe``
    (so the same positional convolutions are re-applied before every block)."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path_rates: Sequence[float],
    ):
        super().__init__()
        self.cpe = ConvPosEnc(dim)
        self.crpe = ConvRelPosEnc(dim // num_heads, num_heads, CRPE_WINDOWS)
        self.MHCA_layers = nn.ModuleList(
            [
                MHCABlock(dim, num_heads, mlp_ratio, drop_path_rates[idx], self.cpe, self.crpe)
                for idx in range(num_layers)
            ]
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x: B x N x C tokens -> B x C x H x W map."""
        for layer in self.MHCA_layers:
            x = layer(x, size)
        return _tokens_to_map(x, *size)


class MHCA_stage(nn.Module):
    """A stage: the local InvRes branch on path 0 plus one transformer per
    path, concatenated (InvRes first) and fused by a 1x1 Conv2d_BN."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: float,
        num_path: int,
        drop_path_rates: Sequence[float],
    ):
        super().__init__()
        self.mhca_blks = nn.ModuleList(
            [MHCAEncoder(dim, num_layers, num_heads, mlp_ratio, drop_path_rates) for _ in range(num_path)]
        )
        self.InvRes = ResBlock(dim)
        self.aggregate = Conv2d_BN(dim * (num_path + 1), out_dim, act_layer=nn.Hardswish)

    def forward(self, path_inputs: list[torch.Tensor]) -> torch.Tensor:
        """path_inputs: P maps B x D x H x W -> B x Dout x H x W."""
        outputs = [self.InvRes(path_inputs[0])]
        for path_map, encoder in zip(path_inputs, self.mhca_blks):
            height, width = path_map.shape[2:]
            outputs.append(encoder(path_map.flatten(2).transpose(1, 2), (height, width)))
        return self.aggregate(torch.cat(outputs, dim=1))


# --------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------


class MPViT(nn.Module):
    """Multi-path vision transformer encoder returning five feature maps.

    Input: B x 3 x H x W image in [0, 1] (no normalisation, as in GasMono),
    H and W multiples of 32. Output: list of maps at strides 2, 4, 8, 16, 32
    with channels ``[embed_dims[0]] + stage output channels``
    (``[64, 128, 216, 288, 288]`` for MPViT-small).

    With ``channels_last`` (the default) the network runs in channels-last
    memory: the transformers' ``B x N x C`` tokens are then the feature maps
    themselves, so that moving between maps and tokens copies nothing (the
    release's numbers up to float rounding; faster on the CPU, where it was
    measured). ``channels_last = False`` runs NCHW, as the release does.
    """

    def __init__(
        self,
        num_path: Sequence[int] = (2, 3, 3, 3),
        num_layers: Sequence[int] = (1, 3, 6, 3),
        embed_dims: Sequence[int] = (64, 128, 216, 288),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        num_heads: Sequence[int] = (8, 8, 8, 8),
        drop_path_rate: float = 0.2,
        in_chans: int = 3,
        channels_last: bool = True,
    ):
        super().__init__()
        self.channels_last = channels_last
        num_stages = len(embed_dims)
        out_dims = list(embed_dims[1:]) + [embed_dims[-1]]
        rates = torch.linspace(0, drop_path_rate, sum(num_layers)).tolist()
        stage_rates = []
        start = 0
        for depth in num_layers:
            stage_rates.append(rates[start : start + depth])
            start += depth

        self.stem = nn.Sequential(
            Conv2d_BN(in_chans, embed_dims[0] // 2, 3, 2, 1, act_layer=nn.Hardswish),
            Conv2d_BN(embed_dims[0] // 2, embed_dims[0], 3, 1, 1, act_layer=nn.Hardswish),
        )
        self.patch_embed_stages = nn.ModuleList(
            [Patch_Embed_stage(embed_dims[idx], num_path[idx]) for idx in range(num_stages)]
        )
        self.mhca_stages = nn.ModuleList(
            [
                MHCA_stage(
                    embed_dims[idx],
                    out_dims[idx],
                    num_layers[idx],
                    num_heads[idx],
                    mlp_ratios[idx],
                    num_path[idx],
                    stage_rates[idx],
                )
                for idx in range(num_stages)
            ]
        )
        self.num_ch_enc = [embed_dims[0]] + out_dims

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: B x 3 x H x W -> [B x 64 x H/2 x W/2, B x 128 x H/4 x W/4, ...,
        B x 288 x H/32 x W/32] (MPViT-small), channels-last in memory when ``channels_last``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        features = [x]
        for embed, stage in zip(self.patch_embed_stages, self.mhca_stages):
            x = stage(embed(x))
            features.append(x)
        return features


def mpvit_small(pretrained_path: str | None = None) -> MPViT:
    """MPViT-small as GasMono's depth encoder (22.6 M parameters).

    Args:
        pretrained_path: optional ImageNet ``mpvit_small.pth``; loaded
            non-strictly by :func:`networks.pretrained.load_mpvit_imagenet`
            (a path to a missing file is a :class:`utils.GasMonoError`; None
            keeps the random initialisation).
    """
    model = MPViT(
        num_path=(2, 3, 3, 3),
        num_layers=(1, 3, 6, 3),
        embed_dims=(64, 128, 216, 288),
        mlp_ratios=(4, 4, 4, 4),
        num_heads=(8, 8, 8, 8),
        drop_path_rate=0.2,
    )
    if pretrained_path is not None:
        load_mpvit_imagenet(model, pretrained_path)
    return model
