"""Every loss term of GasMono and the function that assembles them for a batch.

Error maps hold one channel ``K`` per candidate (source frame or identity)
and are reduced with a per-pixel minimum (auto-masking).
:func:`compute_batch_losses` is what ``Trainer.compute_losses`` runs: a new
loss term is one function here plus one line in it (and a weight in
:class:`Recipe` when it needs one).

Two formulations of the same math live here: the per-comparison functions
(:class:`SSIM` ``forward``, :func:`photometric_error`, :func:`get_smooth_loss`),
one prediction, one target, one scale at a time as the release computes
them; and the batched one that training runs, which compares every warped
image of every scale and source with the target in one call
(:meth:`BatchTerms.photometric_errors`) and reuses what depends on the input
images only (the target's SSIM statistics, the identity errors, the edge
weights of the smoothness term: :class:`BatchTerms`) across the passes of a
batch. ``tests/test_batched_losses.py`` checks that both agree, gradients
included.

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

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

import photometric
from photometric import L1_OFFSET, SSIM_C1, SSIM_C2, SSIM_WEIGHT, PhotometricTarget

__all__ = [
    "TIE_BREAK_NOISE_STD",
    "Recipe",
    "BestDisparity",
    "SSIM",
    "photometric_error",
    "photometric_errors",
    "edge_weights",
    "get_smooth_loss",
    "mean_normalised",
    "identity_errors_by_scale",
    "self_distillation_loss",
    "BatchTerms",
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
# photometric error and smoothness: one comparison at a time
# --------------------------------------------------------------------------


class SSIM(nn.Module):
    """Per-pixel SSIM loss ``clamp((1 - SSIM) / 2, 0, 1)`` with 3x3 average
    pooling on reflection-padded inputs (``C1 = 0.01^2``, ``C2 = 0.03^2``),
    one comparison at a time (training compares every prediction of a batch
    at once: :func:`photometric.photometric_errors`)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1)
        self.pad = nn.ReflectionPad2d(1)
        self.c1 = SSIM_C1
        self.c2 = SSIM_C2

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
    prediction: torch.Tensor, target: torch.Tensor, ssim: SSIM | None, ssim_weight: float = SSIM_WEIGHT
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
    relative_l1 = (torch.abs(target - prediction) / (target + L1_OFFSET)).mean(1, True)
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


def edge_weights(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``exp(-|grad image|)`` of the smoothness term, the gradient averaged over
    the channels: ``B x 3 x H x W`` -> along x ``B x 1 x H x W-1``, along y
    ``B x 1 x H-1 x W``."""
    grad_image_x = torch.mean(torch.abs(image[:, :, :, :-1] - image[:, :, :, 1:]), 1, keepdim=True)
    grad_image_y = torch.mean(torch.abs(image[:, :, :-1, :] - image[:, :, 1:, :]), 1, keepdim=True)
    return torch.exp(-grad_image_x), torch.exp(-grad_image_y)


def get_smooth_loss(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of ``disp`` (``B x 1 x H x W``),
    weighted by :func:`edge_weights` of ``image`` (``B x 3 x H x W``)."""
    weight_x, weight_y = edge_weights(image)
    grad_disp_x = torch.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:]) * weight_x
    grad_disp_y = torch.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :]) * weight_y
    return grad_disp_x.mean() + grad_disp_y.mean()


def mean_normalised(disp: torch.Tensor) -> torch.Tensor:
    """``disp / mean(disp)`` per image over its last two dimensions (``... x H x W``)."""
    mean_disp = disp.mean(-2, True).mean(-1, True)
    return disp / (mean_disp + 1e-7)


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


def self_distillation_loss(best_disp: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """``mean(log(1 + |best - disp|))`` with ``best`` a constant (no gradient)."""
    return torch.log(1 + torch.abs(best_disp.detach() - disp)).mean()


# --------------------------------------------------------------------------
# the batch: every comparison at once
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchTerms:
    """What the losses of a batch need of its input images alone, computed
    once per batch and shared by every pass over it (see
    ``Trainer.batch_terms``): nothing here depends on a network.

    Attributes:
        target: the target's share of every photometric comparison.
        use_ssim: whether the photometric error has its SSIM term.
        identity_errors: ``B x K x H x W`` the photometric errors of the raw
            sources (``K`` sources, or 1 when averaged), without tie-break
            noise; None without auto-masking.
        edge_weights: :func:`edge_weights` of the target (smoothness term).
        compare: the photometric error, :func:`photometric.photometric_errors`
            or a compiled version of it.
    """

    target: PhotometricTarget
    use_ssim: bool
    identity_errors: torch.Tensor | None
    edge_weights: tuple[torch.Tensor, torch.Tensor]
    compare: Callable[[torch.Tensor, PhotometricTarget, bool], torch.Tensor] = photometric.photometric_errors

    @classmethod
    def of(cls, inputs: Batch, source_frames: Sequence[int], recipe: Recipe,
           compare: Callable[[torch.Tensor, PhotometricTarget, bool], torch.Tensor] = photometric.photometric_errors,
           ) -> "BatchTerms":
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
        """:func:`photometric_error` of every image of ``predictions``
        (``F x B x 3 x S x H x W``) against the target -> ``F x B x S x H x W``."""
        return self.compare(predictions, self.target, self.use_ssim)

    def smoothness(self, disps: torch.Tensor) -> torch.Tensor:
        """:func:`get_smooth_loss` of the mean-normalised ``disps``
        (``S x B x 1 x H x W``) along the target's edges -> ``S``."""
        disps = mean_normalised(disps)
        grad_x = torch.abs(disps[..., :-1] - disps[..., 1:]) * self.edge_weights[0]
        grad_y = torch.abs(disps[..., :-1, :] - disps[..., 1:, :]) * self.edge_weights[1]
        return grad_x.mean((1, 2, 3, 4)) + grad_y.mean((1, 2, 3, 4))


def compute_batch_losses(
    inputs: Batch,
    outputs: dict,
    recipe: Recipe,
    scales: Sequence[int],
    source_frames: Sequence[int],
    epoch: int,
    distill_state: BestDisparity | None = None,
    noise_std: float = TIE_BREAK_NOISE_STD,
    terms: BatchTerms | None = None,
) -> tuple[dict[str, torch.Tensor], BestDisparity | None]:
    """GasMono's losses of one batch (see the module docstring for the recipe).

    Every scale and source is computed at once: the photometric errors of all
    warped images in one call against the target's statistics, the minima,
    coarse-pose and smoothness terms of all scales in one tensor each.

    Args:
        inputs: the input dict; reads ``("color", f, 0)`` for the target ``f = 0``
            and every source frame (``B x 3 x H x W``) unless ``terms`` is given.
        outputs: the forward pass; reads ``("disp", s)`` (``B x 1 x H x W``),
            ``"reprojections"`` (``F x B x 3 x S x H x W``: source ``f`` warped
            with the depth of scale ``s``) and, with coarse poses,
            ``"coarse_warped"`` (``F x B x 3 x 1 x H x W``). Adds
            ``identity_selection/<s>`` (``B x 1 x H x W``, 1 where a
            reprojection won over the identity; only with auto-masking) and,
            with self-distillation, ``"best_disp"`` (``B x 1 x H x W``).
        recipe: the loss switches and weights.
        scales: decoder scales in the loss, ``0..N-1``.
        source_frames: the source frame ids, e.g. ``[-1, 1]`` (the order of ``F``).
        epoch: the epoch (for the distillation weight's ramp).
        distill_state: the best disparity carried from the earlier passes
            over this batch; None starts from the scale-0 disparity.
        noise_std: standard deviation of the tie-break noise (0: none); a
            fresh draw per scale and call.
        terms: :meth:`BatchTerms.of` the inputs when already computed.

    Returns:
        ``(losses, state)``: ``losses["loss"]`` is the total to optimise; also
        ``loss/<s>`` and ``min_reprojection/<s>`` per scale,
        ``coarse_pose_loss`` (the weighted coarse-pose term averaged over
        scales, its share of the total), ``selfpp_loss`` and
        ``selfpp_weight``. ``state`` is the updated best disparity (None
        without self-distillation); ``distill_state`` is not modified.
    """
    if terms is None:
        terms = BatchTerms.of(inputs, source_frames, recipe)
    num_scales = len(scales)
    disps = torch.stack([outputs[("disp", scale)] for scale in scales])  # S x B x 1 x H x W
    reprojection = terms.photometric_errors(outputs["reprojections"]).permute(2, 1, 0, 3, 4)  # S x B x F
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
    loss = min_reprojection + recipe.smoothness_weight * terms.smoothness(disps) / torch.tensor(
        [2.0**scale for scale in scales], device=disps.device)

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
    for scale, scale_loss, scale_min in zip(scales, loss, min_reprojection):
        losses[f"min_reprojection/{scale}"] = scale_min.detach()
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
