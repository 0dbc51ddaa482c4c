"""The GasMono training loop (Monodepth2 shape).

One :class:`Trainer` driven by the options of :mod:`options`:
``process_batch`` runs depth, the coarse-pose warp through AlignNet
(``generate_images_posegt``), PoseNet (``predict_poses``) and the multi-scale
reprojection (``generate_images_pred``); ``compute_losses`` adds the
photometric, coarse-pose, smoothness and self-distillation terms (the
recipe is described in the README's Training section).

Runs on CPU or CUDA, single process or DDP under ``torchrun``; checkpoints are
written atomically in the release's folder layout and a run resumes exactly
from one. A run folder holds one run: a new run does not start in the folder
of an existing one unless it resumes it (``--load_weights_folder`` inside it)
or replaces it (``--overwrite``).

Checkpoints with non-finite weights are never written. A checkpoint counts as
verified good once a training step has computed a finite loss with its
weights; when the loss becomes non-finite, training stops and names the
newest verified checkpoint (a finite but exploded checkpoint, saved after the
last finite step, is named as one not to resume from).
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import networks
from datasets.nyu_dataset import NYUDataset
from distributed import DistributedContext, all_ranks_agree, init_distributed
from layers import (
    BackprojectDepth,
    Project3D,
    disp_to_depth,
    refine_coarse_pose,
    transformation_from_parameters,
    warp_image,
)
from losses import SSIM, TIE_BREAK_NOISE_STD, BestDisparity, Recipe, compute_batch_losses
from utils import (
    PROJECT_ROOT,
    GasMonoError,
    atomic_write_text,
    normalize_image,
    require_cuda_if_requested,
    require_path,
    seed_everything,
    select_device,
)

logger = logging.getLogger(__name__)

Batch = dict[Any, torch.Tensor]

# Parameters the release builds but never uses in the loss: the depth
# decoder's scale-0 mask head and level-0 edge convolutions, and
# the ResNets' ImageNet classifier. They never receive a gradient, so AdamW
# skips them; marking them frozen lets DDP run without unused-parameter search.
UNUSED_PARAMETER_PREFIXES = {
    "depth": ("decoder.21.", "decoder.24.", "decoder.26."),
    "pose_encoder": ("encoder.fc.",),
    "trans_encoder": ("encoder.fc.",),
}


def resolve_device(options, context: DistributedContext) -> torch.device:
    """The device of this process from ``--device`` / ``--no_cuda``."""
    if options.no_cuda or options.device == "cpu":
        return torch.device("cpu")
    if options.device == "auto":
        device = select_device(no_cuda=False)
    else:
        device = require_cuda_if_requested(options.device)
    if device.type == "cuda" and context.enabled:
        return torch.device("cuda", context.local_rank)
    return device


def split_dir_of(options) -> Path:
    """The folder of ``train_files.txt`` / ``val_files.txt``: ``--split_dir``, else the
    project's ``splits/<split>`` (``splits/nyu`` ships the release's lists)."""
    return Path(options.split_dir) if options.split_dir else PROJECT_ROOT / "splits" / options.split


def temporal_pair(source: torch.Tensor, target: torch.Tensor, frame_id: int) -> torch.Tensor:
    """Stack two ``B x 3 x H x W`` images in temporal order -> ``B x 6 x H x W``."""
    return torch.cat([source, target] if frame_id < 0 else [target, source], 1)


def checkpoints_by_epoch(models_dir: Path) -> list[Path]:
    """The ``weights_<epoch>`` folders of a run's ``models`` folder, oldest epoch first."""
    epochs = {int(path.name.removeprefix("weights_")): path for path in models_dir.glob("weights_*")
              if path.name.removeprefix("weights_").isdigit()}
    return [epochs[epoch] for epoch in sorted(epochs)]


def seed_worker(worker_id: int) -> None:
    """Seed NumPy and ``random`` in a data-loader worker from its torch seed."""
    seed_everything(torch.initial_seed() % 2**32)


class Trainer:
    """Trains GasMono.

    Args:
        options: the parsed :class:`options.GasMonoOptions`.
        with_data: build the data loaders, TensorBoard writers and run folder
            (refusing the folder of another run, see the module docstring).
            ``False`` gives a trainer that only holds the models, optimiser and
            losses, to be fed hand-built batches through ``process_batch``.

    Raises:
        GasMonoError: invalid data, an occupied run folder, unreadable
            checkpoints or pretrained weights (one-line messages).
    """

    def __init__(self, options, with_data: bool = True) -> None:
        self.opt = options
        self.recipe = Recipe.from_options(options)
        wants_cuda = not options.no_cuda and options.device != "cpu"
        self.dist = init_distributed(use_cuda=wants_cuda and torch.cuda.is_available())
        self.device = resolve_device(options, self.dist)
        self.height, self.width = options.height, options.width
        self.num_scales = len(options.scales)
        self.source_frames = options.frame_ids[1:]
        self.log_path = Path(options.log_dir) / options.model_name
        self.epoch = 0
        self.step = 0
        self.start_epoch = 0
        self.tie_break_noise_std = TIE_BREAK_NOISE_STD
        self.history: list[dict[str, float | int | str]] = []
        # the newest checkpoint whose weights gave a finite training loss, and
        # a checkpoint saved (or loaded) whose weights no step has used yet
        self.last_good_checkpoint: Path | None = None
        self.unverified_checkpoint: Path | None = None

        seed_everything(options.seed)
        if options.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        self.writers: dict[str, Any] = {}
        if with_data:
            self._check_run_folder()
            self._build_data()

        self.models = self._build_models()
        self.optimizer = self._build_optimizer()
        self.lr_scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, options.lr_gamma)
        if options.load_weights_folder:
            self.load_model()
        self.nets = self._wrap_for_training()

        self.backproject = BackprojectDepth(self.height, self.width).to(self.device)
        self.project = Project3D(self.height, self.width).to(self.device)
        self.ssim = SSIM().to(self.device) if self.recipe.use_ssim else None

        if with_data and self.dist.is_main:
            self._prepare_run_folder()

    # ------------------------------------------------------------------ setup
    def _build_models(self) -> dict[str, nn.Module]:
        opt = self.opt
        if opt.mpvit_pretrained is None:
            logger.warning("no --mpvit_pretrained given: the depth encoder starts from scratch")
        encoder = networks.mpvit_small(pretrained_path=opt.mpvit_pretrained)
        models: dict[str, nn.Module] = {
            "encoder": encoder,
            "depth": networks.DepthDecoder(encoder.num_ch_enc, opt.scales),
        }
        pretrained = opt.weights_init == "pretrained"
        pose_nets = [("pose_encoder", "pose", networks.PoseDecoder)]
        if self.recipe.use_coarse_pose:
            pose_nets.append(("trans_encoder", "trans", networks.TransDecoder))
        for encoder_name, decoder_name, decoder_class in pose_nets:
            pair_encoder = networks.ResnetEncoder(
                opt.num_layers, pretrained, num_input_images=2, pretrained_path=opt.resnet_pretrained
            )
            models[encoder_name] = pair_encoder
            models[decoder_name] = decoder_class(pair_encoder.num_ch_enc, num_input_features=1,
                                                 num_frames_to_predict_for=2)
        for name, model in models.items():
            for parameter_name, parameter in model.named_parameters():
                if parameter_name.startswith(UNUSED_PARAMETER_PREFIXES.get(name, ())):
                    parameter.requires_grad_(False)
            model.to(self.device)
            if opt.channels_last:
                model.to(memory_format=torch.channels_last)
        return models

    def _build_optimizer(self) -> torch.optim.Optimizer:
        """AdamW: group 0 = depth decoder, PoseNet, AlignNet at the decoder
        learning rate; group 1 = the MPViT encoder (the release's order).

        The fused implementation is several times faster than the default
        per-tensor loop on the CPU and on CUDA."""
        rest = [p for name in ("depth", "pose_encoder", "pose", "trans_encoder", "trans")
                if name in self.models for p in self.models[name].parameters()]
        return torch.optim.AdamW(
            [
                {"params": rest, "lr": self.opt.decoder_learning_rate},
                {"params": list(self.models["encoder"].parameters()), "lr": self.opt.learning_rate},
            ],
            weight_decay=self.opt.weight_decay,
            fused=True,
        )

    def _wrap_for_training(self) -> dict[str, nn.Module]:
        """The callables used in the forward pass: DDP wrappers when
        distributed, the models themselves otherwise."""
        if not self.dist.enabled:
            return dict(self.models)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return {name: DistributedDataParallel(model, device_ids=device_ids) for name, model in self.models.items()}

    def _split_dir(self) -> Path:
        return split_dir_of(self.opt)

    def _make_dataset(self, split_file: str, is_train: bool) -> NYUDataset:
        opt = self.opt
        split_dir = self._split_dir()
        cpose_dir = None
        if self.recipe.use_coarse_pose:
            cpose_dir = require_path(opt.cpose_dir or split_dir / "cpose", "coarse-pose folder (--cpose_dir)")
        return NYUDataset(
            require_path(opt.data_path, "data_path"),
            split_dir / split_file,
            self.height,
            self.width,
            opt.frame_ids,
            4,
            is_train=is_train,
            img_ext=".png" if opt.png else ".jpg",
            cpose_dir=cpose_dir,
            augmentation=opt.augmentation if is_train else "none",
            resize_filter=opt.resize_filter,
        )

    def _make_loader(self, dataset: NYUDataset, generator: torch.Generator) -> DataLoader:
        sampler = None
        if self.dist.enabled:
            sampler = DistributedSampler(dataset, self.dist.world_size, self.dist.rank,
                                         shuffle=True, seed=self.opt.seed, drop_last=True)
        return DataLoader(
            dataset,
            batch_size=self.opt.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=self.opt.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            worker_init_fn=seed_worker,
            generator=generator,
            persistent_workers=False,
        )

    def _build_data(self) -> None:
        self.train_dataset = self._make_dataset("train_files.txt", is_train=True)
        self.train_generator = torch.Generator()
        self.train_loader = self._make_loader(self.train_dataset, self.train_generator)
        if len(self.train_loader) == 0:
            raise GasMonoError(
                f"the training split has {len(self.train_dataset)} items, fewer than --batch_size "
                f"{self.opt.batch_size} x {self.dist.world_size} process(es)"
            )
        self.val_loader = None
        if (self._split_dir() / "val_files.txt").is_file():
            val_dataset = self._make_dataset("val_files.txt", is_train=False)
            self.val_loader = self._make_loader(val_dataset, torch.Generator().manual_seed(self.opt.seed))
            if len(self.val_loader) == 0:
                self.val_loader = None
        if self.val_loader is None:
            logger.warning("no usable val_files.txt in %s: validation is skipped", self._split_dir())
        self.val_iterator = None

    def _resumes_this_run(self) -> bool:
        """Whether ``--load_weights_folder`` is a checkpoint of this run folder."""
        folder = self.opt.load_weights_folder
        return folder is not None and Path(folder).resolve().parent == (self.log_path / "models").resolve()

    def _check_run_folder(self) -> None:
        """Refuse to start a new run in the folder of an existing one.

        An existing run is a ``models`` folder with checkpoints or
        ``opt.json``; it may be resumed (``--load_weights_folder`` inside it)
        or replaced (``--overwrite``). Checked before any data is read.
        """
        models_dir = self.log_path / "models"
        checkpoints = checkpoints_by_epoch(models_dir)
        has_options = (models_dir / "opt.json").is_file()
        if not (checkpoints or has_options) or self._resumes_this_run() or self.opt.overwrite:
            return
        if checkpoints:
            held = f"{len(checkpoints)} checkpoint(s)"
            choices = f"continue it with --load_weights_folder {checkpoints[-1]}, or replace it with --overwrite"
        else:
            held, choices = "opt.json, no checkpoint", "or replace it with --overwrite"
        raise GasMonoError(
            f"run folder {self.log_path} already holds a run ({held}); choose another --model_name, {choices}"
        )

    def _prepare_run_folder(self) -> None:
        """Create (or, with ``--overwrite``, empty) the run folder, clear what
        interrupted saves left in it, keep earlier ``opt.json`` files of a
        resumed run as ``opt.<n>.json`` and write this run's ``opt.json``."""
        from tensorboardX import SummaryWriter

        models_dir = self.log_path / "models"
        if self.opt.overwrite and not self._resumes_this_run() and self.log_path.is_dir():
            for name in ("models", "train", "val"):
                shutil.rmtree(self.log_path / name, ignore_errors=True)
            logger.info("--overwrite: removed the checkpoints, opt.json and TensorBoard logs of the previous run "
                        "in %s", self.log_path)
        for action in networks.remove_stale_staging(models_dir):
            logger.info("interrupted save in %s: %s", models_dir, action)
        models_dir.mkdir(parents=True, exist_ok=True)
        options_path = models_dir / "opt.json"
        if options_path.is_file():
            kept = models_dir / f"opt.{self._next_options_number(models_dir)}.json"
            options_path.rename(kept)
            logger.info("kept the options of the earlier run as %s", kept)
        atomic_write_text(json.dumps(vars(self.opt), indent=2, default=str), options_path)
        for mode in ("train", "val"):
            self.writers[mode] = SummaryWriter(str(self.log_path / mode))

    @staticmethod
    def _next_options_number(models_dir: Path) -> int:
        """``1 +`` the largest ``n`` of the ``opt.<n>.json`` files in ``models_dir``."""
        numbers = [int(match[1]) for path in models_dir.glob("opt.*.json")
                   if (match := re.fullmatch(r"opt\.(\d+)\.json", path.name))]
        return max(numbers, default=0) + 1

    # --------------------------------------------------------------- training
    def set_train(self) -> None:
        for model in self.models.values():
            model.train()

    def set_eval(self) -> None:
        for model in self.models.values():
            model.eval()

    def train(self) -> None:
        """Run epochs ``start_epoch .. num_epochs - 1``, saving every
        ``save_frequency`` epochs and after the last one."""
        for self.epoch in range(self.start_epoch, self.opt.num_epochs):
            self.run_epoch()
            last_epoch = self.epoch == self.opt.num_epochs - 1
            if (self.epoch + 1) % self.opt.save_frequency == 0 or last_epoch:
                self.save_model()
        for writer in self.writers.values():
            writer.close()

    def run_epoch(self) -> None:
        """One epoch; the learning rate decays at its start (release recipe)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
            self.lr_scheduler.step()
        seed_everything(self.opt.seed + 1009 * (self.epoch + 1) + self.dist.rank)
        self.train_generator.manual_seed(self.opt.seed + self.epoch)
        if isinstance(self.train_loader.sampler, DistributedSampler):
            self.train_loader.sampler.set_epoch(self.epoch)
        self.set_train()

        passes = self.recipe.passes_per_batch(self.epoch)
        num_batches = len(self.train_loader)
        if self.opt.max_train_steps:
            num_batches = min(num_batches, self.opt.max_train_steps)
        items_per_batch = self.opt.batch_size * self.dist.world_size
        # closed before any error propagates, so that the error is the last line printed
        with tqdm(total=num_batches, desc=f"epoch {self.epoch}", unit="batch",
                  disable=not self.dist.is_main, dynamic_ncols=True) as progress:
            start = time.time()
            for batch_index, inputs in enumerate(self.train_loader):
                if batch_index >= num_batches:
                    break
                state = None  # the best disparity, carried across the passes over this batch
                for _ in range(passes):
                    outputs, losses, state = self.process_batch(inputs, state)
                    self._stop_if_not_finite(losses["loss"])
                    self.optimizer.zero_grad(set_to_none=True)
                    losses["loss"].backward()
                    self.optimizer.step()
                elapsed = time.time() - start
                loss_value = losses["loss"].item()
                self.history.append({"mode": "train", "epoch": self.epoch, "step": self.step, "loss": loss_value})
                progress.set_postfix(loss=f"{loss_value:.4f}",
                                     items_per_s=f"{items_per_batch * (batch_index + 1) / elapsed:.1f}")
                progress.update()
                if self.step % self.opt.log_frequency == 0:
                    self.log("train", inputs, outputs, losses)
                    self.val()
                self.step += 1

    def _checkpoint_advice(self) -> str:
        """Which checkpoint to resume from after a failure, for error messages."""
        advice = ""
        if self.unverified_checkpoint is not None:
            advice = f"{self.unverified_checkpoint} holds the weights that gave it: do not resume from it; "
        if self.last_good_checkpoint is not None:
            return advice + f"the last good checkpoint is {self.last_good_checkpoint}"
        return advice + "no checkpoint of this run is verified good"

    def _stop_if_not_finite(self, loss: torch.Tensor) -> None:
        """Stop every rank when the loss about to be optimised is not finite.

        A finite loss verifies the checkpoint whose weights it was computed
        with (the one saved or loaded just before). Only on failure are the
        parameters themselves checked, to say whether they hold NaN or
        infinity or are finite but exploded (not the BatchNorm statistics,
        which the failing forward pass has just updated).
        """
        finite = bool(torch.isfinite(loss.detach()).item())
        if all_ranks_agree(finite, self.dist, self.device):
            if self.unverified_checkpoint is not None:
                self.last_good_checkpoint, self.unverified_checkpoint = self.unverified_checkpoint, None
            return
        non_finite = networks.non_finite_entries(self.models, include_buffers=False)
        parameters = f"parameters: {networks.describe_non_finite(non_finite)}" if non_finite else "parameters finite"
        raise GasMonoError(
            f"non-finite loss at epoch {self.epoch}, step {self.step} ({parameters}); training stopped; "
            f"{self._checkpoint_advice()}"
        )

    # ---------------------------------------------------------- forward pass
    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=self.opt.amp and self.device.type == "cuda")

    def _network_input(self, image: torch.Tensor) -> torch.Tensor:
        if self.opt.channels_last:
            return image.contiguous(memory_format=torch.channels_last)
        return image

    def process_batch(
        self, inputs: Batch, distill_state: BestDisparity | None = None
    ) -> tuple[dict[Any, torch.Tensor], dict[str, torch.Tensor], BestDisparity | None]:
        """Run the networks on a batch and compute the losses.

        The stages and what each adds to ``outputs``: the depth network
        ``("disp", s)`` (``B x 1 x H x W`` for every scale);
        :meth:`generate_images_posegt` (with coarse poses) ``("coarse_T", f)``
        and ``("irw_img", f)``; :meth:`predict_poses` ``("axisangle", 0, f)``,
        ``("translation", 0, f)`` and ``("cam_T_cam", 0, f)``;
        :meth:`generate_images_pred` ``("depth", 0, s)`` and ``("color", f, s)``;
        :meth:`compute_losses` ``identity_selection/<s>`` and ``best_disp``.

        Args:
            inputs: the Monodepth2 input dict (``("color", f, s)``,
                ``("color_aug", f, s)``, ``("K", s)``, ``("inv_K", s)`` and,
                with coarse poses, ``("pose_gt", f)``).
            distill_state: the self-distillation state of the earlier passes
                over this batch; None for its first pass (or for validation).

        Returns:
            ``(outputs, losses, state)``; ``losses["loss"]`` is the total to
            optimise, ``state`` the self-distillation state to give to the
            next pass over the same batch (None without ``--selfpp``).
        """
        inputs = {key: value.to(self.device, non_blocking=True) for key, value in inputs.items()
                  if isinstance(value, torch.Tensor)}
        with self._autocast():
            features = self.nets["encoder"](self._network_input(inputs[("color_aug", 0, 0)]))
            outputs = self.nets["depth"](features)
        outputs = {key: value.float() for key, value in outputs.items()}
        if self.recipe.use_coarse_pose:
            outputs.update(self.generate_images_posegt(inputs, outputs))
        outputs.update(self.predict_poses(inputs, outputs))
        self.generate_images_pred(inputs, outputs)
        losses, state = self.compute_losses(inputs, outputs, distill_state)
        return outputs, losses, state

    def generate_images_posegt(self, inputs: Batch, outputs: dict) -> dict:
        """Warp each source to the target with its coarse pose, whose
        translation AlignNet rescales and corrects.

        Returns ``("coarse_T", f)`` (``B x 4 x 4``) and ``("irw_img", f)``
        (``B x 3 x H x W``) for every source frame ``f``, to add to ``outputs``.
        """
        _, depth = disp_to_depth(outputs[("disp", 0)], self.opt.min_depth, self.opt.max_depth)
        target_aug = inputs[("color_aug", 0, 0)]
        warped = {}
        for frame_id in self.source_frames:
            pair = temporal_pair(inputs[("color_aug", frame_id, 0)], target_aug, frame_id)
            with self._autocast():
                translation, scale = self.nets["trans"]([self.nets["trans_encoder"](self._network_input(pair))])
            pose = refine_coarse_pose(inputs[("pose_gt", frame_id)], translation[:, 0].float(),
                                      scale[:, 0].float(), invert=frame_id < 0)
            warped[("coarse_T", frame_id)] = pose
            warped[("irw_img", frame_id)] = warp_image(
                inputs[("color", frame_id, 0)], depth, inputs[("K", 0)], inputs[("inv_K", 0)], pose,
                self.backproject, self.project,
            )
        return warped

    def predict_poses(self, inputs: Batch, outputs: dict) -> dict:
        """PoseNet on (source, target) pairs in temporal order.

        With coarse poses the source is the coarse-warped image (not
        augmented) and the pose is a residual; the target is augmented.
        Returns ``("axisangle", 0, f)``, ``("translation", 0, f)`` (``B x 1 x 3``)
        and ``("cam_T_cam", 0, f)`` (``B x 4 x 4``), to add to ``outputs``.
        """
        poses = {}
        target_aug = inputs[("color_aug", 0, 0)]
        for frame_id in self.source_frames:
            if self.recipe.use_coarse_pose:
                source = outputs[("irw_img", frame_id)]
            else:
                source = inputs[("color_aug", frame_id, 0)]
            pair = temporal_pair(source, target_aug, frame_id)
            with self._autocast():
                axisangle, translation, _ = self.nets["pose"]([self.nets["pose_encoder"](self._network_input(pair))])
            axisangle, translation = axisangle.float(), translation.float()
            poses[("axisangle", 0, frame_id)] = axisangle
            poses[("translation", 0, frame_id)] = translation
            poses[("cam_T_cam", 0, frame_id)] = transformation_from_parameters(
                axisangle[:, 0], translation[:, 0], invert=frame_id < 0
            )
        return poses

    def generate_images_pred(self, inputs: Batch, outputs: dict) -> None:
        """For every scale, warp each source (the coarse-warped one with
        coarse poses) into the target with that scale's depth; adds
        ``("depth", 0, s)`` (``B x 1 x H x W``) and ``("color", f, s)``
        (``B x 3 x H x W``) to ``outputs``."""
        for scale in self.opt.scales:
            disp = outputs[("disp", scale)]
            if disp.shape[-2:] != (self.height, self.width):
                disp = F.interpolate(disp, [self.height, self.width], mode="bilinear", align_corners=False)
            _, depth = disp_to_depth(disp, self.opt.min_depth, self.opt.max_depth)
            outputs[("depth", 0, scale)] = depth
            for frame_id in self.source_frames:
                if self.recipe.use_coarse_pose:
                    source = outputs[("irw_img", frame_id)]
                else:
                    source = inputs[("color", frame_id, 0)]
                outputs[("color", frame_id, scale)] = warp_image(
                    source, depth, inputs[("K", 0)], inputs[("inv_K", 0)],
                    outputs[("cam_T_cam", 0, frame_id)], self.backproject, self.project,
                )

    def compute_losses(
        self, inputs: Batch, outputs: dict, distill_state: BestDisparity | None = None
    ) -> tuple[dict[str, torch.Tensor], BestDisparity | None]:
        """The recipe's losses, :func:`losses.compute_batch_losses` (which
        lists them); adds ``identity_selection/<s>`` (with auto-masking) and
        ``best_disp`` (with self-distillation) to ``outputs``.

        Returns:
            ``(losses, state)``: the losses and the updated self-distillation
            state (None without ``--selfpp``).
        """
        return compute_batch_losses(inputs, outputs, self.recipe, self.ssim, self.opt.scales, self.source_frames,
                                    self.epoch, distill_state, self.tie_break_noise_std)

    # ------------------------------------------------------------- validation
    def val(self) -> None:
        """Losses on one validation batch (with a fresh self-distillation state)."""
        if self.val_loader is None:
            return
        self.set_eval()
        try:
            inputs = next(self.val_iterator)
        except (StopIteration, TypeError):
            self.val_iterator = iter(self.val_loader)
            inputs = next(self.val_iterator)
        with torch.no_grad():
            outputs, losses, _ = self.process_batch(inputs)
        self.history.append({"mode": "val", "epoch": self.epoch, "step": self.step, "loss": losses["loss"].item()})
        self.log("val", inputs, outputs, losses)
        self.set_train()

    # ---------------------------------------------------------------- logging
    def log(self, mode: str, inputs: Batch, outputs: dict, losses: dict[str, torch.Tensor]) -> None:
        """Write losses and images to TensorBoard (main process only)."""
        writer = self.writers.get(mode)
        if writer is None:
            return
        for name, value in losses.items():
            writer.add_scalar(name, value.item(), self.step)
        for group_index, group in enumerate(self.optimizer.param_groups):
            writer.add_scalar(f"learning_rate/group{group_index}", group["lr"], self.step)
        for sample in range(min(4, self.opt.batch_size)):
            writer.add_image(f"color_0_0/{sample}", inputs[("color", 0, 0)][sample].cpu(), self.step)
            for frame_id in self.source_frames:
                writer.add_image(f"color_pred_{frame_id}_0/{sample}",
                                 outputs[("color", frame_id, 0)][sample].detach().cpu(), self.step)
                if ("irw_img", frame_id) in outputs:
                    writer.add_image(f"coarse_warped_{frame_id}/{sample}",
                                     outputs[("irw_img", frame_id)][sample].detach().cpu(), self.step)
            for scale in self.opt.scales:
                writer.add_image(f"disp_{scale}/{sample}",
                                 normalize_image(outputs[("disp", scale)][sample].detach().cpu()), self.step)
                mask_key = f"identity_selection/{scale}"
                if mask_key in outputs:
                    writer.add_image(f"automask_{scale}/{sample}", outputs[mask_key][sample].cpu(), self.step)
            if "best_disp" in outputs:
                writer.add_image(f"best_disp/{sample}", normalize_image(outputs["best_disp"][sample].cpu()), self.step)

    # ------------------------------------------------------------ checkpoints
    def save_model(self) -> Path | None:
        """Save ``weights_<epoch>`` atomically (main process only).

        Every rank first checks the weights and optimiser state for NaN and
        infinity (the last optimiser step of the epoch has not been checked
        by any loss yet); if any rank finds one, training stops on all of
        them and nothing is written.

        Returns:
            the folder written (None on the other ranks).
        """
        optimizer_state = self.optimizer.state_dict()
        non_finite = networks.non_finite_entries(self.models, optimizer_state)
        if not all_ranks_agree(not non_finite, self.dist, self.device):
            found = networks.describe_non_finite(non_finite) if non_finite else "found on another rank"
            raise GasMonoError(
                f"non-finite weights after epoch {self.epoch}, step {self.step} ({found}): weights_{self.epoch} "
                f"not saved; training stopped; {self._checkpoint_advice()}"
            )
        if not self.dist.is_main:
            return None
        folder = networks.save_weights_folder(
            self.log_path / "models" / f"weights_{self.epoch}",
            self.models,
            height=self.height,
            width=self.width,
            use_stereo=self.opt.use_stereo,
            optimizer_state=optimizer_state,
            extra_state={"epoch": self.epoch, "step": self.step,
                         "lr_scheduler": self.lr_scheduler.state_dict()},
        )
        self.unverified_checkpoint = folder
        return folder

    def load_model(self) -> None:
        """Load ``--models_to_load`` from ``--load_weights_folder``; with all
        models present also the optimiser, and with ``training_state.pth``
        the scheduler, epoch and step (the run then continues after that
        epoch)."""
        folder = require_path(self.opt.load_weights_folder, "weights folder (--load_weights_folder)")
        names = [name for name in self.opt.models_to_load if name in self.models]
        networks.load_weights_folder(folder, {name: self.models[name] for name in names}, names)
        logger.info("loaded %s from %s", ", ".join(names), folder)
        self.unverified_checkpoint = folder

        if set(names) == set(self.models):
            optimizer_state = networks.load_optimizer_state(folder)
            if optimizer_state is not None:
                try:
                    self.optimizer.load_state_dict(optimizer_state)
                except ValueError as error:
                    logger.warning("optimiser state in %s does not match this model (%s); starting a fresh "
                                   "optimiser", folder, error)
        state = networks.load_training_state(folder)
        if state is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
            self.start_epoch = int(state["epoch"]) + 1
            self.step = int(state["step"])
            logger.info("resuming after epoch %d (step %d)", state["epoch"], self.step)
