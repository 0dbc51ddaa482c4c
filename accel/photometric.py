"""Fast kernel: the photometric error of many predictions against one target, in one call.

Replaces :func:`losses.photometric_error` called once per source and scale
(the reference). The error of a prediction ``x`` against the target ``y``,
per pixel and averaged over the colour channels, is the release's

    0.85 * clamp((1 - SSIM(x, y)) / 2, 0, 1) + 0.15 * |y - x| / (y + 0.01)

with SSIM on 3x3 means of reflection-padded images. Why it is faster: every
prediction of a batch (all sources warped at all scales) is compared in one
call; the target's share (its padded image, mean and variance:
:class:`PhotometricTarget`) is computed once per batch; each prediction costs
three separable 3x3 means instead of five pooled ones; the gradient is
written out by hand (:class:`SSIMRelativeL1`), in place, instead of being
recorded operation by operation; and on the CPU the work goes one
comparison at a time, so that its temporaries stay in the cache
(:func:`comparison_groups`). It uses one private op,
``aten.reflection_pad2d_backward`` (see :data:`PRIVATE_OPS`). The numbers
equal the reference up to float rounding (``tests/test_accel_losses.py``).

Shapes: predictions ``F x B x 3 x S x H x W`` (``F`` sources, ``S`` images
per source, e.g. one per scale) against a target ``B x 3 x H x W``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from losses import L1_OFFSET, SSIM_C1, SSIM_C2, SSIM_WEIGHT

__all__ = ["PRIVATE_OPS", "box_mean", "PhotometricTarget", "comparison_groups", "SSIMRelativeL1",
           "photometric_errors"]

# the private torch ops this kernel calls (checked by accel.guard before it is chosen)
PRIVATE_OPS = ("aten.reflection_pad2d_backward",)


def _planes(x: torch.Tensor) -> torch.Tensor:
    """``... x H x W`` -> ``N x H x W`` (a view when ``x`` is contiguous)."""
    return x.reshape(-1, *x.shape[-2:])


def reflection_pad(x: torch.Tensor) -> torch.Tensor:
    """Reflection padding by one pixel of every plane: ``... x H x W`` -> ``... x H+2 x W+2``."""
    padded = F.pad(_planes(x), (1, 1, 1, 1), mode="reflect")
    return padded.view(*x.shape[:-2], *padded.shape[-2:])


def box_mean(x: torch.Tensor, rows: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """3x3 mean without padding (``AvgPool2d(3, 1)``), as two separable
    3-sums: ``... x H+2 x W+2`` -> ``... x H x W``.

    ``rows`` (``... x H+2 x W``) and ``out`` (``... x H x W``) are optional
    buffers to write into (large fresh allocations are slow on the CPU).
    """
    rows = torch.add(x[..., :-2], x[..., 1:-1], out=rows)
    rows += x[..., 2:]
    out = torch.add(rows[..., :-2, :], rows[..., 1:-1, :], out=out)
    out += rows[..., 2:, :]
    return out.div_(9)


def box_rows_buffer(x: torch.Tensor) -> torch.Tensor:
    """A buffer for the row sums of :func:`box_mean` of ``x``: ``... x H+2 x W+2`` -> ``... x H+2 x W``."""
    return x.new_empty(*x.shape[:-1], x.shape[-1] - 2)


class _BoxMeanAdjoint:
    """The transpose of :func:`box_mean` (``... x H x W`` -> ``... x H+2 x W+2``),
    with its buffers kept across calls of the same shape."""

    def __init__(self, like: torch.Tensor) -> None:
        *batch, height, width = like.shape
        self.padded = like.new_zeros(*batch, height + 4, width + 4)
        self.rows = like.new_empty(*batch, height + 4, width + 2)

    def __call__(self, grad: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        self.padded[..., 2:-2, 2:-2] = grad
        return box_mean(self.padded, self.rows, out)


@dataclass(frozen=True)
class PhotometricTarget:
    """The target's share of every comparison, shaped ``B x 3 x 1 x H x W``
    (``padded``: ``H+2 x W+2``) to broadcast against ``F x B x 3 x S x H x W``.

    Attributes:
        image: the target ``y``.
        l1_denominator: ``y + 0.01``.
        padded: ``y`` reflection-padded by one pixel.
        mu: 3x3 mean ``mu_y``.
        two_mu: ``2 mu_y``.
        mu_sq_c1: ``mu_y^2 + C1``.
        sigma_c2: the 3x3 variance ``sigma_y`` plus ``C2``.
    """

    image: torch.Tensor
    l1_denominator: torch.Tensor
    padded: torch.Tensor
    mu: torch.Tensor
    two_mu: torch.Tensor
    mu_sq_c1: torch.Tensor
    sigma_c2: torch.Tensor

    @classmethod
    def of(cls, target: torch.Tensor) -> "PhotometricTarget":
        """From a ``B x 3 x H x W`` target."""
        image = target.unsqueeze(2)
        padded = reflection_pad(image)
        mu = box_mean(padded)
        mu_sq = mu * mu
        sigma = box_mean(padded * padded) - mu_sq
        return cls(image, image + L1_OFFSET, padded, mu, 2 * mu, mu_sq + SSIM_C1, sigma + SSIM_C2)


def comparison_groups(x: torch.Tensor) -> list[tuple[int, slice]]:
    """The groups of comparisons that :class:`SSIMRelativeL1` computes
    together, as ``(f, images)`` indices into ``F x B x 3 x S x H x W``
    predictions ``x``: on the CPU one comparison ``(f, s)`` per group, so
    that the temporaries of a group stay in the cache; elsewhere one source
    with all its ``S`` images per group (fewer, larger kernels)."""
    num_sources, _, _, num_images = x.shape[:4]
    if x.device.type != "cpu":
        return [(source, slice(None)) for source in range(num_sources)]
    return [(source, slice(index, index + 1)) for source in range(num_sources) for index in range(num_images)]


class SSIMRelativeL1(torch.autograd.Function):
    """The photometric error with its gradient written out (predictions only;
    the target is data). ``apply(predictions, target)``:
    ``F x B x 3 x S x H x W`` -> ``F x B x S x H x W``.

    Computed one group of comparisons (:func:`comparison_groups`) at a time,
    with buffers reused across the groups; each group's statistics are saved
    for the backward pass, which goes through the groups in the same way.
    Buffers are updated in place wherever the formula allows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, target: PhotometricTarget) -> torch.Tensor:
        groups = comparison_groups(x)
        error = x.new_empty(x.shape[0], x.shape[1], *x.shape[3:])
        rows = product = None
        saved = []
        for source, images in groups:
            prediction = x[source, :, :, images]  # B x 3 x S' x H x W
            padded = reflection_pad(prediction)
            rows = box_rows_buffer(padded) if rows is None else rows
            mu_x = box_mean(padded, rows)
            product = torch.mul(padded, padded, out=product)
            sigma_c2 = box_mean(product, rows).addcmul_(mu_x, mu_x, value=-1).add_(target.sigma_c2)  # sx + sy + C2
            sigma_xy = box_mean(torch.mul(padded, target.padded, out=product), rows)
            sigma_xy.addcmul_(mu_x, target.mu, value=-1).mul_(2).add_(SSIM_C2)  # 2 sigma_xy + C2
            mean_term = torch.mul(mu_x, target.two_mu).add_(SSIM_C1)  # 2 mu_x mu_y + C1
            mu_sq_c1 = torch.addcmul(target.mu_sq_c1, mu_x, mu_x)  # mu_x^2 + mu_y^2 + C1
            denominator = mu_sq_c1 * sigma_c2
            ssim = torch.mul(mean_term, sigma_xy).div_(denominator)
            ssim_loss = torch.rsub(ssim, 1).div_(2)
            in_range = ssim_loss.ge(0).logical_and_(ssim_loss.le(1))  # where clamp passes the gradient
            difference = target.image - prediction
            l1_slope = torch.sign(difference).div_(target.l1_denominator)
            relative_l1 = difference.abs_().div_(target.l1_denominator)
            saved += [padded, mu_x, mean_term, sigma_xy, mu_sq_c1, sigma_c2, denominator, ssim, in_range, l1_slope]
            group_error = ssim_loss.clamp_(0, 1).mean(1).mul_(SSIM_WEIGHT)
            error[source, :, images] = group_error.add_(relative_l1.mean(1), alpha=1 - SSIM_WEIGHT)
        ctx.save_for_backward(target.padded, target.mu, target.two_mu, *saved)
        ctx.groups = groups
        return error

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        padded_y, mu_y, two_mu_y, *saved = ctx.saved_tensors
        grad_x = grad.new_empty(grad.shape[0], grad.shape[1], padded_y.shape[1], *grad.shape[2:])
        like_group = saved[1]  # mu_x: B x 3 x S' x H x W, the shape of every group
        adjoint = _BoxMeanAdjoint(like_group)
        # the padding's adjoint reads only the size of its "input" argument: an expanded scalar holds no data
        like_input = grad.new_zeros(()).expand(math.prod(like_group.shape[:-2]), *like_group.shape[-2:])
        for group, (source, images) in enumerate(ctx.groups):
            padded, mu_x, mean_term, sigma_xy, mu_sq_c1, sigma_c2, denominator, ssim, in_range, l1_slope = \
                saved[10 * group: 10 * (group + 1)]
            grad_error = grad[source, :, images].unsqueeze(1)  # B x 1 x S' x H x W
            # d error / d ssim, then through ssim = (mean_term * sigma_xy) / (mu_sq_c1 * sigma_c2)
            grad_numerator = torch.where(in_range, grad_error * (-0.5 * SSIM_WEIGHT / 3), 0.0).div_(denominator)
            grad_denominator = grad_numerator * ssim
            grad_mu = torch.mul(grad_numerator, sigma_xy).mul_(two_mu_y)  # through mean_term
            grad_sigma_xy = grad_numerator.mul_(mean_term).mul_(2)  # d / d box(x * y)
            grad_sigma_x = torch.mul(grad_denominator, mu_sq_c1)  # minus d / d box(x * x)
            grad_mu.addcmul_(grad_sigma_xy, mu_y, value=-1)
            grad_mu.addcmul_(mu_x, grad_denominator.mul_(sigma_c2).sub_(grad_sigma_x), value=-2)
            grad_padded = adjoint(grad_mu)
            through_box = adjoint(grad_sigma_x)
            grad_padded.addcmul_(padded, through_box, value=-2)
            grad_padded.addcmul_(padded_y, adjoint(grad_sigma_xy, out=through_box))
            grad_ssim = torch.ops.aten.reflection_pad2d_backward(_planes(grad_padded), like_input, [1, 1, 1, 1])
            torch.addcmul(grad_ssim.view(grad_mu.shape), grad_error, l1_slope, value=-(1 - SSIM_WEIGHT) / 3,
                          out=grad_x[source, :, :, images])
        return grad_x, None


def photometric_errors(predictions: torch.Tensor, target: PhotometricTarget, use_ssim: bool = True) -> torch.Tensor:
    """The photometric error of every prediction against the target.

    Args:
        predictions: ``F x B x 3 x S x H x W``.
        target: :meth:`PhotometricTarget.of` the ``B x 3 x H x W`` target.
        use_ssim: False gives the relative L1 alone (``--no_ssim``).

    Returns:
        ``F x B x S x H x W``.
    """
    if not use_ssim:
        return (torch.abs(target.image - predictions) / target.l1_denominator).mean(2)
    return SSIMRelativeL1.apply(predictions, target)
