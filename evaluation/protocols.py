"""Evaluation protocols: crop, valid ground-truth range, clamp, input crop.

Every protocol the project evaluates with is one row of :data:`PROTOCOLS`:

| split | protocol | input crop (before the network) | GT crop (mask) | valid GT | clamp pred | GT size |
|---|---|---|---|---|---|---|
| nyu | eigen (default) | none | rows 45:471, cols 41:601 | 0.1 < gt < 10 | [0.1, 10] | 480 x 640 |
| nyu | release | none | none | gt > 0 | [0.1, 10] | any |
| nyu | p2net | rows 44:471, cols 40:601 (image and GT) | none | gt > 0 | [0.1, 10] | 480 x 640 |
| scannet | standard | none | none | gt > 0 | [0.1, 10] | any |
| 7scenes | standard | none | none | 0 < gt < 10 (65535 = 0 on load) | [0.1, 10] | any |
| eigen (KITTI) | eigen | none | Garg: rows 0.4081-0.9919 H, cols 0.0359-0.9641 W | 1e-3 < gt < 80 | [1e-3, 80] | any |

Training validation has its own protocols (:func:`validation_protocol`).

Monocular evaluation scales each prediction by ``median(gt) / median(pred)``
over the valid pixels before clamping (see :mod:`evaluation.metrics`).
Splits other than NYUv2 have a single protocol; asking for ``eigen`` there
(the option's NYU default) selects it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from utils import GasMonoError

__all__ = [
    "Crop",
    "EvalProtocol",
    "PROTOCOLS",
    "DEFAULT_PROTOCOL",
    "VALIDATION_PROTOCOLS",
    "resolve_protocol",
    "validation_protocol",
]


@dataclass(frozen=True)
class Crop:
    """Rows ``top:bottom`` and columns ``left:right``; fractions of the image
    size when ``relative`` (rounded down), else pixels."""

    top: float
    bottom: float
    left: float
    right: float
    relative: bool = False

    def pixels(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` in pixels for an image of this size."""
        if self.relative:
            return (int(self.top * height), int(self.bottom * height), int(self.left * width), int(self.right * width))
        return int(self.top), int(self.bottom), int(self.left), int(self.right)

    def mask(self, height: int, width: int) -> np.ndarray:
        """Boolean ``height x width`` mask, True inside the crop."""
        top, bottom, left, right = self.pixels(height, width)
        mask = np.zeros((height, width), dtype=bool)
        mask[top:bottom, left:right] = True
        return mask


@dataclass(frozen=True)
class EvalProtocol:
    """How predictions are compared with one split's ground truth.

    Attributes:
        split, name: identify the protocol (``nyu`` / ``eigen`` ...).
        min_gt, max_gt: valid ground truth is ``min_gt < gt < max_gt``
            (``max_gt`` None: no upper bound).
        gt_crop: evaluation crop applied as a mask on the ground-truth grid.
        input_crop: crop applied to the image *and* the ground truth before
            the network; the prediction is resized to the cropped size.
        clamp: predictions (after scaling) are clipped to this range.
        gt_size: ``(H, W)`` every ground-truth map (and, with ``input_crop``,
            every image) must have; None for any size.
        description: one line for result tables.
    """

    split: str
    name: str
    min_gt: float
    max_gt: float | None
    gt_crop: Crop | None
    input_crop: Crop | None
    clamp: tuple[float, float]
    gt_size: tuple[int, int] | None
    description: str

    def check_gt_size(self, depth: np.ndarray, index: int) -> None:
        """Raise a :class:`GasMonoError` when this protocol needs another map size."""
        self.check_gt_shape(depth.shape, index)

    def check_gt_shape(self, shape: tuple[int, ...], index: int) -> None:
        """:meth:`check_gt_size` from the ``(H, W)`` shape of ground-truth map ``index``."""
        if self.gt_size is not None and tuple(shape) != tuple(self.gt_size):
            size = "x".join(str(side) for side in shape)
            raise GasMonoError(
                f"ground-truth map {index} is {size} (H x W); protocol "
                f"{self.split}/{self.name} needs {self.gt_size[0]}x{self.gt_size[1]}"
            )

    def input_crop_pixels(self) -> tuple[int, int, int, int] | None:
        """The input crop in pixels of ``gt_size`` (None without an input crop)."""
        if self.input_crop is None:
            return None
        return self.input_crop.pixels(*self.gt_size)

    def crop_gt(self, depth: np.ndarray) -> np.ndarray:
        """Apply the input crop (if any) to a ground-truth map."""
        if self.input_crop is None:
            return depth
        top, bottom, left, right = self.input_crop.pixels(*depth.shape)
        return depth[top:bottom, left:right]

    def valid_mask(self, depth: np.ndarray) -> np.ndarray:
        """Boolean mask of the pixels evaluated on a (cropped) ground-truth map."""
        mask = np.isfinite(depth) & (depth > self.min_gt)
        if self.max_gt is not None:
            mask &= depth < self.max_gt
        if self.gt_crop is not None:
            mask &= self.gt_crop.mask(*depth.shape)
        return mask

    def as_dict(self) -> dict:
        """JSON-ready description."""
        return asdict(self)


_NYU_SIZE = (480, 640)
_INDOOR_CLAMP = (0.1, 10.0)
_KITTI_CLAMP = (1e-3, 80.0)
_GARG_CROP = Crop(0.40810811, 0.99189189, 0.03594771, 0.96405229, relative=True)

PROTOCOLS: dict[tuple[str, str], EvalProtocol] = {
    ("nyu", "eigen"): EvalProtocol(
        "nyu", "eigen", 0.1, 10.0, Crop(45, 471, 41, 601), None, _INDOOR_CLAMP, _NYU_SIZE,
        "Eigen crop rows 45:471 cols 41:601, 0.1 < gt < 10, clamp [0.1, 10]",
    ),
    ("nyu", "release"): EvalProtocol(
        "nyu", "release", 0.0, None, None, None, _INDOOR_CLAMP, None,
        "no crop, gt > 0, clamp [0.1, 10] (what the GasMono release computes)",
    ),
    ("nyu", "p2net"): EvalProtocol(
        "nyu", "p2net", 0.0, None, None, Crop(44, 471, 40, 601), _INDOOR_CLAMP, _NYU_SIZE,
        "input and GT cropped to rows 44:471 cols 40:601 before the network, gt > 0, clamp [0.1, 10]",
    ),
    ("scannet", "standard"): EvalProtocol(
        "scannet", "standard", 0.0, None, None, None, _INDOOR_CLAMP, None,
        "no crop, gt > 0, clamp [0.1, 10]",
    ),
    ("7scenes", "standard"): EvalProtocol(
        "7scenes", "standard", 0.0, 10.0, None, None, _INDOOR_CLAMP, None,
        "no crop, 0 < gt < 10 (65535 invalid), clamp [0.1, 10]",
    ),
    ("eigen", "eigen"): EvalProtocol(
        "eigen", "eigen", 1e-3, 80.0, _GARG_CROP, None, _KITTI_CLAMP, None,
        "Garg crop, 1e-3 < gt < 80, clamp [1e-3, 80]",
    ),
}

DEFAULT_PROTOCOL = {"nyu": "eigen", "scannet": "standard", "7scenes": "standard", "eigen": "eigen"}
"""The protocol used for each split when none is requested."""


def resolve_protocol(split: str, name: str | None = None) -> EvalProtocol:
    """Return the protocol ``name`` of ``split`` (its default when None).

    For the single-protocol splits (scannet, 7scenes, eigen) ``"eigen"`` also
    selects the split's protocol, since it is the evaluation option's default.
    """
    if split not in DEFAULT_PROTOCOL:
        raise GasMonoError(f"unknown evaluation split {split!r}; choose from {sorted(DEFAULT_PROTOCOL)}")
    available = sorted(protocol for known_split, protocol in PROTOCOLS if known_split == split)
    if name is None or (name == "eigen" and len(available) == 1):
        name = DEFAULT_PROTOCOL[split]
    if (split, name) not in PROTOCOLS:
        raise GasMonoError(f"unknown protocol {name!r} for split {split!r}; choose from {available}")
    return PROTOCOLS[(split, name)]


VALIDATION_PROTOCOLS = ("depth_range", "kitti")
"""The protocols of training validation; each data set class names its own."""


def validation_protocol(min_depth: float, max_depth: float, name: str = "depth_range") -> EvalProtocol:
    """The protocol of the depth metrics computed during training on validation
    batches that carry ground truth (always with per-image median scaling):

    * ``"depth_range"`` (indoor sets): no crop, ``min_depth < gt < max_depth``,
      predictions clamped to ``[min_depth, max_depth]`` (the network's range);
    * ``"kitti"``: Monodepth2's KITTI validation: Garg crop, ``gt > 0``,
      predictions clamped to ``[1e-3, 80]`` (Monodepth2 scales and averages
      over the pixels of a whole batch; here each image, as the evaluator does).
    """
    if name == "kitti":
        return EvalProtocol("train", "kitti_validation", 0.0, None, _GARG_CROP, None, _KITTI_CLAMP, None,
                            "Garg crop, gt > 0, clamp [1e-3, 80] (Monodepth2's KITTI validation)")
    if name != "depth_range":
        raise GasMonoError(f"unknown validation protocol {name!r}; choose from {VALIDATION_PROTOCOLS}")
    return EvalProtocol(
        "train", "validation", min_depth, max_depth, None, None, (min_depth, max_depth), None,
        f"no crop, {min_depth:g} < gt < {max_depth:g}, clamp [{min_depth:g}, {max_depth:g}]",
    )
