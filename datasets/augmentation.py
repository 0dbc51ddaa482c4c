"""Colour augmentation of training frames.

Two recipes, selected by name:

* ``"strong"``: the GasMono release's photometric pipeline, built with
  albumentations. Each operation fires with its own probability; the draws
  are independent for every frame of an item unless the caller shares a seed
  between frames. Parameters (probability ``p``):

  ======================  =====  ==========================================
  operation               p      parameters
  ======================  =====  ==========================================
  RGBShift                0.2    +-10 per channel (0..255 scale)
  ChannelDropout          0.05   one channel set to 0
  Equalize                0.05   per channel (OpenCV)
  HueSaturationValue      0.3    hue +-10, saturation +-15, value +-10
  ChannelShuffle          0.05
  RandomBrightnessContrast 0.5   brightness +-0.2, contrast +-0.2
  RandomGamma             0.3    gamma 0.8..1.2
  MotionBlur              0.1    kernel 3..5
  Blur                    0.05   kernel 3..5
  ToGray                  0.05
  MedianBlur              0.05   kernel 3
  ImageCompression        0.1    JPEG quality 60..95
  GaussNoise              0.1    std 1..4 % of 255
  GaussianBlur            0.05   kernel 3..5
  CLAHE                   0.05   clip limit 1..2
  ======================  =====  ==========================================

* ``"colorjitter"``: Monodepth2's ``ColorJitter`` (brightness, contrast and
  saturation factors in 0.8..1.2, hue shift in -0.1..0.1, applied in a random
  order), one draw shared by every frame of an item.

Both take and return ``H x W x 3`` uint8 images (numpy arrays or PIL images)
and draw their randomness from a seed given by the caller, so that a data
loader seeded per worker is reproducible.
"""
from __future__ import annotations

import os
import random
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

AUGMENTATIONS = ("strong", "colorjitter", "none")

JITTER_BRIGHTNESS = (0.8, 1.2)
JITTER_CONTRAST = (0.8, 1.2)
JITTER_SATURATION = (0.8, 1.2)
JITTER_HUE = (-0.1, 0.1)


def build_strong_pipeline() -> Any:
    """The release-like albumentations pipeline (see the module docstring).

    albumentations is imported here, on first use, because importing it takes
    seconds; its online version check is switched off.
    """
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    return A.Compose(
        [
            A.RGBShift(r_shift_limit=10, g_shift_limit=10, b_shift_limit=10, p=0.2),
            A.ChannelDropout(channel_drop_range=(1, 1), fill=0, p=0.05),
            A.Equalize(p=0.05),
            A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=15, val_shift_limit=10, p=0.3),
            A.ChannelShuffle(p=0.05),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.RandomGamma(gamma_limit=(80, 120), p=0.3),
            A.MotionBlur(blur_limit=(3, 5), p=0.1),
            A.Blur(blur_limit=(3, 5), p=0.05),
            A.ToGray(p=0.05),
            A.MedianBlur(blur_limit=(3, 3), p=0.05),
            A.ImageCompression(quality_range=(60, 95), p=0.1),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.1),
            A.GaussianBlur(blur_limit=(3, 5), p=0.05),
            A.CLAHE(clip_limit=(1.0, 2.0), p=0.05),
        ]
    )


class StrongAugmentation:
    """Callable wrapper around :func:`build_strong_pipeline` with explicit seeds."""

    def __init__(self) -> None:
        self.pipeline = build_strong_pipeline()

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        """Augment one ``H x W x 3`` uint8 image; the same ``seed`` gives the same draw."""
        self.pipeline.set_random_seed(seed)
        return self.pipeline(image=image)["image"]


def sample_color_jitter(rng: random.Random) -> Callable[[Image.Image], Image.Image]:
    """Draw one Monodepth2 ColorJitter (factors and operation order) from ``rng``;
    returns the function applying it to a PIL image."""
    generator = torch.Generator().manual_seed(rng.getrandbits(63))
    order = torch.randperm(4, generator=generator).tolist()
    draw = [float(torch.empty(1).uniform_(low, high, generator=generator)) for low, high in
            (JITTER_BRIGHTNESS, JITTER_CONTRAST, JITTER_SATURATION, JITTER_HUE)]
    brightness, contrast, saturation, hue = draw
    operations = (
        lambda image: TF.adjust_brightness(image, brightness),
        lambda image: TF.adjust_contrast(image, contrast),
        lambda image: TF.adjust_saturation(image, saturation),
        lambda image: TF.adjust_hue(image, hue),
    )

    def apply(image: Image.Image) -> Image.Image:
        for index in order:
            image = operations[index](image)
        return image

    return apply

