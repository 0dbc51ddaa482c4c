"""Disk checks of a training run, made before the first step: the run folder
can be created and written to, and it has room for a checkpoint.

A checkpoint's size is measured from the networks and the optimiser (their
tensors' bytes; the AdamW moments, created at the first step, counted as two
copies of the trained parameters): 657 MB estimated for the full GasMono
recipe (54 M parameters), 650 MB written, a third of it the networks. Less
free space than one checkpoint stops the run before it starts; less than two
is a warning (the run saves every ``--save_frequency`` epochs and when it is
stopped).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from distributed import DistributedContext, all_ranks_agree
from utils import GasMonoError, hidden_sibling, prepare_output_folder

__all__ = ["ensure_writable_folder", "checkpoint_bytes", "check_free_space", "format_bytes"]

logger = logging.getLogger(__name__)

# the pickle framing and the small entries of a checkpoint, on top of its tensors' bytes
CHECKPOINT_OVERHEAD = 1.01


def ensure_writable_folder(folder: Path, what: str) -> Path:
    """Create ``folder`` (and its parents) and write, sync and delete a test
    file in it, so that a read-only folder or file system, a path below a
    file or a missing permission is found before any work.

    Raises:
        GasMonoError: one line naming the path and the reason.
    """
    prepare_output_folder(folder, what)
    probe = hidden_sibling(folder / "write_test", ".tmp")
    try:
        with open(probe, "wb") as handle:
            handle.write(b"GasMono write test\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise GasMonoError(f"cannot write in {what} {folder}: {error.strerror or error}") from None
    finally:
        if probe.exists():
            probe.unlink()
    return folder


def checkpoint_bytes(models: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer) -> int:
    """The size of one checkpoint of ``models`` with ``optimizer``'s state, in bytes.

    Before the first step the optimiser holds no state yet; its moments are
    then counted as two copies of every parameter it trains (AdamW's).
    """
    total = sum(tensor.numel() * tensor.element_size()
                for model in models.values() for tensor in model.state_dict().values()
                if isinstance(tensor, torch.Tensor))
    state = optimizer.state_dict()["state"]
    if state:
        total += sum(value.numel() * value.element_size()
                     for entry in state.values() for value in entry.values() if isinstance(value, torch.Tensor))
    else:
        total += 2 * sum(parameter.numel() * parameter.element_size()
                         for group in optimizer.param_groups for parameter in group["params"])
    return int(total * CHECKPOINT_OVERHEAD)


def format_bytes(size: float) -> str:
    """``"631 MB"``, ``"1.2 GB"``, ``"12 kB"`` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if size < 10 * scale else f"{size / scale:.0f} {unit}"
    return f"{int(size)} B"


def check_free_space(models_dir: Path, needed: int, context: DistributedContext, device: torch.device) -> None:
    """Stop (every rank) when ``models_dir`` has room for less than one
    checkpoint of ``needed`` bytes; warn when for less than two.

    Raises:
        GasMonoError: naming the folder, the free space and the size of a checkpoint.
    """
    problem = None
    if context.is_main:
        free = shutil.disk_usage(models_dir).free
        room = f"{format_bytes(free)} free in {models_dir}, one checkpoint takes {format_bytes(needed)}"
        if free < needed:
            problem = f"not enough disk space for a checkpoint: {room}; free some space or choose another --log_dir"
        elif free < 2 * needed:
            logger.warning("room for one checkpoint only: %s", room)
    if not all_ranks_agree(problem is None, context, device):
        raise GasMonoError(problem or "not enough disk space for a checkpoint (see rank 0)")
