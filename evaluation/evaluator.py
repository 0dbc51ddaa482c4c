"""Evaluate a checkpoint (or saved disparities) on a test split.

:func:`evaluate` is what ``evaluate_depth.py`` runs; it is importable so that
scripts (the demo, notebooks) can evaluate in-process::

    from evaluation import EvalConfig, evaluate
    results = evaluate(EvalConfig(load_weights_folder="logs/mdp/models/weights_39",
                                  data_path="data/nyu_test", split="nyu"))
    results["metrics"]["abs_rel"]

The result dict is also written as JSON to
``<out_dir>/eval_<split>_<protocol>.json`` (``out_dir``: the given folder, else
the weights folder, else the folder of the external disparities).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader
from tqdm import tqdm

from datasets.eval_base import EvalImageDataset, EvalSet, GroundTruth, StackedGroundTruth
from datasets.eval_kitti import kitti_eigen_test_set
from datasets.eval_nyu import nyu_test_set
from datasets.eval_scannet import scannet_test_set
from datasets.eval_seven_scenes import seven_scenes_test_set
from evaluation.metrics import DEPTH_METRIC_NAMES, evaluate_depth_maps
from evaluation.protocols import EvalProtocol, resolve_protocol
from inference import DepthEstimator
from utils import GasMonoError, atomic_write_text, prepare_output_folder, resolve_device

__all__ = [
    "STEREO_SCALE_FACTOR",
    "EvalConfig",
    "build_eval_set",
    "check_ground_truth",
    "predict_disparities",
    "load_disparities",
    "check_disparities",
    "evaluate",
    "evaluate_checkpoint",
    "format_results",
]

logger = logging.getLogger(__name__)

STEREO_SCALE_FACTOR = 5.4
"""KITTI stereo baseline factor of Monodepth2 (``--eval_stereo``: fixed scale, no median scaling)."""


@dataclass
class EvalConfig:
    """Everything an evaluation run needs (mirrors the evaluation flags).

    Attributes:
        split: ``nyu``, ``scannet``, ``7scenes`` or ``eigen`` (KITTI).
        protocol: see :mod:`evaluation.protocols`; None = the split's default.
        data_path: root of the test set.
        load_weights_folder: checkpoint to evaluate (``encoder.pth``, ``depth.pth``).
        depth_encoder: the depth encoder the checkpoint must hold; None takes
            the one named in ``encoder.pth``.
        ext_disp_to_eval: ``.npy`` of ``N x h x w`` scaled disparities to
            evaluate instead of a checkpoint.
        gt_depths: ground-truth ``.npz`` overriding the split's default.
        frame_stride: 7-Scenes: every N-th frame.
        min_depth, max_depth: ``disp_to_depth`` range of the network.
        batch_size, num_workers, device, no_cuda, compile, kernels: inference settings
            (``compile``: ``torch.compile`` the networks; ``kernels``: ``--kernels``, the fused
            networks of ``accel.fusion`` or the plain ones; see :class:`inference.DepthEstimator`).
        post_process: flip post-processing.
        eval_stereo: fixed scale :data:`STEREO_SCALE_FACTOR`, no median scaling.
        median_scaling: per-image median scaling (monocular evaluation).
        pred_depth_scale_factor: fixed factor on predicted depth.
        save_pred_disps: save the predictions as ``disps_<split>_<protocol>.npy``.
        no_eval: stop after predicting (and saving).
        out_dir: where results go (default: the weights folder).
        progress: show tqdm bars.
    """

    split: str = "nyu"
    protocol: str | None = None
    data_path: str | None = None
    load_weights_folder: str | None = None
    depth_encoder: str | None = None
    ext_disp_to_eval: str | None = None
    gt_depths: str | None = None
    frame_stride: int = 10
    min_depth: float = 0.1
    max_depth: float = 10.0
    batch_size: int = 12
    num_workers: int = 0
    device: str = "auto"
    no_cuda: bool = False
    compile: bool = False
    kernels: str = "auto"
    post_process: bool = False
    eval_stereo: bool = False
    median_scaling: bool = True
    pred_depth_scale_factor: float = 1.0
    save_pred_disps: bool = False
    no_eval: bool = False
    out_dir: str | None = None
    progress: bool = True

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> "EvalConfig":
        """Build from the parsed :class:`options.GasMonoOptions`."""
        if getattr(options, "eval_eigen_to_benchmark", False):
            raise GasMonoError(
                "--eval_eigen_to_benchmark is not supported; evaluate on the velodyne ground truth of "
                "tools/export_kitti_gt.py"
            )
        return cls(
            split=options.eval_split,
            protocol=options.eval_protocol,
            data_path=options.data_path,
            load_weights_folder=options.load_weights_folder,
            depth_encoder=options.depth_encoder,
            ext_disp_to_eval=options.ext_disp_to_eval,
            gt_depths=options.gt_depths,
            frame_stride=options.eval_frame_stride,
            min_depth=options.min_depth,
            max_depth=options.max_depth,
            batch_size=options.batch_size,
            num_workers=options.num_workers,
            device=options.device,
            no_cuda=options.no_cuda,
            compile=options.compile,
            kernels=options.kernels,
            post_process=options.post_process,
            eval_stereo=options.eval_stereo,
            median_scaling=not options.disable_median_scaling,
            pred_depth_scale_factor=options.pred_depth_scale_factor,
            save_pred_disps=options.save_pred_disps,
            no_eval=options.no_eval,
            out_dir=options.eval_out_dir,
        )


def build_eval_set(
    config: EvalConfig, protocol: EvalProtocol, height: int, width: int, check_files: bool = True
) -> EvalSet:
    """The test images (at ``height x width``) and ground truth of ``config.split``."""
    if config.data_path is None:
        raise GasMonoError("no --data_path given for the test set")
    input_crop = protocol.input_crop_pixels()
    required_size = protocol.gt_size if input_crop is not None else None
    if config.split == "nyu":
        return nyu_test_set(
            config.data_path, height, width, config.gt_depths, input_crop, required_size, check_files
        )
    if config.split == "scannet":
        return scannet_test_set(config.data_path, height, width, input_crop, check_files)
    if config.split == "7scenes":
        return seven_scenes_test_set(config.data_path, height, width, config.frame_stride, input_crop, check_files)
    if config.split == "eigen":
        return kitti_eigen_test_set(config.data_path, height, width, config.gt_depths, input_crop, check_files)
    raise GasMonoError(f"unknown evaluation split {config.split!r}")


def predict_disparities(
    estimator: DepthEstimator,
    dataset: EvalImageDataset,
    batch_size: int = 12,
    num_workers: int = 0,
    post_process: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Run the network over a test set.

    Returns:
        ``N x height x width`` float32 scaled disparities, in dataset order.
    """
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=estimator.device.type == "cuda",
        drop_last=False,
    )
    disps = np.zeros((len(dataset), estimator.height, estimator.width), dtype=np.float32)
    for batch in tqdm(loader, desc="predict", unit="batch", disable=not progress):
        disp = estimator.disparity_batch(batch["color"], post_process)
        disps[batch["index"].numpy()] = disp[:, 0].float().cpu().numpy()
    return disps


def check_ground_truth(ground_truth: GroundTruth, protocol: EvalProtocol) -> None:
    """Before any inference: every map has the size the protocol needs
    (map headers only where the maps are image files)."""
    if protocol.gt_size is None:
        return
    for index in range(len(ground_truth)):
        protocol.check_gt_shape(ground_truth.shape(index), index)


def check_disparities(disps: np.ndarray, source: str) -> None:
    """Refuse disparities that are not finite and positive: they have no depth
    (``1 / disp``) and would give NaN or plausible-looking but wrong metrics.

    Args:
        disps: ``N x h x w`` scaled disparities.
        source: what they are, for the message (a file, a checkpoint).
    """
    finite = np.isfinite(disps)
    bad = ~finite | (disps <= 0)
    if not bad.any():
        return
    counts = {"NaN or infinite": int((~finite).sum()), "zero": int((disps == 0).sum()),
              "negative": int((disps < 0).sum())}
    kinds = ", ".join(f"{count} {kind}" for kind, count in counts.items() if count)
    images = np.flatnonzero(bad.reshape(len(disps), -1).any(axis=1))
    raise GasMonoError(
        f"{source}: disparities must be finite and > 0, found {kinds} in {len(images)} of {len(disps)} "
        f"image(s) (first: image {images[0]})"
    )


def load_disparities(path: str | os.PathLike) -> np.ndarray:
    """Load external disparities: ``N x h x w`` (or ``N x 1 x h x w``) ``.npy``,
    all finite and positive (see :func:`check_disparities`).

    Returns:
        ``N x h x w`` float32.
    """
    path = Path(path)
    if not path.is_file():
        raise GasMonoError(f"disparity file not found: {path}")
    try:
        disps = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise GasMonoError(f"cannot read disparities {path}: {error}") from None
    if disps.ndim == 4 and disps.shape[1] == 1:
        disps = disps[:, 0]
    if disps.ndim != 3:
        raise GasMonoError(f"{path}: expected N x h x w disparities, got shape {disps.shape}")
    if disps.dtype.kind not in "fiu":
        raise GasMonoError(f"{path}: expected numeric disparities, got dtype {disps.dtype}")
    disps = disps.astype(np.float32, copy=False)
    check_disparities(disps, str(path))
    return disps


def _output_folder(config: EvalConfig) -> Path:
    if config.out_dir is not None:
        return Path(config.out_dir)
    if config.load_weights_folder is not None:
        return Path(config.load_weights_folder)
    return Path(config.ext_disp_to_eval).parent


def _ground_truth_only(config: EvalConfig, protocol: EvalProtocol, height: int, width: int) -> GroundTruth:
    if config.gt_depths is not None:
        return StackedGroundTruth(config.gt_depths)
    return build_eval_set(config, protocol, height, width, check_files=False).ground_truth


def evaluate(config: EvalConfig) -> dict:
    """Predict (or load) disparities for a split and compute the metrics.

    Returns:
        a JSON-ready dict: ``split``, ``protocol``, ``protocol_definition``,
        ``checkpoint`` / ``ext_disp_to_eval``, ``height``, ``width``,
        ``test_set``, ``num_predictions``, ``median_scaling``,
        ``pred_depth_scale_factor``, ``post_process``, ``frame_stride``
        (7-Scenes), ``metrics`` (mean over images), ``num_images``,
        ``num_skipped``, ``scale_ratios``, ``results_file`` (and
        ``pred_disps_file`` when saved). With ``no_eval`` the metric entries
        are absent.
    """
    protocol = resolve_protocol(config.split, config.protocol)
    if config.batch_size < 1:
        raise GasMonoError(f"batch size must be at least 1, got {config.batch_size}")
    if not (np.isfinite(config.pred_depth_scale_factor) and config.pred_depth_scale_factor > 0):
        raise GasMonoError(f"the depth scale factor must be finite and > 0, got {config.pred_depth_scale_factor}")
    if config.ext_disp_to_eval is None and config.load_weights_folder is None:
        raise GasMonoError("give a checkpoint (--load_weights_folder) or disparities (--ext_disp_to_eval)")
    median_scaling = config.median_scaling and not config.eval_stereo
    scale_factor = STEREO_SCALE_FACTOR if config.eval_stereo else config.pred_depth_scale_factor
    out_dir = _output_folder(config)
    writes = config.save_pred_disps or not config.no_eval

    if config.ext_disp_to_eval is not None:
        pred_disps = load_disparities(config.ext_disp_to_eval)
        height, width = pred_disps.shape[1:]
        ground_truth = _ground_truth_only(config, protocol, height, width)
        if not config.no_eval:
            if len(pred_disps) != len(ground_truth):
                raise GasMonoError(
                    f"{len(pred_disps)} predictions but {len(ground_truth)} ground-truth maps ({ground_truth.source})"
                )
            check_ground_truth(ground_truth, protocol)
        if writes:
            prepare_output_folder(out_dir, "results folder")
        test_set = ground_truth.source
        checkpoint = depth_encoder = None
    else:
        if config.data_path is None or not Path(config.data_path).exists():
            raise GasMonoError(f"test data folder not found: {config.data_path}")
        device = resolve_device(config.device, config.no_cuda)
        estimator = DepthEstimator.from_checkpoint(
            config.load_weights_folder, device, config.min_depth, config.max_depth, config.depth_encoder,
            config.compile, config.kernels,
        )
        logger.info(estimator.kernels.describe())
        height, width = estimator.height, estimator.width
        eval_set = build_eval_set(config, protocol, height, width)
        if not config.no_eval:
            check_ground_truth(eval_set.ground_truth, protocol)
        if writes:
            prepare_output_folder(out_dir, "results folder")
        logger.info("evaluating %d images of %s at %dx%d on %s", len(eval_set.dataset), eval_set.description,
                    height, width, device)
        pred_disps = predict_disparities(
            estimator, eval_set.dataset, config.batch_size, config.num_workers, config.post_process, config.progress
        )
        check_disparities(pred_disps, f"predictions of {config.load_weights_folder}")
        ground_truth = eval_set.ground_truth
        test_set = eval_set.description
        checkpoint = str(config.load_weights_folder)
        depth_encoder = estimator.depth_encoder

    results = {
        "split": config.split,
        "protocol": protocol.name,
        "protocol_definition": protocol.as_dict(),
        "checkpoint": checkpoint,
        "depth_encoder": depth_encoder,
        "ext_disp_to_eval": config.ext_disp_to_eval,
        "height": int(height),
        "width": int(width),
        "test_set": test_set,
        "num_predictions": int(len(pred_disps)),
        "median_scaling": median_scaling,
        "pred_depth_scale_factor": scale_factor,
        "post_process": config.post_process,
        "min_depth": config.min_depth,
        "max_depth": config.max_depth,
    }
    if config.split == "7scenes":
        results["frame_stride"] = config.frame_stride

    if config.save_pred_disps:
        disps_path = out_dir / f"disps_{config.split}_{protocol.name}.npy"
        np.save(disps_path, pred_disps)
        results["pred_disps_file"] = str(disps_path)
        logger.info("saved predicted disparities to %s", disps_path)
    if config.no_eval:
        return results

    results.update(
        evaluate_depth_maps(pred_disps, ground_truth, protocol, median_scaling, scale_factor, config.progress)
    )
    results_path = out_dir / f"eval_{config.split}_{protocol.name}.json"
    results["results_file"] = str(results_path)
    # the inputs are checked, so no metric is NaN; allow_nan=False makes sure the file is valid JSON
    atomic_write_text(json.dumps(results, indent=2, allow_nan=False) + "\n", results_path)
    return results


def evaluate_checkpoint(
    load_weights_folder: str | os.PathLike, data_path: str | os.PathLike, split: str = "nyu",
    protocol: str | None = None, **settings,
) -> dict:
    """Shorthand for ``evaluate(EvalConfig(...))`` with a checkpoint; ``settings``
    are further :class:`EvalConfig` fields."""
    config = EvalConfig(
        split=split, protocol=protocol, data_path=str(data_path), load_weights_folder=str(load_weights_folder),
        **settings,
    )
    return evaluate(config)


def format_results(results: dict) -> str:
    """A printable table naming split, protocol, resolution, source and image count."""
    if results["checkpoint"]:
        source = f"{results['depth_encoder']} checkpoint {results['checkpoint']}"
    else:
        source = f"disparities {results['ext_disp_to_eval']}"
    lines = [
        f"split {results['split']} | protocol {results['protocol']} "
        f"({results['protocol_definition']['description']})",
        f"input {results['height']}x{results['width']} | {source}",
        f"test set: {results['test_set']}",
    ]
    if "metrics" not in results:
        lines.append(f"{results['num_predictions']} predictions, evaluation disabled")
        return "\n".join(lines)
    images = f"{results['num_images']} images"
    if results["num_skipped"]:
        images += f" ({results['num_skipped']} without valid ground truth skipped)"
    if results["median_scaling"]:
        ratios = results["scale_ratios"]
        scaling = f"median scaling, ratios med {ratios['median']:.3f} | std {ratios['std_relative']:.3f}"
    else:
        scaling = f"fixed scale x{results['pred_depth_scale_factor']:g}"
    post = " | post-processed" if results["post_process"] else ""
    lines.append(f"{images} | {scaling}{post}")
    lines.append("  " + " | ".join(f"{name:>8}" for name in DEPTH_METRIC_NAMES))
    lines.append("& " + " & ".join(f"{results['metrics'][name]:8.4f}" for name in DEPTH_METRIC_NAMES) + " \\\\")
    return "\n".join(lines)
