"""Depth evaluation: protocols (masks, crops, clamps), per-image metrics with
median scaling, and the checkpoint evaluator behind ``evaluate_depth.py``."""
from .evaluator import (
    STEREO_SCALE_FACTOR,
    EvalConfig,
    build_eval_set,
    evaluate,
    evaluate_checkpoint,
    format_results,
    load_disparities,
    predict_disparities,
)
from .metrics import DepthEvaluation, ImageEvaluation, evaluate_depth_batch, evaluate_depth_maps, evaluate_image
from .protocols import DEFAULT_PROTOCOL, PROTOCOLS, Crop, EvalProtocol, resolve_protocol, validation_protocol

__all__ = [
    "STEREO_SCALE_FACTOR",
    "EvalConfig",
    "build_eval_set",
    "evaluate",
    "evaluate_checkpoint",
    "format_results",
    "load_disparities",
    "predict_disparities",
    "DepthEvaluation",
    "ImageEvaluation",
    "evaluate_depth_batch",
    "evaluate_depth_maps",
    "evaluate_image",
    "DEFAULT_PROTOCOL",
    "PROTOCOLS",
    "Crop",
    "EvalProtocol",
    "resolve_protocol",
    "validation_protocol",
]
