"""GasMono networks: the depth encoders (MPViT-small, ResNets) chosen by name,
the depth decoder, PoseNet and AlignNet (built and loaded by name), checkpoint
I/O in the release's folder layout and ImageNet initialisation from local files."""
from .align_net import TransDecoder
from .checkpoints import (
    MODEL_NAMES,
    NonFiniteWeightsError,
    describe_non_finite,
    load_optimizer_state,
    load_training_state,
    load_weights_folder,
    non_finite_entries,
    read_depth_encoder_name,
    remove_stale_staging,
    save_weights_folder,
)
from .depth_decoder import DepthDecoder, convex_upsample
from .depth_model import DEPTH_ENCODER_FACTORIES, build_depth_encoder, load_depth_model
from .mpvit import MPViT, mpvit_small
from .pose_decoder import PoseDecoder
from .pose_model import PAIR_NETWORKS, build_pair_network, load_pair_networks
from .pretrained import load_mpvit_imagenet, load_resnet_imagenet
from .resnet_encoder import ResnetEncoder

__all__ = [
    "MPViT",
    "mpvit_small",
    "DepthDecoder",
    "convex_upsample",
    "DEPTH_ENCODER_FACTORIES",
    "build_depth_encoder",
    "load_depth_model",
    "ResnetEncoder",
    "PoseDecoder",
    "PAIR_NETWORKS",
    "build_pair_network",
    "load_pair_networks",
    "TransDecoder",
    "MODEL_NAMES",
    "NonFiniteWeightsError",
    "non_finite_entries",
    "describe_non_finite",
    "remove_stale_staging",
    "save_weights_folder",
    "load_weights_folder",
    "read_depth_encoder_name",
    "load_optimizer_state",
    "load_training_state",
    "load_mpvit_imagenet",
    "load_resnet_imagenet",
]
