"""Settings, output paths and stage timing of the demo and the ablation.

Every knob is a field of :class:`DemoSettings`; a preset (:data:`PRESETS`) is
a set of field values over the defaults, so that a new preset (another
machine, another budget) is one entry. The settings are recorded in the
results JSON of every run.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from coarse_poses.colmap import ColmapSettings
from utils import GasMonoError

logger = logging.getLogger(__name__)

EVAL_SPLIT = "nyu"
TEST_SET = "test"
VAL_FRAMES_SET = "val_frames"
# the held-out rooms at 480 x 640 use NYUv2's default (Eigen) protocol; the validation
# frames of the training rooms keep the training resolution, so no NYUv2 crop applies
EVAL_PROTOCOLS = {VAL_FRAMES_SET: "release", TEST_SET: None}
EVAL_SET_TITLES = {
    TEST_SET: "held-out rooms (test set)",
    VAL_FRAMES_SET: "training rooms, validation frames (not trained on)",
}
EVAL_SET_NAMES = {TEST_SET: "the held-out rooms", VAL_FRAMES_SET: "the validation frames of the training rooms"}
# what the demo aims for: abs_rel on the validation frames of the training rooms this much lower than the
# untrained network's (the held-out rooms are reported without a target)
TARGET_SET = VAL_FRAMES_SET
TARGET_ABS_REL_REDUCTION = 0.25


@dataclass
class DemoSettings:
    """Every knob of the demo; all of them are recorded in ``results.json``.

    Data: ``num_scenes`` training sequences of ``frames_per_scene`` frames,
    ``num_low_texture`` of them plain-painted (COLMAP is expected to fail
    there), rendered at ``render_height x render_width``; a sequence keeps every
    ``frame_stride``-th rendered frame (larger strides: larger baselines between
    neighbours, the renderer moves the camera about 4.5 cm per frame).
    ``num_test`` test views of held-out rooms are rendered at
    ``test_height x test_width`` (480 x 640: the NYUv2 protocol).
    COLMAP: SIFT on frames downscaled to ``colmap_max_image_size``.
    Training: the flags of ``train.py`` with the same names (``height``,
    ``width``, ``batch_size``, ``learning_rate``, ``lr_gamma`` ...).
    ``deterministic``: every stage repeatable bit for bit on the same machine
    and thread count (COLMAP on one thread per sequence, its sequences in
    parallel processes, see :attr:`colmap_processes`, every generator seeded;
    ``train.py --deterministic``); see :mod:`experiments.reproducibility`.
    """

    num_scenes: int = 8
    num_low_texture: int = 2
    frames_per_scene: int = 24
    frame_stride: int = 1
    num_test: int = 20
    render_height: int = 240
    render_width: int = 320
    test_height: int = 480
    test_width: int = 640
    render_workers: int = 1
    colmap_max_image_size: int = 320
    colmap_max_num_features: int = 4096
    colmap_overlap: int = 6
    colmap_jobs: int = 1
    colmap_threads: int = 2
    val_fraction: float = 0.1
    height: int = 64
    width: int = 96
    batch_size: int = 4
    num_epochs: int = 10
    max_train_steps: int | None = None
    learning_rate: float = 1e-4
    decoder_learning_rate: float = 1e-4
    lr_gamma: float = 0.9
    disparity_smoothness: float = 1e-3
    www: float = 0.2
    wpp: float = 0.2
    iiters: int = 2
    iiters_start_epoch: int = 7
    wpp_ramp_epochs: int = 5
    augmentation: str = "colorjitter"
    log_frequency: int = 10
    num_workers: int = 0
    device: str = "cpu"
    eval_batch_size: int = 4
    num_prediction_examples: int = 4
    num_prediction_val_frames: int = 2
    seed: int = 0
    deterministic: bool = False

    def data_fingerprint(self) -> dict:
        """The settings that determine the rendered data set."""
        names = ("num_scenes", "num_low_texture", "frames_per_scene", "frame_stride", "num_test", "render_height",
                 "render_width", "test_height", "test_width", "seed")
        return {name: getattr(self, name) for name in names}

    def colmap_settings(self) -> ColmapSettings:
        return ColmapSettings(
            num_threads=self.colmap_threads,
            overlap=self.colmap_overlap,
            max_image_size=self.colmap_max_image_size,
            max_num_features=self.colmap_max_num_features,
            seed=self.seed,
            deterministic=self.deterministic,
        )

    @property
    def colmap_processes(self) -> int:
        """Sequences COLMAP processes in parallel: ``colmap_jobs``; when deterministic
        (one thread each) as many processes as ``colmap_jobs x colmap_threads``, so
        that the same cores are busy, but at most one per two sequences (starting a
        process costs about as much as a short sequence: it imports torch)."""
        if not self.deterministic:
            return self.colmap_jobs
        return max(1, min(self.colmap_jobs * self.colmap_threads, self.num_scenes // 2))


def stretched_schedule(settings: DemoSettings, num_epochs: int) -> dict[str, Any]:
    """The settings' training schedule stretched (or shrunk) to ``num_epochs`` epochs, as overrides:
    the self-distillation passes start and the distillation weight ramp ends at the same fractions
    of the run, and the learning rate decays by the same factor in all (``lr_gamma`` per epoch).

    Raises:
        GasMonoError: ``num_epochs`` below 1.
    """
    if num_epochs < 1:
        raise GasMonoError(f"a schedule needs at least one epoch, got {num_epochs}")
    ratio = num_epochs / settings.num_epochs
    return {
        "num_epochs": num_epochs,
        "iiters_start_epoch": min(num_epochs - 1, round(settings.iiters_start_epoch * ratio)),
        "wpp_ramp_epochs": max(1, round(settings.wpp_ramp_epochs * ratio)),
        "lr_gamma": settings.lr_gamma ** (1 / ratio),
    }


PRESETS: dict[str, dict[str, Any]] = {
    # the full demo: 7-10 minutes on 2 quiet CPU cores (docs/demo.md)
    "full": {},
    # the full preset's data trained 34 epochs (986 batches), the budget curve's 1,000-batch point: the
    # training rooms' corners begin to show (docs/results.md); about 30 minutes on 2 CPU cores
    "long": stretched_schedule(DemoSettings(), 34),
    # every stage at tiny sizes: one textured and one low-texture scene, 2 epochs of 3 batches
    "quick": {
        "num_scenes": 2,
        "num_low_texture": 1,
        "frames_per_scene": 12,
        "num_test": 4,
        "colmap_max_num_features": 2048,
        "batch_size": 2,
        "num_epochs": 2,
        "max_train_steps": 3,
        "iiters_start_epoch": 1,
        "wpp_ramp_epochs": 1,
        "log_frequency": 2,
    },
    # more rooms at NYUv2's size, trained at the release's 256 x 320 for about 10 minutes of one H100-class GPU
    # (an estimate: 179 GFLOP per item and pass, measured with torch's FLOP counter, x about 59k item passes =
    # 10.6 PFLOP at an assumed 15-20 TFLOP/s); runs on a CPU too (--device cpu), slowly
    "gpu": {
        "num_scenes": 24,
        "num_low_texture": 4,
        "frames_per_scene": 96,
        "num_test": 100,
        "render_height": 480,
        "render_width": 640,
        "render_workers": 16,
        "colmap_jobs": 8,
        "height": 256,
        "width": 320,
        "batch_size": 12,
        "num_epochs": 20,
        "iiters_start_epoch": 5,
        "wpp_ramp_epochs": 10,
        "augmentation": "strong",
        "log_frequency": 50,
        "num_workers": 8,
        "device": "cuda",
        "eval_batch_size": 16,
    },
}


def preset_settings(preset: str, **overrides: Any) -> DemoSettings:
    """The settings of a preset of :data:`PRESETS`, with ``overrides`` (e.g. ``seed``, ``device``) on top."""
    if preset not in PRESETS:
        raise GasMonoError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    unknown = sorted(set(overrides) - {item.name for item in dataclasses.fields(DemoSettings)})
    if unknown:
        raise GasMonoError(f"unknown setting(s) {', '.join(unknown)} (see experiments/settings.py DemoSettings)")
    return dataclasses.replace(DemoSettings(), **{**PRESETS[preset], **overrides})


def parse_overrides(assignments: Sequence[str]) -> dict[str, Any]:
    """``["num_scenes=4", "max_train_steps=None", ...]`` -> settings values of the
    types of :class:`DemoSettings`' fields.

    Raises:
        GasMonoError: not ``name=value``, an unknown name or a value of the wrong type.
    """
    types = typing.get_type_hints(DemoSettings)
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        name, separator, text = assignment.partition("=")
        if not separator:
            raise GasMonoError(f"--set {assignment!r}: expected NAME=VALUE")
        if name not in types:
            raise GasMonoError(f"--set {assignment!r}: unknown setting {name!r} (see experiments/settings.py)")
        kinds = typing.get_args(types[name]) or (types[name],)
        if text == "None" and type(None) in kinds:
            overrides[name] = None
            continue
        kind = next(kind for kind in kinds if kind is not type(None))
        if kind is bool:
            if text not in ("True", "False"):
                raise GasMonoError(f"--set {assignment!r}: {name} takes True or False")
            overrides[name] = text == "True"
            continue
        try:
            overrides[name] = kind(text)
        except ValueError:
            raise GasMonoError(f"--set {assignment!r}: {name} takes a {kind.__name__}") from None
    return overrides


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options that choose the settings of a demo, ablation, seed or budget run (and
    ``--no_progress``)."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="settings preset (default: gpu with --device cuda, else full)")
    parser.add_argument("--quick", action="store_true",
                        help="the quick preset: tiny sizes and 2 short epochs, every stage in a few minutes "
                             "(a smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, COLMAP, the split and training")
    parser.add_argument("--deterministic", action="store_true",
                        help="make every stage repeatable bit for bit on the same machine and thread count: COLMAP "
                             "on one thread per sequence (sequences in parallel processes instead) with seeded "
                             "RANSAC and mapper, train.py --deterministic; recorded in the results "
                             "(docs/reproducibility.md)")
    parser.add_argument("--device", type=str, default=None,
                        help="device for training and evaluation (default: the preset's, cpu or cuda)")
    parser.add_argument("--set", dest="overrides", metavar="NAME=VALUE", nargs="+", action="extend", default=[],
                        help="override settings of the preset (fields of experiments/settings.py DemoSettings), "
                             "e.g. --set num_scenes=4 num_epochs=2")
    parser.add_argument("--no_progress", action="store_true",
                        help="hide the progress bars of rendering, COLMAP and evaluation (training keeps its "
                             "bar per epoch)")


def settings_from_arguments(args: argparse.Namespace) -> tuple[str, DemoSettings]:
    """The preset chosen by :func:`add_settings_arguments`' options and its settings.

    Raises:
        GasMonoError: ``--quick`` with another preset, or a bad ``--set``.
    """
    if args.quick and args.preset not in (None, "quick"):
        raise GasMonoError(f"--quick contradicts --preset {args.preset}")
    preset = args.preset or ("quick" if args.quick else "gpu" if (args.device or "").startswith("cuda") else "full")
    overrides = {"seed": args.seed, **parse_overrides(args.overrides)}
    if args.deterministic:
        overrides["deterministic"] = True
    if args.device:
        overrides["device"] = args.device
    return preset, preset_settings(preset, **overrides)


@dataclass(frozen=True)
class DemoPaths:
    """Where every stage writes, all under ``out``."""

    out: Path

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def train_data(self) -> Path:
        return self.data / "train"

    @property
    def test_data(self) -> Path:
        return self.data / "test"

    @property
    def val_frames_data(self) -> Path:
        return self.data / "val_frames"

    @property
    def cpose(self) -> Path:
        return self.out / "cpose"

    @property
    def colmap_work(self) -> Path:
        return self.out / "colmap_work"

    @property
    def splits(self) -> Path:
        return self.out / "splits"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def eval(self) -> Path:
        return self.out / "eval"

    @property
    def untrained(self) -> Path:
        return self.out / "untrained"

    def untrained_of(self, run_name: str) -> Path:
        """The weights folder of run ``run_name``'s network before training."""
        return self.untrained / run_name

    @classmethod
    def create(cls, out: str | os.PathLike) -> "DemoPaths":
        """The paths under ``out``, which is created (a file there is an error)."""
        out = Path(out).resolve()
        if out.exists() and not out.is_dir():
            raise GasMonoError(f"--out must be a folder, but {out} is a file")
        out.mkdir(parents=True, exist_ok=True)
        return cls(out)

    def relative(self, path: Path) -> str:
        """``path`` relative to ``out`` (as written into result files)."""
        return str(Path(path).resolve().relative_to(self.out.resolve()))


@dataclass
class StageTimer:
    """Wall-clock seconds per named stage."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, verbose: bool = True) -> Iterator[None]:
        """Time the block as stage ``name`` (announced with its duration when ``verbose``)."""
        if verbose:
            logger.info("\n== %s ==", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)
        if verbose:
            logger.info("-- %s: %.1f s", name, self.seconds[name])
