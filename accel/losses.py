"""Fast kernel: the losses of a pass with every scale and source at once.

Replaces ``Trainer.compute_losses``'s reference loop over the scales (which
calls :func:`losses.photometric_errors` per scale). The terms and their
order are the reference's (see :mod:`losses`); what differs:

* every warped image of the pass (``F x B x 3 x S x H x W``, from
  :class:`accel.warp.BatchedWarp`) is compared with the target in one call
  of :func:`accel.photometric.photometric_errors`;
* the minima, coarse-pose and smoothness terms of all scales are one tensor
  each instead of one per scale;
* what depends on the input images only (the target's SSIM statistics, the
  identity errors, the smoothness edge weights: :class:`BatchTerms`) is
  computed once per batch and reused by its passes (:class:`BatchTermsCache`).

The tie-break noise is drawn as the reference draws it (one draw per scale,
same shapes, same order), so both give the same numbers up to float
rounding; :mod:`accel.fork_check` compares them before training.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch

from accel import photometric
from accel.photometric import PhotometricTarget
from losses import BestDisparity, Recipe, edge_weights, identity_errors_by_scale, mean_normalised

__all__ = ["BatchTerms", "BatchTermsCache", "compute_losses"]

Batch = dict[Any, torch.Tensor]
Compare = Callable[[torch.Tensor, PhotometricTarget, bool], torch.Tensor]


@dataclass(frozen=True)
class BatchTerms:
    """What the losses of a batch need of its input images alone, shared by
    every pass over it: nothing here depends on a network.

    Attributes:
        target: the target's share of every photometric comparison.
        use_ssim: whether the photometric error has its SSIM term.
        identity_errors: ``B x K x H x W`` the photometric errors of the raw
            sources (``K`` sources, or 1 when averaged), without tie-break
            noise; None without auto-masking.
        edge_weights: :func:`losses.edge_weights` of the target.
        compare: the batched photometric error (possibly compiled).
    """

    target: PhotometricTarget
    use_ssim: bool
    identity_errors: torch.Tensor | None
    edge_weights: tuple[torch.Tensor, torch.Tensor]
    compare: Compare = photometric.photometric_errors

    @classmethod
    def of(cls, inputs: Batch, source_frames: Sequence[Any], recipe: Recipe,
           compare: Compare = photometric.photometric_errors) -> "BatchTerms":
        """The terms of ``inputs`` (reads ``("color", f, 0)`` of the target and the sources)."""
        image = inputs[("color", 0, 0)]
        terms = cls(PhotometricTarget.of(image), recipe.use_ssim, None, edge_weights(image), compare)
        if not recipe.use_automasking:
            return terms
        sources = torch.stack([inputs[("color", frame_id, 0)] for frame_id in source_frames]).unsqueeze(3)
        identity = terms.photometric_errors(sources)[:, :, 0].transpose(0, 1)
        if recipe.average_reprojection:
            identity = identity.mean(1, keepdim=True)
        return replace(terms, identity_errors=identity.contiguous())

    def photometric_errors(self, predictions: torch.Tensor) -> torch.Tensor:
        """The photometric error of every image of ``predictions``
        (``F x B x 3 x S x H x W``) against the target -> ``F x B x S x H x W``."""
        return self.compare(predictions, self.target, self.use_ssim)

    def smoothness(self, disps: torch.Tensor) -> torch.Tensor:
        """:func:`losses.get_smooth_loss` of the mean-normalised ``disps``
        (``S x B x 1 x H x W``) along the target's edges -> ``S``."""
        disps = mean_normalised(disps)
        grad_x = torch.abs(disps[..., :-1] - disps[..., 1:]) * self.edge_weights[0]
        grad_y = torch.abs(disps[..., :-1, :] - disps[..., 1:, :]) * self.edge_weights[1]
        return grad_x.mean((1, 2, 3, 4)) + grad_y.mean((1, 2, 3, 4))


class BatchTermsCache:
    """The :class:`BatchTerms` of the last batch, reused while the same,
    unmodified image tensors come back (the passes over one batch).

    A batch is recognised by the identity of its ``("color", f, 0)`` tensors
    and their version counters (which in-place changes increase); images
    that require a gradient are never reused.

    Args:
        frame_ids: the frames whose images identify a batch.
    """

    def __init__(self, frame_ids: Sequence[Any]) -> None:
        self.frame_ids = list(frame_ids)
        self._entry: tuple[list[tuple[torch.Tensor, int]], BatchTerms] | None = None

    def get(self, inputs: Batch, compute: Callable[[], BatchTerms]) -> BatchTerms:
        """The cached terms while the frames of ``inputs`` are unchanged, else ``compute()`` (cached)."""
        images = [inputs[("color", frame_id, 0)] for frame_id in self.frame_ids]
        if any(image.requires_grad for image in images):
            return compute()
        fingerprint = [(image, image._version) for image in images]
        if self._entry is not None:
            cached, terms = self._entry
            if all(a is b and version_a == version_b for (a, version_a), (b, version_b) in zip(cached, fingerprint)):
                return terms
        terms = compute()
        self._entry = (fingerprint, terms)
        return terms


def compute_losses(
    terms: BatchTerms,
    outputs: dict,
    recipe: Recipe,
    scales: Sequence[int],
    epoch: int,
    distill_state: BestDisparity | None,
    noise_std: float,
) -> tuple[dict[str, torch.Tensor], BestDisparity | None]:
    """The reference losses of ``Trainer.compute_losses``, every scale at once.

    Args:
        terms: the batch's :class:`BatchTerms`.
        outputs: the forward pass; reads ``("disp", s)`` (``B x 1 x H x W``),
            ``"reprojections"`` (``F x B x 3 x S x H x W``: source ``f`` warped
            with the depth of scale ``s``) and, with coarse poses,
            ``"coarse_warped"`` (``F x B x 3 x 1 x H x W``). Adds
            ``identity_selection/<s>`` (with auto-masking) and ``"best_disp"``
            (with self-distillation), as the reference does.
        recipe, scales, epoch: as in the reference.
        distill_state: the best disparity of the earlier passes over this batch, or None.
        noise_std: standard deviation of one tie-break draw.

    Returns:
        ``(losses, state)`` with the reference's keys and values.
    """
    num_scales = len(scales)
    disps = torch.stack([outputs[("disp", scale)] for scale in scales])  # S x B x 1 x H x W
    reprojection = terms.photometric_errors(outputs["reprojections"]).permute(2, 1, 0, 3, 4)  # S x B x F x H x W
    if recipe.average_reprojection:
        reprojection = reprojection.mean(2, keepdim=True)

    identity = None
    if terms.identity_errors is not None:
        identity = torch.stack(identity_errors_by_scale(terms.identity_errors, num_scales, noise_std))
        min_error, index = torch.min(torch.cat([identity, reprojection], 2), dim=2, keepdim=True)
        for scale, selected in zip(scales, index):
            outputs[f"identity_selection/{scale}"] = (selected >= identity.shape[2]).float()
    else:
        min_error = torch.min(reprojection, dim=2, keepdim=True)[0]
    min_reprojection = min_error.mean((1, 2, 3, 4))
    smoothness = terms.smoothness(disps)
    loss = min_reprojection + recipe.smoothness_weight * smoothness / torch.tensor(
        [2.0**scale for scale in scales], dtype=disps.dtype, device=disps.device)

    losses: dict[str, torch.Tensor] = {}
    if recipe.use_coarse_pose:
        coarse = terms.photometric_errors(outputs["coarse_warped"])[:, :, 0].transpose(0, 1)  # B x F x H x W
        candidates = coarse.expand(num_scales, *coarse.shape)
        if identity is not None:
            candidates = torch.cat([identity, candidates], 2)
        coarse_terms = recipe.coarse_pose_loss_weight * torch.min(candidates, dim=2)[0].mean((1, 2, 3))
        losses["coarse_pose_loss"] = coarse_terms.mean()
        loss = loss + coarse_terms

    state = None
    if recipe.use_self_distillation:
        state = distill_state if distill_state is not None else BestDisparity.initial(disps[0])
        for disp, error in zip(disps, min_error):
            state = state.updated(disp, error)
    for scale, scale_loss, scale_min, scale_smoothness in zip(scales, loss, min_reprojection, smoothness):
        losses[f"min_reprojection/{scale}"] = scale_min.detach()
        losses[f"smoothness/{scale}"] = scale_smoothness.detach()
        losses[f"loss/{scale}"] = scale_loss
    total = loss.sum()

    if state is not None:
        distill = torch.log(1 + torch.abs(state.disp - disps)).mean((1, 2, 3, 4)).sum()
        weight = recipe.distill_loss_weight(epoch)
        total = total + weight * distill
        losses["selfpp_loss"] = distill
        losses["selfpp_weight"] = torch.tensor(weight)
        outputs["best_disp"] = state.disp

    losses["loss"] = total / num_scales
    return losses, state
