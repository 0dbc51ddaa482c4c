"""Colour augmentation of training frames.

Two recipes, selected by name:

* ``"strong"``: the GasMono release's photometric pipeline, one albumentations
  ``Compose`` of the 16 transforms below, applied in this order, each firing
  independently with its probability ``p``. The release ran albumentations
  1.3.1, which the project pins: albumentations 2.x changes five of these
  transforms (GaussianBlur with sigma 0 returns a black image;
  RandomBrightnessContrast, RandomGamma, MotionBlur and GaussNoise draw or
  apply differently). The parameters are albumentations 1.3's defaults, which
  the release relied on, set explicitly. Images are ``H x W x 3`` uint8, values
  on the 0..255 scale; "truncated" means the float result is clipped to
  0..255 and cast to uint8 (rounded down).

  ==  ========================  ===  =====================================================
  #   transform                 p    parameters
  ==  ========================  ===  =====================================================
  1   RGBShift                  0.5  add to r, g, b shifts uniform in -20..20
  2   ChannelDropout            0.1  one random channel set to 0
  3   Equalize                  0.1  OpenCV histogram equalisation of each channel
  4   HueSaturationValue        0.5  hue -20..20, saturation -30..30, value -20..20
  5   ChannelShuffle            0.2  random permutation of the channels
  6   RandomBrightnessContrast  0.5  ``v * (1 + c) + 255 * b``, c and b uniform in
                                     -0.2..0.2, truncated
  7   RandomGamma               0.1  ``255 * (v / 255) ** g``, g uniform in 0.8..1.2,
                                     truncated
  8   MotionBlur                0.1  normalised one-pixel line kernel, odd size 3..7,
                                     both end points anywhere in the kernel
  9   Blur                      0.2  box filter, odd size 3..7
  10  ToGray                    0.1  OpenCV RGB -> grey, repeated on three channels
  11  MedianBlur                0.1  odd size 3..7
  12  ImageCompression          0.1  JPEG at quality 99 or 100
  13  RandomGamma               0.2  as 7 (the release has it twice)
  14  GaussNoise                0.1  add N(0, var) drawn per pixel and channel, var
                                     uniform in 10..50 (std 3.2..7.1), truncated
  15  GaussianBlur              0.1  size 3, 5 or 7 (probabilities 1/5, 2/5, 2/5),
                                     sigma 0: OpenCV's kernel for the size, a
                                     binomial ``[1 2 1] / 4``, ``[1 4 6 4 1] / 16``,
                                     ``[1 3.5 7 9 7 3.5 1] / 32`` close to a Gaussian
                                     of sigma ``0.3 * ((k - 1) / 2 - 1) + 0.8``
  16  CLAHE                     0.1  clip limit uniform in 1..4, 8 x 8 tiles
  ==  ========================  ===  =====================================================

  albumentations 1.3 draws all its randomness from Python's global
  :mod:`random`; :class:`StrongAugmentation` seeds it for one call and then
  restores it, so a draw is a function of its seed. The training data set
  augments each item with probability 0.5, then draws each frame
  independently (the release's behaviour) or, optionally, shares one draw.

* ``"colorjitter"``: Monodepth2's ``ColorJitter`` (brightness, contrast and
  saturation factors in 0.8..1.2, hue shift in -0.1..0.1, applied in a random
  order), one draw shared by every frame of an item.

Both take and return ``H x W x 3`` uint8 images (numpy arrays or PIL images)
and draw their randomness from a seed given by the caller, so that a data
loader seeded per worker is reproducible.
"""
from __future__ import annotations

import importlib.metadata
import random
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from utils import AUGMENTATIONS as AUGMENTATIONS  # the names of --augmentation, re-exported
from utils import GasMonoError

ALBUMENTATIONS_SERIES = "1.3."

# The release's pipeline, in order: (albumentations 1.3 transform, p, its parameters).
STRONG_TRANSFORMS: tuple[tuple[str, float, dict[str, Any]], ...] = (
    ("RGBShift", 0.5, {"r_shift_limit": 20, "g_shift_limit": 20, "b_shift_limit": 20}),
    ("ChannelDropout", 0.1, {"channel_drop_range": (1, 1), "fill_value": 0}),
    ("Equalize", 0.1, {"mode": "cv", "by_channels": True}),
    ("HueSaturationValue", 0.5, {"hue_shift_limit": 20, "sat_shift_limit": 30, "val_shift_limit": 20}),
    ("ChannelShuffle", 0.2, {}),
    ("RandomBrightnessContrast", 0.5, {"brightness_limit": 0.2, "contrast_limit": 0.2, "brightness_by_max": True}),
    ("RandomGamma", 0.1, {"gamma_limit": (80, 120)}),
    ("MotionBlur", 0.1, {"blur_limit": (3, 7), "allow_shifted": True}),
    ("Blur", 0.2, {"blur_limit": (3, 7)}),
    ("ToGray", 0.1, {}),
    ("MedianBlur", 0.1, {"blur_limit": (3, 7)}),
    ("ImageCompression", 0.1, {"quality_lower": 99, "quality_upper": 100}),
    ("RandomGamma", 0.2, {"gamma_limit": (80, 120)}),
    ("GaussNoise", 0.1, {"var_limit": (10.0, 50.0), "mean": 0, "per_channel": True}),
    ("GaussianBlur", 0.1, {"blur_limit": (3, 7), "sigma_limit": 0}),
    ("CLAHE", 0.1, {"clip_limit": (1.0, 4.0), "tile_grid_size": (8, 8)}),
)

JITTER_BRIGHTNESS = (0.8, 1.2)
JITTER_CONTRAST = (0.8, 1.2)
JITTER_SATURATION = (0.8, 1.2)
JITTER_HUE = (-0.1, 0.1)


def require_release_albumentations() -> None:
    """Raise :class:`GasMonoError` unless albumentations 1.3.x is installed: other
    versions apply some of the release's transforms differently. Reads the
    installed version without importing the package."""
    try:
        version = importlib.metadata.version("albumentations")
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    if not version.startswith(ALBUMENTATIONS_SERIES):
        raise GasMonoError(
            f"--augmentation strong needs albumentations {ALBUMENTATIONS_SERIES}x (the release's version, "
            f"pinned in requirements.txt), found {version}"
        )


def build_strong_pipeline() -> Any:
    """The release's albumentations ``Compose`` (see the module docstring).

    albumentations is imported here, on first use, because importing it takes
    over a second.
    """
    require_release_albumentations()
    import albumentations as A

    return A.Compose([getattr(A, name)(p=p, **parameters) for name, p, parameters in STRONG_TRANSFORMS], p=1.0)


class StrongAugmentation:
    """The release's pipeline, built once, applied with explicit seeds."""

    def __init__(self) -> None:
        self.pipeline = build_strong_pipeline()

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        """Augment one ``H x W x 3`` uint8 image; the same ``seed`` gives the same
        draw. Python's global random state is left as it was."""
        saved = random.getstate()
        random.seed(seed)
        try:
            return self.pipeline(image=image)["image"]
        finally:
            random.setstate(saved)


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

