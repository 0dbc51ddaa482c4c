"""Every loss term of GasMono and the function that assembles them for a batch.

Error maps are ``B x K x H x W`` with one channel ``K`` per candidate (source
frame or identity) and are reduced with a per-pixel minimum (auto-masking).
:func:`compute_batch_losses` is what ``Trainer.compute_losses`` runs: a new
loss term is one function here plus one line in it (and a weight in
:class:`Recipe` when it needs one).

The recipe, per scale ``s`` of the decoder (all compared at full resolution):

* minimum reprojection: the per-pixel minimum over the identity errors
  (auto-masking, with the release's accumulating tie-break noise) and the
  photometric errors of the sources warped with the predicted depth and pose;
* coarse-pose term (``--use_posegt``): ``www`` times the mean per-pixel
  minimum over the same identity errors and the errors of the sources warped
  with the coarse poses (never averaged over sources);
* edge-aware smoothness of the mean-normalised disparity, weighted by
  ``disparity_smoothness / 2**s``;

plus, with ``--selfpp``, the self-distillation loss towards the per-pixel best
disparity found so far (:class:`BestDisparity`), weighted by a ramp to
``wpp``. The total is the sum over scales plus the distillation term, divided
by the number of scales.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

__all__ = [
    "TIE_BREAK_NOISE_STD",
    "Recipe",
    "BestDisparity",
    "SSIM",
    "photometric_error",
    "photometric_errors",
    "get_smooth_loss",
    "mean_normalised",
    "min_over_candidates",
    "identity_errors_by_scale",
    "with_identity",
    "coarse_pose_term",
    "smoothness_term",
    "self_distillation_loss",
    "compute_batch_losses",
]

# standard deviation of the Gaussian noise that breaks ties between identity
# and reprojection errors (the release's value)
TIE_BREAK_NOISE_STD = 1e-5

Batch = dict[Any, torch.Tensor]


@dataclass
class Recipe:
    """The loss switches of the options, under descriptive names.

    This is the one place where the release's flag names (``--use_posegt``,
    ``--www``, ``--selfpp``, ``--wpp``, ``--iiters``) are mapped.
    """

    use_coarse_pose: bool
    coarse_pose_loss_weight: float
    use_self_distillation: bool
    distill_weight: float
    distill_ramp_epochs: int
    distill_passes: int
    distill_start_epoch: int
    use_automasking: bool
    average_reprojection: bool
    use_ssim: bool
    smoothness_weight: float

    @classmethod
    def from_options(cls, options) -> "Recipe":
        return cls(
            use_coarse_pose=options.use_posegt,
            coarse_pose_loss_weight=options.www,
            use_self_distillation=options.selfpp,
            distill_weight=options.wpp,
            distill_ramp_epochs=options.wpp_ramp_epochs,
            distill_passes=options.iiters,
            distill_start_epoch=options.iiters_start_epoch,
            use_automasking=not options.disable_automasking,
            average_reprojection=options.avg_reprojection,
            use_ssim=not options.no_ssim,
            smoothness_weight=options.disparity_smoothness,
        )

    def passes_per_batch(self, epoch: int) -> int:
        """Optimiser passes over one batch: ``iiters`` from the start epoch on."""
        return self.distill_passes if epoch >= self.distill_start_epoch else 1

    def distill_loss_weight(self, epoch: int) -> float:
        """``wpp * epoch / ramp`` below ``ramp`` epochs, ``wpp`` afterwards."""
        if epoch < self.distill_ramp_epochs:
            return self.distill_weight * epoch / self.distill_ramp_epochs
        return self.distill_weight


@dataclass(frozen=True)
class BestDisparity:
    """Per-pixel best disparity found so far for the current batch (the
    self-distillation state; immutable, :meth:`updated` returns a new one).

    Attributes:
        disp: ``B x 1 x H x W`` disparity (detached).
        error: ``B x 1 x H x W`` the photometric error that selected it.
    """

    disp: torch.Tensor
    error: torch.Tensor

    @classmethod
    def initial(cls, disp: torch.Tensor, initial_error: float = 10.0) -> "BestDisparity":
        """Start from ``disp`` with an error every real error beats."""
        disp = disp.detach()
        return cls(disp=disp.clone(), error=torch.full_like(disp, initial_error))

    def updated(self, disp: torch.Tensor, error: torch.Tensor) -> "BestDisparity":
        """The state with ``disp`` taken where ``error`` is strictly lower than the best error."""
        better = error.detach() < self.error
        return BestDisparity(torch.where(better, disp.detach(), self.disp), torch.minimum(self.error, error.detach()))

    def clone(self) -> "BestDisparity":
        return BestDisparity(self.disp.clone(), self.error.clone())


# --------------------------------------------------------------------------
# photometric error and smoothness
# --------------------------------------------------------------------------


class SSIM(nn.Module):
    """Per-pixel SSIM loss ``clamp((1 - SSIM) / 2, 0, 1)`` with 3x3 average
    pooling on reflection-padded inputs (``C1 = 0.01^2``, ``C2 = 0.03^2``)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1)
        self.pad = nn.ReflectionPad2d(1)
        self.c1 = 0.01**2
        self.c2 = 0.03**2

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x``, ``y`` ``B x C x H x W`` -> loss ``B x C x H x W``."""
        x = self.pad(x)
        y = self.pad(y)
        mu_x = self.pool(x)
        mu_y = self.pool(y)
        sigma_x = self.pool(x**2) - mu_x**2
        sigma_y = self.pool(y**2) - mu_y**2
        sigma_xy = self.pool(x * y) - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + self.c1) * (2 * sigma_xy + self.c2)
        denominator = (mu_x**2 + mu_y**2 + self.c1) * (sigma_x + sigma_y + self.c2)
        return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


def photometric_error(
    prediction: torch.Tensor, target: torch.Tensor, ssim: SSIM | None, ssim_weight: float = 0.85
) -> torch.Tensor:
    """GasMono's photometric error, averaged over channels.

    ``0.85 * SSIM_loss + 0.15 * |target - prediction| / (target + 0.01)``
    (a relative L1, unlike Monodepth2's plain L1). Without ``ssim`` only the
    relative L1 term is returned.

    Args:
        prediction, target: ``B x 3 x H x W``.

    Returns:
        ``B x 1 x H x W``.
    """
    relative_l1 = (torch.abs(target - prediction) / (target + 0.01)).mean(1, True)
    if ssim is None:
        return relative_l1
    ssim_loss = ssim(prediction, target).mean(1, True)
    return ssim_weight * ssim_loss + (1 - ssim_weight) * relative_l1


def photometric_errors(
    predictions: Sequence[torch.Tensor], target: torch.Tensor, ssim: SSIM | None, average: bool = False
) -> torch.Tensor:
    """:func:`photometric_error` of each prediction against ``target``, stacked
    -> ``B x K x H x W``, or their channel mean ``B x 1 x H x W`` when ``average``."""
    errors = torch.cat([photometric_error(prediction, target, ssim) for prediction in predictions], 1)
    if average:
        errors = errors.mean(1, keepdim=True)
    return errors


def get_smooth_loss(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of ``disp`` (``B x 1 x H x W``),
    weighted by ``exp(-|grad image|)`` (``image`` ``B x 3 x H x W``)."""
    grad_disp_x = torch.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:])
    grad_disp_y = torch.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :])
    grad_image_x = torch.mean(torch.abs(image[:, :, :, :-1] - image[:, :, :, 1:]), 1, keepdim=True)
    grad_image_y = torch.mean(torch.abs(image[:, :, :-1, :] - image[:, :, 1:, :]), 1, keepdim=True)
    grad_disp_x = grad_disp_x * torch.exp(-grad_image_x)
    grad_disp_y = grad_disp_y * torch.exp(-grad_image_y)
    return grad_disp_x.mean() + grad_disp_y.mean()


def mean_normalised(disp: torch.Tensor) -> torch.Tensor:
    """``disp / mean(disp)`` per image (``B x 1 x H x W``)."""
    mean_disp = disp.mean(2, True).mean(3, True)
    return disp / (mean_disp + 1e-7)


# --------------------------------------------------------------------------
# minimum reprojection and auto-masking
# --------------------------------------------------------------------------


def min_over_candidates(errors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel minimum over the candidate channel.

    Args:
        errors: ``B x K x H x W``.

    Returns:
        ``(min_error B x 1 x H x W, argmin B x 1 x H x W)``.
    """
    min_error, index = torch.min(errors, dim=1, keepdim=True)
    return min_error, index


def identity_errors_by_scale(identity_errors: torch.Tensor, num_scales: int, noise_std: float) -> list[torch.Tensor]:
    """The identity (auto-masking) errors of each scale with the release's tie-break noise.

    The release adds a fresh ``N(0, noise_std^2)`` draw to the identity errors
    in place at every scale, so the noise accumulates: the errors of scale
    ``s`` carry the sum of the ``s + 1`` draws ``0..s`` (variance
    ``(s + 1) * noise_std^2``). Where auto-masking picks an identity term,
    the per-pixel minimum then differs between scales only by this noise,
    which decides the scale the best disparity of self-distillation comes
    from. Draws come from the global torch generator of the tensor's device.

    Args:
        identity_errors: ``B x K x H x W`` errors without noise.
        num_scales: number of scales.
        noise_std: standard deviation of one draw; 0 adds no noise.

    Returns:
        ``num_scales`` tensors ``B x K x H x W``, scale 0 first.
    """
    by_scale = []
    errors = identity_errors
    for _ in range(num_scales):
        if noise_std > 0:
            errors = errors + torch.randn_like(errors) * noise_std
        by_scale.append(errors)
    return by_scale


def with_identity(identity_errors: torch.Tensor | None, errors: torch.Tensor) -> torch.Tensor:
    """Prepend the identity candidates (when auto-masking) to ``errors``:
    ``B x (K_identity + K) x H x W``."""
    return errors if identity_errors is None else torch.cat([identity_errors, errors], 1)


# --------------------------------------------------------------------------
# the other terms
# --------------------------------------------------------------------------


def coarse_pose_term(identity_errors: torch.Tensor | None, coarse_errors: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight`` times the mean per-pixel minimum over the identity errors
    (``B x K x H x W`` or None without auto-masking) and the errors of the
    coarse-warped sources (``B x K x H x W``) -> a scalar."""
    return weight * min_over_candidates(with_identity(identity_errors, coarse_errors))[0].mean()


def smoothness_term(disp: torch.Tensor, target: torch.Tensor, weight: float, scale: int) -> torch.Tensor:
    """``weight / 2**scale`` times the edge-aware smoothness of the mean-normalised
    ``disp`` (``B x 1 x H x W``) along the edges of ``target`` -> a scalar."""
    return weight * get_smooth_loss(mean_normalised(disp), target) / (2**scale)


def self_distillation_loss(best_disp: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """``mean(log(1 + |best - disp|))`` with ``best`` a constant (no gradient)."""
    return torch.log(1 + torch.abs(best_disp.detach() - disp)).mean()


# --------------------------------------------------------------------------
# the batch
# --------------------------------------------------------------------------


def compute_batch_losses(
    inputs: Batch,
    outputs: dict,
    recipe: Recipe,
    ssim: SSIM | None,
    scales: Sequence[int],
    source_frames: Sequence[int],
    epoch: int,
    distill_state: BestDisparity | None = None,
    noise_std: float = TIE_BREAK_NOISE_STD,
) -> tuple[dict[str, torch.Tensor], BestDisparity | None]:
    """GasMono's losses of one batch (see the module docstring for the recipe).

    Args:
        inputs: the input dict; reads ``("color", f, 0)`` for the target ``f = 0``
            and every source frame (``B x 3 x H x W``).
        outputs: the forward pass; reads ``("disp", s)``, ``("color", f, s)``
            and, with coarse poses, ``("irw_img", f)`` (all ``H x W``). Adds
            ``identity_selection/<s>`` (``B x 1 x H x W``, 1 where a
            reprojection won over the identity; only with auto-masking) and,
            with self-distillation, ``"best_disp"`` (``B x 1 x H x W``).
        recipe: the loss switches and weights.
        ssim: the SSIM module, None for the relative L1 alone (``--no_ssim``).
        scales: decoder scales in the loss, ``0..N-1``.
        source_frames: the source frame ids, e.g. ``[-1, 1]``.
        epoch: the epoch (for the distillation weight's ramp).
        distill_state: the best disparity carried from the earlier passes
            over this batch; None starts from the scale-0 disparity.
        noise_std: standard deviation of the tie-break noise (0: none).

    Returns:
        ``(losses, state)``: ``losses["loss"]`` is the total to optimise; also
        ``loss/<s>`` and ``min_reprojection/<s>`` per scale,
        ``coarse_pose_loss`` (the weighted coarse-pose term averaged over
        scales, its share of the total), ``selfpp_loss`` and
        ``selfpp_weight``. ``state`` is the updated best disparity (None
        without self-distillation); ``distill_state`` is not modified.
    """
    target = inputs[("color", 0, 0)]
    num_scales = len(scales)
    losses: dict[str, torch.Tensor] = {}

    identity_by_scale: list[torch.Tensor | None] = [None] * num_scales
    if recipe.use_automasking:
        identity_errors = photometric_errors([inputs[("color", frame_id, 0)] for frame_id in source_frames],
                                             target, ssim, recipe.average_reprojection)
        identity_by_scale = identity_errors_by_scale(identity_errors, num_scales, noise_std)

    coarse_errors = None
    if recipe.use_coarse_pose:
        coarse_errors = photometric_errors([outputs[("irw_img", frame_id)] for frame_id in source_frames], target,
                                           ssim)

    state = None
    if recipe.use_self_distillation:
        state = distill_state if distill_state is not None else BestDisparity.initial(outputs[("disp", 0)])

    total = 0.0
    coarse_pose_terms = []
    for scale, identity_errors in zip(scales, identity_by_scale):
        disp = outputs[("disp", scale)]
        reprojection_errors = photometric_errors([outputs[("color", frame_id, scale)] for frame_id in source_frames],
                                                 target, ssim, recipe.average_reprojection)
        min_error, index = min_over_candidates(with_identity(identity_errors, reprojection_errors))
        if identity_errors is not None:
            outputs[f"identity_selection/{scale}"] = (index >= identity_errors.shape[1]).float()
        loss = min_error.mean()
        losses[f"min_reprojection/{scale}"] = loss.detach()
        if coarse_errors is not None:
            coarse_pose_terms.append(coarse_pose_term(identity_errors, coarse_errors, recipe.coarse_pose_loss_weight))
            loss = loss + coarse_pose_terms[-1]
        loss = loss + smoothness_term(disp, target, recipe.smoothness_weight, scale)
        if state is not None:
            state = state.updated(disp, min_error)
        losses[f"loss/{scale}"] = loss
        total = total + loss

    if coarse_pose_terms:
        losses["coarse_pose_loss"] = torch.stack(coarse_pose_terms).mean()
    if state is not None:
        distill = sum(self_distillation_loss(state.disp, outputs[("disp", scale)]) for scale in scales)
        weight = recipe.distill_loss_weight(epoch)
        total = total + weight * distill
        losses["selfpp_loss"] = distill
        losses["selfpp_weight"] = torch.tensor(weight)
        outputs["best_disp"] = state.disp

    losses["loss"] = total / num_scales
    return losses, state
