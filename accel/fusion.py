"""Fast kernels for inference: eval-mode fusions of the depth networks.

Replace running the trained networks as they are (the reference, which
``evaluate_depth.py`` / ``predict.py`` run with ``--kernels reference``).
:func:`fuse_for_inference` returns a copy of a network in which

* every batch norm is folded into the convolution before it (the eval-mode
  affine map ``gamma * (y - mean) / sqrt(var + eps) + beta`` becomes the
  convolution's weight scale and bias);
* the depth decoder's convolutions of nearest-upsampled maps run at the low
  resolution (:class:`UpsampledConvBlock`: 2.25 x fewer multiply-adds for the
  upsampled channels, no upsampled or concatenated map;
  :class:`FusedDepthDecoder` calls them);
* MPViT's factorised attention takes the softmax of the keys over the tokens
  in the token layout of the ``qkv`` projection (:class:`TokenFactorAtt`);
* the decoder's ELU runs through ``exp`` (:class:`accel.elu.ExpELU`);
* on the CPU (float32, oneDNN available), every ``nn.Linear`` and every 1 x 1
  convolution runs through oneDNN with its activation fused
  (:class:`OneDNNLinear`, :class:`OneDNNConv2d`, private ``mkldnn`` ops: see
  :data:`PRIVATE_OPS`): PyTorch runs linear layers through MKL's ``addmm``
  and 1 x 1 convolutions through its GEMM-based ``slow_conv2d``, both
  measured about 2.2-2.8 x slower than oneDNN on a 2-core AMD EPYC at the
  encoder's shapes.

The outputs equal the original network's up to float rounding
(``tests/test_accel_inference.py``); the original network is not modified.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from accel.elu import ExpELU, applies_to
from networks.depth_decoder import ChannelAttentionFusion, ConvBlock, DepthDecoder
from networks.mpvit import Conv2d_BN, DWConv2d_BN, FactorAtt_ConvRelPosEnc, Mlp, ResBlock

__all__ = ["PRIVATE_OPS", "fold_batchnorm", "OneDNNLinear", "OneDNNConv2d", "TokenFactorAtt", "UpsampledConvBlock",
           "FusedDepthDecoder", "fuse_for_inference"]

# the private torch ops of the oneDNN modules (checked by accel.guard before they are chosen)
PRIVATE_OPS = ("mkldnn._linear_pointwise", "mkldnn._convolution_pointwise")

# activation module -> oneDNN post-op name
_ONEDNN_ACTIVATIONS: dict[type[nn.Module], str] = {
    nn.Identity: "none",
    nn.Hardswish: "hardswish",
    nn.ReLU: "relu",
    nn.GELU: "gelu",
}


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A copy of ``conv`` (with a bias) computing ``bn(conv(x))`` with ``bn``'s running statistics."""
    fused = copy.deepcopy(conv)
    fused.weight, fused.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                                    bn.weight, bn.bias)
    return fused


class OneDNNLinear(nn.Module):
    """``activation(x W^T + b)`` through oneDNN (CPU, float32; no autograd).

    Input ``... x in_features``, output ``... x out_features``.
    """

    def __init__(self, linear: nn.Linear, activation: str = "none"):
        super().__init__()
        self.out_features = linear.out_features
        self.activation = activation
        self.algorithm = "none" if activation == "gelu" else ""  # "none": the exact (erf) GELU
        self.register_buffer("weight", linear.weight.detach().clone())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), self.weight, self.bias,
                                                 self.activation, [], self.algorithm)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"out_features={self.out_features}, activation={self.activation}"


class OneDNNConv2d(nn.Module):
    """``activation(conv(x))`` through oneDNN (CPU, float32; no autograd, no padding mode but zeros).

    Input ``B x C_in x H x W``, output ``B x C_out x H' x W'`` in the input's memory format.
    """

    def __init__(self, conv: nn.Conv2d, activation: str = "none"):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("OneDNNConv2d needs numeric zero padding")
        self.activation = activation
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.register_buffer("weight", conv.weight.detach().clone())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, self.padding, self.stride,
                                                       self.dilation, self.groups, self.activation, [], "")

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}, activation={self.activation}"


class TokenFactorAtt(nn.Module):
    """:class:`networks.mpvit.FactorAtt_ConvRelPosEnc` (its modules, the same result) with the
    key softmax over the tokens taken on the ``B x N x h x Ch`` layout of the ``qkv`` projection
    (channels contiguous) rather than on the ``B x h x N x Ch`` head view, whose strided
    softmax was measured 1.5-1.6 x slower per call at stages 1 and 3 (batch 1).
    """

    def __init__(self, attention: FactorAtt_ConvRelPosEnc):
        super().__init__()
        self.attention = attention

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x: B x N x C tokens -> B x N x C."""
        att = self.attention
        batch, tokens, channels = x.shape
        qkv = att.qkv(x).reshape(batch, tokens, 3, att.num_heads, channels // att.num_heads)
        q, _, v = qkv.permute(2, 0, 3, 1, 4)  # each B x h x N x Ch
        keys = torch.softmax(qkv[:, :, 1], dim=1)  # B x N x h x Ch
        context = torch.matmul(keys.permute(0, 2, 3, 1), v)  # B x h x Ch x Ch
        out = att.scale * torch.matmul(q, context) + att.crpe(q, v, size)
        return att.proj(out.transpose(1, 2).reshape(batch, tokens, channels))


class UpsampledConvBlock(nn.Module):
    """A :class:`ConvBlock` applied to ``cat([upsample2(x), skip])``, computed from the
    low-resolution ``x`` (eval-mode inference only; built by :func:`fuse_for_inference`).

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


class FusedDepthDecoder(DepthDecoder):
    """:class:`networks.DepthDecoder` whose convolutions of upsampled maps may be
    :class:`UpsampledConvBlock` s (computed from the low-resolution map)."""

    def upsampled_conv(self, block: nn.Module, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(block, UpsampledConvBlock):
            return block(x, skip)
        return super().upsampled_conv(block, x, skip)


def _onednn_usable(module: nn.Module) -> bool:
    """oneDNN runs this module's parameters: CPU float32 and a PyTorch built with oneDNN."""
    parameter = next(module.parameters(), None)
    return (torch.backends.mkldnn.is_available() and parameter is not None
            and parameter.device.type == "cpu" and parameter.dtype == torch.float32)


def _conv_act(conv: nn.Conv2d, act: nn.Module, onednn: bool) -> tuple[nn.Module, nn.Module]:
    """(convolution, activation) replacing ``act(conv(x))``: a 1 x 1 convolution with a oneDNN
    post-op activation runs through oneDNN (the activation becomes the identity); others stay."""
    if onednn and conv.kernel_size == (1, 1) and type(act) in _ONEDNN_ACTIVATIONS:
        return OneDNNConv2d(conv, _ONEDNN_ACTIVATIONS[type(act)]), nn.Identity()
    return conv, act


def fuse_for_inference(network: nn.Module, onednn: bool | None = None) -> nn.Module:
    """An eval-mode copy of ``network`` with the batch norms folded and, with ``onednn``
    (default: when usable, see the module notes), linear layers and 1 x 1 convolutions on oneDNN.

    Recognised blocks: MPViT's ``Conv2d_BN``, ``DWConv2d_BN``, ``ResBlock`` and ``Mlp``
    (``fc1`` with the GELU), ``FactorAtt_ConvRelPosEnc``, the decoder's ``ChannelAttentionFusion`` (``conv_se`` with the
    ReLU) and its upsampled-input ``ConvBlock``s (upconv 1 of every level, edge upconv 1 of
    levels 1-4), and any other ``nn.Linear``. Same inputs and outputs as ``network``; the oneDNN
    modules hold their weights as buffers and have no backward, so the copy is for inference only.
    """
    fused = copy.deepcopy(network).eval()
    if onednn is None:
        onednn = _onednn_usable(network)
    for module in list(fused.modules()):
        if isinstance(module, Conv2d_BN):
            module.conv, module.act = _conv_act(fold_batchnorm(module.conv, module.bn), module.act, onednn)
            module.bn = nn.Identity()
        elif isinstance(module, DWConv2d_BN):
            module.pwconv, module.act = _conv_act(fold_batchnorm(module.pwconv, module.bn), module.act, onednn)
            module.bn = nn.Identity()
        elif isinstance(module, ResBlock):
            module.dwconv, module.norm = fold_batchnorm(module.dwconv, module.norm), nn.Identity()
        elif isinstance(module, ChannelAttentionFusion):
            module.conv_se, module.relu = _conv_act(module.conv_se, module.relu, onednn)
        elif isinstance(module, DepthDecoder):
            module.__class__ = FusedDepthDecoder
            for level in range(5):
                upconv0, edge_upconv0, _, upconv1, edge_upconv1 = module._level(level)
                base = 5 * (4 - level)  # the level's first index in module.decoder (see DepthDecoder)
                module.decoder[base + 3] = UpsampledConvBlock(upconv1, upconv0.conv.conv.out_channels)
                if level > 0:  # level 0's edge convolutions are never run
                    module.decoder[base + 4] = UpsampledConvBlock(edge_upconv1, edge_upconv0.conv.conv.out_channels)
        elif isinstance(module, Mlp) and onednn:
            module.fc1, module.act = OneDNNLinear(module.fc1, "gelu"), nn.Identity()
        elif applies_to(module):
            module.__class__ = ExpELU
    for parent in list(fused.modules()):
        for name, child in parent.named_children():
            if isinstance(child, FactorAtt_ConvRelPosEnc):
                setattr(parent, name, TokenFactorAtt(child))
            elif onednn and type(child) is nn.Linear:
                setattr(parent, name, OneDNNLinear(child))
    return fused
