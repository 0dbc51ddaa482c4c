"""The release's strong augmentation: the pipeline equals the release's table, each
transform behaves as in albumentations 1.3 (checked against the formulas on
synthetic images), transforms fire at their probabilities, draws follow seeds."""
from __future__ import annotations

import importlib.metadata
import math
import random

import cv2
import numpy as np
import pytest

from datasets import augmentation
from datasets.augmentation import StrongAugmentation, build_strong_pipeline
from utils import GasMonoError

# The release's pipeline: albumentations 1.3 transform, p, its parameters as 1.3 stores them.
RELEASE_TABLE = [
    ("RGBShift", 0.5, {"r_shift_limit": (-20, 20), "g_shift_limit": (-20, 20), "b_shift_limit": (-20, 20)}),
    ("ChannelDropout", 0.1, {"channel_drop_range": (1, 1), "fill_value": 0}),
    ("Equalize", 0.1, {"mode": "cv", "by_channels": True}),
    ("HueSaturationValue", 0.5, {"hue_shift_limit": (-20, 20), "sat_shift_limit": (-30, 30),
                                 "val_shift_limit": (-20, 20)}),
    ("ChannelShuffle", 0.2, {}),
    ("RandomBrightnessContrast", 0.5, {"brightness_limit": (-0.2, 0.2), "contrast_limit": (-0.2, 0.2),
                                       "brightness_by_max": True}),
    ("RandomGamma", 0.1, {"gamma_limit": (80, 120)}),
    ("MotionBlur", 0.1, {"blur_limit": (3, 7), "allow_shifted": True}),
    ("Blur", 0.2, {"blur_limit": (3, 7)}),
    ("ToGray", 0.1, {}),
    ("MedianBlur", 0.1, {"blur_limit": (3, 7)}),
    ("ImageCompression", 0.1, {"quality_lower": 99, "quality_upper": 100}),
    ("RandomGamma", 0.2, {"gamma_limit": (80, 120)}),
    ("GaussNoise", 0.1, {"var_limit": (10, 50), "mean": 0, "per_channel": True}),
    ("GaussianBlur", 0.1, {"blur_limit": (3, 7), "sigma_limit": (0, 0)}),
    ("CLAHE", 0.1, {"clip_limit": (1, 4), "tile_grid_size": (8, 8)}),
]
# OpenCV's Gaussian kernels for sigma 0 and sizes 3, 5, 7 (fixed tables).
OPENCV_SMALL_GAUSSIANS = {3: np.array([1, 2, 1]) / 4, 5: np.array([1, 4, 6, 4, 1]) / 16,
                          7: np.array([1, 3.5, 7, 9, 7, 3.5, 1]) / 32}


@pytest.fixture(scope="module")
def pipeline():
    return build_strong_pipeline()


def transform(pipeline, index: int):
    return pipeline.transforms[index - 1]


def smooth_image(height: int = 64, width: int = 80) -> np.ndarray:
    """Colour gradients and a soft wave: ``H x W x 3`` uint8 without sharp edges."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [60 + 120 * x / (width - 1), 50 + 140 * y / (height - 1), 128 + 60 * np.sin(x / 9) * np.cos(y / 7)]
    return np.stack(channels, -1).round().astype(np.uint8)


def checkerboard(height: int = 64, width: int = 80, cell: int = 4) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return (((x // cell + y // cell) % 2) * 200 + 30).astype(np.uint8)[..., None].repeat(3, 2)


def ramp_image() -> np.ndarray:
    """Every grey level 0..255 once per channel: ``16 x 16 x 3``."""
    return np.arange(256, dtype=np.uint8).reshape(16, 16)[..., None].repeat(3, 2)


def draw_params(component, seed: int) -> dict:
    random.seed(seed)
    return component.get_params()


def apply_always(component, image: np.ndarray, seed: int) -> np.ndarray:
    random.seed(seed)
    return component(image=image, force_apply=True)["image"]


def test_the_pipeline_is_the_release_table(pipeline):
    assert pipeline.p == 1.0 and len(pipeline.transforms) == len(RELEASE_TABLE) == 16
    for component, (name, p, parameters) in zip(pipeline.transforms, RELEASE_TABLE):
        arguments = component.get_transform_init_args()
        assert type(component).__name__ == name
        assert component.p == p, name
        assert {key: arguments[key] for key in parameters} == parameters, name
    assert int(transform(pipeline, 12).compression_type) == 0  # JPEG


def test_random_brightness_contrast_is_a_truncated_linear_lut(pipeline):
    component, ramp = transform(pipeline, 6), ramp_image()
    levels = ramp.astype(np.float64)
    draws = [draw_params(component, seed) for seed in range(200)]
    contrasts, brightnesses = [d["alpha"] - 1 for d in draws], [d["beta"] for d in draws]
    for values in (contrasts, brightnesses):
        assert -0.2 <= min(values) < -0.18 and 0.18 < max(values) <= 0.2
    for params in draws[:20]:
        out = component.apply(ramp, **params).astype(np.int64)
        expected = np.floor(np.clip(levels * params["alpha"] + 255 * params["beta"], 0, 255))
        assert np.abs(out - expected).max() <= 1 and (out == expected).mean() > 0.98


@pytest.mark.parametrize("index", [7, 13])
def test_random_gamma_is_a_truncated_power_lut(pipeline, index):
    component, ramp = transform(pipeline, index), ramp_image()
    gammas = [draw_params(component, seed)["gamma"] for seed in range(200)]
    assert 0.8 <= min(gammas) < 0.82 and 1.18 < max(gammas) <= 1.2
    for gamma in gammas[:20]:
        out = component.apply(ramp, gamma=gamma).astype(np.int64)
        expected = np.floor(255 * (ramp / 255.0) ** gamma)
        assert np.abs(out - expected).max() <= 1 and (out == expected).mean() > 0.98


def test_motion_blur_is_a_normalised_line_kernel_of_odd_size(pipeline):
    component, image = transform(pipeline, 8), checkerboard()
    sizes = set()
    for seed in range(60):
        kernel = draw_params(component, seed)["kernel"]
        size = kernel.shape[0]
        sizes.add(size)
        assert kernel.shape == (size, size)
        assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
        weights = kernel[kernel > 0]
        assert weights.size >= 2 and np.allclose(weights, weights[0])  # a line of equal weights
        out = component.apply(image, kernel=kernel)
        np.testing.assert_array_equal(out, cv2.filter2D(image, -1, kernel))
    assert sizes == {3, 5, 7}


def test_gauss_noise_draws_a_variance_in_10_50_per_image_and_noise_per_channel(pipeline):
    component, grey = transform(pipeline, 14), np.full((64, 64, 3), 128, np.uint8)
    variances = []
    for seed in range(40):
        noise = apply_always(component, grey, seed).astype(np.float64) - 128
        channel_variances = noise.reshape(-1, 3).var(0)
        assert channel_variances.max() / channel_variances.min() < 1.2  # one variance for all channels
        correlation = np.corrcoef(noise.reshape(-1, 3).T)
        assert np.abs(correlation[np.triu_indices(3, 1)]).max() < 0.1  # independent per channel
        assert abs(noise.mean() + 0.5) < 0.3  # truncation to uint8 lowers the mean by half a level
        variances.append(channel_variances.mean() - 1 / 12)  # less the truncation's variance
    assert 10 * 0.9 < min(variances) < 15 and 45 < max(variances) < 50 * 1.1
    assert math.sqrt(min(variances)) > 2.8 and math.sqrt(max(variances)) < 7.5


def test_jpeg_at_quality_99_100_changes_pixels_by_a_few_levels(pipeline):
    component, image = transform(pipeline, 12), smooth_image()
    qualities = {draw_params(component, seed)["quality"] for seed in range(20)}
    assert qualities == {99, 100}
    for seed in range(10):
        change = np.abs(apply_always(component, image, seed).astype(np.int64) - image)
        assert 0 < change.mean() < 1.5 and change.max() <= 8


def test_gaussian_blur_uses_opencvs_kernel_for_the_size_and_is_never_black(pipeline):
    component, image = transform(pipeline, 15), checkerboard()
    sizes = []
    for seed in range(40):
        out = apply_always(component, image, seed).astype(np.float64)
        assert abs(out.mean() - image.mean()) < 2  # never black: the blur keeps the mean
        matches = []
        for size, taps in OPENCV_SMALL_GAUSSIANS.items():
            expected = cv2.sepFilter2D(image.astype(np.float64), -1, taps, taps, borderType=cv2.BORDER_REFLECT_101)
            if np.abs(out - expected).max() <= 1:
                matches.append(size)
        assert len(matches) == 1, seed
        sizes.append(matches[0])
    assert set(sizes) == {3, 5, 7} and sizes.count(3) < sizes.count(5) + sizes.count(7)


def test_each_transform_fires_at_its_probability(pipeline):
    counts = [0] * len(pipeline.transforms)
    augment = StrongAugmentation()
    for index, component in enumerate(augment.pipeline.transforms):
        def counted(image, _apply=component.apply, _index=index, **params):
            counts[_index] += 1
            return _apply(image, **params)
        component.apply = counted
    draws = 400
    image = smooth_image(32, 32)
    for seed in range(draws):
        augment(image, seed)
    for (name, p, _), count in zip(RELEASE_TABLE, counts):
        tolerance = 4 * math.sqrt(p * (1 - p) / draws)
        assert abs(count / draws - p) < tolerance, (name, p, count / draws)


def test_draws_follow_seeds_and_leave_the_global_random_state_alone():
    augment, image = StrongAugmentation(), smooth_image()
    random.seed(123)
    state = random.getstate()
    first = [augment(image, seed) for seed in range(8)]
    assert random.getstate() == state
    assert all(np.array_equal(a, augment(image, seed)) for seed, a in enumerate(first))
    assert sum(not np.array_equal(first[0], other) for other in first[1:]) >= 6
    assert all(a.dtype == np.uint8 and a.shape == image.shape for a in first)


def test_another_albumentations_version_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(augmentation.importlib.metadata, "version", lambda name: "2.0.8")
    with pytest.raises(GasMonoError, match="needs albumentations 1.3.x .* found 2.0.8"):
        build_strong_pipeline()

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(augmentation.importlib.metadata, "version", not_installed)
    with pytest.raises(GasMonoError, match="found none"):
        augmentation.require_release_albumentations()
