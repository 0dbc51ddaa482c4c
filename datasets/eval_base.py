"""Building blocks of the evaluation test sets.

A test set is two aligned sequences (see :class:`EvalSet`):

* an :class:`EvalImageDataset` yielding ``{"color": 3 x h x w, "index": i}``
  with the image resized to the network size (optionally cropped first), and
* a :class:`GroundTruth`: ``ground_truth[i]`` is the ``H x W`` float32 depth
  map of image ``i`` in metres, ``0`` where invalid.

The evaluator runs the network on the first and compares with the second;
the split-specific modules (``eval_nyu``, ``eval_scannet``,
``eval_seven_scenes``, ``eval_kitti``) only find the files.
"""
from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from utils import GasMonoError

__all__ = [
    "PixelCrop",
    "EvalImageDataset",
    "GroundTruth",
    "StackedGroundTruth",
    "DepthImageGroundTruth",
    "EvalSet",
    "load_rgb",
    "prepare_image",
    "load_stacked_depths",
    "read_depth_image",
]

logger = logging.getLogger(__name__)

PixelCrop = tuple[int, int, int, int]
"""``(top, bottom, left, right)``: rows ``top:bottom`` and columns ``left:right``."""


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
"""PIL modes of single-channel 16-bit images (PNG opens as ``I;16``, older Pillow as ``I``)."""


def _sixteen_bit_to_rgb(image: Image.Image, path: Path) -> Image.Image:
    """Scale a 16-bit grey image to 8 bits (``round(value / 257)``, so that
    65535 becomes 255) and repeat it in three channels. PIL's own
    ``convert("RGB")`` clips every value above 255 to white."""
    values = np.asarray(image)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise GasMonoError(f"cannot read image {path}: integer values outside 0..65535 (not a 16-bit image)")
    grey = np.round(values.astype(np.float32) / 257.0).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), "RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Read an image file as an 8-bit RGB PIL image.

    16-bit grey images are scaled to 8 bits (16-bit colour PNGs are read at 8
    bits by PIL itself); floating-point images are refused.

    Raises:
        GasMonoError: naming the file when it is missing, unreadable or of an
            unsupported kind.
    """
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            if image.mode in SIXTEEN_BIT_MODES:
                return _sixteen_bit_to_rgb(image, path)
            if image.mode == "F":
                raise GasMonoError(f"cannot read image {path}: floating-point pixels; expected an 8- or 16-bit image")
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise GasMonoError(f"cannot read image {path}: not an image file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise GasMonoError(f"cannot read image {path}: {error}") from None


def prepare_image(image: Image.Image, height: int, width: int, crop: PixelCrop | None = None) -> torch.Tensor:
    """Crop (optional) and resize an RGB image to the network input.

    Resizing uses PIL's LANCZOS filter, like the training loader.

    Returns:
        float32 tensor ``3 x height x width`` in [0, 1].
    """
    if crop is not None:
        top, bottom, left, right = crop
        image = image.crop((left, top, right, bottom))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class EvalImageDataset(Dataset):
    """Test images at the network size, in ground-truth order.

    Args:
        image_paths: one file per test item, in the order of the ground truth.
        height, width: network input size.
        input_crop: crop applied to the full image before resizing (the
            ``p2net`` protocol); images must then have ``required_size``.
        required_size: ``(H, W)`` every image must have, or None.
        check_files: verify at construction that every image exists (and,
            with ``required_size``, has that size) so that a bad file is
            reported before any computation.

    Items are dicts ``{"color": 3 x height x width float tensor, "index": int}``.
    """

    def __init__(
        self,
        image_paths: Sequence[Path],
        height: int,
        width: int,
        input_crop: PixelCrop | None = None,
        required_size: tuple[int, int] | None = None,
        check_files: bool = True,
    ) -> None:
        super().__init__()
        self.image_paths = [Path(path) for path in image_paths]
        self.height = height
        self.width = width
        self.input_crop = input_crop
        self.required_size = required_size
        if check_files:
            self.check_files()

    def check_files(self) -> None:
        """Raise a :class:`GasMonoError` naming the first missing or wrongly sized image."""
        for path in self.image_paths:
            if not path.is_file():
                raise GasMonoError(f"test image not found: {path}")
            if self.required_size is not None:
                try:
                    with Image.open(path) as image:
                        size = image.size
                except (UnidentifiedImageError, OSError) as error:
                    raise GasMonoError(f"cannot read image {path}: {error}") from None
                self._check_size(path, size)

    def _check_size(self, path: Path, size: tuple[int, int]) -> None:
        if self.required_size is not None and size != (self.required_size[1], self.required_size[0]):
            raise GasMonoError(
                f"image {path} is {size[0]}x{size[1]} (W x H); this protocol needs "
                f"{self.required_size[1]}x{self.required_size[0]}"
            )

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict:
        path = self.image_paths[index]
        image = load_rgb(path)
        self._check_size(path, image.size)
        return {"color": prepare_image(image, self.height, self.width, self.input_crop), "index": index}


class GroundTruth:
    """A sequence of ``H x W`` float32 depth maps in metres (0 = invalid)."""

    source: str = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def shape(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of map ``index``, without reading the depth values when possible."""
        return tuple(self[index].shape)


def load_stacked_depths(path: str | os.PathLike) -> np.ndarray:
    """Load the ``data`` entry of a ground-truth ``.npz``.

    Accepts an ``N x H x W`` float array (NYUv2) or an object array of
    variable-size maps (KITTI, as written by Monodepth2-style exporters; such
    files need pickle and are only read from paths the user gave).

    Returns:
        ``N x H x W`` float array or 1-D object array of ``H_i x W_i`` maps.
    """
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"ground-truth file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "data" not in archive.files:
                raise GasMonoError(f"ground-truth file {path} has no 'data' entry (found: {archive.files})")
            try:
                return archive["data"]
            except ValueError:
                logger.debug("%s holds an object array; loading it with pickle", path)
        with np.load(path, allow_pickle=True, encoding="latin1") as archive:
            return archive["data"]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise GasMonoError(f"cannot read ground-truth file {path}: {error}") from None


class StackedGroundTruth(GroundTruth):
    """Ground truth stacked in one ``.npz`` (key ``data``), in metres."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.maps = load_stacked_depths(self.path)
        if self.maps.dtype != object and self.maps.ndim != 3:
            raise GasMonoError(
                f"ground-truth file {self.path}: 'data' must be N x H x W, got shape {self.maps.shape}"
            )
        self.source = str(self.path)

    def __len__(self) -> int:
        return len(self.maps)

    def __getitem__(self, index: int) -> np.ndarray:
        depth = np.asarray(self.maps[index], dtype=np.float32)
        if depth.ndim != 2:
            raise GasMonoError(f"ground-truth file {self.path}: map {index} has shape {depth.shape}, not H x W")
        return depth

    def shape(self, index: int) -> tuple[int, int]:
        return tuple(np.shape(self.maps[index]))


def read_depth_image(path: str | os.PathLike, divisor: float, invalid_values: Sequence[int] = ()) -> np.ndarray:
    """Read a 16-bit depth PNG as metres (``value / divisor``); ``invalid_values`` and 0 become 0.

    Returns:
        float32 ``H x W`` depth map.
    """
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"ground-truth depth image not found: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise GasMonoError(f"cannot read {path} as a single-channel depth image")
    depth = raw.astype(np.float32) / divisor
    for value in invalid_values:
        depth[raw == value] = 0.0
    return depth


class DepthImageGroundTruth(GroundTruth):
    """Ground truth as one 16-bit depth image per test item.

    Args:
        paths: depth images, in the order of the test images.
        divisor: raw value per metre (1000 for millimetres, 5000 for SC-Depth's NYU PNGs).
        invalid_values: raw values marking invalid pixels (e.g. 65535 in 7-Scenes).
    """

    def __init__(self, paths: Sequence[Path], divisor: float, invalid_values: Sequence[int] = ()) -> None:
        self.paths = [Path(path) for path in paths]
        self.divisor = divisor
        self.invalid_values = tuple(invalid_values)
        for path in self.paths:
            if not path.is_file():
                raise GasMonoError(f"ground-truth depth image not found: {path}")
        self.source = f"{len(self.paths)} depth images (raw / {divisor:g})"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_depth_image(self.paths[index], self.divisor, self.invalid_values)

    def shape(self, index: int) -> tuple[int, int]:
        """``(H, W)`` from the image header."""
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError) as error:
            raise GasMonoError(f"cannot read ground-truth depth image {path}: {error}") from None
        return height, width


@dataclass
class EvalSet:
    """A test set: images for the network and ground truth, aligned by index.

    Attributes:
        dataset: the images (built with ``check_files=False`` when only the
            ground truth is needed, e.g. to evaluate external predictions).
        ground_truth: the depth maps.
        description: one line naming the layout and files, for the results.
    """

    dataset: EvalImageDataset
    ground_truth: GroundTruth
    description: str

    def __post_init__(self) -> None:
        if len(self.dataset) != len(self.ground_truth):
            raise GasMonoError(
                f"{len(self.dataset)} test images but {len(self.ground_truth)} ground-truth maps "
                f"({self.ground_truth.source})"
            )
        if len(self.dataset) == 0:
            raise GasMonoError(f"empty test set: {self.description}")
