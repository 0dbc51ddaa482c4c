"""Process-group helpers for multi-process (DDP) training under ``torchrun``.

``torchrun --nproc_per_node N train.py ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; a plain ``python train.py`` runs as a single process. NCCL is
used on CUDA and gloo on the CPU (so multi-process training is testable on a
machine without GPUs).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process logs and saves."""
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistributedContext:
    """Join the process group described by the torchrun environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size)


def all_ranks_agree(flag: bool, context: DistributedContext, device: torch.device) -> bool:
    """True when ``flag`` holds on every rank (used to stop all ranks together)."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0.5)


def shutdown_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
