"""Every loss term of GasMono, one comparison at a time, in plain PyTorch.

These functions are the reference: ``Trainer.compute_losses`` assembles them
(per scale, then the self-distillation term) and a fork that edits one of
them changes what training computes. ``accel/`` holds a batched
implementation of the same math that training runs where it was verified
(``--kernels``); before training, the two are compared on a small batch and
the fast one is set aside when they differ (see :mod:`accel.fork_check`).

The terms, for the target image ``I`` and every scale ``s`` of the decoder
(all compared at full resolution):

* photometric error ``0.85 * SSIM_loss + 0.15 * |I - x| / (I + 0.01)``
  (:func:`photometric_error`, a relative L1 unlike Monodepth2's plain L1);
* auto-masking: the identity errors of the raw sources, with tie-break noise
  that accumulates over the scales as in the release
  (:func:`identity_errors_by_scale`), compete in a per-pixel minimum with the
  reprojection errors;
* the coarse-pose term: the per-pixel minimum over the identity errors and the
  errors of the sources warped with the coarse poses;
* edge-aware smoothness of the mean-normalised disparity
  (:func:`get_smooth_loss`, :func:`mean_normalised`);
* self-distillation towards the per-pixel best disparity found so far
  (:class:`BestDisparity`, :func:`self_distillation_loss`).

The switches and weights of these terms are :class:`Recipe`, the one place
where the release's flag names are mapped to descriptive ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

__all__ = [
    "SSIM_C1",
    "SSIM_C2",
    "SSIM_WEIGHT",
    "L1_OFFSET",
    "TIE_BREAK_NOISE_STD",
    "INITIAL_BEST_ERROR",
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
]

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
# weight of the SSIM term of the photometric error (the relative L1 has 1 - SSIM_WEIGHT)
SSIM_WEIGHT = 0.85
# the relative L1 divides by target + L1_OFFSET
L1_OFFSET = 0.01
# standard deviation of the Gaussian noise that breaks ties between identity
# and reprojection errors (the release's value)
TIE_BREAK_NOISE_STD = 1e-5
# the error of the best disparity before the first comparison: every real error beats it
INITIAL_BEST_ERROR = 10.0


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
    def initial(cls, disp: torch.Tensor, initial_error: float = INITIAL_BEST_ERROR) -> "BestDisparity":
        """Start from ``disp`` with an error every real error beats."""
        disp = disp.detach()
        return cls(disp=disp.clone(), error=torch.full_like(disp, initial_error))

    def updated(self, disp: torch.Tensor, error: torch.Tensor) -> "BestDisparity":
        """The state with ``disp`` taken where ``error`` is strictly lower than the best error."""
        better = error.detach() < self.error
        return BestDisparity(torch.where(better, disp.detach(), self.disp), torch.minimum(self.error, error.detach()))

    def clone(self) -> "BestDisparity":
        return BestDisparity(self.disp.clone(), self.error.clone())


class SSIM(nn.Module):
    """Per-pixel SSIM loss ``clamp((1 - SSIM) / 2, 0, 1)`` with 3x3 average
    pooling on reflection-padded inputs (``C1 = 0.01^2``, ``C2 = 0.03^2``)."""

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
