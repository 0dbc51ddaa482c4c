"""The GasMono training loop (Monodepth2 shape).

One :class:`Trainer` driven by the options of :mod:`options`:
``process_batch`` runs depth, the coarse-pose warp through AlignNet
(``generate_images_posegt``), PoseNet (``predict_poses``) and the multi-scale
reprojection (``generate_images_pred``); ``compute_losses`` sums the
photometric, coarse-pose, smoothness and self-distillation terms of
:mod:`losses`. With self-distillation a batch is processed ``--iiters``
times, each pass handing its best-disparity state to the next.

These methods are the reference, plain PyTorch; where the fast kernels of
:mod:`accel` run (``--kernels``, one log line says which), the warps and the
losses are handed to :class:`accel.FastTrainingPass`, and before training
:meth:`Trainer.check_fast_kernels` makes sure both still compute the same.

Runs on CPU or CUDA, single process or DDP under ``torchrun``; checkpoints are
written atomically in the release's folder layout and a run resumes exactly
from one, also from one written in the middle of an epoch when the run was
stopped by SIGTERM, SIGUSR1 or Ctrl-C. The networks and their optimiser
(:mod:`training.models`), the run folder (:mod:`training.run_folder`) and its
lock (:mod:`training.run_lock`), the disk checks (:mod:`training.disk`), the
data loaders (:mod:`training.data`), stopping on a signal
(:mod:`training.preemption`) and resuming mid-epoch (:mod:`training.resume`),
dead loader workers (:mod:`training.loader_workers`), the checks for
non-finite numbers and which checkpoint is good to resume from
(:mod:`training.health`) and the TensorBoard summaries
(:mod:`training.summaries`) have their own modules.
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import accel
import networks
from datasets.mono_dataset import STEREO_FRAME
from datasets.registry import dataset_class
from distributed import all_ranks_agree, init_distributed
from evaluation.metrics import evaluate_depth_batch
from evaluation.protocols import validation_protocol
from layers import (
    BackprojectDepth,
    Project3D,
    disp_to_depth,
    refine_coarse_pose,
    temporal_pair,
    transformation_from_parameters,
    warp_image,
)
from losses import (
    SSIM,
    TIE_BREAK_NOISE_STD,
    BestDisparity,
    Recipe,
    get_smooth_loss,
    identity_errors_by_scale,
    mean_normalised,
    photometric_errors,
    self_distillation_loss,
)
from networks.checkpoints import CheckpointWriteError
from training.data import build_loaders, dataset_frame_ids
from training.disk import check_free_space, checkpoint_bytes
from training.health import CheckpointHealth
from training.loader_workers import WorkerDeathWatch, is_worker_death, worker_death_message
from training.models import build_models, build_optimizer, depth_encoder_of
from training.preemption import StopRequest, TrainingStopped
from training.resume import EpochPosition, begin_epoch, restore_rng_states
from training.run_folder import (
    check_run_folder,
    checkpoint_name,
    latest_checkpoint,
    prepare_run_folder,
    resumes_run,
)
from training.run_lock import claim_run_folder
from training.summaries import open_writers, write_summaries
from utils import NYU_NORMALISED_INTRINSICS, GasMonoError, require_path, resolve_device, seed_everything

logger = logging.getLogger(__name__)

Batch = dict[Any, torch.Tensor]

# the depth metrics of a validation batch with ground truth (history and TensorBoard: "val/<name>")
VAL_DEPTH_METRICS = ("abs_rel", "rmse", "a1")
# the image size at which the fast kernels are compared with the reference before training
KERNEL_CHECK_SIZE = (64, 96)


class Trainer:
    """Trains GasMono.

    Args:
        options: the parsed :class:`options.GasMonoOptions`.
        with_data: build the data loaders, TensorBoard writers and run folder
            (locked for this run, checked writable and with room for a
            checkpoint, refusing the folder of another run, see
            :mod:`training.run_folder`). ``False`` gives a trainer that only
            holds the models, optimiser and losses, to be fed hand-built
            batches through ``process_batch``.
        check_kernels: compare the fast kernels with the reference on a small
            batch (:meth:`check_fast_kernels`) before using them; default
            ``with_data`` (a training run).

    Raises:
        GasMonoError: invalid data, an occupied, locked, unwritable or full run
            folder, unreadable checkpoints or pretrained weights (one-line
            messages).
    """

    def __init__(self, options, with_data: bool = True, check_kernels: bool | None = None) -> None:
        self.opt = options
        self.recipe = Recipe.from_options(options)
        wants_cuda = not options.no_cuda and options.device != "cpu"
        self.dist = init_distributed(use_cuda=wants_cuda and torch.cuda.is_available())
        self.device = resolve_device(options.device, options.no_cuda)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.height, self.width = options.height, options.width
        self.depth_encoder = depth_encoder_of(options)
        # the temporal neighbours (PoseNet, coarse poses) and, with --use_stereo, the other camera "s"
        self.temporal_frames = options.frame_ids[1:]
        self.source_frames = dataset_frame_ids(options)[1:]
        self.log_path = Path(options.log_dir) / options.model_name
        self.epoch = 0
        self.step = 0
        self.start_epoch = 0
        self.tie_break_noise_std = TIE_BREAK_NOISE_STD
        self.history: list[dict[str, float | int | str]] = []
        self.stop_request = StopRequest()
        self.worker_watch = WorkerDeathWatch()
        # where a run stopped within an epoch continues (set by load_model)
        self.resume_position: EpochPosition | None = None
        self.run_lock = None

        seed_everything(options.seed)
        if options.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        self.writers: dict[str, Any] = {}
        if with_data:
            self.run_lock = claim_run_folder(self.log_path, self.dist, self.device)
            if options.resume:
                options.load_weights_folder = self._resume_folder()
            check_run_folder(self.log_path, options.load_weights_folder, options.overwrite or options.resume)
            self.train_generator = torch.Generator()
            self.train_loader, self.val_loader = build_loaders(options, self.dist, self.device, self.train_generator)
            self.val_iterator = None

        self.models = build_models(options, self.device)
        self.ssim = SSIM().to(self.device)
        self.backproject_depth = BackprojectDepth(self.height, self.width).to(self.device)
        self.project_3d = Project3D(self.height, self.width).to(self.device)
        self.choose_kernels(check=with_data if check_kernels is None else check_kernels)
        self.health = CheckpointHealth(self.models, self.dist, self.device)
        self.optimizer = build_optimizer(self.models, options, fast=self.kernels.fast)
        self.lr_scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, options.lr_gamma)
        if options.load_weights_folder:
            self.load_model()
        self.nets = self._wrap_for_training()

        if with_data:
            check_free_space(self.log_path / "models", checkpoint_bytes(self.models, self.optimizer), self.dist,
                             self.device)
        if with_data and self.dist.is_main and self.start_epoch < options.num_epochs:
            prepare_run_folder(self.log_path, {**vars(options), "depth_encoder": self.depth_encoder},
                               resumes_run(self.log_path, options.load_weights_folder), options.overwrite)
            self.writers = open_writers(self.log_path)

    # ------------------------------------------------------------------ setup
    def choose_kernels(self, check: bool) -> None:
        """The reference or the fast kernels (``--kernels``, :func:`accel.plan_training`),
        said in one log line: with the fast ones, the warps and losses go to
        ``self.fast`` (:class:`accel.FastTrainingPass`) and the networks' library
        modules become their fast kernels; with ``check``, only once
        :meth:`check_fast_kernels` found them equal to the reference."""
        self.kernels = accel.plan_training(self.opt.kernels, self.device, deterministic=self.opt.deterministic)
        self.fast = None
        if self.kernels.fast:
            self.fast = accel.FastTrainingPass(self.height, self.width, self.recipe, self.opt.scales,
                                               self.source_frames, self.temporal_frames, self.opt.min_depth,
                                               self.opt.max_depth, compile=self.opt.compile).to(self.device)
            accel.accelerate(self.models.values(), self.kernels.onednn_linear, exp_elu=True)
            if check:
                self.check_fast_kernels()
        logger.info(self.kernels.describe())

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
        """Run epochs ``start_epoch .. num_epochs - 1`` (the rest of a stopped
        epoch first), saving every ``save_frequency`` epochs and after the
        last one; a resumed run that has finished says so and trains nothing.

        SIGTERM, SIGUSR1 and Ctrl-C stop it between two batches, after saving
        a checkpoint of that step to continue from (:mod:`training.preemption`).

        Raises:
            TrainingStopped: stopped by a signal; names the checkpoint.
            GasMonoError: non-finite numbers, a dead loader worker, a failed
                write (naming the checkpoint to resume from).
        """
        try:
            if self.start_epoch >= self.opt.num_epochs:
                logger.warning("nothing left to do: %s ends epoch %d and --num_epochs is %d; to train longer, resume "
                               "it with a larger --num_epochs", self.opt.load_weights_folder, self.start_epoch - 1,
                               self.opt.num_epochs)
                return
            with self.stop_request.installed():
                for self.epoch in range(self.start_epoch, self.opt.num_epochs):
                    batches_done = self.run_epoch()
                    if batches_done is not None:
                        self._stop(self.save_model(batches_done))
                    last_epoch = self.epoch == self.opt.num_epochs - 1
                    stop, _ = self.stop_request.agree(False, self.dist, self.device)
                    if (self.epoch + 1) % self.opt.save_frequency == 0 or last_epoch or stop:
                        folder = self.save_model()
                        if stop and not last_epoch:
                            self._stop(folder)
        finally:
            self.worker_watch.close()
            self.val_iterator = None  # its loader workers end now
            for writer in self.writers.values():
                writer.close()
            if self.run_lock is not None:
                self.run_lock.release()

    def _stop(self, folder: Path | None) -> None:
        """End a run stopped by a signal, naming the checkpoint just saved (by rank 0)."""
        where = f"--load_weights_folder {folder}" if folder is not None else "the checkpoint rank 0 saved"
        raise TrainingStopped(f"{self.stop_request.signal_name} received: training stopped at epoch {self.epoch}, "
                              f"step {self.step}; continue with {where} (or --resume)")

    def _resume_folder(self) -> str | None:
        """``--resume``: the run's newest checkpoint to continue from, None to start it."""
        folder = latest_checkpoint(self.log_path)
        if folder is None:
            logger.info("--resume: %s holds no checkpoint yet; starting the run", self.log_path)
            return None
        logger.info("--resume: continuing from %s", folder)
        return str(folder)

    def run_epoch(self) -> int | None:
        """One epoch, or the rest of one a stopped run left; the learning rate
        decays at the start of an epoch (release recipe).

        Before each batch's first pass the ranks agree whether to stop (a
        signal on any of them) and whether a loader worker died; a dead
        worker noticed while a batch trains is reported before the next one
        (:class:`training.loader_workers.WorkerDeathWatch`).

        Returns:
            None when the epoch is complete, else the number of its batches
            done when a stop request ended it.

        Raises:
            GasMonoError: a loader worker died (cause, checkpoint to resume from).
        """
        position, self.resume_position = self.resume_position, None
        if position is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
                self.lr_scheduler.step()
            seed_everything(self.opt.seed + 1009 * (self.epoch + 1) + self.dist.rank)
        else:
            restore_rng_states(position.rng_states[self.dist.rank])
        self.train_generator.manual_seed(self.opt.seed + self.epoch)
        start_batch = begin_epoch(self.train_loader, self.opt.seed, self.epoch, position)
        self.set_train()

        passes = self.recipe.passes_per_batch(self.epoch)
        num_batches = start_batch + len(self.train_loader)
        if self.opt.max_train_steps:
            num_batches = min(num_batches, self.opt.max_train_steps)
        items_per_batch = self.opt.batch_size * self.dist.world_size
        failed, failure = False, None  # a dead loader worker: on some rank, and what this rank saw of it
        # closed before any error propagates, so that the error is the last line printed
        with tqdm(total=num_batches, initial=start_batch, desc=f"epoch {self.epoch}", unit="batch",
                  disable=not self.dist.is_main, dynamic_ncols=True) as progress:
            start = time.time()
            batches = iter(self.train_loader)
            try:
                for batch_index in range(start_batch, num_batches):
                    inputs, failure = self._next_batch(batches)
                    stop, failed = self.stop_request.agree(failure is not None, self.dist, self.device)
                    if stop:
                        return batch_index
                    if failed:
                        break
                    with self.worker_watch.training():
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
                        self.history.append({"mode": "train", "epoch": self.epoch, "step": self.step,
                                             "loss": loss_value})
                        progress.set_postfix(loss=f"{loss_value:.4f}", items_per_s=(
                            f"{items_per_batch * (batch_index + 1 - start_batch) / elapsed:.1f}"))
                        progress.update()
                        if self.step % self.opt.log_frequency == 0:
                            if not self.stop_request.agree(False, self.dist, self.device)[0]:
                                self.log("train", inputs, outputs, losses)
                                self.val()
                    self.step += 1
            except RuntimeError as error:
                if not is_worker_death(error):
                    raise
                failed, failure = True, worker_death_message(error)
            finally:
                del batches  # its workers end now
        if failed:  # raised here, holding no reference to the loader and its workers
            what = failure or "a data-loader worker died on another rank"
            raise GasMonoError(f"{what}; training stopped at epoch {self.epoch}, step {self.step}; "
                               f"{self.health.resume_advice()}")
        return None

    def _next_batch(self, batches: Iterator[Batch]) -> tuple[Batch | None, str | None]:
        """The next training batch, or what happened to a loader worker that died."""
        try:
            self.worker_watch.check()
            return next(batches), None
        except RuntimeError as error:
            if not is_worker_death(error):
                raise
            return None, worker_death_message(error)

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
        inputs = self.to_device(inputs)
        with self._autocast():
            features = self.nets["encoder"](self._network_input(inputs[("color_aug", 0, 0)]))
            outputs = self.nets["depth"](features)
        outputs = {key: value.to(inputs[("color", 0, 0)].dtype) for key, value in outputs.items()}  # from bf16
        if self.recipe.use_coarse_pose:
            self.generate_images_posegt(inputs, outputs)
        outputs.update(self.predict_poses(inputs, outputs))
        self.generate_images_pred(inputs, outputs)
        losses, state = self.compute_losses(inputs, outputs, distill_state)
        return outputs, losses, state

    def generate_images_posegt(self, inputs: Batch, outputs: dict) -> None:
        """Warp each temporal source to the target with its coarse pose, whose
        translation AlignNet rescales and corrects: adds ``("coarse_T", f)``
        (``B x 4 x 4``) and ``("irw_img", f)`` (``B x 3 x H x W``) for every
        temporal source frame ``f``."""
        _, depth = disp_to_depth(outputs[("disp", 0)], self.opt.min_depth, self.opt.max_depth)
        target_aug = inputs[("color_aug", 0, 0)]
        for frame_id in self.temporal_frames:
            pair = temporal_pair(inputs[("color_aug", frame_id, 0)], target_aug, frame_id)
            with self._autocast():
                translation, scale = self.nets["trans"]([self.nets["trans_encoder"](self._network_input(pair))])
            outputs[("coarse_T", frame_id)] = refine_coarse_pose(
                inputs[("pose_gt", frame_id)], translation[:, 0].to(depth.dtype), scale[:, 0].to(depth.dtype),
                invert=frame_id < 0)
        if self.fast is not None:
            self.fast.warp_with_coarse_poses(inputs, outputs, depth)
            return
        for frame_id in self.temporal_frames:
            outputs[("irw_img", frame_id)] = warp_image(
                inputs[("color", frame_id, 0)], depth, inputs[("K", 0)], inputs[("inv_K", 0)],
                outputs[("coarse_T", frame_id)], self.backproject_depth, self.project_3d)

    def predict_poses(self, inputs: Batch, outputs: dict) -> dict:
        """PoseNet on (source, target) pairs in temporal order, once per temporal
        source; the stereo source ``"s"`` takes the fixed ``inputs["stereo_T"]``.

        With coarse poses the source is the coarse-warped image (not
        augmented) and the pose is a residual; the target is augmented.
        Returns ``("axisangle", 0, f)``, ``("translation", 0, f)`` (``B x 1 x 3``)
        and ``("cam_T_cam", 0, f)`` (``B x 4 x 4``), to add to ``outputs``.
        """
        poses = {}
        target_aug = inputs[("color_aug", 0, 0)]
        for frame_id in self.temporal_frames:
            if self.recipe.use_coarse_pose:
                source = outputs[("irw_img", frame_id)]
            else:
                source = inputs[("color_aug", frame_id, 0)]
            pair = temporal_pair(source, target_aug, frame_id)
            with self._autocast():
                axisangle, translation, _ = self.nets["pose"]([self.nets["pose_encoder"](self._network_input(pair))])
            axisangle, translation = axisangle.to(target_aug.dtype), translation.to(target_aug.dtype)
            poses[("axisangle", 0, frame_id)] = axisangle
            poses[("translation", 0, frame_id)] = translation
            poses[("cam_T_cam", 0, frame_id)] = transformation_from_parameters(
                axisangle[:, 0], translation[:, 0], invert=frame_id < 0
            )
        if STEREO_FRAME in self.source_frames:
            poses[("cam_T_cam", 0, STEREO_FRAME)] = inputs["stereo_T"]
        return poses

    def generate_images_pred(self, inputs: Batch, outputs: dict) -> None:
        """Warp each source (the coarse-warped one where there is one) into the
        target with the depth of every scale: adds ``("depth", 0, s)``
        (``B x 1 x H x W``) and ``("color", f, s)`` (``B x 3 x H x W``)."""
        if self.fast is not None:
            self.fast.generate_images_pred(inputs, outputs)
            return
        for scale in self.opt.scales:
            disp = F.interpolate(outputs[("disp", scale)], [self.height, self.width], mode="bilinear",
                                 align_corners=False)
            _, depth = disp_to_depth(disp, self.opt.min_depth, self.opt.max_depth)
            outputs[("depth", 0, scale)] = depth
            for frame_id in self.source_frames:
                source = outputs.get(("irw_img", frame_id), inputs[("color", frame_id, 0)])
                outputs[("color", frame_id, scale)] = warp_image(
                    source, depth, inputs[("K", 0)], inputs[("inv_K", 0)], outputs[("cam_T_cam", 0, frame_id)],
                    self.backproject_depth, self.project_3d)

    def compute_losses(
        self, inputs: Batch, outputs: dict, distill_state: BestDisparity | None = None
    ) -> tuple[dict[str, torch.Tensor], BestDisparity | None]:
        """GasMono's loss: per scale the minimum reprojection error (auto-masked
        by the identity errors), the coarse-pose term and the smoothness term;
        then the self-distillation term; the total divided by the number of scales.

        Adds ``identity_selection/<s>`` (1 where a reprojection won; with
        auto-masking) and ``best_disp`` (with self-distillation) to ``outputs``.

        Returns:
            ``(losses, state)``: ``losses["loss"]`` to optimise and every term by
            name; the updated best-disparity state (None without ``--selfpp``).
        """
        if self.fast is not None:
            return self.fast.compute_losses(inputs, outputs, distill_state, self.epoch, self.tie_break_noise_std)
        recipe, scales, sources = self.recipe, self.opt.scales, self.source_frames
        target = inputs[("color", 0, 0)]
        ssim = self.ssim if recipe.use_ssim else None
        identity_by_scale = [None] * len(scales)
        if recipe.use_automasking:
            identity = photometric_errors([inputs[("color", f, 0)] for f in sources], target, ssim,
                                          recipe.average_reprojection)
            identity_by_scale = identity_errors_by_scale(identity, len(scales), self.tie_break_noise_std)
        if recipe.use_coarse_pose:
            coarse = photometric_errors([outputs[("irw_img", f)] for f in self.temporal_frames], target, ssim)
        state = distill_state
        if recipe.use_self_distillation and state is None:
            state = BestDisparity.initial(outputs[("disp", 0)])

        losses, total, coarse_terms = {}, 0.0, []
        for scale, identity in zip(scales, identity_by_scale):
            disp = outputs[("disp", scale)]
            errors = photometric_errors([outputs[("color", f, scale)] for f in sources], target, ssim,
                                        recipe.average_reprojection)
            if identity is not None:
                errors = torch.cat([identity, errors], 1)
            min_error, selection = torch.min(errors, 1, keepdim=True)
            if identity is not None:
                outputs[f"identity_selection/{scale}"] = (selection >= identity.shape[1]).float()
            loss = min_error.mean()
            losses[f"min_reprojection/{scale}"] = loss.detach()
            if recipe.use_coarse_pose:
                candidates = coarse if identity is None else torch.cat([identity, coarse], 1)
                coarse_terms.append(recipe.coarse_pose_loss_weight * torch.min(candidates, 1)[0].mean())
                loss = loss + coarse_terms[-1]
            smoothness = get_smooth_loss(mean_normalised(disp), target)
            losses[f"smoothness/{scale}"] = smoothness.detach()
            loss = loss + recipe.smoothness_weight * smoothness / 2**scale
            if state is not None:
                state = state.updated(disp, min_error)
            losses[f"loss/{scale}"] = loss
            total = total + loss

        if coarse_terms:
            losses["coarse_pose_loss"] = torch.stack(coarse_terms).mean()
        if state is not None:
            distill = sum(self_distillation_loss(state.disp, outputs[("disp", scale)]) for scale in scales)
            weight = recipe.distill_loss_weight(self.epoch)
            total = total + weight * distill
            losses["selfpp_loss"], losses["selfpp_weight"] = distill, torch.tensor(weight)
            outputs["best_disp"] = state.disp
        losses["loss"] = total / len(scales)
        return losses, state

    # ------------------------------------------------------------ fast kernels
    def check_fast_kernels(self) -> None:
        """Before training: the reference and the fast kernels on one random
        batch (:data:`KERNEL_CHECK_SIZE`, batch 1, float64, eval mode, the
        run's recipe at full self-distillation weight, every pass of a batch)
        must give the same loss terms and gradients
        (:func:`accel.first_difference`). When they differ on this batch and on
        a second one, the reference was edited (a fork): ``--kernels auto``
        trains with the reference from here on and says why in one line;
        ``--kernels fast`` stops. The models,
        their modes and the random generators are as before the check."""
        difference = self._compare_kernel_paths(seed=0)
        if difference is not None and self._compare_kernel_paths(seed=1) is None:
            # an edit differs on every batch; a near-tie that float64 rounding decided differently
            # between the paths (a best-disparity pixel) on one batch only
            logger.debug("kernel check: %s on one batch only (a rounding tie), not on another", difference)
            difference = None
        if difference is None:
            return
        if self.opt.kernels == "fast":
            raise GasMonoError(f"--kernels fast: the reference and the fast kernels disagree: {difference}; "
                               "update the fast kernel in accel/ or train with --kernels reference (or auto)")
        logger.warning("the fast kernels were set aside: %s (the reference was edited); training runs the "
                       "reference", difference)
        accel.restore(self.models.values())
        self.fast = None
        self.kernels = self.kernels.set_aside(f"auto: {difference}")

    def _compare_kernel_paths(self, seed: int) -> str | None:
        """:meth:`check_fast_kernels`'s comparison on the random batch of ``seed``:
        the first difference, or None."""
        height, width = KERNEL_CHECK_SIZE
        batch = accel.random_batch(1, height, width, [0, *self.source_frames], NYU_NORMALISED_INTRINSICS,
                                   self.recipe.use_coarse_pose, torch.float64, self.device, seed)
        saved = {name: getattr(self, name) for name in
                 ("fast", "epoch", "height", "width", "backproject_depth", "project_3d")}
        nets, modes = getattr(self, "nets", None), {name: model.training for name, model in self.models.items()}
        self.epoch = max(self.recipe.distill_ramp_epochs, self.recipe.distill_start_epoch)
        self.height, self.width = height, width
        self.backproject_depth = BackprojectDepth(height, width).to(self.device)
        self.project_3d = Project3D(height, width)
        fast = accel.FastTrainingPass(height, width, self.recipe, self.opt.scales, self.source_frames,
                                      self.temporal_frames, self.opt.min_depth, self.opt.max_depth).to(self.device)
        self.nets = dict(self.models)  # no DDP or compiled wrappers: each process checks alone
        results = {}
        try:
            for model in self.models.values():
                model.double().eval()
            for path in ("reference", "fast"):
                if path == "reference":
                    self.fast = None
                    accel.restore(self.models.values())
                else:
                    self.fast = fast
                    accel.accelerate(self.models.values(), self.kernels.onednn_linear, exp_elu=True)
                with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                    torch.manual_seed(0)
                    results[path] = self._check_passes(batch)
        finally:
            for name, model in self.models.items():
                model.float().train(modes[name])
                model.zero_grad(set_to_none=True)
            for name, value in saved.items():
                setattr(self, name, value)
            if nets is not None:
                self.nets = nets
        return accel.first_difference(results["reference"], results["fast"])

    def _check_passes(self, batch: Batch) -> accel.PathResult:
        """Every pass of one batch (carrying the self-distillation state): losses and gradients."""
        result, state = accel.PathResult(), None
        for _ in range(self.recipe.passes_per_batch(self.epoch)):
            _, losses, state = self.process_batch(batch, state)
            for model in self.models.values():
                model.zero_grad(set_to_none=True)
            losses["loss"].backward()
            result.losses.append({name: float(value.detach()) for name, value in losses.items()})
            result.gradients.append({
                name: torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
                for name, model in self.models.items() if any(p.grad is not None for p in model.parameters())})
        return result

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
    def save_model(self, batches_done: int | None = None) -> Path | None:
        """Save ``weights_<epoch>`` atomically (main process only) or, with
        ``batches_done``, the checkpoint of a run stopped after that many
        batches of the epoch: ``weights_<epoch>_step<step>``, whose
        ``training_state.pth`` also holds the position in the epoch, its data
        order and every process's random states
        (:class:`training.resume.EpochPosition`).

        Every rank first checks the weights and optimiser state for NaN and
        infinity (the last optimiser step of the epoch has not been checked
        by any loss yet); if any rank finds one, training stops on all of
        them and nothing is written. A failed write stops every rank too.

        Returns:
            the folder written (None on the other ranks).

        Raises:
            GasMonoError: non-finite weights, or a file that could not be
                written (naming it and the checkpoint to resume from).
        """
        optimizer_state = self.optimizer.state_dict()
        self.health.check_before_save(optimizer_state, self.epoch, self.step)
        extra_state = {"epoch": self.epoch, "step": self.step, "lr_scheduler": self.lr_scheduler.state_dict()}
        name = checkpoint_name(self.epoch)
        if batches_done is not None:
            position = EpochPosition.capture(self.epoch, batches_done, self.train_loader.sampler,
                                             self.opt.batch_size, self.dist)
            extra_state["position"] = position.to_state()
            name = checkpoint_name(self.epoch, self.step)
        folder, problem = None, None
        if self.dist.is_main:
            try:
                folder = networks.save_weights_folder(
                    self.log_path / "models" / name,
                    self.models,
                    height=self.height,
                    width=self.width,
                    use_stereo=self.opt.use_stereo,
                    optimizer_state=optimizer_state,
                    extra_state=extra_state,
                    depth_encoder=self.depth_encoder,
                )
            except CheckpointWriteError as error:
                problem = f"{error}: {name} not saved; training stopped; {self.health.resume_advice()}"
        if not all_ranks_agree(problem is None, self.dist, self.device):
            raise GasMonoError(problem or f"rank 0 could not save {name}; training stopped")
        self.health.unverified = folder
        return folder

    def load_model(self) -> None:
        """Load ``--models_to_load`` from ``--load_weights_folder``; with all
        models present also the optimiser, and with ``training_state.pth``
        the scheduler, epoch and step (the run then continues after that
        epoch, or, from the checkpoint of a stopped run, with the next batch
        of its epoch).

        Raises:
            GasMonoError: unreadable or mismatched checkpoint files, or a
                mid-epoch checkpoint this run cannot continue exactly (another
                split, batch size or number of processes).
        """
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
        if state is None:
            return
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.step = int(state["step"])
        if "position" not in state:
            self.start_epoch = int(state["epoch"]) + 1
            logger.info("resuming after epoch %d (step %d)", state["epoch"], self.step)
            return
        position = EpochPosition.from_state(state["position"])
        if hasattr(self, "train_loader"):
            position.check_compatible(folder, len(self.train_loader.dataset), self.opt.batch_size, self.dist)
        self.resume_position, self.start_epoch = position, position.epoch
        logger.info("resuming epoch %d after its batch %d (step %d)", position.epoch, position.batches_done,
                    self.step)
