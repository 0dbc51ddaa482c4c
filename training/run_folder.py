"""A training run's folder ``<log_dir>/<model_name>/``: one run per folder.

It holds ``models/`` (``weights_<epoch>/`` checkpoints and ``opt.json``, the
options of the run) and the TensorBoard logs ``train/`` and ``val/``. A new
run does not start in the folder of an existing one unless it resumes it
(``--load_weights_folder`` inside it; the earlier ``opt.json`` is kept as
``opt.<n>.json``) or replaces it (``--overwrite``).
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

from networks import remove_stale_staging
from utils import GasMonoError, atomic_write_text

__all__ = ["checkpoints_by_epoch", "resumes_run", "check_run_folder", "prepare_run_folder"]

logger = logging.getLogger(__name__)

# the sub-folders of a run that --overwrite removes
RUN_CONTENTS = ("models", "train", "val")


def checkpoints_by_epoch(models_dir: Path) -> list[Path]:
    """The ``weights_<epoch>`` folders of a run's ``models`` folder, oldest epoch first."""
    epochs = {int(path.name.removeprefix("weights_")): path for path in models_dir.glob("weights_*")
              if path.name.removeprefix("weights_").isdigit()}
    return [epochs[epoch] for epoch in sorted(epochs)]


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
    checkpoints = checkpoints_by_epoch(models_dir)
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
