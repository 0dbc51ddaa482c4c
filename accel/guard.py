"""Which kernels a run uses: ``--kernels {auto,reference,fast}``.

``reference`` runs the plain PyTorch of ``losses.py``, ``layers.py``,
``networks/`` and ``torch.optim.AdamW``. ``fast`` runs the kernels of this
package wherever they can run. ``auto`` (the default) runs them only where
they were verified (:data:`VERIFIED`: the CPU, float32, the torch versions
their tests ran on) and the reference elsewhere. Either way a fast kernel
that needs a private torch op the installed torch lacks is set aside, never
a crash; the choice is one log line (:meth:`KernelPlan.describe`).

Choices that pay on one processor and not another (the oneDNN linear
product) are made by measurement on the machine (:mod:`accel.tuning`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

import torch

from accel import elu, fusion, photometric, tuning
from utils import KERNEL_MODES

__all__ = ["KERNEL_MODES", "VERIFIED", "KernelPlan", "InferencePlan", "missing_private_ops", "plan_training",
           "plan_inference"]

@dataclass(frozen=True)
class Verified:
    """Where ``auto`` uses the fast kernels: their tests ran there."""

    device_type: str = "cpu"
    dtype: torch.dtype = torch.float32
    torch_versions: tuple[str, ...] = ("2.14",)  # major.minor

    def why_not(self, device: torch.device, dtype: torch.dtype) -> str | None:
        """Why ``device`` / ``dtype`` / the installed torch is outside, or None."""
        if device.type != self.device_type:
            return f"the fast kernels are verified on the {self.device_type.upper()} only, this run is on {device}"
        if dtype != self.dtype:
            return f"the fast kernels are verified in {self.dtype}, this run is in {dtype}"
        version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
        if version not in self.torch_versions:
            return (f"the fast kernels were verified with torch {', '.join(self.torch_versions)}, "
                    f"this is torch {torch.__version__}")
        return None


VERIFIED = Verified()

# private torch names the training kernels rely on
TRAINING_PRIVATE_OPS = (*photometric.PRIVATE_OPS, *elu.PRIVATE_OPS)
TRAINING_PRIVATE_METHODS = ((torch.optim.AdamW, "_init_group"),)


def missing_private_ops(ops: Iterable[str]) -> list[str]:
    """The ops of ``ops`` (``"namespace.name"``, e.g. ``"aten.elu_backward"``) that torch lacks."""
    missing = []
    for op in ops:
        namespace, name = op.split(".", 1)
        try:
            getattr(getattr(torch.ops, namespace), name)
        except (AttributeError, RuntimeError):
            missing.append(op)
    return missing


def _missing_training_names() -> list[str]:
    missing = missing_private_ops(TRAINING_PRIVATE_OPS)
    missing += [f"{owner.__name__}.{name}" for owner, name in TRAINING_PRIVATE_METHODS if not hasattr(owner, name)]
    return missing


@dataclass(frozen=True)
class KernelPlan:
    """The kernels of a training run.

    Attributes:
        fast: the fast training pass (batched warps and losses, per-batch
            term reuse), the exp ELU and the copy-free AdamW; else the reference.
        reason: why, in words.
        onednn_linear: also the oneDNN linear layers (measured to pay here).
    """

    fast: bool
    reason: str
    onednn_linear: bool = False

    def describe(self) -> str:
        """The one log line of the choice."""
        if not self.fast:
            return f"kernels: reference ({self.reason})"
        linear = "oneDNN (measured faster here)" if self.onednn_linear else "the library's"
        return f"kernels: fast ({self.reason}; linear layers: {linear})"

    def set_aside(self, reason: str) -> "KernelPlan":
        """The reference, for ``reason``."""
        return replace(self, fast=False, reason=reason, onednn_linear=False)


def plan_training(mode: str, device: torch.device, dtype: torch.dtype = torch.float32,
                  deterministic: bool = False) -> KernelPlan:
    """The kernels of a training run on ``device`` in ``dtype`` for ``--kernels mode``.

    With ``deterministic`` no choice depends on a timing: the linear layers
    stay the library's.
    """
    if mode not in KERNEL_MODES:
        raise ValueError(f"kernels must be one of {KERNEL_MODES}, got {mode!r}")
    if mode == "reference":
        return KernelPlan(False, "--kernels reference")
    missing = _missing_training_names()
    if missing:
        return KernelPlan(False, f"this torch ({torch.__version__}) lacks {', '.join(missing)}, which the fast "
                                 "kernels call")
    outside = VERIFIED.why_not(device, dtype)
    if mode == "auto" and outside:
        return KernelPlan(False, f"auto: {outside}")
    reason = f"--kernels fast on {device}, {dtype}" if outside else (
        f"{device.type.upper()}, {str(dtype).removeprefix('torch.')}, torch {torch.__version__}: verified")
    onednn = device.type == "cpu" and dtype == torch.float32 and not deterministic and tuning.onednn_linear_pays()
    return KernelPlan(True, reason, onednn_linear=onednn)


@dataclass(frozen=True)
class InferencePlan:
    """The kernels of evaluation and prediction.

    Attributes:
        fuse: run fused copies of the networks (:func:`accel.fusion.fuse_for_inference`).
        onednn: with oneDNN linear layers and 1 x 1 convolutions (CPU float32), where a
            measurement on the machine says they pay (:func:`accel.tuning.onednn_inference_pays`).
        reason: why, in words.
    """

    fuse: bool
    onednn: bool
    reason: str

    def describe(self) -> str:
        if not self.fuse:
            return f"kernels: reference ({self.reason})"
        linear = "oneDNN (measured faster here)" if self.onednn else "the library's"
        return f"kernels: fused networks ({self.reason}; linear layers and 1x1 convolutions: {linear})"


def plan_inference(mode: str, device: torch.device, compile: bool = False) -> InferencePlan:
    """The inference kernels on ``device`` (float32) for ``--kernels mode``; with
    ``compile`` the oneDNN modules are left out (``torch.compile`` cannot lower
    their weights; it fuses for oneDNN itself)."""
    if mode not in KERNEL_MODES:
        raise ValueError(f"kernels must be one of {KERNEL_MODES}, got {mode!r}")
    if mode == "reference":
        return InferencePlan(False, False, "--kernels reference")
    outside = VERIFIED.why_not(device, torch.float32)
    if mode == "auto" and outside:
        return InferencePlan(False, False, f"auto: {outside}")
    onednn = (device.type == "cpu" and not compile and torch.backends.mkldnn.is_available()
              and not missing_private_ops(fusion.PRIVATE_OPS) and tuning.onednn_inference_pays())
    reason = f"--kernels fast on {device}" if outside else f"{device.type.upper()}, torch {torch.__version__}: verified"
    return InferencePlan(True, onednn, reason)
