"""A training run's folder ``<log_dir>/<model_name>/``: one run per folder.

It holds ``models/`` (checkpoints and ``opt.json``, the options of the run),
the TensorBoard logs ``train/`` and ``val/`` and ``run.lock``
(:mod:`training.run_lock`). Checkpoints are ``weights_<epoch>/``, written at
the end of an epoch, and ``weights_<epoch>_step<step>/``, written when a
stopped run left epoch ``<epoch>`` after ``<step>`` steps of the run
(:mod:`training.preemption`). A new run does not start in the folder of an
existing one unless it resumes it (``--load_weights_folder`` inside it, or
``--resume``; the earlier ``opt.json`` is kept as ``opt.<n>.json``) or
replaces it (``--overwrite``).
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

from networks import remove_stale_staging
from networks.checkpoints import TRAINING_STATE_FILE
from utils import GasMonoError, atomic_write_text

__all__ = ["checkpoint_name", "list_checkpoints", "latest_checkpoint", "resumes_run", "check_run_folder",
           "prepare_run_folder"]

logger = logging.getLogger(__name__)

# the sub-folders of a run that --overwrite removes
RUN_CONTENTS = ("models", "train", "val")


_CHECKPOINT_NAME = re.compile(r"weights_(?P<epoch>\d+)(?:_step(?P<step>\d+))?")


def checkpoint_name(epoch: int, step: int | None = None) -> str:
    """``weights_<epoch>`` (the end of an epoch) or, with ``step``,
    ``weights_<epoch>_step<step>`` (a run stopped within the epoch after ``step`` steps)."""
    return f"weights_{epoch}" if step is None else f"weights_{epoch}_step{step}"


def list_checkpoints(models_dir: Path) -> list[Path]:
    """The checkpoints in a run's ``models`` folder, oldest first (by epoch;
    within an epoch those of a stopped run by step, then the epoch's end).
    Hidden staging folders of a save in progress are not checkpoints."""
    found = []
    for path in models_dir.glob("weights_*"):
        match = _CHECKPOINT_NAME.fullmatch(path.name)
        if match and path.is_dir():
            step = match["step"]
            found.append(((int(match["epoch"]), step is None, int(step or 0)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_folder: Path) -> Path | None:
    """The newest checkpoint of the run in ``run_folder`` that training can
    resume from (it holds ``training_state.pth``), or None."""
    resumable = [path for path in list_checkpoints(run_folder / "models") if (path / TRAINING_STATE_FILE).is_file()]
    return resumable[-1] if resumable else None


def resumes_run(run_folder: Path, load_weights_folder: str | None) -> bool:
    """Whether ``load_weights_folder`` is a checkpoint of the run in ``run_folder``."""
    return (load_weights_folder is not None
            and Path(load_weights_folder).resolve().parent == (run_folder / "models").resolve())


def check_run_folder(run_folder: Path, load_weights_folder: str | None, overwrite: bool) -> None:
    """Refuse to start a new run in the folder of an existing one (before any data is read).

    An existing run is a ``models`` folder with checkpoints or ``opt.json``;
    it may be resumed (``load_weights_folder`` inside it) or replaced
    (``overwrite``).

    Raises:
        GasMonoError: naming what the folder holds and the choices.
    """
    models_dir = run_folder / "models"
    checkpoints = list_checkpoints(models_dir)
    has_options = (models_dir / "opt.json").is_file()
    if not (checkpoints or has_options) or resumes_run(run_folder, load_weights_folder) or overwrite:
        return
    if checkpoints:
        held = f"{len(checkpoints)} checkpoint(s)"
        choices = f"continue it with --load_weights_folder {checkpoints[-1]}, or replace it with --overwrite"
    else:
        held, choices = "opt.json, no checkpoint", "or replace it with --overwrite"
    raise GasMonoError(f"run folder {run_folder} already holds a run ({held}); choose another --model_name, {choices}")


def prepare_run_folder(run_folder: Path, options: Mapping[str, Any], resumes: bool, overwrite: bool) -> None:
    """Create (or, with ``overwrite`` and not ``resumes``, empty) the run
    folder, clear what interrupted saves left in it, keep an earlier
    ``opt.json`` as ``opt.<n>.json`` and write ``options`` as ``opt.json``."""
    models_dir = run_folder / "models"
    if overwrite and not resumes and run_folder.is_dir():
        for name in RUN_CONTENTS:
            shutil.rmtree(run_folder / name, ignore_errors=True)
        logger.info("--overwrite: removed the checkpoints, opt.json and TensorBoard logs of the previous run in %s",
                    run_folder)
    for action in remove_stale_staging(models_dir):
        logger.info("interrupted save in %s: %s", models_dir, action)
    models_dir.mkdir(parents=True, exist_ok=True)
    options_path = models_dir / "opt.json"
    if options_path.is_file():
        kept = models_dir / f"opt.{_next_options_number(models_dir)}.json"
        options_path.rename(kept)
        logger.info("kept the options of the earlier run as %s", kept)
    atomic_write_text(json.dumps(dict(options), indent=2, default=str), options_path)


def _next_options_number(models_dir: Path) -> int:
    """``1 +`` the largest ``n`` of the ``opt.<n>.json`` files in ``models_dir``."""
    numbers = [int(match[1]) for path in models_dir.glob("opt.*.json")
               if (match := re.fullmatch(r"opt\.(\d+)\.json", path.name))]
    return max(numbers, default=0) + 1
