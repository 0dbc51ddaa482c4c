"""Per-image depth errors under a protocol, and their average over a test set.

For each image: the predicted (scaled) disparity is resized to the ground-truth
size (bilinear), inverted to depth, restricted to the protocol's valid pixels,
multiplied by a fixed factor, median-scaled (monocular evaluation:
``pred *= median(gt) / median(pred)``), clamped to the protocol's range, and
compared with :func:`compute_depth_errors`. Metrics are averaged over
images (each image counts once, whatever its number of valid pixels).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from evaluation.protocols import EvalProtocol
from inference import resize_disparity
from utils import GasMonoError

__all__ = [
    "DEPTH_METRIC_NAMES",
    "compute_depth_errors",
    "ImageEvaluation",
    "DepthEvaluation",
    "evaluate_image",
    "evaluate_depth_maps",
    "evaluate_depth_batch",
]

logger = logging.getLogger(__name__)

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3")


def compute_depth_errors(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """Standard depth metrics between valid ground truth and prediction.

    Args:
        gt, pred: 1-D tensors of the valid pixels of one image (positive).

    Returns:
        dict with ``abs_rel, sq_rel, rmse, rmse_log, log10, a1, a2, a3``, where
        ``a_k = mean(max(gt/pred, pred/gt) < 1.25^k)`` and
        ``log10 = mean(|log10 gt - log10 pred|)``.
    """
    gt = gt.double()
    pred = pred.double()
    ratio = torch.maximum(gt / pred, pred / gt)
    a1 = (ratio < 1.25).double().mean()
    a2 = (ratio < 1.25**2).double().mean()
    a3 = (ratio < 1.25**3).double().mean()
    rmse = torch.sqrt(((gt - pred) ** 2).mean())
    rmse_log = torch.sqrt(((torch.log(gt) - torch.log(pred)) ** 2).mean())
    abs_rel = (torch.abs(gt - pred) / gt).mean()
    sq_rel = ((gt - pred) ** 2 / gt).mean()
    log10 = torch.abs(torch.log10(gt) - torch.log10(pred)).mean()
    values = (abs_rel, sq_rel, rmse, rmse_log, log10, a1, a2, a3)
    return {name: float(value) for name, value in zip(DEPTH_METRIC_NAMES, values)}


@dataclass
class ImageEvaluation:
    """Errors of one image (None when it has no valid ground-truth pixel)."""

    errors: dict[str, float] | None
    ratio: float | None
    num_valid: int


def evaluate_image(
    pred_disp: np.ndarray,
    gt_depth: np.ndarray,
    protocol: EvalProtocol,
    median_scaling: bool = True,
    scale_factor: float = 1.0,
    index: int = 0,
) -> ImageEvaluation:
    """Compare one predicted disparity with its ground truth.

    Args:
        pred_disp: ``h x w`` scaled disparity (``1 / depth``) at any size.
        gt_depth: ``H x W`` ground-truth depth in metres (full map; the
            protocol's input crop is applied here).
        protocol: masks, crop and clamp.
        median_scaling: scale by ``median(gt) / median(pred)`` over valid pixels.
        scale_factor: fixed factor applied to the predicted depth first.
        index: image number, for error messages.
    """
    protocol.check_gt_size(gt_depth, index)
    gt_depth = protocol.crop_gt(gt_depth)
    height, width = gt_depth.shape
    pred_depth = 1.0 / resize_disparity(pred_disp, height, width)
    mask = protocol.valid_mask(gt_depth)
    num_valid = int(mask.sum())
    if num_valid == 0:
        return ImageEvaluation(None, None, 0)
    gt = gt_depth[mask].astype(np.float64)
    pred = pred_depth[mask].astype(np.float64) * scale_factor
    ratio = None
    if median_scaling:
        ratio = float(np.median(gt) / np.median(pred))
        pred = pred * ratio
    pred = np.clip(pred, *protocol.clamp)
    errors = compute_depth_errors(torch.from_numpy(gt), torch.from_numpy(pred))
    return ImageEvaluation(errors, ratio, num_valid)


@dataclass
class DepthEvaluation:
    """Accumulates per-image errors; :meth:`summary` gives the averages."""

    errors: list[dict[str, float]] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)

    def add(self, result: ImageEvaluation, index: int) -> None:
        if result.errors is None:
            self.skipped.append(index)
            return
        self.errors.append(result.errors)
        if result.ratio is not None:
            self.ratios.append(result.ratio)

    def summary(self) -> dict:
        """``{"metrics": {name: mean}, "num_images", "num_skipped", "skipped",
        "scale_ratios": {"median", "std", "std_relative"} or None}``.

        ``std_relative`` is the spread of ``ratio / median(ratio)`` (what
        Monodepth2 prints as "std").
        """
        if not self.errors:
            raise GasMonoError("no image has a valid ground-truth pixel under this protocol")
        metrics = {name: float(np.mean([errors[name] for errors in self.errors])) for name in DEPTH_METRIC_NAMES}
        ratios = None
        if self.ratios:
            values = np.asarray(self.ratios)
            median = float(np.median(values))
            ratios = {"median": median, "std": float(np.std(values)), "std_relative": float(np.std(values / median))}
        return {
            "metrics": metrics,
            "num_images": len(self.errors),
            "num_skipped": len(self.skipped),
            "skipped": list(self.skipped),
            "scale_ratios": ratios,
        }


def evaluate_depth_maps(
    pred_disps: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray],
    protocol: EvalProtocol,
    median_scaling: bool = True,
    scale_factor: float = 1.0,
    progress: bool = True,
) -> dict:
    """Evaluate aligned predictions and ground-truth maps (see :meth:`DepthEvaluation.summary`).

    Args:
        pred_disps: ``N`` scaled disparities (``N x h x w`` array or list).
        ground_truth: ``N`` depth maps in metres (0 = invalid).
    """
    if len(pred_disps) != len(ground_truth):
        raise GasMonoError(f"{len(pred_disps)} predictions but {len(ground_truth)} ground-truth maps")
    evaluation = DepthEvaluation()
    for index in tqdm(range(len(pred_disps)), desc="metrics", unit="img", disable=not progress):
        result = evaluate_image(pred_disps[index], ground_truth[index], protocol, median_scaling, scale_factor, index)
        evaluation.add(result, index)
    if evaluation.skipped:
        logger.warning("%d images without valid ground truth were skipped: %s", len(evaluation.skipped),
                       evaluation.skipped[:10])
    return evaluation.summary()


def evaluate_depth_batch(pred_disps: torch.Tensor, gt_depths: torch.Tensor, protocol: EvalProtocol) -> dict | None:
    """Average metrics of a batch of predictions, as :func:`evaluate_depth_maps`
    computes them (each disparity resized to its ground truth, per-image median
    scaling, clamping), without a progress bar or warnings.

    Args:
        pred_disps: ``B x 1 x h x w`` scaled disparities (``1 / depth``), any device.
        gt_depths: ``B x 1 x H x W`` ground-truth depth in metres (0 = invalid).

    Returns:
        ``{name: mean}`` over the images with valid ground truth, or None when
        no image of the batch has a valid pixel.
    """
    pred = pred_disps.detach()[:, 0].float().cpu().numpy()
    gt = gt_depths.detach()[:, 0].float().cpu().numpy()
    evaluation = DepthEvaluation()
    for index in range(len(pred)):
        evaluation.add(evaluate_image(pred[index], gt[index], protocol, index=index), index)
    if not evaluation.errors:
        return None
    return evaluation.summary()["metrics"]
