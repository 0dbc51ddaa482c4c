"""The training and validation data of a run: the ``--dataset`` class of
:mod:`datasets.registry` over the split's lists, loaded in seeded, optionally
distributed, batches. The training loader reads each epoch in an order that
a stopped run can resume in the middle of (:class:`training.resume.EpochSampler`)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from datasets.mono_dataset import STEREO_FRAME, FrameId, MonoDataset
from datasets.registry import dataset_class
from distributed import DistributedContext
from training.preemption import ignore_stop_signals
from training.resume import EpochSampler
from utils import PROJECT_ROOT, GasMonoError, require_path, seed_everything

__all__ = ["NUM_PYRAMID_SCALES", "split_dir_of", "dataset_frame_ids", "seed_worker", "make_dataset", "make_loader",
           "build_loaders"]

logger = logging.getLogger(__name__)

# image pyramid levels in the input dict: the trainer reads scale 0 only (every
# decoder scale is compared at full resolution), so levels 1-3 are not built
NUM_PYRAMID_SCALES = 1


def split_dir_of(options: argparse.Namespace) -> Path:
    """The folder of ``train_files.txt`` / ``val_files.txt``: ``--split_dir``, else the
    project's ``splits/<split>`` (``splits/nyu`` ships the release's lists)."""
    return Path(options.split_dir) if options.split_dir else PROJECT_ROOT / "splits" / options.split


def dataset_frame_ids(options: argparse.Namespace) -> list[FrameId]:
    """The frame ids the data set loads: ``--frame_ids`` and, with ``--use_stereo``,
    ``"s"`` (the other camera), as Monodepth2 appends it."""
    return [*options.frame_ids, *([STEREO_FRAME] if options.use_stereo else [])]


def seed_worker(worker_id: int) -> None:
    """Seed NumPy and ``random`` in a data-loader worker from its torch seed;
    leave SIGINT and SIGUSR1 to the training process (:mod:`training.preemption`)."""
    seed_everything(torch.initial_seed() % 2**32)
    ignore_stop_signals()


def make_dataset(options: argparse.Namespace, split_file: str, is_train: bool) -> MonoDataset:
    """The items of ``<split dir>/<split_file>`` in the ``--dataset`` class, with coarse poses when
    ``--use_posegt``, colour augmentation when ``is_train`` and, for
    validation (not ``is_train``), ground-truth depth (``"depth_gt"``) where
    the data set has it.

    Raises:
        GasMonoError: an unknown ``--dataset``, a missing data or coarse-pose
            folder, or invalid items.
    """
    split_dir = split_dir_of(options)
    cpose_dir = None
    if options.use_posegt:
        cpose_dir = require_path(options.cpose_dir or split_dir / "cpose", "coarse-pose folder (--cpose_dir)")
    return dataset_class(options.dataset)(
        require_path(options.data_path, "data_path"),
        split_dir / split_file,
        options.height,
        options.width,
        dataset_frame_ids(options),
        NUM_PYRAMID_SCALES,
        is_train=is_train,
        img_ext=".png" if options.png else ".jpg",
        cpose_dir=cpose_dir,
        augmentation=options.augmentation if is_train else "none",
        resize_filter=options.resize_filter,
        load_depth=not is_train,
        strict_splits=options.strict_splits,
    )


def make_loader(dataset: MonoDataset, options: argparse.Namespace, context: DistributedContext,
                device: torch.device, generator: torch.Generator, sampler: Sampler | None = None) -> DataLoader:
    """Shuffled batches of ``--batch_size`` (per process), the last partial one
    dropped; under DDP each process reads its own share. ``sampler``: the
    order to read in (default: a new one every iteration, from ``generator``)."""
    if sampler is None and context.enabled:
        sampler = DistributedSampler(dataset, context.world_size, context.rank,
                                     shuffle=True, seed=options.seed, drop_last=True)
    return DataLoader(
        dataset,
        batch_size=options.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=options.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=False,
    )


def build_loaders(options: argparse.Namespace, context: DistributedContext, device: torch.device,
                  train_generator: torch.Generator) -> tuple[DataLoader, DataLoader | None]:
    """The training loader (an :class:`training.resume.EpochSampler`;
    ``train_generator`` seeds its workers) and the
    validation loader, None (with a warning) when ``val_files.txt`` is
    missing or holds less than a batch.

    Raises:
        GasMonoError: the training split holds less than one batch per process.
    """
    train_dataset = make_dataset(options, "train_files.txt", is_train=True)
    train_sampler = EpochSampler(len(train_dataset), options.seed, context.rank, context.world_size)
    train_loader = make_loader(train_dataset, options, context, device, train_generator, train_sampler)
    if len(train_loader) == 0:
        raise GasMonoError(
            f"the training split has {len(train_dataset)} items, fewer than --batch_size "
            f"{options.batch_size} x {context.world_size} process(es)"
        )
    val_loader = None
    split_dir = split_dir_of(options)
    if (split_dir / "val_files.txt").is_file():
        val_dataset = make_dataset(options, "val_files.txt", is_train=False)
        val_loader = make_loader(val_dataset, options, context, device, torch.Generator().manual_seed(options.seed))
        if len(val_loader) == 0:
            val_loader = None
    if val_loader is None:
        logger.warning("no usable val_files.txt in %s: validation is skipped", split_dir)
    return train_loader, val_loader
