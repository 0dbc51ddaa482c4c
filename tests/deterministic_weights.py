"""Deterministic weights and test images behind the parity fixtures.

The fixtures in ``tests/fixtures/`` were computed by the published GasMono
networks with every floating-point tensor overwritten by a value that depends
only on its state-dict key, its shape and a salt. Any implementation with the
release's state-dict keys therefore receives the same numbers, and its outputs
can be compared with the release's.

The rule, for one tensor under state-dict ``key``:

* seed: ``zlib.crc32(key)``, or ``zlib.crc32(salt + "/" + key)`` with a salt
  (the fixtures use the model's file name, e.g. ``"encoder"``, ``"depth"``);
* values: ``lo + (hi - lo) * u`` with ``u = torch.rand(shape, float64)`` from a
  CPU generator seeded with that seed, cast to the tensor's dtype;
* ``(lo, hi)`` by the key's last dotted component: ``running_var`` [0.5, 1.5];
  ``running_mean`` [-0.1, 0.1]; ``weight`` with two or more dimensions
  [-a, a] where ``a = gain * sqrt(3 / fan_in)``, ``fan_in = numel / shape[0]``,
  ``gain = 1.1`` (0.2 for MPViT's depthwise ``cpe.proj.weight`` kernels, which
  are re-applied before every block); a one-dimensional ``weight`` [0.9, 1.1];
  ``bias`` [-0.05, 0.05]; any other floating tensor [-0.1, 0.1];
* integer buffers (``num_batches_tracked``) are left alone, and a tensor
  registered under several keys (MPViT's shared position encodings) is filled
  once, from the first key under which it appears.
"""
from __future__ import annotations

import math
import zlib

import torch
import torch.nn as nn

WEIGHT_GAIN = 1.1
POSITION_ENCODING_GAIN = 0.2


def key_seed(key: str, salt: str = "") -> int:
    """CRC-32 of ``key`` (or of ``salt + "/" + key``)."""
    text = f"{salt}/{key}" if salt else key
    return zlib.crc32(text.encode("utf-8"))


def value_range(key: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """The uniform range ``(lo, hi)`` of the tensor stored under ``key``."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return 0.5, 1.5
    if leaf == "running_mean":
        return -0.1, 0.1
    if leaf == "weight" and len(shape) >= 2:
        fan_in = max(1, math.prod(shape) // shape[0])
        gain = POSITION_ENCODING_GAIN if key.endswith("cpe.proj.weight") else WEIGHT_GAIN
        bound = gain * math.sqrt(3.0 / fan_in)
        return -bound, bound
    if leaf == "weight":
        return 0.9, 1.1
    if leaf == "bias":
        return -0.05, 0.05
    return -0.1, 0.1


def _distinct_float_tensors(module: nn.Module):
    """``(key, tensor)`` for each floating tensor of the state dict, first key only."""
    seen: set[int] = set()
    for key, tensor in module.state_dict(keep_vars=True).items():
        if not isinstance(tensor, torch.Tensor) or not torch.is_floating_point(tensor) or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        yield key, tensor


@torch.no_grad()
def fill_(module: nn.Module, salt: str = "") -> nn.Module:
    """Overwrite every floating-point parameter and buffer of ``module`` in place."""
    for key, tensor in _distinct_float_tensors(module):
        generator = torch.Generator(device="cpu").manual_seed(key_seed(key, salt))
        uniform = torch.rand(tuple(tensor.shape), generator=generator, dtype=torch.float64)
        low, high = value_range(key, tuple(tensor.shape))
        tensor.data.copy_((low + (high - low) * uniform).to(dtype=tensor.dtype, device=tensor.device))
    return module


@torch.no_grad()
def checksum(module: nn.Module) -> dict[str, float]:
    """Float64 ``sum``, ``sum_sq`` and element ``count`` over the distinct floating tensors."""
    total, total_sq, count = 0.0, 0.0, 0
    for _, tensor in _distinct_float_tensors(module):
        values = tensor.detach().to(torch.float64)
        total += float(values.sum())
        total_sq += float((values * values).sum())
        count += values.numel()
    return {"sum": total, "sum_sq": total_sq, "count": count}


def make_image(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    """A deterministic ``batch x 3 x height x width`` float32 image in [0, 1].

    Per image and channel: 0.5 plus three sinusoids (amplitudes 0.22, 0.12,
    0.06; random direction, frequency and phase) plus uniform noise of
    amplitude 0.04, clamped to [0, 1] and rounded to multiples of 1/255, all in
    float64 from a generator seeded with ``crc32("make_image/<seed>")``.
    """
    generator = torch.Generator(device="cpu").manual_seed(zlib.crc32(f"make_image/{int(seed)}".encode("utf-8")))
    params = torch.rand((batch, 3, 3, 4), generator=generator, dtype=torch.float64)
    noise = torch.rand((batch, 3, height, width), generator=generator, dtype=torch.float64)
    ys = (torch.arange(height, dtype=torch.float64) / max(1, height - 1)).view(1, 1, height, 1)
    xs = (torch.arange(width, dtype=torch.float64) / max(1, width - 1)).view(1, 1, 1, width)
    image = torch.full((batch, 3, height, width), 0.5, dtype=torch.float64)
    for index, amplitude in enumerate((0.22, 0.12, 0.06)):
        direction = 2.0 * math.pi * params[:, :, index, 0].view(batch, 3, 1, 1)
        frequency = (0.6 + 2.4 * (index + 1) * params[:, :, index, 1]).view(batch, 3, 1, 1)
        phase = 2.0 * math.pi * params[:, :, index, 2].view(batch, 3, 1, 1)
        argument = 2.0 * math.pi * frequency * (torch.cos(direction) * xs + torch.sin(direction) * ys) + phase
        image = image + amplitude * torch.sin(argument)
    image = (image + 0.08 * (noise - 0.5)).clamp(0.0, 1.0)
    return (torch.round(image * 255.0) / 255.0).to(torch.float32)
