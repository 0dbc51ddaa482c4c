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

import networks
import photometric
from distributed import all_ranks_agree, init_distributed
from evaluation.metrics import evaluate_depth_batch
from evaluation.protocols import validation_protocol
from layers import BatchedWarp, disp_to_depth, refine_coarse_pose, temporal_pair, transformation_from_parameters
from losses import TIE_BREAK_NOISE_STD, BatchTerms, BestDisparity, Recipe, compute_batch_losses
from networks.checkpoints import CheckpointWriteError
from training.batch_terms import BatchTermsCache
from training.data import build_loaders
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
from utils import GasMonoError, require_path, resolve_device, seed_everything

logger = logging.getLogger(__name__)

Batch = dict[Any, torch.Tensor]

# the depth metrics of a validation batch with ground truth (history and TensorBoard: "val/<name>")
VAL_DEPTH_METRICS = ("abs_rel", "rmse", "a1")


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

    Raises:
        GasMonoError: invalid data, an occupied, locked, unwritable or full run
            folder, unreadable checkpoints or pretrained weights (one-line
            messages).
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

        if with_data:
            check_free_space(self.log_path / "models", checkpoint_bytes(self.models, self.optimizer), self.dist,
                             self.device)
        if with_data and self.dist.is_main and self.start_epoch < options.num_epochs:
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
        them: the scaled disparity resized to the ground truth, valid pixels
        ``min_depth < gt < max_depth``, per-image median scaling, clamping to
        ``[min_depth, max_depth]``, averaged over the images of the batch
        (:func:`evaluation.metrics.evaluate_depth_batch`). Empty when no image
        has a valid pixel."""
        scaled_disp, _ = disp_to_depth(outputs[("disp", 0)], self.opt.min_depth, self.opt.max_depth)
        metrics = evaluate_depth_batch(scaled_disp, inputs["depth_gt"],
                                       validation_protocol(self.opt.min_depth, self.opt.max_depth))
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
