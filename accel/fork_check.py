"""Detecting a fork: does the reference still compute what the fast kernels compute?

The fast kernels re-implement the reference losses and warps. A fork that
edits the reference (a loss term in ``losses.py``, the geometry in
``layers.py``, ``Trainer.compute_losses``) changes what the reference
computes and not what the fast kernels compute. So before training, the
trainer runs one small batch through both (``Trainer.check_fast_kernels``),
in float64, where the two agree to ~1e-13 and only an edit can make them
differ, and compares every loss term and the gradient of every network with
:func:`first_difference`. ``--kernels auto`` then sets the fast kernels aside,
naming the term; ``--kernels fast`` stops with a one-line error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["RELATIVE_TOLERANCE", "PathResult", "first_difference", "random_batch"]

# float64 agreement between the paths is ~1e-13; an edit of the math shows far above this
RELATIVE_TOLERANCE = 1e-7


@dataclass
class PathResult:
    """What one path computed on the check batch.

    Attributes:
        losses: per pass over the batch, every loss value by name.
        gradients: per pass, every network's gradient as one flat vector, by network name.
    """

    losses: list[dict[str, float]] = field(default_factory=list)
    gradients: list[dict[str, torch.Tensor]] = field(default_factory=list)


def _differs(reference: float, fast: float) -> bool:
    return not abs(reference - fast) <= RELATIVE_TOLERANCE * max(1.0, abs(reference))


def first_difference(reference: PathResult, fast: PathResult) -> str | None:
    """The first loss term (the terms before the totals) or network gradient in which
    the paths differ, in words, or None."""
    for index, (ref_losses, fast_losses) in enumerate(zip(reference.losses, fast.losses)):
        where = f" (pass {index + 1})" if index else ""
        names = list(ref_losses) + [name for name in fast_losses if name not in ref_losses]
        # the terms before the totals they add up to, so that the first difference names the edited term
        for name in sorted(names, key=lambda name: name == "loss" or name.startswith("loss/")):
            if name not in ref_losses or name not in fast_losses:
                return f"the loss term '{name}'{where} is computed by one path only"
            if _differs(ref_losses[name], fast_losses[name]):
                return (f"the loss term '{name}'{where} differs: reference {ref_losses[name]:.8g}, "
                        f"fast kernels {fast_losses[name]:.8g}")
    for index, (ref_grads, fast_grads) in enumerate(zip(reference.gradients, fast.gradients)):
        where = f" (pass {index + 1})" if index else ""
        for name, ref_grad in ref_grads.items():
            fast_grad = fast_grads.get(name)
            if fast_grad is None or fast_grad.shape != ref_grad.shape:
                return f"the gradient of '{name}'{where} is computed by one path only"
            scale = max(1e-12, float(ref_grad.abs().max()))
            worst = float((ref_grad - fast_grad).abs().max())
            if worst > RELATIVE_TOLERANCE * scale:
                return (f"the gradient of '{name}'{where} differs by {worst:.3g} (largest element "
                        f"{scale:.3g})")
    return None


def random_batch(batch_size: int, height: int, width: int, frame_ids: Sequence[Any],
                 normalised_K: np.ndarray, with_coarse_poses: bool, dtype: torch.dtype,
                 device: torch.device, seed: int = 0) -> dict:
    """A batch in the trainer's input-dict convention (scale 0), made from a fixed
    seed: smooth random images (``("color", f, 0)`` = ``("color_aug", f, 0)``),
    the intrinsics ``normalised_K`` (``4 x 4``) at ``height x width``, small
    coarse poses ``("pose_gt", f)`` of the temporal frames (a few degrees, a few
    centimetres) and, with the stereo frame ``"s"``, ``"stereo_T"`` (baseline 0.1)."""
    generator = torch.Generator().manual_seed(seed)
    batch: dict = {}
    for frame_id in frame_ids:
        coarse = torch.rand(batch_size, 3, height // 8, width // 8, generator=generator, dtype=torch.float64)
        image = torch.nn.functional.interpolate(coarse, (height, width), mode="bilinear", align_corners=False)
        image = (image + 0.05 * torch.rand(image.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
        batch[("color", frame_id, 0)] = batch[("color_aug", frame_id, 0)] = image
    K = torch.as_tensor(normalised_K, dtype=torch.float64).clone()
    K[0] *= width
    K[1] *= height
    batch[("K", 0)] = K.expand(batch_size, 4, 4).clone()
    batch[("inv_K", 0)] = torch.linalg.inv(batch[("K", 0)])
    temporal = [frame_id for frame_id in frame_ids[1:] if isinstance(frame_id, int)]
    if with_coarse_poses:
        for frame_id in temporal:
            angle = 0.03 * frame_id
            pose = torch.eye(4, dtype=torch.float64).repeat(batch_size, 1, 1)
            pose[:, 0, 0] = pose[:, 2, 2] = np.cos(angle)
            pose[:, 0, 2], pose[:, 2, 0] = np.sin(angle), -np.sin(angle)
            pose[:, :3, 3] = torch.tensor([0.04, -0.01, 0.02], dtype=torch.float64) * frame_id
            batch[("pose_gt", frame_id)] = pose
    if len(temporal) < len(frame_ids) - 1:  # the stereo frame
        stereo = torch.eye(4, dtype=torch.float64).repeat(batch_size, 1, 1)
        stereo[:, 0, 3] = -0.1
        batch["stereo_T"] = stereo
    return {key: value.to(device=device, dtype=dtype) for key, value in batch.items()}
