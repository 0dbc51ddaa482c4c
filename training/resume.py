"""Exact mid-epoch resumption: the data order of an epoch, the position in
it and the random-number states of the training processes.

The order of epoch ``e`` is a permutation of the training items drawn from
``--seed + e`` (:func:`epoch_order`, DistributedSampler's); process ``r`` of
``R`` reads every ``R``-th item of it from the ``r``-th, after dropping the
tail that does not divide (:class:`EpochSampler`). The colour augmentation
of an item is drawn from ``(--seed, e, item index)`` alone
(:meth:`datasets.mono_dataset.MonoDataset.seed_augmentation`), so what a
batch holds depends neither on the number of loader workers nor on where
the epoch started. The rest of the randomness (the tie-break noise of the
losses, stochastic layers) comes from the global generators of each training
process, seeded at the start of every epoch.

A checkpoint written in the middle of an epoch (:class:`EpochPosition`)
keeps the epoch's order, the number of batches done and every process's
random states; resuming from it continues with the next batch as if the run
had never stopped. Validation is not part of it: after a resume its batches
start again from the first ones.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from distributed import DistributedContext
from utils import GasMonoError

__all__ = ["epoch_order", "EpochSampler", "EpochPosition", "capture_rng_states", "restore_rng_states",
           "begin_epoch"]


def epoch_order(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the items in ``epoch``: a permutation of ``range(num_items)`` drawn from ``seed + epoch``."""
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    return torch.randperm(num_items, generator=generator)


class EpochSampler(Sampler[int]):
    """This process's share of an epoch's order, from a starting item on.

    Args:
        num_items: the size of the data set.
        seed: the run's seed.
        rank, world_size: this process in the job.
    """

    def __init__(self, num_items: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.num_items = num_items
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.set_epoch(0)

    def set_epoch(self, epoch: int, order: torch.Tensor | None = None, start: int = 0) -> None:
        """Read ``epoch`` (in ``order`` when given, else :func:`epoch_order`)
        from this process's ``start``-th item on."""
        self.order = epoch_order(self.num_items, self.seed, epoch) if order is None else order
        self.start = start

    def share(self) -> list[int]:
        """This process's items of the epoch, in order, from the first."""
        usable = self.num_items - self.num_items % self.world_size
        return self.order[:usable][self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.share()[self.start:])

    def __len__(self) -> int:
        return self.num_items // self.world_size - self.start


def capture_rng_states() -> dict[str, Any]:
    """The global random states of this process: torch (the CPU's and, once
    CUDA is in use, the current device's), NumPy and Python."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_states` (the CUDA state on the current device)."""
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


@dataclass
class EpochPosition:
    """Where a stopped run was within an epoch (kept in ``training_state.pth``).

    Attributes:
        epoch: the epoch in progress.
        batches_done: its batches already trained on (by every process).
        order: the epoch's order of the training items (int64, all of them).
        rng_states: :func:`capture_rng_states` of every process, by rank.
        batch_size: the batch size per process.
    """

    epoch: int
    batches_done: int
    order: torch.Tensor
    rng_states: list[dict[str, Any]]
    batch_size: int

    @classmethod
    def capture(cls, epoch: int, batches_done: int, sampler: EpochSampler, batch_size: int,
                context: DistributedContext) -> "EpochPosition":
        """The position now (collective under DDP: every rank calls it)."""
        states = capture_rng_states()
        rng_states = [states]
        if context.enabled:
            rng_states = [None] * context.world_size
            dist.all_gather_object(rng_states, states)
        return cls(epoch, batches_done, sampler.order.clone(), rng_states, batch_size)

    def to_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches_done": self.batches_done, "order": self.order,
                "rng_states": self.rng_states, "batch_size": self.batch_size}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "EpochPosition":
        return cls(int(state["epoch"]), int(state["batches_done"]), state["order"], list(state["rng_states"]),
                   int(state["batch_size"]))

    def check_compatible(self, folder: Any, num_items: int, batch_size: int, context: DistributedContext) -> None:
        """The run resumed from it must read the same items with the same
        batch size on as many processes.

        Raises:
            GasMonoError: naming what differs.
        """
        problems = []
        if len(self.order) != num_items:
            problems.append(f"the training split has {num_items} items, it had {len(self.order)}")
        if batch_size != self.batch_size:
            problems.append(f"--batch_size is {batch_size}, it was {self.batch_size}")
        if context.world_size != len(self.rng_states):
            problems.append(f"{context.world_size} process(es) train, {len(self.rng_states)} did")
        if problems:
            raise GasMonoError(
                f"{folder} was saved in the middle of epoch {self.epoch} and cannot be continued exactly: "
                f"{'; '.join(problems)}; restore them, or resume from the checkpoint of an earlier epoch")


def begin_epoch(loader: DataLoader, seed: int, epoch: int, position: EpochPosition | None = None) -> int:
    """Set ``loader`` (an :class:`EpochSampler` over a data set with
    ``seed_augmentation``) to read ``epoch``, from ``position`` when given.

    Returns:
        the number of batches of the epoch already done (0 for a fresh epoch).
    """
    loader.dataset.seed_augmentation(seed, epoch)
    if position is None:
        loader.sampler.set_epoch(epoch)
        return 0
    loader.sampler.set_epoch(epoch, position.order, position.batches_done * loader.batch_size)
    return position.batches_done
