"""Unit tests for the geometry layers and the depth metrics."""
from __future__ import annotations

import math

import torch

from evaluation.metrics import compute_depth_errors
from layers import (
    BackprojectDepth,
    Project3D,
    disp_to_depth,
    refine_coarse_pose,
    rot_from_axisangle,
    transformation_from_parameters,
    warp_image,
)


def _intrinsics(batch: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    K = torch.tensor([[0.81 * width, 0, 0.51 * width, 0], [0, 1.08 * height, 0.53 * height, 0],
                      [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)
    K = K.repeat(batch, 1, 1)
    return K, torch.linalg.inv(K)


def test_rotations_are_orthonormal_with_unit_determinant():
    generator = torch.Generator().manual_seed(0)
    axisangle = (torch.rand(16, 1, 3, generator=generator) - 0.5) * 2.0
    rotation = rot_from_axisangle(axisangle)[:, :3, :3]
    identity = torch.eye(3).expand(16, 3, 3)
    assert torch.allclose(rotation @ rotation.transpose(1, 2), identity, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(16), atol=1e-5)


def test_rotation_about_z_by_90_degrees():
    rotation = rot_from_axisangle(torch.tensor([[[0.0, 0.0, math.pi / 2]]]))[0, :3, :3]
    rotated_x = rotation @ torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(rotated_x, torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_inverted_transformation_is_the_inverse():
    axisangle = torch.tensor([[[0.1, -0.2, 0.05]]])
    translation = torch.tensor([[[0.3, 0.1, -0.2]]])
    forward = transformation_from_parameters(axisangle, translation)
    backward = transformation_from_parameters(axisangle, translation, invert=True)
    assert torch.allclose(forward @ backward, torch.eye(4)[None], atol=1e-6)


def test_refine_coarse_pose_rescales_translation_and_keeps_input():
    coarse = transformation_from_parameters(torch.tensor([[[0.1, 0.0, 0.2]]]), torch.tensor([[[1.0, 2.0, 3.0]]]))
    original = coarse.clone()
    residual = torch.tensor([[[0.1, 0.2, 0.3]]])
    scale = torch.tensor([[[0.5]]])
    refined = refine_coarse_pose(coarse, residual, scale, invert=False)
    refined_inverted = refine_coarse_pose(coarse, residual, scale, invert=True)
    assert torch.equal(coarse, original)
    assert torch.allclose(refined[0, :3, 3], original[0, :3, 3] * 0.5 + residual[0, 0])
    assert torch.allclose(refined_inverted[0, :3, 3], original[0, :3, 3] * 0.5 - residual[0, 0])
    assert torch.equal(refined[:, :3, :3], original[:, :3, :3])


def test_backproject_project_identity_returns_pixel_grid():
    batch, height, width = 2, 12, 16
    K, inv_K = _intrinsics(batch, height, width)
    depth = torch.rand(batch, 1, height, width) * 5 + 0.5
    points = BackprojectDepth(height, width)(depth, inv_K)
    grid = Project3D(height, width)(points, K, torch.eye(4).repeat(batch, 1, 1))
    xs = torch.linspace(-1, 1, width).view(1, 1, width).expand(batch, height, width)
    ys = torch.linspace(-1, 1, height).view(1, height, 1).expand(batch, height, width)
    assert torch.allclose(grid[..., 0], xs, atol=1e-5)
    assert torch.allclose(grid[..., 1], ys, atol=1e-5)
    image = torch.rand(batch, 3, height, width)
    warped = warp_image(image, depth, K, inv_K, torch.eye(4).repeat(batch, 1, 1),
                        BackprojectDepth(height, width), Project3D(height, width))
    assert torch.allclose(warped, image, atol=1e-5)


def test_disp_to_depth_maps_zero_and_one_to_max_and_min_depth():
    _, depth = disp_to_depth(torch.tensor([0.0, 1.0]), 0.1, 10.0)
    assert torch.allclose(depth, torch.tensor([10.0, 0.1]))


def test_metrics_of_a_perfect_prediction():
    gt = torch.rand(1000) * 9 + 0.5
    errors = compute_depth_errors(gt, gt.clone())
    assert errors["abs_rel"] == 0 and errors["rmse"] == 0 and errors["log10"] == 0
    assert errors["a1"] == 1 and errors["a2"] == 1 and errors["a3"] == 1


def test_metrics_against_hand_computed_values():
    gt = torch.tensor([1.0, 2.0, 4.0, 10.0])
    pred = torch.tensor([1.0, 2.5, 3.0, 10.0])
    errors = compute_depth_errors(gt, pred)
    assert math.isclose(errors["abs_rel"], (0 + 0.25 + 0.25 + 0) / 4, rel_tol=1e-9)
    assert math.isclose(errors["sq_rel"], (0 + 0.25 / 2 + 1 / 4 + 0) / 4, rel_tol=1e-9)
    assert math.isclose(errors["rmse"], math.sqrt((0.25 + 1) / 4), rel_tol=1e-9)
    assert math.isclose(errors["log10"], (math.log10(2.5 / 2) + math.log10(4 / 3)) / 4, rel_tol=1e-9)
    assert math.isclose(errors["a1"], 0.5)  # ratios 1, 1.25 (not < 1.25), 4/3, 1
    assert math.isclose(errors["a2"], 1.0)
