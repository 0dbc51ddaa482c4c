"""Data-loader workers that die: one line instead of PyTorch's traceback, and
no half-finished optimiser step.

When a worker dies (the out-of-memory killer, a crash in native code, a
signal), PyTorch raises ``RuntimeError: DataLoader worker (pid ...) ...``,
either when the data is fetched or, from its SIGCHLD handler, at whatever
line the training process is running, possibly in the middle of an
optimiser step. :class:`WorkerDeathWatch` holds the SIGCHLD check back while
a batch is being trained on and makes it at the next fetch, so the error
always arrives between two steps; :func:`worker_death_message` turns it into
one line with the likely cause.
"""
from __future__ import annotations

import contextlib
import re
import signal
import threading
from typing import Any, Callable, Iterator

__all__ = ["WorkerDeathWatch", "is_worker_death", "worker_death_message"]

_WORKER_DEATH = re.compile(r"DataLoader worker \(pid(?:\(s\))? (?P<pids>[\d, ]+)\) (?P<what>[^.]*)")

# what PyTorch's message says -> the likely cause and the remedy
_CAUSES = (
    ("killed by signal: Killed", "killed (SIGKILL), most often by the out-of-memory killer: lower --num_workers or "
                                 "--batch_size, or give the job more memory"),
    ("killed by signal: Bus error", "out of shared memory (/dev/shm): enlarge it (e.g. docker --shm-size) or lower "
                                    "--num_workers"),
    ("killed by signal: Terminated", "terminated (SIGTERM) from outside the training, e.g. by a scheduler"),
    ("killed by signal: Segmentation fault", "a crash in native code (image decoding, OpenCV): run with "
                                             "--num_workers 0 to see where"),
    ("exited unexpectedly with exit code", "the worker exited on its own: run with --num_workers 0 to see why"),
    ("exited unexpectedly", "killed, most often by the out-of-memory killer: lower --num_workers or --batch_size, "
                            "or give the job more memory"),
)


def is_worker_death(error: BaseException) -> bool:
    """Whether ``error`` is PyTorch's report of a data-loader worker that died."""
    return isinstance(error, RuntimeError) and _WORKER_DEATH.search(str(error)) is not None


def worker_death_message(error: BaseException) -> str:
    """``"a data-loader worker died (pid 123 killed by signal: Killed); likely
    cause: ..."`` for an error accepted by :func:`is_worker_death`."""
    # the polling check's "exited unexpectedly" may carry the SIGCHLD check's details as its cause
    texts = [str(error)] + ([str(error.__cause__)] if error.__cause__ is not None else [])
    matches = [match for text in texts if (match := _WORKER_DEATH.search(text)) is not None]
    if not matches:
        return f"a data-loader worker failed ({texts[0].strip().splitlines()[0]})"
    match = next((match for match in matches if "killed by signal" in match["what"]), matches[0])
    what = " ".join(match["what"].split())
    cause = next((cause for needle, cause in _CAUSES if needle in match.string), "unknown")
    return f"a data-loader worker died (pid {match['pids'].strip()} {what}); likely cause: {cause}"


class WorkerDeathWatch:
    """Defers PyTorch's worker-death check (its SIGCHLD handler) to between steps.

    PyTorch installs its handler when the first loader with workers starts;
    :meth:`training` wraps it (main thread only), so that within the block a
    SIGCHLD is only noted; :meth:`check` then runs PyTorch's handler, which
    raises the worker-death ``RuntimeError`` if a worker died.
    """

    def __init__(self) -> None:
        self._torch_handler: Callable[[int, Any], Any] | None = None
        self._in_step = False
        self._pending = False

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGCHLD)
        if current == self._on_child_exit or not callable(current):
            return
        self._torch_handler = current
        signal.signal(signal.SIGCHLD, self._on_child_exit)

    def _on_child_exit(self, signum: int, frame: Any) -> None:
        if self._in_step:
            self._pending = True
        elif self._torch_handler is not None:
            self._torch_handler(signum, frame)

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Within the block, a worker's death is noted, not raised."""
        self._install()
        self._in_step = True
        try:
            yield
        finally:
            self._in_step = False

    def check(self) -> None:
        """Raise PyTorch's worker-death error if a worker died during the last block."""
        if self._pending:
            self._pending = False
            if self._torch_handler is not None:
                self._torch_handler(signal.SIGCHLD, None)

    def close(self) -> None:
        """Give PyTorch its handler back."""
        if self._torch_handler is not None and signal.getsignal(signal.SIGCHLD) == self._on_child_exit:
            signal.signal(signal.SIGCHLD, self._torch_handler)
        self._torch_handler = None
