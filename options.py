"""Command-line options shared by training, evaluation and prediction.

One argparse class, as in Monodepth2-style code. Flags keep the names of the
GasMono release so that published recipes keep working, and every flag the
release has keeps the release's default; the one intended difference is
``--models_to_load``, which defaults to all six networks (the release's list
omits AlignNet, ``trans_encoder`` and ``trans``, and so re-initialised it on
resume). The code reads descriptive names derived from the flags in one place
(:class:`losses.Recipe`). Options the release did not have are marked "(new)"
in their help text.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Sequence

from datasets.registry import DATASET_NAMES, STEREO_DATASETS
from utils import (
    AUGMENTATIONS,
    DEFAULT_DEPTH_ENCODER,
    DEPTH_ENCODERS,
    KERNEL_MODES,
    MODEL_NAMES,
    PROJECT_ROOT,
    OneLineErrorParser,
)

EVAL_SPLITS = ("nyu", "scannet", "7scenes", "eigen")
EVAL_PROTOCOLS = ("eigen", "release", "p2net")



class GasMonoOptions:
    """The options of training (``train.py``) and evaluation (``evaluate_depth.py``)."""

    def __init__(self) -> None:
        self.parser = OneLineErrorParser(
            description="GasMono: geometry-aided self-supervised monocular depth estimation for indoor scenes",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        self._add_paths()
        self._add_training()
        self._add_optimisation()
        self._add_ablations()
        self._add_system()
        self._add_loading_and_logging()
        self._add_evaluation()

    def _add_paths(self) -> None:
        group = self.parser.add_argument_group("paths")
        group.add_argument("--data_path", type=str, default=str(PROJECT_ROOT / "data" / "nyu"),
                           help="root of the training sequences (<data_path>/<scene>/<frame:06d>.jpg) "
                                "or of the evaluation set")
        group.add_argument("--log_dir", type=str, default=str(PROJECT_ROOT / "logs"),
                           help="folder in which <model_name>/ with checkpoints and TensorBoard logs is created")
        group.add_argument("--cpose_dir", type=str, default=None,
                           help="(new) folder of coarse poses <cpose_dir>/<scene>/<frame:04d>.npy; "
                                "default splits/<split>/cpose under the project")
        group.add_argument("--split_dir", type=str, default=None,
                           help="(new) folder holding train_files.txt / val_files.txt; default splits/<split>")
        group.add_argument("--strict_splits", action="store_true",
                           help="(new) a split file listing an item twice is an error (without it: a warning)")
        group.add_argument("--mpvit_pretrained", type=str, default=None,
                           help="(new) local ImageNet MPViT-small checkpoint (mpvit_small.pth, key 'model') "
                                "for the depth encoder; without it the encoder starts from scratch")
        group.add_argument("--depth_encoder_pretrained", type=str, default=None,
                           help="(new) local torchvision ImageNet state dict of a ResNet depth encoder "
                                "(--depth_encoder resnet18 / resnet50); without it the encoder starts from scratch")
        group.add_argument("--resnet_pretrained", type=str, default=None,
                           help="(new) local torchvision ResNet-18 ImageNet state dict for the PoseNet and "
                                "AlignNet encoders (used with --weights_init pretrained)")

    def _add_training(self) -> None:
        group = self.parser.add_argument_group("training")
        group.add_argument("--model_name", type=str, default="mdp", help="name of the run folder in log_dir")
        group.add_argument("--split", type=str, default="nyu",
                           help="which training split to use (splits/<split>): nyu (the release's NYUv2 lists) "
                                "for --dataset nyu, eigen_zhou for kitti")
        group.add_argument("--num_layers", type=int, default=18, choices=[18, 34, 50, 101, 152],
                           help="ResNet depth of the PoseNet and AlignNet encoders")
        group.add_argument("--depth_encoder", type=str, default=None, choices=DEPTH_ENCODERS,
                           help=f"(new) depth encoder: GasMono's MPViT-small or Monodepth2's ResNets; training "
                                f"uses {DEFAULT_DEPTH_ENCODER} when not given; evaluation reads it from encoder.pth "
                                f"and, when given, checks it")
        group.add_argument("--dataset", type=str, default="nyu", choices=DATASET_NAMES,
                           help="training dataset layout (datasets/registry.py): nyu (NYUv2 sequences, the "
                                "release's layout, and the synthetic indoor set), folder (your own videos, "
                                "tools/prepare_sequences.py), kitti (KITTI raw, Monodepth2's layout), kitti_odom "
                                "(KITTI odometry); see docs/datasets.md")
        group.add_argument("--png", action="store_true", help="training frames are .png instead of .jpg")
        group.add_argument("--height", type=int, default=256, help="input image height (multiple of 32)")
        group.add_argument("--width", type=int, default=320, help="input image width (multiple of 32)")
        group.add_argument("--disparity_smoothness", type=float, default=1e-3,
                           help="weight of the edge-aware disparity smoothness term")
        group.add_argument("--scales", nargs="+", type=int, default=[0, 1, 2, 3],
                           help="decoder scales used in the loss")
        group.add_argument("--min_depth", type=float, default=0.1, help="minimum depth (metres)")
        group.add_argument("--max_depth", type=float, default=10.0, help="maximum depth (metres)")
        group.add_argument("--use_stereo", action="store_true",
                           help="stereo pairs, as in Monodepth2: the other camera's image (frame id 's') is one "
                                "more source, warped with the fixed stereo_T (baseline 0.1); KITTI data sets only. "
                                "Stereo only: --frame_ids 0 (no pose network); mono+stereo: --frame_ids 0 -1 1 "
                                "(with --use_posegt the coarse poses serve the temporal frames)")
        group.add_argument("--frame_ids", nargs="+", type=int, default=[0, -1, 1],
                           help="frames to load; the first must be 0 (the target)")
        group.add_argument("--resize_filter", type=str, default="lanczos", choices=["lanczos", "area"],
                           help="(new) image pyramid filter: PIL LANCZOS as in the release, or OpenCV area "
                                "averaging (several times faster loading, slightly different pixels)")
        group.add_argument("--augmentation", type=str, default="strong", choices=AUGMENTATIONS,
                           help="(new) colour augmentation: the release's strong albumentations pipeline, "
                                "Monodepth2's ColorJitter, or none")

    def _add_optimisation(self) -> None:
        group = self.parser.add_argument_group("optimisation")
        group.add_argument("--batch_size", type=int, default=12, help="batch size (per process with DDP)")
        group.add_argument("--learning_rate", type=float, default=1e-4,
                           help="learning rate of the depth encoder")
        group.add_argument("--decoder_learning_rate", type=float, default=1e-4,
                           help="(new) learning rate of the depth decoder, PoseNet and AlignNet "
                                "(hard-coded 1e-4 in the release)")
        group.add_argument("--weight_decay", type=float, default=0.01, help="(new) AdamW weight decay")
        group.add_argument("--lr_gamma", type=float, default=0.9,
                           help="(new) ExponentialLR factor, applied at the start of every epoch")
        group.add_argument("--num_epochs", type=int, default=40, help="number of epochs")
        group.add_argument("--scheduler_step_size", type=int, default=20,
                           help="kept from Monodepth2 for compatibility; GasMono decays the learning rate "
                                "every epoch (see --lr_gamma), so this has no effect")
        group.add_argument("--iiters", type=int, default=2,
                           help="self-distillation passes over each batch (an optimiser step each) from epoch "
                                "--iiters_start_epoch on; earlier epochs use one pass")
        group.add_argument("--iiters_start_epoch", type=int, default=10,
                           help="(new) first epoch with --iiters passes per batch (10 in the release)")
        group.add_argument("--max_train_steps", type=int, default=None,
                           help="(new) stop each epoch after this many batches (for short runs and tests)")

    def _add_ablations(self) -> None:
        group = self.parser.add_argument_group("loss and ablations")
        group.add_argument("--use_posegt", action="store_true",
                           help="use the coarse COLMAP poses: warp the sources with them (translation "
                                "rescaled and corrected by AlignNet) before PoseNet predicts a residual pose")
        group.add_argument("--www", type=float, default=0.2,
                           help="weight of the coarse-pose photometric term (photometric error of the "
                                "coarse-warped sources, auto-masked); only with --use_posegt")
        group.add_argument("--selfpp", action="store_true",
                           help="enable iterative self-distillation from the per-pixel best disparity")
        group.add_argument("--wpp", type=float, default=0.1,
                           help="weight of the self-distillation loss, ramped up linearly over the first "
                                "--wpp_ramp_epochs epochs")
        group.add_argument("--wpp_ramp_epochs", type=int, default=20,
                           help="(new) epochs over which the self-distillation weight ramps from 0 to --wpp")
        group.add_argument("--sscale", type=int, default=0,
                           help="accepted for compatibility with the release's scripts; unused by the "
                                "GasMono recipe (no effect)")
        group.add_argument("--v1_multiscale", action="store_true",
                           help="Monodepth v1 multi-scale losses (not supported by GasMono: all scales are "
                                "compared at full resolution)")
        group.add_argument("--avg_reprojection", action="store_true",
                           help="average the reprojection errors over source frames instead of the minimum")
        group.add_argument("--disable_automasking", action="store_true", help="disable auto-masking")
        group.add_argument("--predictive_mask", action="store_true",
                           help="Monodepth2's predictive mask (not supported by GasMono)")
        group.add_argument("--no_ssim", action="store_true", help="photometric error without SSIM")
        group.add_argument("--weights_init", type=str, default="pretrained", choices=["pretrained", "scratch"],
                           help="ImageNet initialisation of the pose encoders (needs --resnet_pretrained)")
        group.add_argument("--pose_model_input", type=str, default="pairs", choices=["pairs", "all"],
                           help="how many images the pose network gets (GasMono supports pairs)")
        group.add_argument("--pose_model_type", type=str, default="separate_resnet",
                           choices=["posecnn", "separate_resnet", "shared"],
                           help="pose network type (GasMono supports separate_resnet)")

    def _add_system(self) -> None:
        group = self.parser.add_argument_group("system")
        group.add_argument("--no_cuda", action="store_true", help="run on the CPU even if CUDA is available")
        group.add_argument("--device", type=str, default="auto",
                           help="(new) 'auto' (CUDA if available), 'cpu', 'cuda' or 'cuda:N'")
        group.add_argument("--num_workers", type=int, default=4, help="data loader workers")
        group.add_argument("--seed", type=int, default=0, help="(new) random seed")
        group.add_argument("--deterministic", action="store_true",
                           help="(new) deterministic algorithms (slower; exact repeatability)")
        group.add_argument("--amp", action="store_true", help="(new) bfloat16 autocast on CUDA")
        group.add_argument("--memory_format", type=str, default="channels_last",
                           choices=["channels_last", "contiguous"],
                           help="(new) memory format of the networks: channels_last (the default; faster on the "
                                "CPU, where it was measured) or contiguous (NCHW, as the release)")
        group.add_argument("--channels_last", dest="memory_format", action="store_const", const="channels_last",
                           help="(new) the same as --memory_format channels_last")
        group.add_argument("--kernels", type=str, default="auto", choices=KERNEL_MODES,
                           help="(new) reference: the plain PyTorch of losses.py / layers.py / networks/; fast: the "
                                "batched, hand-tuned kernels of accel/ (same math, faster); auto: fast only where "
                                "verified (CPU, float32, the tested torch version), checked against the reference "
                                "on a small batch before training (an edited reference wins), else the reference. "
                                "Training, evaluation and prediction; one log line says which runs")
        group.add_argument("--compile", action="store_true",
                           help="(new) torch.compile the networks and the photometric loss (training, evaluation "
                                "and prediction); for GPUs: on the CPU compiling takes minutes and was measured slower")

    def _add_loading_and_logging(self) -> None:
        group = self.parser.add_argument_group("loading and logging")
        group.add_argument("--load_weights_folder", type=str, default=None,
                           help="weights_<epoch> folder to load (training: resumes optimiser, scheduler, epoch "
                                "and step when training_state.pth is there)")
        group.add_argument("--resume", action="store_true",
                           help="(new) continue the run in <log_dir>/<model_name> from its newest checkpoint, or "
                                "start it when it has none: the same command line for every start of a job that "
                                "a scheduler requeues (see docs/faults.md)")
        group.add_argument("--models_to_load", nargs="+", type=str, default=list(MODEL_NAMES),
                           help="models to load from --load_weights_folder (all six; the release's default "
                                "omits trans_encoder and trans)")
        group.add_argument("--overwrite", action="store_true",
                           help="(new) replace an existing run of the same --model_name: its checkpoints, "
                                "opt.json and TensorBoard logs are deleted (without it such a run is only "
                                "continued, through --load_weights_folder pointing into it)")
        group.add_argument("--log_frequency", type=int, default=250, help="steps between TensorBoard logs")
        group.add_argument("--save_frequency", type=int, default=1, help="epochs between checkpoints")

    def _add_evaluation(self) -> None:
        group = self.parser.add_argument_group("evaluation")
        group.add_argument("--eval_stereo", action="store_true", help="evaluate in stereo mode (fixed scale 5.4)")
        group.add_argument("--eval_mono", action="store_true",
                           help="evaluate in monocular mode (per-image median scaling; the default)")
        group.add_argument("--disable_median_scaling", action="store_true", help="no median scaling")
        group.add_argument("--pred_depth_scale_factor", type=float, default=1.0,
                           help="multiply predicted depths by this factor")
        group.add_argument("--ext_disp_to_eval", type=str, default=None,
                           help="evaluate disparities from this .npy instead of running a checkpoint")
        group.add_argument("--eval_split", type=str, default="nyu", choices=EVAL_SPLITS, help="evaluation split")
        group.add_argument("--eval_protocol", type=str, default=None, choices=EVAL_PROTOCOLS,
                           help="(new) NYUv2 protocol: eigen (crop, 0.1<gt<10), release (gt>0, what the "
                                "release computes) or p2net (cropped input); default eigen")
        group.add_argument("--gt_depths", type=str, default=None,
                           help="(new) ground-truth .npz (key 'data'); default <data_path>/gt_depths.npz, "
                                "then splits/<eval_split>/gt_depths.npz")
        group.add_argument("--eval_frame_stride", type=int, default=10,
                           help="(new) 7-Scenes: evaluate every N-th frame of the test sequences")
        group.add_argument("--save_pred_disps", action="store_true", help="save the predicted disparities")
        group.add_argument("--no_eval", action="store_true", help="predict (and save) without computing metrics")
        group.add_argument("--eval_eigen_to_benchmark", action="store_true",
                           help="KITTI: evaluate Eigen-split models on the improved benchmark ground truth")
        group.add_argument("--eval_out_dir", type=str, default=None,
                           help="folder for results and saved predictions (default: the weights folder)")
        group.add_argument("--post_process", action="store_true",
                           help="average with the prediction of the flipped image (Monodepth post-process)")

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse ``argv`` (default ``sys.argv[1:]``) and validate the combination.

        Invalid combinations end the program with a one-line error.
        """
        options = self.parser.parse_args(argv)
        problem = validate_options(options)
        if problem:
            self.parser.error(problem)
        return options


# the numeric options that have a meaningful range: name -> (range in words, test)
_NUMERIC_RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "learning_rate": ("> 0", lambda value: value > 0),
    "decoder_learning_rate": ("> 0", lambda value: value > 0),
    "weight_decay": (">= 0", lambda value: value >= 0),
    "lr_gamma": ("in (0, 1]", lambda value: 0 < value <= 1),
    "disparity_smoothness": (">= 0", lambda value: value >= 0),
    "www": (">= 0", lambda value: value >= 0),
    "wpp": (">= 0", lambda value: value >= 0),
    "iiters_start_epoch": (">= 0", lambda value: value >= 0),
    "wpp_ramp_epochs": (">= 0", lambda value: value >= 0),
    "pred_depth_scale_factor": ("> 0", lambda value: value > 0),
}


def depth_encoder_of(options: argparse.Namespace) -> str:
    """The name of the depth encoder to train: ``--depth_encoder``, else GasMono's."""
    return options.depth_encoder or DEFAULT_DEPTH_ENCODER


def _numeric_problem(options: argparse.Namespace) -> str | None:
    """The first numeric option outside its range (NaN and infinity are
    outside every range), or None."""
    for name, (words, within) in _NUMERIC_RANGES.items():
        value = getattr(options, name)
        if not (math.isfinite(value) and within(value)):
            return f"--{name} must be a finite number {words}, got {value}"
    return None


def validate_options(options: argparse.Namespace) -> str | None:
    """Return a one-line description of the first invalid option, or None."""
    if options.height % 32 or options.width % 32 or options.height <= 0 or options.width <= 0:
        return f"--height and --width must be positive multiples of 32, got {options.height}x{options.width}"
    if not options.frame_ids or options.frame_ids[0] != 0:
        return f"--frame_ids must start with 0 (the target frame), got {options.frame_ids}"
    if len(set(options.frame_ids)) != len(options.frame_ids):
        return f"--frame_ids must not repeat a frame, got {options.frame_ids}"
    if sorted(options.scales) != list(range(len(options.scales))) or len(options.scales) > 4:
        return f"--scales must be 0..N-1 with N <= 4, got {options.scales}"
    if not 0 < options.min_depth < options.max_depth < math.inf:
        return f"need 0 < --min_depth < --max_depth (finite), got {options.min_depth} and {options.max_depth}"
    problem = _numeric_problem(options)
    if problem:
        return problem
    if options.use_posegt and sorted(options.frame_ids) != [-1, 0, 1]:
        return "--use_posegt needs --frame_ids 0 -1 1 (coarse poses exist for the two neighbours)"
    if options.use_stereo and options.dataset not in STEREO_DATASETS:
        return (f"--use_stereo needs a data set with stereo pairs ({', '.join(STEREO_DATASETS)}), "
                f"not --dataset {options.dataset}")
    if options.frame_ids == [0] and not options.use_stereo:
        return "--frame_ids 0 alone leaves no source frame to warp: add -1 1, or --use_stereo for stereo pairs"
    if options.dataset != "nyu" and options.split == "nyu" and options.split_dir is None:
        return (f"--split nyu lists NYUv2 scenes; with --dataset {options.dataset} give its split "
                "(e.g. --split eigen_zhou for kitti) or --split_dir")
    if options.v1_multiscale:
        return "--v1_multiscale is not supported by GasMono (all scales are compared at full resolution)"
    if options.predictive_mask:
        return "--predictive_mask is not supported by GasMono"
    if options.pose_model_type != "separate_resnet" or options.pose_model_input != "pairs":
        return "GasMono supports only --pose_model_type separate_resnet with --pose_model_input pairs"
    depth_encoder = depth_encoder_of(options)
    if options.mpvit_pretrained is not None and depth_encoder != "mpvit_small":
        return (f"--mpvit_pretrained initialises --depth_encoder mpvit_small, not {depth_encoder}; "
                "use --depth_encoder_pretrained")
    if options.depth_encoder_pretrained is not None and depth_encoder == "mpvit_small":
        return "--depth_encoder_pretrained initialises a ResNet --depth_encoder; for mpvit_small use --mpvit_pretrained"
    unknown = sorted(set(options.models_to_load) - set(MODEL_NAMES))
    if unknown:
        return f"--models_to_load: unknown model(s) {unknown}; choose from {list(MODEL_NAMES)}"
    for name in ("batch_size", "num_epochs", "iiters", "save_frequency", "log_frequency", "eval_frame_stride"):
        if getattr(options, name) < 1:
            return f"--{name} must be at least 1, got {getattr(options, name)}"
    if options.num_workers < 0:
        return f"--num_workers must be >= 0, got {options.num_workers}"
    if options.max_train_steps is not None and options.max_train_steps < 1:
        return f"--max_train_steps must be at least 1, got {options.max_train_steps}"
    if options.resume and (options.load_weights_folder or options.overwrite):
        return "--resume picks the checkpoint itself: drop --load_weights_folder and --overwrite"
    if options.eval_stereo and options.eval_mono:
        return "choose one of --eval_mono and --eval_stereo"
    if options.eval_protocol not in (None, "eigen") and options.eval_split != "nyu":
        return f"--eval_protocol {options.eval_protocol} applies to --eval_split nyu only"
    return None
