"""Fast kernel: every source warped with every depth map of a pass in one sampling call.

Replaces :func:`layers.warp_image` called once per source and scale (the
reference). Why it is faster: the rays ``inv_K @ pixels`` are computed once,
the points of all depth maps are transformed by all poses in one batched
matrix product, the projection to the sampling grid and its gradient are
written straight into ``grid_sample``'s layout (:class:`_SamplingGrid`,
without autograd's zero-filled slice gradients and layout copies), and one
``grid_sample`` call samples every image. The per-pixel math is
:func:`layers.warp_image`'s; only the order of the operations differs
(``tests/test_accel_losses.py``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["BatchedWarp"]


class _SamplingGrid(torch.autograd.Function):
    """The ``grid_sample`` grid of projected points, :class:`Project3D`'s
    ``((xy / (z + eps)) / scale - 0.5) * 2`` operation by operation, written
    straight into the sampler's layout, with the gradient that autograd would
    compute written out (without its zero-filled slice gradients and layout
    copies). ``apply(cam_points, scale, eps)``: ``B x F x 3 x S x H x W``
    points, ``scale`` ``2 x 1 x 1 x 1`` (``W - 1``, ``H - 1``) ->
    ``F x B x S x H x W x 2``."""

    @staticmethod
    def forward(ctx, cam_points: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
        batch, num_sources, _, num_depths, height, width = cam_points.shape
        depth = cam_points[:, :, 2:3] + eps  # B x F x 1 x S x H x W
        pix_coords = cam_points[:, :, :2] / depth  # B x F x 2 x S x H x W
        grid = cam_points.new_empty(num_sources, batch, num_depths, height, width, 2)
        torch.div(pix_coords, scale, out=grid.permute(1, 0, 5, 2, 3, 4)).sub_(0.5).mul_(2)
        ctx.save_for_backward(pix_coords, depth, scale)
        return grid

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        pix_coords, depth, scale = ctx.saved_tensors
        grad_pix = torch.mul(grad.permute(1, 0, 5, 2, 3, 4), 2).div_(scale)  # B x F x 2 x S x H x W
        grad_points = grad.new_empty(*depth.shape[:2], 3, *depth.shape[3:])
        torch.div(grad_pix, depth, out=grad_points[:, :, :2])
        # d / d depth of xy / depth: -grad * ((xy / depth) / depth), summed over x and y
        torch.sum(pix_coords.div(depth).mul_(grad_pix), 2, keepdim=True, out=grad_points[:, :, 2:]).neg_()
        return grad_points, None, None


class BatchedWarp(nn.Module):
    """:func:`warp_image` of ``F`` sources with ``S`` depth maps of one target
    in one sampling call.

    Every source ``f`` is warped with every depth map ``s`` by its pose
    ``T_f``, with the per-pixel math of :func:`warp_image` (backprojection with
    ``inv_K``, rigid transform, projection with ``K``, bilinear sampling with
    border padding and ``align_corners=True``); only the order in which the
    3-D points are transformed and the batching differ.
    """

    def __init__(self, height: int, width: int, eps: float = 1e-7) -> None:
        super().__init__()
        self.height = height
        self.width = width
        self.eps = eps
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
        )
        pixels = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(height * width)], 0)
        self.register_buffer("pix_coords", pixels, persistent=False)
        self.register_buffer("grid_scale", torch.tensor([width - 1.0, height - 1.0]).view(2, 1, 1, 1),
                             persistent=False)

    def forward(self, sources: torch.Tensor, depths: torch.Tensor, K: torch.Tensor, inv_K: torch.Tensor,
                poses: torch.Tensor) -> torch.Tensor:
        """Warp every source with every depth map.

        Args:
            sources: ``F x B x C x H x W`` source images.
            depths: ``S x B x 1 x H x W`` target depth maps.
            K, inv_K: ``B x 4 x 4`` intrinsics of the target and their inverse.
            poses: ``F x B x 4 x 4`` ``T_{0->f}`` of every source.

        Returns:
            ``F x B x C x S x H x W``: source ``f`` warped with depth ``s``.
        """
        num_sources, batch, channels = sources.shape[:3]
        num_depths = depths.shape[0]
        height, width = self.height, self.width
        rays = torch.matmul(inv_K[:, :3, :3], self.pix_coords.to(depths.dtype))  # B x 3 x HW
        depth = depths.reshape(num_depths, batch, 1, height * width).permute(1, 2, 0, 3)  # B x 1 x S x HW
        points = (depth * rays.unsqueeze(2)).reshape(batch, 3, num_depths * height * width)
        projection = torch.matmul(K, poses)[:, :, :3, :].transpose(0, 1).reshape(batch, num_sources * 3, 4)
        cam_points = torch.baddbmm(projection[:, :, 3:], projection[:, :, :3], points)
        cam_points = cam_points.view(batch, num_sources, 3, num_depths, height, width)
        grid = _SamplingGrid.apply(cam_points, self.grid_scale, self.eps)
        grid = grid.view(num_sources * batch, num_depths * height, width, 2)
        warped = F.grid_sample(sources.reshape(num_sources * batch, channels, height, width), grid,
                               padding_mode="border", align_corners=True)
        return warped.view(num_sources, batch, channels, num_depths, height, width)
