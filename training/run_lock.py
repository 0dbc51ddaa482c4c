"""One training per run folder: an OS file lock on ``<run folder>/run.lock``.

A training holds an exclusive ``flock`` on the file from before it reads the
run folder until it ends. The operating system releases the lock when the
process dies, however it dies, so a crashed or killed run never blocks the
next one; nothing has to be cleaned up by hand. The file itself stays (it
only names the last holder: process id, host and start time). A second
training on the same folder stops at once with one line naming the folder
and the process that holds it.

Evaluation and prediction do not take the lock: they read weights folders,
which training writes atomically (:func:`networks.save_weights_folder`), so
they only ever see complete checkpoints.

Under DDP only rank 0 takes the lock; every rank stops when it cannot.
Within one process the lock is shared: a :class:`trainer.Trainer` built
after an earlier one on the same folder (a failed construction, a notebook)
takes the earlier one's lock over instead of refusing. Forked children (data
loader workers) close their copy of the lock file, so that a worker
outliving a killed training does not keep the folder locked.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path

import torch

from distributed import DistributedContext, all_ranks_agree
from training.disk import ensure_writable_folder
from utils import GasMonoError

__all__ = ["LOCK_FILE", "RunLock", "claim_run_folder"]

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"

# the locks this process holds, by resolved lock-file path
_HELD: dict[Path, "RunLock"] = {}


def _close_in_forked_child() -> None:
    """A forked child drops its copies of the lock files (closing, not
    unlocking: the parent keeps its lock)."""
    for lock in _HELD.values():
        if lock.descriptor is not None:
            os.close(lock.descriptor)
            lock.descriptor = None
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_forked_child)


class RunLock:
    """An exclusive lock on a run folder held by this process (see the module notes).

    Use :meth:`acquire`; :meth:`release` ends it (so does the end of the process).
    """

    def __init__(self, path: Path, descriptor: int | None) -> None:
        self.path = path
        self.descriptor = descriptor

    @classmethod
    def acquire(cls, run_folder: Path) -> "RunLock":
        """Lock ``run_folder`` (which must exist) for this process.

        Raises:
            GasMonoError: another process holds it (naming the folder and
                that process).
        """
        path = (Path(run_folder) / LOCK_FILE).resolve()
        held = _HELD.get(path)
        if held is not None and held.descriptor is not None:
            logger.info("%s is already locked by this process; taking the lock over", run_folder)
            return held
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise GasMonoError(
                    f"run folder {run_folder} is in use by another training ({_holder(path)}); wait for it to "
                    "end or choose another --model_name") from None
            logger.warning("cannot lock %s (%s): this file system does not support locks, so nothing stops a "
                           "second training in the same folder", path, error.strerror or error)
            return cls(path, None)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()} since "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        lock = cls(path, descriptor)
        _HELD[path] = lock
        return lock

    def release(self) -> None:
        """Unlock (idempotent)."""
        if self.descriptor is not None:
            _HELD.pop(self.path, None)
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)
            os.close(self.descriptor)
            self.descriptor = None


def _holder(path: Path) -> str:
    """What the lock file says about the process holding it, e.g. ``pid 123 on node7 since ...``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "process id not yet written"


def claim_run_folder(run_folder: Path, context: DistributedContext, device: torch.device) -> RunLock | None:
    """On rank 0: create ``run_folder`` and its ``models`` folder, check that
    they can be written to (:func:`training.disk.ensure_writable_folder`) and
    lock the run folder; every rank stops when that fails.

    Returns:
        the lock on rank 0, None on the other ranks.

    Raises:
        GasMonoError: the folder cannot be created or written to, or is in
            use by another training.
    """
    lock, problem = None, None
    if context.is_main:
        try:
            ensure_writable_folder(run_folder, "run folder")
            ensure_writable_folder(run_folder / "models", "checkpoint folder")
            lock = RunLock.acquire(run_folder)
        except GasMonoError as error:
            problem = error
    if not all_ranks_agree(problem is None, context, device):
        raise problem or GasMonoError(f"run folder {run_folder} is in use by another training (see rank 0)")
    return lock
