"""GasMono's loss terms and the iterative self-distillation state.

The :class:`trainer.Trainer` assembles these in ``compute_losses``; each term
is a small function so that ablations can reuse or drop it. All error maps are
``B x K x H x W`` with one channel ``K`` per candidate (source frame or
identity) and are reduced with a per-pixel minimum (auto-masking).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


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


@dataclass
class BestDisparity:
    """Per-pixel best disparity found so far for the current batch.

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

    def update(self, disp: torch.Tensor, error: torch.Tensor) -> None:
        """Take ``disp`` where ``error`` is strictly lower than the best error."""
        better = error.detach() < self.error
        self.disp = torch.where(better, disp.detach(), self.disp)
        self.error = torch.minimum(self.error, error.detach())

    def clone(self) -> "BestDisparity":
        return BestDisparity(self.disp.clone(), self.error.clone())


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


def self_distillation_loss(best_disp: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """``mean(log(1 + |best - disp|))`` with ``best`` a constant (no gradient)."""
    return torch.log(1 + torch.abs(best_disp.detach() - disp)).mean()


def mean_normalised(disp: torch.Tensor) -> torch.Tensor:
    """``disp / mean(disp)`` per image (``B x 1 x H x W``)."""
    mean_disp = disp.mean(2, True).mean(3, True)
    return disp / (mean_disp + 1e-7)
