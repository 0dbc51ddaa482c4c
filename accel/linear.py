"""Fast kernel: linear layers whose CPU float32 product runs on oneDNN, with autograd.

Replaces ``nn.Linear`` (MPViT's ``qkv``, ``proj``, ``fc1``, ``fc2``), the
reference. PyTorch computes ``nn.Linear`` on the CPU with MKL's GEMM; on some
CPUs that is about half the speed of oneDNN's convolutions (measured on a
2-core AMD EPYC where MKL takes its AVX2 path: ~200 against ~400 GFLOP/s at
the encoder's shapes, 1.6-1.7 x over the encoder's linear shapes), on others
the two are level (an AVX-512 EPYC of the same machine kind: 1.00 x). So
whether it is used is decided on the machine, by a start-up measurement
(:mod:`accel.tuning`, ``benchmarks/bench_linear.py`` prints the same).

:class:`Conv1x1Linear` computes ``x W^T + b`` as a 1 x 1 convolution of a
channels-last image whose pixels are the input's rows, which PyTorch sends to
oneDNN forward and backward, with no copy of the input or the output. Where
that does not apply (other devices and dtypes, inputs of at most 20480
elements, which PyTorch would not give to oneDNN, or oneDNN disabled in
``torch.backends.mkldnn``) it is ``nn.Linear``. Parameters and state-dict
keys are ``nn.Linear``'s; results agree up to float rounding
(``tests/test_accel_modules.py``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ONEDNN_MIN_INPUT_ELEMENTS", "Conv1x1Linear", "onednn_linear"]

# PyTorch does not give convolutions of at most this many input elements to
# oneDNN (measured, torch 2.14): such products stay on nn.Linear
ONEDNN_MIN_INPUT_ELEMENTS = 20481


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x W^T + b`` as a 1 x 1 convolution: ``... x C`` -> ``... x O`` (``weight`` ``O x C``).

    The ``M x C`` rows become a ``1 x C x 1 x M`` image in channels-last memory
    (a view), and the convolution's channels-last ``1 x O x 1 x M`` output is the
    ``M x O`` result (a view).
    """
    rows = x.reshape(-1, x.shape[-1])
    image = rows.view(1, 1, *rows.shape).permute(0, 3, 1, 2)
    # a 1 x 1 kernel's dilation changes nothing; it makes PyTorch pick oneDNN on one
    # thread too (undilated, it takes its GEMM path for one image on one thread)
    out = F.conv2d(image, weight.view(*weight.shape, 1, 1), bias, dilation=2)
    return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])


def runs_on_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`onednn_linear` applies to this product (else ``nn.Linear``'s)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.numel() >= ONEDNN_MIN_INPUT_ELEMENTS
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


class Conv1x1Linear(nn.Linear):
    """``nn.Linear`` (same arguments, parameters and keys) with the oneDNN product on the CPU.

    :func:`accel.modules.accelerate` turns the ``nn.Linear`` modules of a
    network into this class in place (and back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if runs_on_onednn(x, self.weight):
            return onednn_linear(x, self.weight, self.bias)
        return super().forward(x)
