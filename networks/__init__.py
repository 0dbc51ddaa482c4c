"""GasMono networks: MPViT depth encoder, depth decoder, PoseNet, AlignNet,
and checkpoint I/O in the release's folder layout."""
from .align_net import TransDecoder
from .checkpoints import (
    MODEL_NAMES,
    NonFiniteWeightsError,
    describe_non_finite,
    load_optimizer_state,
    load_training_state,
    load_weights_folder,
    non_finite_entries,
    remove_stale_staging,
    save_weights_folder,
)
from .depth_decoder import DepthDecoder, convex_upsample
from .mpvit import MPViT, mpvit_small
from .pose_decoder import PoseDecoder
from .pretrained import load_mpvit_imagenet, load_resnet_imagenet
from .resnet_encoder import ResnetEncoder

__all__ = [
    "MPViT",
    "mpvit_small",
    "DepthDecoder",
    "convex_upsample",
    "ResnetEncoder",
    "PoseDecoder",
    "TransDecoder",
    "MODEL_NAMES",
    "NonFiniteWeightsError",
    "non_finite_entries",
    "describe_non_finite",
    "remove_stale_staging",
    "save_weights_folder",
    "load_weights_folder",
    "load_optimizer_state",
    "load_training_state",
    "load_mpvit_imagenet",
    "load_resnet_imagenet",
]
