"""The fast kernels of one training pass, as the trainer calls them.

``Trainer.generate_images_posegt``, ``generate_images_pred`` and
``compute_losses`` hand their work to a :class:`FastTrainingPass` when the
fast kernels are on (``--kernels``); each method here replaces the
reference loop of the method of the same name:

* the warps of all sources (and, for the reprojections, all scales) in one
  sampling call (:class:`accel.warp.BatchedWarp`), stacked as the batched
  losses read them;
* the losses of all scales at once (:func:`accel.losses.compute_losses`),
  with the terms that depend on the batch's images only computed once per
  batch (:class:`accel.losses.BatchTermsCache`).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from accel import losses as fast_losses
from accel import photometric
from accel.warp import BatchedWarp
from layers import disp_to_depth
from losses import BestDisparity, Recipe

__all__ = ["FastTrainingPass"]

Batch = dict[Any, torch.Tensor]


class FastTrainingPass:
    """The batched warps and losses of a training pass.

    Args:
        height, width: the training size.
        recipe: the loss switches and weights.
        scales: the decoder scales in the loss.
        source_frames: the source frame ids (the order of the stacked sources).
        temporal_frames: the temporal ones (with coarse poses: the coarse-warped sources).
        min_depth, max_depth: the range of ``disp_to_depth``.
        compile: ``torch.compile`` the photometric error (``--compile``).
    """

    def __init__(self, height: int, width: int, recipe: Recipe, scales: Sequence[int], source_frames: Sequence[Any],
                 temporal_frames: Sequence[int], min_depth: float, max_depth: float, compile: bool = False) -> None:
        self.height, self.width = height, width
        self.recipe = recipe
        self.scales = list(scales)
        self.source_frames = list(source_frames)
        self.temporal_frames = list(temporal_frames)
        self.min_depth, self.max_depth = min_depth, max_depth
        self.warp = BatchedWarp(height, width)
        self.compare = torch.compile(photometric.photometric_errors) if compile else photometric.photometric_errors
        self.batch_terms = fast_losses.BatchTermsCache([0, *self.source_frames])

    def to(self, device: torch.device) -> "FastTrainingPass":
        self.warp.to(device)
        return self

    def warp_with_coarse_poses(self, inputs: Batch, outputs: dict, depth: torch.Tensor) -> None:
        """Every temporal source warped with its ``("coarse_T", f)`` and the scale-0
        ``depth`` (``B x 1 x H x W``) in one call: adds ``"coarse_warped"``
        (``T x B x 3 x 1 x H x W``) and its views ``("irw_img", f)``."""
        sources = torch.stack([inputs[("color", frame_id, 0)] for frame_id in self.temporal_frames])
        poses = torch.stack([outputs[("coarse_T", frame_id)] for frame_id in self.temporal_frames])
        warped = self.warp(sources, depth.unsqueeze(0), inputs[("K", 0)], inputs[("inv_K", 0)], poses)
        outputs["coarse_warped"] = warped
        for index, frame_id in enumerate(self.temporal_frames):
            outputs[("irw_img", frame_id)] = warped[index, :, :, 0]

    def generate_images_pred(self, inputs: Batch, outputs: dict) -> None:
        """Every source (the coarse-warped one where there is one) warped with the depth
        of every scale in one call: adds ``("depth", 0, s)``, ``"reprojections"``
        (``F x B x 3 x S x H x W``) and its views ``("color", f, s)``."""
        disps = []
        for scale in self.scales:
            disp = outputs[("disp", scale)]
            if disp.shape[-2:] != (self.height, self.width):
                disp = F.interpolate(disp, [self.height, self.width], mode="bilinear", align_corners=False)
            disps.append(disp)
        _, depths = disp_to_depth(torch.stack(disps), self.min_depth, self.max_depth)
        if self.recipe.use_coarse_pose and self.source_frames == self.temporal_frames:
            sources = outputs["coarse_warped"][:, :, :, 0]  # already stacked
        else:
            sources = torch.stack([outputs.get(("irw_img", frame_id), inputs[("color", frame_id, 0)])
                                   for frame_id in self.source_frames])
        poses = torch.stack([outputs[("cam_T_cam", 0, frame_id)] for frame_id in self.source_frames])
        reprojections = self.warp(sources, depths, inputs[("K", 0)], inputs[("inv_K", 0)], poses)
        outputs["reprojections"] = reprojections
        for scale_index, scale in enumerate(self.scales):
            outputs[("depth", 0, scale)] = depths[scale_index]
            for index, frame_id in enumerate(self.source_frames):
                outputs[("color", frame_id, scale)] = reprojections[index, :, :, scale_index]

    def compute_losses(self, inputs: Batch, outputs: dict, distill_state: BestDisparity | None, epoch: int,
                       noise_std: float) -> tuple[dict[str, torch.Tensor], BestDisparity | None]:
        """The losses of the pass (:func:`accel.losses.compute_losses`), with the batch's
        image terms reused while the same input tensors come back."""
        terms = self.batch_terms.get(inputs, lambda: fast_losses.BatchTerms.of(
            inputs, self.source_frames, self.recipe, self.compare))
        return fast_losses.compute_losses(terms, outputs, self.recipe, self.scales, epoch, distill_state, noise_std)
