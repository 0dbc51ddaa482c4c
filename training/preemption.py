"""Stopping a training cleanly on SIGTERM, SIGUSR1 or Ctrl-C.

Cluster schedulers send SIGTERM (or, when asked, SIGUSR1) some time before
they kill a job; a person presses Ctrl-C. The signal handler of
:class:`StopRequest` only records the request. The training loop looks at it
at the start of every batch, once the batch's data is there and before its
first pass: under DDP the ranks combine their requests, and whether their
data loader failed, in one small all-reduce, so that every rank stops at the
same step. The trainer then writes a checkpoint of that step (rank 0), and
every rank raises :class:`TrainingStopped`: one line naming the checkpoint,
exit status :data:`EXIT_STOPPED` (75, ``EX_TEMPFAIL`` of ``sysexits.h``:
"try again later"), so that a requeueing wrapper can tell a stop with a
checkpoint from a failure (status 2) and from a kill.

A stop lands between batches only: with self-distillation (``--iiters 2``)
both passes over a batch (both optimiser steps) run first; the distillation
state lives within one batch, so none of it is left to save. The time from
the signal to the exit is bounded by the rest of the current batch (its
passes and, on a logging step, validation) plus writing one checkpoint.

A second Ctrl-C stops at once (the newest checkpoint on disk stays valid:
saves are atomic); more SIGTERM or SIGUSR1 while stopping are ignored.
Data-loader workers ignore SIGINT and SIGUSR1, which a terminal or a
scheduler sends to every process of the job: only the training process
decides when to stop.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any, Iterator

import torch
import torch.distributed as dist

from distributed import DistributedContext
from utils import GasMonoError

__all__ = ["STOP_SIGNALS", "EXIT_STOPPED", "StopRequest", "TrainingStopped", "ignore_stop_signals"]

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
EXIT_STOPPED = 75


class TrainingStopped(GasMonoError):
    """Training stopped on request after writing a checkpoint to resume from
    (printed as ``stopped: ...``, exit status :data:`EXIT_STOPPED`)."""

    prefix = "stopped"
    exit_code = EXIT_STOPPED


class StopRequest:
    """Records SIGTERM, SIGUSR1 and SIGINT while installed (see the module notes).

    Attributes:
        signal_name: the first stop signal received (``"SIGTERM"``, ...), None before.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            logger.warning("%s received: stopping after the current batch and saving a checkpoint%s",
                           self.signal_name, " (Ctrl-C again stops at once)" if signum == signal.SIGINT else "")
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        """Handle the stop signals within the block (main thread only; the
        earlier handlers come back afterwards)."""
        if threading.current_thread() is not threading.main_thread():
            logger.info("not the main thread: stop signals keep their default handling")
            yield self
            return
        previous = {number: signal.signal(number, self._on_signal) for number in STOP_SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def agree(self, failed: bool, context: DistributedContext, device: torch.device) -> tuple[bool, bool]:
        """``(stop, failed)`` on any rank: this rank's request and ``failed``
        combined with the other ranks' (one all-reduce of two numbers)."""
        if not context.enabled:
            return self.requested, failed
        flags = torch.tensor([float(self.requested), float(failed)], device=device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        stop, any_failed = flags.tolist()
        if stop and self.signal_name is None:
            self.signal_name = "a stop signal (to another rank)"
        return bool(stop), bool(any_failed)


def ignore_stop_signals() -> None:
    """For data-loader workers: ignore SIGINT and SIGUSR1 (the training
    process handles them). SIGTERM keeps PyTorch's worker handling: a worker
    exits when the training process terminates it and dies otherwise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
