"""Geometry used by training and evaluation: disparity to depth, pose
parameterisation, coarse-pose refinement, backprojection, projection and
warping (the loss terms are in :mod:`losses`).

Everything here works on batched tensors on any device. Conventions:

* intrinsics ``K`` / ``inv_K`` are ``B x 4 x 4`` in pixels of the image they
  are used with;
* a pose ``T`` is a ``B x 4 x 4`` rigid transform mapping 3-D points of the
  target camera into the source camera (``T_{0->f}``);
* depth and disparity maps are ``B x 1 x H x W``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "disp_to_depth",
    "rot_from_axisangle",
    "get_translation_matrix",
    "transformation_from_parameters",
    "refine_coarse_pose",
    "temporal_pair",
    "BackprojectDepth",
    "Project3D",
    "warp_image",
]


def disp_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a sigmoid disparity to depth.

    ``scaled = 1/max_depth + (1/min_depth - 1/max_depth) * disp`` and
    ``depth = 1 / scaled``, so ``disp = 0`` gives ``max_depth`` and ``disp = 1``
    gives ``min_depth``.

    Returns:
        ``(scaled_disp, depth)``, both shaped like ``disp``.
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    depth = 1.0 / scaled_disp
    return scaled_disp, depth


def rot_from_axisangle(axisangle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.

    Args:
        axisangle: ``B x 1 x 3`` axis-angle vectors (angle = vector norm).

    Returns:
        ``B x 4 x 4`` homogeneous rotation matrices.
    """
    angle = torch.norm(axisangle, 2, 2, True)
    axis = axisangle / (angle + 1e-7)
    cos_a = torch.cos(angle)
    sin_a = torch.sin(angle)
    one_minus_cos = 1 - cos_a

    x = axis[..., 0].unsqueeze(1)
    y = axis[..., 1].unsqueeze(1)
    z = axis[..., 2].unsqueeze(1)
    x_sin, y_sin, z_sin = x * sin_a, y * sin_a, z * sin_a
    x_c, y_c, z_c = x * one_minus_cos, y * one_minus_cos, z * one_minus_cos
    xy_c, yz_c, zx_c = x * y_c, y * z_c, z * x_c

    rotation = torch.zeros((axisangle.shape[0], 4, 4), dtype=axisangle.dtype, device=axisangle.device)
    rotation[:, 0, 0] = torch.squeeze(x * x_c + cos_a)
    rotation[:, 0, 1] = torch.squeeze(xy_c - z_sin)
    rotation[:, 0, 2] = torch.squeeze(zx_c + y_sin)
    rotation[:, 1, 0] = torch.squeeze(xy_c + z_sin)
    rotation[:, 1, 1] = torch.squeeze(y * y_c + cos_a)
    rotation[:, 1, 2] = torch.squeeze(yz_c - x_sin)
    rotation[:, 2, 0] = torch.squeeze(zx_c - y_sin)
    rotation[:, 2, 1] = torch.squeeze(yz_c + x_sin)
    rotation[:, 2, 2] = torch.squeeze(z * z_c + cos_a)
    rotation[:, 3, 3] = 1
    return rotation


def get_translation_matrix(translation: torch.Tensor) -> torch.Tensor:
    """``B x 1 x 3`` (or ``B x 3``) translations -> ``B x 4 x 4`` matrices."""
    matrix = torch.eye(4, dtype=translation.dtype, device=translation.device)
    matrix = matrix.repeat(translation.shape[0], 1, 1)
    matrix[:, :3, 3] = translation.reshape(-1, 3)
    return matrix


def transformation_from_parameters(
    axisangle: torch.Tensor, translation: torch.Tensor, invert: bool = False
) -> torch.Tensor:
    """Build a pose from PoseNet outputs (Monodepth2 parameterisation).

    Args:
        axisangle: ``B x 1 x 3``.
        translation: ``B x 1 x 3``.
        invert: transpose the rotation, negate the translation and return
            ``R @ T(t)`` instead of ``T(t) @ R``.

    Returns:
        ``B x 4 x 4``.
    """
    rotation = rot_from_axisangle(axisangle)
    offset = translation.clone()
    if invert:
        rotation = rotation.transpose(1, 2)
        offset = offset * -1
    translation_matrix = get_translation_matrix(offset)
    if invert:
        return torch.matmul(rotation, translation_matrix)
    return torch.matmul(translation_matrix, rotation)


def refine_coarse_pose(
    coarse_pose: torch.Tensor, translation_residual: torch.Tensor, translation_scale: torch.Tensor, invert: bool
) -> torch.Tensor:
    """Rescale and correct the translation of a coarse (COLMAP) pose.

    The rotation of ``coarse_pose`` is kept; its translation becomes
    ``t_coarse * scale + t_residual``, with ``t_residual`` negated when
    ``invert`` (source frames before the target). The coarse pose itself is
    never inverted and the input is not modified.

    Args:
        coarse_pose: ``B x 4 x 4`` ``T_{0->f}``.
        translation_residual: ``B x 1 x 3`` AlignNet translation (frame slot 0).
        translation_scale: ``B x 1 x 1`` AlignNet scale (frame slot 0).
        invert: whether the source frame precedes the target.

    Returns:
        ``B x 4 x 4`` refined pose (a new tensor).
    """
    residual = translation_residual.reshape(-1, 3)
    if invert:
        residual = -residual
    scale = translation_scale.reshape(-1, 1)
    refined = coarse_pose.clone()
    refined[:, :3, 3] = coarse_pose[:, :3, 3] * scale + residual
    return refined


def temporal_pair(source: torch.Tensor, target: torch.Tensor, frame_id: int) -> torch.Tensor:
    """Stack two ``B x 3 x H x W`` images in temporal order -> ``B x 6 x H x W``:
    ``[source, target]`` for a source before the target (``frame_id < 0``),
    else ``[target, source]`` (the input of PoseNet and AlignNet)."""
    return torch.cat([source, target] if frame_id < 0 else [target, source], 1)


class BackprojectDepth(nn.Module):
    """Lift every pixel of a depth map to a homogeneous 3-D point.

    Works for any batch size; the pixel grid is a non-persistent buffer.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height = height
        self.width = width
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
        )
        pixels = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(height * width)], 0)
        self.register_buffer("pix_coords", pixels.unsqueeze(0), persistent=False)

    def forward(self, depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
        """``depth`` ``B x 1 x H x W``, ``inv_K`` ``B x 4 x 4`` -> points ``B x 4 x HW``."""
        batch = depth.shape[0]
        pixels = self.pix_coords.to(depth.dtype).expand(batch, -1, -1)
        cam_points = torch.matmul(inv_K[:, :3, :3], pixels)
        cam_points = depth.reshape(batch, 1, -1) * cam_points
        ones = torch.ones_like(cam_points[:, :1])
        return torch.cat([cam_points, ones], 1)


class Project3D(nn.Module):
    """Project 3-D points into a camera and return a ``grid_sample`` grid."""

    def __init__(self, height: int, width: int, eps: float = 1e-7) -> None:
        super().__init__()
        self.height = height
        self.width = width
        self.eps = eps

    def forward(self, points: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """``points`` ``B x 4 x HW``, ``K`` and ``T`` ``B x 4 x 4`` ->
        normalised sampling grid ``B x H x W x 2`` in [-1, 1]."""
        projection = torch.matmul(K, T)[:, :3, :]
        cam_points = torch.matmul(projection, points)
        pix_coords = cam_points[:, :2, :] / (cam_points[:, 2, :].unsqueeze(1) + self.eps)
        pix_coords = pix_coords.view(-1, 2, self.height, self.width).permute(0, 2, 3, 1)
        pix_coords = pix_coords / torch.tensor(
            [self.width - 1, self.height - 1], dtype=pix_coords.dtype, device=pix_coords.device
        )
        return (pix_coords - 0.5) * 2


def warp_image(
    source: torch.Tensor,
    depth: torch.Tensor,
    K: torch.Tensor,
    inv_K: torch.Tensor,
    T: torch.Tensor,
    backproject: BackprojectDepth,
    project: Project3D,
) -> torch.Tensor:
    """Synthesise the target view from ``source`` (``B x C x H x W``) with the
    target ``depth`` and the pose ``T = T_{0->source}``; bilinear sampling
    with border padding and ``align_corners=True``."""
    points = backproject(depth, inv_K)
    grid = project(points, K, T)
    return F.grid_sample(source, grid, padding_mode="border", align_corners=True)
