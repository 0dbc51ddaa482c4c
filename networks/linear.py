"""A linear layer whose CPU float32 product runs on oneDNN, with autograd.

PyTorch computes ``nn.Linear`` on the CPU with MKL's GEMM, which on the
project's AMD CPU runs at about half the speed of oneDNN's (MKL takes its
AVX2 path there): ~200 against ~400 GFLOP/s at the MPViT encoder's shapes.
:class:`Linear` computes the same product as a 1 x 1 convolution of a
channels-last image whose pixels are the input's rows, which PyTorch sends
to oneDNN forward and backward, with no copy of the input or the output:
measured 1.4-1.9 x faster than ``nn.Linear`` forward + backward at the
encoder's shapes (``benchmarks/bench_linear.py``). Elsewhere (other devices
and dtypes, inputs of at most 20480 elements, which PyTorch would not give
to oneDNN, oneDNN disabled in ``torch.backends.mkldnn``, or with
:func:`set_cpu_linear_backend` ``"blas"``) it is ``nn.Linear``. Parameters and state-dict keys are ``nn.Linear``'s;
results agree up to float rounding (``tests/test_linear.py``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["CPU_LINEAR_BACKENDS", "ONEDNN_MIN_INPUT_ELEMENTS", "Linear", "onednn_linear", "set_cpu_linear_backend",
           "cpu_linear_backend"]

CPU_LINEAR_BACKENDS = ("onednn", "blas")
_backend = "onednn"
# PyTorch does not give convolutions of at most this many input elements to
# oneDNN (measured, torch 2.14): such products stay on nn.Linear
ONEDNN_MIN_INPUT_ELEMENTS = 20481


def set_cpu_linear_backend(backend: str) -> None:
    """Run :class:`Linear` on the CPU through ``"onednn"`` (default) or PyTorch's ``"blas"`` GEMM."""
    global _backend
    if backend not in CPU_LINEAR_BACKENDS:
        raise ValueError(f"CPU linear backend must be one of {CPU_LINEAR_BACKENDS}, got {backend!r}")
    _backend = backend


def cpu_linear_backend() -> str:
    """The backend :class:`Linear` uses on the CPU (see :func:`set_cpu_linear_backend`)."""
    return _backend


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


def _runs_on_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_backend == "onednn" and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.numel() >= ONEDNN_MIN_INPUT_ELEMENTS
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


class Linear(nn.Linear):
    """``nn.Linear`` (same arguments, parameters and keys) with the oneDNN product on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _runs_on_onednn(x, self.weight):
            return onednn_linear(x, self.weight, self.bias)
        return super().forward(x)
