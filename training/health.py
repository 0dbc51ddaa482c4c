"""Which checkpoint of a run is good to resume from, and stopping on non-finite numbers.

Checkpoints with non-finite weights are never written. A checkpoint counts as
verified good once a training step has computed a finite loss with its
weights; when the loss becomes non-finite, training stops on every rank and
the error names the newest verified checkpoint (a finite but exploded
checkpoint, saved after the last finite step, is named as one not to resume
from).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from distributed import DistributedContext, all_ranks_agree
from networks import describe_non_finite, non_finite_entries
from utils import GasMonoError

__all__ = ["CheckpointHealth"]


class CheckpointHealth:
    """Tracks the checkpoints of a run and stops training on NaN or infinity.

    Args:
        models: the networks being trained, by name.
        context, device: this process in the job (every rank must agree to go on).

    Attributes:
        last_good: the newest checkpoint whose weights gave a finite training loss.
        unverified: a checkpoint saved (or loaded) whose weights no step has used yet.
    """

    def __init__(self, models: Mapping[str, nn.Module], context: DistributedContext, device: torch.device) -> None:
        self.models = models
        self.context = context
        self.device = device
        self.last_good: Path | None = None
        self.unverified: Path | None = None

    def advice(self) -> str:
        """Which checkpoint to resume from after a failure, for error messages."""
        advice = ""
        if self.unverified is not None:
            advice = f"{self.unverified} holds the weights that gave it: do not resume from it; "
        if self.last_good is not None:
            return advice + f"the last good checkpoint is {self.last_good}"
        return advice + "no checkpoint of this run is verified good"

    def resume_advice(self) -> str:
        """Which checkpoint to resume from after a failure that is not about
        the numbers (a dead loader worker, a full disk): the newest one saved
        or loaded, whose weights were checked finite when it was written."""
        latest = self.unverified or self.last_good
        if latest is None:
            return "no checkpoint of this run was written yet"
        return f"the last good checkpoint is {latest}"

    def check_loss(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Stop every rank when the loss about to be optimised is not finite.

        A finite loss verifies the checkpoint whose weights it was computed
        with (the one saved or loaded just before). Only on failure are the
        parameters themselves checked, to say whether they hold NaN or
        infinity or are finite but exploded (not the BatchNorm statistics,
        which the failing forward pass has just updated).

        Raises:
            GasMonoError: naming the epoch, the step and the checkpoint to resume from.
        """
        finite = bool(torch.isfinite(loss.detach()).item())
        if all_ranks_agree(finite, self.context, self.device):
            if self.unverified is not None:
                self.last_good, self.unverified = self.unverified, None
            return
        non_finite = non_finite_entries(self.models, include_buffers=False)
        parameters = f"parameters: {describe_non_finite(non_finite)}" if non_finite else "parameters finite"
        raise GasMonoError(
            f"non-finite loss at epoch {epoch}, step {step} ({parameters}); training stopped; {self.advice()}"
        )

    def check_before_save(self, optimizer_state: dict, epoch: int, step: int) -> None:
        """Stop every rank when any rank's weights or optimiser state hold a
        NaN or an infinity (the last optimiser step of an epoch has not been
        checked by any loss yet).

        Raises:
            GasMonoError: ``weights_<epoch>`` not saved, with the tensors concerned.
        """
        non_finite = non_finite_entries(self.models, optimizer_state)
        if not all_ranks_agree(not non_finite, self.context, self.device):
            found = describe_non_finite(non_finite) if non_finite else "found on another rank"
            raise GasMonoError(
                f"non-finite weights after epoch {epoch}, step {step} ({found}): weights_{epoch} not saved; "
                f"training stopped; {self.advice()}"
            )
