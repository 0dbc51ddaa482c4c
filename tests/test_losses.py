"""Loss terms: SSIM, photometric error, smoothness, the release's accumulating tie-break noise and the
best-disparity state."""
from __future__ import annotations

import pytest
import torch

from losses import SSIM, BestDisparity, get_smooth_loss, identity_errors_by_scale, photometric_error


def test_tie_break_noise_accumulates_over_scales_exactly():
    base = torch.zeros(2, 2, 8, 12)
    torch.manual_seed(7)
    by_scale = identity_errors_by_scale(base, 4, noise_std=1.0)
    torch.manual_seed(7)
    draws = torch.stack([torch.randn_like(base) for _ in range(4)])
    expected = torch.cumsum(draws, 0)
    assert len(by_scale) == 4
    assert torch.equal(by_scale[0], draws[0])
    for scale in range(1, 4):  # float32 sums of N(0, 1) draws; cumsum may add in another order
        torch.testing.assert_close(by_scale[scale], expected[scale], rtol=0, atol=1e-5)
        assert not torch.allclose(by_scale[scale], by_scale[scale - 1], rtol=0, atol=1e-3)


def test_tie_break_noise_variance_grows_with_the_scale():
    base = torch.rand(4, 2, 64, 64)
    torch.manual_seed(0)
    by_scale = identity_errors_by_scale(base, 4, noise_std=1e-5)
    variances = [float((errors - base).double().var()) for errors in by_scale]
    for scale, variance in enumerate(variances):
        assert variance == pytest.approx((scale + 1) * 1e-10, rel=0.05), (scale, variances)


def test_zero_noise_leaves_the_identity_errors_unchanged():
    base = torch.rand(1, 2, 4, 4)
    assert all(errors is base for errors in identity_errors_by_scale(base, 4, noise_std=0.0))


def test_best_disparity_takes_strictly_lower_errors():
    state = BestDisparity.initial(torch.full((1, 1, 1, 3), 0.5))
    first = state.updated(torch.full((1, 1, 1, 3), 2.0), torch.tensor([[[[1.0, 1.0, 1.0]]]]))
    second = first.updated(torch.full((1, 1, 1, 3), 3.0), torch.tensor([[[[0.5, 1.0, 2.0]]]]))
    assert second.disp.flatten().tolist() == [3.0, 2.0, 2.0]
    assert second.error.flatten().tolist() == [0.5, 1.0, 1.0]
    assert first.disp.flatten().tolist() == [2.0, 2.0, 2.0] and state.disp.flatten().tolist() == [0.5, 0.5, 0.5]


def test_ssim_of_an_image_with_itself_is_zero_and_positive_otherwise():
    image = torch.rand(2, 3, 16, 20)
    ssim = SSIM()
    assert ssim(image, image).abs().max() < 1e-6
    assert ssim(image, torch.rand(2, 3, 16, 20)).mean() > 0.1


def test_photometric_error_is_relative_l1_without_ssim():
    target = torch.full((1, 3, 4, 4), 0.49)
    prediction = torch.full((1, 3, 4, 4), 0.25)
    error = photometric_error(prediction, target, ssim=None)
    assert error.shape == (1, 1, 4, 4)
    assert torch.allclose(error, torch.full_like(error, 0.24 / 0.5))
    assert torch.allclose(photometric_error(target, target, SSIM()), torch.zeros(1, 1, 4, 4), atol=1e-6)


def test_smoothness_is_zero_for_constant_disparity():
    image = torch.rand(1, 3, 8, 8)
    assert get_smooth_loss(torch.ones(1, 1, 8, 8), image) == 0
    assert get_smooth_loss(torch.rand(1, 1, 8, 8), image) > 0
