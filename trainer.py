"""The GasMono training loop (Monodepth2 shape).

One :class:`Trainer` driven by the options of :mod:`options`:
``process_batch`` runs depth, the coarse-pose warp through AlignNet
(``generate_images_posegt``), PoseNet (``predict_poses``) and the multi-scale
reprojection (``generate_images_pred``); ``compute_losses`` adds the
photometric, coarse-pose, smoothness and self-distillation terms of
:func:`losses.compute_batch_losses`. With self-distillation a batch is
processed ``--iiters`` times, each pass handing its best-disparity state to
the next.

Runs on CPU or CUDA, single process or DDP under ``torchrun``; checkpoints are
written atomically in the release's folder layout and a run resumes exactly
from one. The networks and their optimiser (:mod:`training.models`), the run
folder (:mod:`training.run_folder`), the data loaders (:mod:`training.data`),
the checks for non-finite numbers and which checkpoint is good to resume from
(:mod:`training.health`) and the TensorBoard summaries
(:mod:`training.summaries`) have their own modules.
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

import networks
import photometric
from datasets.registry import dataset_class
from distributed import init_distributed
from evaluation.metrics import evaluate_depth_batch
from evaluation.protocols import validation_protocol
from layers import BatchedWarp, disp_to_depth, refine_coarse_pose, temporal_pair, transformation_from_parameters
from losses import TIE_BREAK_NOISE_STD, BatchTerms, BestDisparity, Recipe, compute_batch_losses
from training.batch_terms import BatchTermsCache
from training.data import build_loaders
from training.health import CheckpointHealth
from training.models import build_models, build_optimizer, depth_encoder_of
from training.run_folder import check_run_folder, prepare_run_folder, resumes_run
from training.summaries import open_writers, write_summaries
from utils import require_path, resolve_device, seed_everything

logger = logging.getLogger(__name__)

Batch = dict[Any, torch.Tensor]

# the depth metrics of a validation batch with ground truth (history and TensorBoard: "val/<name>")
VAL_DEPTH_METRICS = ("abs_rel", "rmse", "a1")


class Trainer:
    """Trains GasMono.

    Args:
        options: the parsed :class:`options.GasMonoOptions`.
        with_data: build the data loaders, TensorBoard writers and run folder
            (refusing the folder of another run, see
            :mod:`training.run_folder`). ``False`` gives a trainer that only
            holds the models, optimiser and losses, to be fed hand-built
            batches through ``process_batch``.

    Raises:
        GasMonoError: invalid data, an occupied run folder, unreadable
            checkpoints or pretrained weights (one-line messages).
    """

    def __init__(self, options, with_data: bool = True) -> None:
        self.opt = options
        self.recipe = Recipe.from_options(options)
        wants_cuda = not options.no_cuda and options.device != "cpu"
        self.dist = init_distributed(use_cuda=wants_cuda and torch.cuda.is_available())
        self.device = resolve_device(options.device, options.no_cuda)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.height, self.width = options.height, options.width
        self.depth_encoder = depth_encoder_of(options)
        self.source_frames = options.frame_ids[1:]
        self.log_path = Path(options.log_dir) / options.model_name
        self.epoch = 0
        self.step = 0
        self.start_epoch = 0
        self.tie_break_noise_std = TIE_BREAK_NOISE_STD
        self.history: list[dict[str, float | int | str]] = []

        seed_everything(options.seed)
        if options.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        self.writers: dict[str, Any] = {}
        if with_data:
            check_run_folder(self.log_path, options.load_weights_folder, options.overwrite)
            self.train_generator = torch.Generator()
            self.train_loader, self.val_loader = build_loaders(options, self.dist, self.device, self.train_generator)
            self.val_iterator = None

        self.models = build_models(options, self.device)
        self.health = CheckpointHealth(self.models, self.dist, self.device)
        self.optimizer = build_optimizer(self.models, options)
        self.lr_scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, options.lr_gamma)
        if options.load_weights_folder:
            self.load_model()
        self.nets = self._wrap_for_training()
        # the photometric error of the losses, compiled with --compile
        self.compare = photometric.photometric_errors
        if options.compile:
            self.compare = torch.compile(photometric.photometric_errors)

        self.warp = BatchedWarp(self.height, self.width).to(self.device)
        self._batch_terms = BatchTermsCache(options.frame_ids)

        if with_data and self.dist.is_main:
            prepare_run_folder(self.log_path, {**vars(options), "depth_encoder": self.depth_encoder},
                               resumes_run(self.log_path, options.load_weights_folder), options.overwrite)
            self.writers = open_writers(self.log_path)

    # ------------------------------------------------------------------ setup
    def _wrap_for_training(self) -> dict[str, nn.Module]:
        """The callables used in the forward pass: DDP wrappers when
        distributed, the models themselves otherwise; compiled with ``--compile``."""
        nets = dict(self.models)
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            nets = {name: DistributedDataParallel(model, device_ids=device_ids) for name, model in nets.items()}
        if self.opt.compile:
            nets = {name: torch.compile(net) for name, net in nets.items()}
        return nets

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
                inputs = self.to_device(inputs)  # once per batch, not once per pass
                state = None  # the best disparity, carried across the passes over this batch
                for _ in range(passes):
                    outputs, losses, state = self.process_batch(inputs, state)
                    self.health.check_loss(losses["loss"], self.epoch, self.step)
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

    # ---------------------------------------------------------- forward pass
    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=self.opt.amp and self.device.type == "cuda")

    def _network_input(self, image: torch.Tensor) -> torch.Tensor:
        if self.opt.memory_format == "channels_last":
            return image.contiguous(memory_format=torch.channels_last)
        return image

    def to_device(self, inputs: Batch) -> Batch:
        """The tensors of a batch on the training device (the same tensors when already there)."""
        return {key: value.to(self.device, non_blocking=True) for key, value in inputs.items()
                if isinstance(value, torch.Tensor)}

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
        device_inputs = self.to_device(inputs)
        with self._autocast():
            features = self.nets["encoder"](self._network_input(device_inputs[("color_aug", 0, 0)]))
            outputs = self.nets["depth"](features)
        outputs = {key: value.float() for key, value in outputs.items()}
        if self.recipe.use_coarse_pose:
            outputs.update(self.generate_images_posegt(device_inputs, outputs))
        outputs.update(self.predict_poses(device_inputs, outputs))
        self.generate_images_pred(device_inputs, outputs)
        terms = self.batch_terms(inputs, device_inputs)
        losses, state = self.compute_losses(device_inputs, outputs, distill_state, terms)
        return outputs, losses, state

    def batch_terms(self, inputs: Batch, device_inputs: Batch) -> BatchTerms:
        """The loss terms that depend on the images of the batch only
        (:class:`losses.BatchTerms`), computed once per batch and reused by
        its passes (:class:`training.batch_terms.BatchTermsCache`; ``inputs``
        before, ``device_inputs`` after moving to the device)."""
        return self._batch_terms.get(
            inputs, lambda: BatchTerms.of(device_inputs, self.source_frames, self.recipe, self.compare))

    def generate_images_posegt(self, inputs: Batch, outputs: dict) -> dict:
        """Warp each source to the target with its coarse pose, whose
        translation AlignNet rescales and corrects (AlignNet runs once per
        source, so that batch normalisation sees the release's batches; the
        sources are warped together).

        Returns ``("coarse_T", f)`` (``B x 4 x 4``), ``("irw_img", f)``
        (``B x 3 x H x W``) for every source frame ``f`` and
        ``"coarse_warped"`` (``F x B x 3 x 1 x H x W``, the same images), to
        add to ``outputs``.
        """
        _, depth = disp_to_depth(outputs[("disp", 0)], self.opt.min_depth, self.opt.max_depth)
        target_aug = inputs[("color_aug", 0, 0)]
        warped = {}
        for frame_id in self.source_frames:
            pair = temporal_pair(inputs[("color_aug", frame_id, 0)], target_aug, frame_id)
            with self._autocast():
                translation, scale = self.nets["trans"]([self.nets["trans_encoder"](self._network_input(pair))])
            warped[("coarse_T", frame_id)] = refine_coarse_pose(
                inputs[("pose_gt", frame_id)], translation[:, 0].float(), scale[:, 0].float(), invert=frame_id < 0)
        sources = torch.stack([inputs[("color", frame_id, 0)] for frame_id in self.source_frames])
        poses = torch.stack([warped[("coarse_T", frame_id)] for frame_id in self.source_frames])
        coarse = self.warp(sources, depth.unsqueeze(0), inputs[("K", 0)], inputs[("inv_K", 0)], poses)
        warped["coarse_warped"] = coarse
        for index, frame_id in enumerate(self.source_frames):
            warped[("irw_img", frame_id)] = coarse[index, :, :, 0]
        return warped

    def predict_poses(self, inputs: Batch, outputs: dict) -> dict:
        """PoseNet on (source, target) pairs in temporal order, once per source.

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
        """Warp each source (the coarse-warped one with coarse poses) into the
        target with the depth of every scale, all in one sampling call; adds
        ``("depth", 0, s)`` (``B x 1 x H x W``), ``"reprojections"``
        (``F x B x 3 x S x H x W``) and its views ``("color", f, s)``
        (``B x 3 x H x W``) to ``outputs``."""
        disps = []
        for scale in self.opt.scales:
            disp = outputs[("disp", scale)]
            if disp.shape[-2:] != (self.height, self.width):
                disp = F.interpolate(disp, [self.height, self.width], mode="bilinear", align_corners=False)
            disps.append(disp)
        _, depths = disp_to_depth(torch.stack(disps), self.opt.min_depth, self.opt.max_depth)
        if self.recipe.use_coarse_pose:
            sources = outputs["coarse_warped"][:, :, :, 0]
        else:
            sources = torch.stack([inputs[("color", frame_id, 0)] for frame_id in self.source_frames])
        poses = torch.stack([outputs[("cam_T_cam", 0, frame_id)] for frame_id in self.source_frames])
        reprojections = self.warp(sources, depths, inputs[("K", 0)], inputs[("inv_K", 0)], poses)
        outputs["reprojections"] = reprojections
        for scale_index, scale in enumerate(self.opt.scales):
            outputs[("depth", 0, scale)] = depths[scale_index]
            for index, frame_id in enumerate(self.source_frames):
                outputs[("color", frame_id, scale)] = reprojections[index, :, :, scale_index]

    def compute_losses(
        self, inputs: Batch, outputs: dict, distill_state: BestDisparity | None = None,
        terms: BatchTerms | None = None,
    ) -> tuple[dict[str, torch.Tensor], BestDisparity | None]:
        """The recipe's losses, :func:`losses.compute_batch_losses` (which
        lists them); adds ``identity_selection/<s>`` (with auto-masking) and
        ``best_disp`` (with self-distillation) to ``outputs``. ``terms``: the
        batch's :class:`losses.BatchTerms` when already computed.

        Returns:
            ``(losses, state)``: the losses and the updated self-distillation
            state (None without ``--selfpp``).
        """
        return compute_batch_losses(inputs, outputs, self.recipe, self.opt.scales, self.source_frames, self.epoch,
                                    distill_state, self.tie_break_noise_std, terms)

    # ------------------------------------------------------------- validation
    def val(self) -> None:
        """Losses on one validation batch (with a fresh self-distillation state)
        and, when the batch carries ``"depth_gt"``, its depth metrics
        (:meth:`compute_depth_metrics`); both go to TensorBoard and the history."""
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
        metrics = self.compute_depth_metrics(inputs, outputs) if "depth_gt" in inputs else {}
        self.history.append({"mode": "val", "epoch": self.epoch, "step": self.step, "loss": losses["loss"].item(),
                             **metrics})
        self.log("val", inputs, outputs, losses, metrics)
        self.set_train()

    def compute_depth_metrics(self, inputs: Batch, outputs: dict) -> dict[str, float]:
        """``val/abs_rel``, ``val/rmse`` and ``val/a1`` of the scale-0 depth against
        ``inputs["depth_gt"]`` (``B x 1 x H_gt x W_gt``), as the evaluator computes
        them: the scaled disparity resized to the ground truth, the valid pixels
        and clamping of the data set's validation protocol (indoor:
        ``min_depth < gt < max_depth``, clamp to ``[min_depth, max_depth]``;
        KITTI: Monodepth2's, see :func:`evaluation.protocols.validation_protocol`),
        per-image median scaling, averaged over the images of the batch
        (:func:`evaluation.metrics.evaluate_depth_batch`). Empty when no image
        has a valid pixel."""
        scaled_disp, _ = disp_to_depth(outputs[("disp", 0)], self.opt.min_depth, self.opt.max_depth)
        protocol = validation_protocol(self.opt.min_depth, self.opt.max_depth,
                                       dataset_class(self.opt.dataset).validation_protocol)
        metrics = evaluate_depth_batch(scaled_disp, inputs["depth_gt"], protocol)
        if metrics is None:
            return {}
        return {f"val/{name}": metrics[name] for name in VAL_DEPTH_METRICS}

    # ---------------------------------------------------------------- logging
    def log(self, mode: str, inputs: Batch, outputs: dict, losses: dict[str, torch.Tensor],
            metrics: dict[str, float] | None = None) -> None:
        """Write losses, ``metrics`` (scalars named as given) and images to
        TensorBoard (main process only)."""
        writer = self.writers.get(mode)
        if writer is not None:
            write_summaries(writer, self.step, inputs, outputs, losses,
                            [group["lr"] for group in self.optimizer.param_groups], self.source_frames,
                            self.opt.scales, metrics)

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
        self.health.check_before_save(optimizer_state, self.epoch, self.step)
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
            depth_encoder=self.depth_encoder,
        )
        self.health.unverified = folder
        return folder

    def load_model(self) -> None:
        """Load ``--models_to_load`` from ``--load_weights_folder``; with all
        models present also the optimiser, and with ``training_state.pth``
        the scheduler, epoch and step (the run then continues after that
        epoch)."""
        folder = require_path(self.opt.load_weights_folder, "weights folder (--load_weights_folder)")
        names = [name for name in self.opt.models_to_load if name in self.models]
        networks.load_weights_folder(folder, {name: self.models[name] for name in names}, names,
                                     depth_encoder=self.depth_encoder)
        logger.info("loaded %s from %s", ", ".join(names), folder)
        self.health.unverified = folder

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
