"""The whole GasMono pipeline on bundled synthetic data, on a CPU, in minutes.

Example::

    python tools/demo.py --out demo_output            # about 10 minutes on 2 cores
    python tools/demo.py --out demo_output --quick    # every stage, tiny sizes, under 3 minutes

Stages (everything is written under ``--out``)::

    data/            synthetic indoor set (synthetic/): data/train/<scene>/ sequences
                     (some low-texture), data/test/ views of held-out rooms in the NYUv2 test layout,
                     data/val_frames/ the validation frames of the training rooms in the same layout
    cpose/           coarse poses from COLMAP, summary.json, per-scene colmap.json / colmap.log
    splits/          train_files.txt / val_files.txt of the items that have coarse poses
    logs/<run>/      the training run: checkpoints models/weights_<epoch>/, TensorBoard logs
    untrained/       the network before training (same seed and architecture), as a weights folder
    eval/<run>/      evaluation results of each checkpoint on test/ and val_frames/
    results.md, results.json, training_curve.png, predictions.png, training_history.json

Training uses every GasMono component (coarse poses with AlignNet, residual
PoseNet, iterative self-distillation with two passes) on a schedule short
enough for a CPU in which the self-distillation passes start half-way and the
distillation weight ramp completes. Running the demo again with the same
``--out`` reuses the rendered data and finished COLMAP sequences.

The functions here are also the building blocks of ``tools/ablate.py``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# OpenMP threads that spin while they wait make PyTorch many times slower when
# other processes share the cores (measured: 64x96 steps 5-50 s instead of 1-2 s
# on 2 busy cores). It is read when torch loads, so it is set before the imports.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

import networks  # noqa: E402
from coarse_poses.colmap import ColmapSettings, SequenceResult  # noqa: E402
from coarse_poses.evaluation import evaluate_coarse_poses, format_pose_table, load_gt_poses  # noqa: E402
from coarse_poses.pose_files import list_pose_items  # noqa: E402
from coarse_poses.runner import make_coarse_poses  # noqa: E402
from coarse_poses.summary import format_summary_table, summarize  # noqa: E402
from datasets.eval_base import read_depth_image  # noqa: E402
from datasets.nyu_dataset import DEPTH_PNG_SCALE, parse_split_line  # noqa: E402
from datasets.splits import list_scene_frames, write_split_files  # noqa: E402
from evaluation import evaluate_checkpoint  # noqa: E402
from evaluation.metrics import DEPTH_METRIC_NAMES  # noqa: E402
from evaluation.protocols import resolve_protocol  # noqa: E402
from inference import DepthEstimator  # noqa: E402
from options import GasMonoOptions  # noqa: E402
from synthetic.dataset import generate_dataset  # noqa: E402
from synthetic.rooms import LOW_TEXTURE  # noqa: E402
from trainer import Trainer  # noqa: E402
from utils import GasMonoError, OneLineErrorParser, atomic_write_text, cli_entry_point, sec_to_hm_str  # noqa: E402

logger = logging.getLogger(__name__)

EVAL_SPLIT = "nyu"
HIGHER_IS_BETTER = ("a1", "a2", "a3")
TEST_SET = "test"
VAL_FRAMES_SET = "val_frames"
# the held-out rooms at 480 x 640 use NYUv2's default (Eigen) protocol; the validation
# frames of the training rooms keep the training resolution, so no NYUv2 crop applies
EVAL_PROTOCOLS = {TEST_SET: None, VAL_FRAMES_SET: "release"}
# what the demo aims for: abs_rel on the held-out rooms this much lower than the untrained network's
TARGET_ABS_REL_REDUCTION = 0.30


# ---------------------------------------------------------------------------
# Settings and paths
# ---------------------------------------------------------------------------


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
    ``width``, ``batch_size``, ``learning_rate`` ...).
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
    num_epochs: int = 8
    max_train_steps: int | None = None
    learning_rate: float = 3e-4
    decoder_learning_rate: float = 3e-4
    disparity_smoothness: float = 1e-3
    www: float = 0.2
    wpp: float = 0.2
    iiters: int = 2
    iiters_start_epoch: int = 4
    wpp_ramp_epochs: int = 4
    augmentation: str = "colorjitter"
    log_frequency: int = 10
    num_workers: int = 0
    device: str = "cpu"
    eval_batch_size: int = 4
    num_prediction_examples: int = 4
    num_prediction_val_frames: int = 2
    seed: int = 0

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
        )


def full_settings(seed: int = 0) -> DemoSettings:
    """The full demo: about 10 minutes on 2 CPU cores."""
    return DemoSettings(seed=seed)


def quick_settings(seed: int = 0) -> DemoSettings:
    """Every stage at tiny sizes: one textured and one low-texture scene, 2 epochs of 3 batches."""
    return DemoSettings(
        num_scenes=2,
        num_low_texture=1,
        frames_per_scene=12,
        num_test=4,
        colmap_max_num_features=2048,
        batch_size=2,
        num_epochs=2,
        max_train_steps=3,
        iiters_start_epoch=1,
        wpp_ramp_epochs=1,
        log_frequency=2,
        seed=seed,
    )


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
        if verbose:
            print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)
        if verbose:
            print(f"-- {name}: {self.seconds[name]:.1f} s", flush=True)


# ---------------------------------------------------------------------------
# Data: rendering, coarse poses, splits
# ---------------------------------------------------------------------------


def subsample_sequences(source: Path, target: Path, stride: int) -> None:
    """Move every ``stride``-th frame of each sequence under ``source`` (image,
    depth, pose) into ``target/<scene>/``, renumbered from 0, with ``cam.txt``."""
    for scene_dir in sorted(path for path in source.iterdir() if path.is_dir()):
        kept = list_scene_frames(scene_dir)[::stride]
        out_dir = target / scene_dir.name
        shutil.rmtree(out_dir, ignore_errors=True)
        (out_dir / "depth").mkdir(parents=True)
        for new_index, old_index in enumerate(kept):
            os.replace(scene_dir / f"{old_index:06d}.jpg", out_dir / f"{new_index:06d}.jpg")
            os.replace(scene_dir / "depth" / f"{old_index:06d}.png", out_dir / "depth" / f"{new_index:06d}.png")
        os.replace(scene_dir / "cam.txt", out_dir / "cam.txt")
        poses = load_gt_poses(scene_dir / "poses.txt")[kept]
        np.savetxt(out_dir / "poses.txt", poses.reshape(len(kept), 16), fmt="%.9g")


def generate_data(paths: DemoPaths, settings: DemoSettings, progress: bool = True) -> dict:
    """Render the synthetic set into ``paths.data`` unless the same set is already there.

    Training sequences are rendered at ``frame_stride`` times the frame rate
    and subsampled into ``data/train``; the held-out test rooms go to
    ``data/test`` (NYUv2 test layout).

    Returns:
        ``{"reused", "train_scenes", "low_texture_scenes", "frames", "test_images", "train_image_size",
        "test_image_size"}``.
    """
    record_path = paths.data / "demo_data.json"
    fingerprint = settings.data_fingerprint()
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record["settings"] == fingerprint:
            logger.info("reusing the synthetic data in %s", paths.data)
            return {**record["summary"], "reused": True}
    shutil.rmtree(paths.data, ignore_errors=True)
    render_dir = paths.data / "render"
    rendered = generate_dataset(
        render_dir,
        num_scenes=settings.num_scenes,
        frames_per_scene=settings.frames_per_scene * settings.frame_stride,
        num_test=0,
        height=settings.render_height,
        width=settings.render_width,
        num_low_texture=settings.num_low_texture,
        seed=settings.seed,
        num_workers=settings.render_workers,
        progress=progress,
    )
    subsample_sequences(render_dir / "train", paths.train_data, settings.frame_stride)
    shutil.rmtree(render_dir)
    generate_dataset(
        paths.data,
        num_scenes=0,
        num_test=settings.num_test,
        num_low_texture=0,
        height=settings.test_height,
        width=settings.test_width,
        seed=settings.seed,
        num_workers=settings.render_workers,
        progress=progress,
    )
    kinds = {name: scene["kind"] for name, scene in rendered["scenes"].items()}
    summary = {
        "train_scenes": sorted(kinds),
        "low_texture_scenes": sorted(name for name, kind in kinds.items() if kind == LOW_TEXTURE),
        "frames": settings.num_scenes * settings.frames_per_scene,
        "test_images": settings.num_test,
        "train_image_size": [settings.render_height, settings.render_width],
        "test_image_size": [settings.test_height, settings.test_width],
    }
    atomic_write_text(json.dumps({"settings": fingerprint, "summary": summary}, indent=2) + "\n", record_path)
    return {**summary, "reused": False}


def compute_coarse_poses(paths: DemoPaths, settings: DemoSettings, progress: bool = True) -> dict:
    """COLMAP on every training sequence, then the pose accuracy against the
    rendered ground truth. Sequences finished with the same data and settings
    (a previous run into the same folder) are kept.

    Returns:
        ``{"results": [SequenceResult], "summary": summary JSON, "pose_accuracy": report or None}``.
    """
    colmap_settings = settings.colmap_settings()
    fingerprint_path = paths.cpose / "demo_colmap.json"
    fingerprint = {"data": settings.data_fingerprint(), "colmap": dataclasses.asdict(colmap_settings)}
    unchanged = fingerprint_path.is_file() and json.loads(fingerprint_path.read_text(encoding="utf-8")) == fingerprint
    results = make_coarse_poses(
        paths.train_data,
        paths.cpose,
        paths.colmap_work,
        colmap_settings,
        jobs=settings.colmap_jobs,
        overwrite=not unchanged,
        progress=progress,
    )
    atomic_write_text(json.dumps(fingerprint, indent=2) + "\n", fingerprint_path)
    reconstructed = [result.scene for result in results if result.status == "ok"]
    accuracy = evaluate_coarse_poses(paths.cpose, paths.train_data, reconstructed) if reconstructed else None
    return {"results": results, "summary": summarize(results), "pose_accuracy": accuracy}


def write_splits(paths: DemoPaths, settings: DemoSettings, results: Sequence[SequenceResult]) -> dict:
    """Train/val split files of the items with coarse poses.

    Raises:
        GasMonoError: when COLMAP reconstructed no sequence or too few items remain.
    """
    items = list_pose_items(paths.cpose, [result.scene for result in results])
    if not items:
        raise GasMonoError(f"COLMAP reconstructed no training sequence (see {paths.cpose}/*/colmap.log)")
    # at least one full validation batch, so that validation losses are logged
    val_fraction = min(max(settings.val_fraction, settings.batch_size / len(items)), 0.5)
    train_path, val_path = write_split_files(items, paths.splits, val_fraction, settings.seed)
    num_train = len(train_path.read_text(encoding="utf-8").splitlines())
    if num_train < settings.batch_size:
        raise GasMonoError(f"only {num_train} training items have coarse poses, fewer than the batch size "
                           f"{settings.batch_size}")
    return {
        "val_fraction": round(val_fraction, 4),
        "train_items": num_train,
        "val_items": len(val_path.read_text(encoding="utf-8").splitlines()),
        "scenes": sorted({scene for scene, _ in items}),
        "train_file": paths.relative(train_path),
        "val_file": paths.relative(val_path),
    }


def write_frame_test_set(paths: DemoPaths, items: Sequence[tuple[str, int]], folder: Path) -> Path:
    """Copy training-sequence frames and their rendered depth into an NYUv2-layout
    test set (``color/<i:04d>.png``, ``gt_depths.npz``, ``test_files.txt``)."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "color").mkdir(parents=True)
    depths = []
    for index, (scene, frame) in enumerate(items, start=1):
        with Image.open(paths.train_data / scene / f"{frame:06d}.jpg") as image:
            image.convert("RGB").save(folder / "color" / f"{index:04d}.png")
        depths.append(read_depth_image(paths.train_data / scene / "depth" / f"{frame:06d}.png", DEPTH_PNG_SCALE))
    np.savez_compressed(folder / "gt_depths.npz", data=np.stack(depths))
    atomic_write_text("".join(f"color {index:04d} l\n" for index in range(1, len(items) + 1)),
                      folder / "test_files.txt")
    return folder


def prepare_data(paths: DemoPaths, settings: DemoSettings, timer: StageTimer, progress: bool = True) -> dict:
    """Stages (a)-(c): render, coarse poses (tables printed), split files."""
    with timer.stage("synthetic data"):
        data = generate_data(paths, settings, progress)
        state = "reused" if data["reused"] else "rendered"
        print(f"{state} {len(data['train_scenes'])} training sequences x {settings.frames_per_scene} frames "
              f"(every {settings.frame_stride} rendered frames, {settings.render_width}x{settings.render_height}; "
              f"low-texture: {', '.join(data['low_texture_scenes']) or 'none'}) and {data['test_images']} test "
              f"views of held-out rooms ({settings.test_width}x{settings.test_height}) in {paths.data}")
    with timer.stage("coarse poses (COLMAP)"):
        colmap = compute_coarse_poses(paths, settings, progress)
        print(format_summary_table(colmap["results"]))
        if colmap["pose_accuracy"] is not None:
            print("\ncoarse poses vs rendered ground truth")
            print(format_pose_table(colmap["pose_accuracy"]))
    with timer.stage("split files"):
        splits = write_splits(paths, settings, colmap["results"])
        print(f"{splits['train_items']} training and {splits['val_items']} validation items with coarse poses "
              f"(scenes {', '.join(splits['scenes'])}) in {paths.splits}")
        val_items = [parse_split_line(line, "val_files.txt")[:2]
                     for line in (paths.splits / "val_files.txt").read_text(encoding="utf-8").splitlines()]
        write_frame_test_set(paths, val_items, paths.val_frames_data)
    return {"data": data, "colmap": colmap, "splits": splits}


# ---------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------


def training_flags(
    paths: DemoPaths,
    settings: DemoSettings,
    run_name: str,
    use_coarse_pose: bool = True,
    use_self_distillation: bool = True,
) -> list[str]:
    """The ``train.py`` flags of one demo run (every GasMono component on by default)."""
    flags = [
        "--data_path", str(paths.train_data),
        "--cpose_dir", str(paths.cpose),
        "--split_dir", str(paths.splits),
        "--log_dir", str(paths.logs),
        "--model_name", run_name,
        "--height", str(settings.height),
        "--width", str(settings.width),
        "--batch_size", str(settings.batch_size),
        "--num_epochs", str(settings.num_epochs),
        "--learning_rate", repr(settings.learning_rate),
        "--decoder_learning_rate", repr(settings.decoder_learning_rate),
        "--disparity_smoothness", repr(settings.disparity_smoothness),
        "--augmentation", settings.augmentation,
        "--weights_init", "scratch",
        "--num_workers", str(settings.num_workers),
        "--device", settings.device,
        "--log_frequency", str(settings.log_frequency),
        "--save_frequency", str(settings.num_epochs),
        "--seed", str(settings.seed),
    ]
    if settings.max_train_steps is not None:
        flags += ["--max_train_steps", str(settings.max_train_steps)]
    if use_coarse_pose:
        flags += ["--use_posegt", "--www", repr(settings.www)]
    if use_self_distillation:
        flags += ["--selfpp", "--wpp", repr(settings.wpp), "--wpp_ramp_epochs", str(settings.wpp_ramp_epochs),
                  "--iiters", str(settings.iiters), "--iiters_start_epoch", str(settings.iiters_start_epoch)]
    else:
        flags += ["--iiters", "1"]
    return flags


def save_initial_weights(trainer: Trainer, folder: Path) -> Path:
    """Save the trainer's networks before any step, as a weights folder."""
    return networks.save_weights_folder(folder, trainer.models, trainer.height, trainer.width, use_stereo=False)


def evaluate_weights(weights: Path, name: str, paths: DemoPaths, settings: DemoSettings,
                     progress: bool = True) -> dict[str, dict]:
    """Evaluate a weights folder on the held-out test rooms (``"test"``) and on
    the validation frames of the training rooms (``"val_frames"``); results in
    ``paths.eval / name / <set>``."""
    data = {TEST_SET: paths.test_data, VAL_FRAMES_SET: paths.val_frames_data}
    return {
        eval_set: evaluate_checkpoint(
            weights,
            data[eval_set],
            split=EVAL_SPLIT,
            protocol=protocol,
            batch_size=settings.eval_batch_size,
            num_workers=0,
            device=settings.device,
            out_dir=str(paths.eval / name / eval_set),
            progress=progress,
        )
        for eval_set, protocol in EVAL_PROTOCOLS.items()
    }


def _abs_rel_a1(evaluation: dict[str, dict]) -> str:
    return "; ".join(f"{eval_set}: abs_rel {result['metrics']['abs_rel']:.4f}, a1 {result['metrics']['a1']:.4f}"
                     for eval_set, result in evaluation.items())


@dataclass
class RunResult:
    """One training run and its evaluation."""

    name: str
    flags: list[str]
    weights: Path
    history: list[dict]
    evaluation: dict[str, dict]
    seconds: dict[str, float]
    steps: int
    untrained_weights: Path | None = None
    untrained_evaluation: dict[str, dict] | None = None


def train_and_evaluate(
    paths: DemoPaths,
    settings: DemoSettings,
    run_name: str,
    timer: StageTimer,
    use_coarse_pose: bool = True,
    use_self_distillation: bool = True,
    evaluate_untrained: bool = False,
    progress: bool = True,
) -> RunResult:
    """Train one run (stage names prefixed with ``run_name``; a previous run of
    that name under ``paths.logs`` is removed) and evaluate its last checkpoint.

    With ``evaluate_untrained`` the networks are first saved untouched to
    ``paths.untrained`` and evaluated: the same seed, architecture and
    initialisation as the trained run.
    """
    flags = training_flags(paths, settings, run_name, use_coarse_pose, use_self_distillation)
    with timer.stage(f"{run_name}: setup", verbose=False):
        shutil.rmtree(paths.logs / run_name, ignore_errors=True)
        trainer = Trainer(GasMonoOptions().parse(flags))
    untrained_weights = untrained_evaluation = None
    if evaluate_untrained:
        with timer.stage(f"{run_name}: evaluate the untrained network"):
            untrained_weights = save_initial_weights(trainer, paths.untrained)
            untrained_evaluation = evaluate_weights(untrained_weights, "untrained", paths, settings, progress)
            print(f"untrained: {_abs_rel_a1(untrained_evaluation)}")
    with timer.stage(f"{run_name}: training"):
        batches = len(trainer.train_loader)
        if settings.max_train_steps:
            batches = min(batches, settings.max_train_steps)
        print(f"{run_name}: {settings.num_epochs} epochs x {batches} batches of {settings.batch_size} at "
              f"{settings.height}x{settings.width}; coarse poses {'on' if use_coarse_pose else 'off'}, "
              f"self-distillation {'on' if use_self_distillation else 'off'}")
        trainer.train()
    weights = paths.logs / run_name / "models" / f"weights_{settings.num_epochs - 1}"
    with timer.stage(f"{run_name}: evaluation"):
        evaluation = evaluate_weights(weights, run_name, paths, settings, progress)
        print(f"{run_name}: {_abs_rel_a1(evaluation)}")
    seconds = {key.split(": ", 1)[1]: value for key, value in timer.seconds.items()
               if key.startswith(f"{run_name}: ")}
    return RunResult(run_name, flags, weights, list(trainer.history), evaluation, seconds, trainer.step,
                     untrained_weights, untrained_evaluation)


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_training_curve(history: Sequence[dict], path: Path, settings: DemoSettings) -> Path:
    """Train loss per step, validation losses, epoch boundaries and the start of
    the self-distillation passes (and the end of the distillation weight ramp)."""
    train = [entry for entry in history if entry["mode"] == "train"]
    val = [entry for entry in history if entry["mode"] == "val"]
    figure = Figure(figsize=(9, 4.5), dpi=110)
    axes = figure.add_subplot()
    if train:
        steps = np.array([entry["step"] for entry in train])
        losses = np.array([entry["loss"] for entry in train])
        axes.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=0.8, label="train loss (per step)")
        window = max(1, min(15, len(train) // 8))
        axes.plot(steps, _moving_average(losses, window), color="tab:blue", linewidth=1.8,
                  label=f"train loss ({window}-step mean)")
    if val:
        axes.plot([entry["step"] for entry in val], [entry["loss"] for entry in val], "o", color="tab:orange",
                  markersize=4, label="validation loss (one batch)")
    first_step = {}
    for entry in train:
        first_step.setdefault(entry["epoch"], entry["step"])
    for epoch, step in sorted(first_step.items())[1:]:
        axes.axvline(step - 0.5, color="gray", linestyle=":", linewidth=0.8)
    for epoch, step in sorted(first_step.items()):
        axes.annotate(f"ep {epoch}", (step, 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="gray",
                      va="top", ha="left")
    if settings.iiters > 1 and settings.iiters_start_epoch in first_step:
        step = first_step[settings.iiters_start_epoch]
        axes.axvline(step - 0.5, color="tab:red", linewidth=1.5,
                     label=f"self-distillation: {settings.iiters} passes per batch from here")
    if settings.wpp_ramp_epochs in first_step:
        axes.axvline(first_step[settings.wpp_ramp_epochs] - 0.5, color="tab:green", linestyle="--",
                     linewidth=1.2, label=f"distillation weight reaches wpp = {settings.wpp:g}")
    axes.set_xlabel("step (batch)")
    axes.set_ylabel("total loss")
    axes.set_title("GasMono training")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    return path


def _median_scaled(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, clamp: tuple[float, float]) -> np.ndarray:
    ratio = np.median(gt[valid]) / max(float(np.median(pred[valid])), 1e-12)
    return np.clip(pred * ratio, *clamp)


def _example_rows(folder: Path, eval_set: str, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``count`` evenly spaced ``(label, image, gt)`` of an NYUv2-layout test folder."""
    names = [line.split()[1] for line in (folder / "test_files.txt").read_text(encoding="utf-8").splitlines()]
    gt_depths = np.load(folder / "gt_depths.npz")["data"]
    indices = np.unique(np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int))
    rows = []
    for index in indices:
        with Image.open(folder / "color" / f"{names[index]}.png") as image:
            rows.append((f"{eval_set} {names[index]}", np.asarray(image.convert("RGB")), gt_depths[index]))
    return rows


def plot_predictions(paths: DemoPaths, checkpoints: dict[str, Path], path: Path, num_test: int = 4,
                     num_val_frames: int = 2, device: str = "cpu") -> Path:
    """A grid with one row per image (``num_test`` views of the held-out rooms,
    then ``num_val_frames`` validation frames of the training rooms): the
    input, the depth of each checkpoint (median-scaled to the ground truth, as
    in the evaluation) and the ground truth, with one colour scale per row."""
    rows = []
    for eval_set, folder, count in ((TEST_SET, paths.test_data, num_test),
                                    (VAL_FRAMES_SET, paths.val_frames_data, num_val_frames)):
        protocol = resolve_protocol(EVAL_SPLIT, EVAL_PROTOCOLS[eval_set])
        rows += [(*row, protocol) for row in _example_rows(folder, eval_set, count)] if count else []
    estimators = {label: DepthEstimator.from_checkpoint(folder, device=device) for label, folder in checkpoints.items()}
    columns = ["input", *checkpoints, "ground truth"]
    figure = Figure(figsize=(2.6 * len(columns) + 0.6, 2.1 * len(rows)), dpi=100)
    grid = figure.subplots(len(rows), len(columns), squeeze=False)
    for row, (label, image, gt, protocol) in enumerate(rows):
        valid = protocol.valid_mask(gt)
        low, high = np.percentile(gt[valid], [1, 99])
        panels = [_median_scaled(estimator.predict(image), gt, valid, protocol.clamp)
                  for estimator in estimators.values()]
        panels.append(np.where(gt > 0, gt, np.nan))
        grid[row, 0].imshow(image)
        for column, panel in enumerate(panels, start=1):
            shown = grid[row, column].imshow(panel, cmap="magma_r", vmin=low, vmax=high)
        for column, axes in enumerate(grid[row]):
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(columns[column], fontsize=9)
        grid[row, 0].set_ylabel(label, fontsize=8)
        figure.colorbar(shown, ax=grid[row, -1], fraction=0.046, pad=0.03, label="m")
    figure.suptitle("depth (median-scaled to the ground truth), colour scale shared per row; "
                    "test: held-out rooms, val_frames: training rooms", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    return path


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def metric_changes(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Relative change of every metric, positive = better (lower errors, higher accuracies)."""
    changes = {}
    for name in DEPTH_METRIC_NAMES:
        old, new = before[name], after[name]
        if name in HIGHER_IS_BETTER:
            changes[name] = (new - old) / old if old else math.inf
        else:
            changes[name] = (old - new) / old if old else 0.0
    return changes


def markdown_metrics_table(rows: dict[str, dict[str, float]], extra: dict[str, dict[str, str]] | None = None) -> str:
    """A markdown table, one row per label, the depth metrics as columns (plus ``extra`` columns)."""
    extra = extra or {}
    extra_names = list(next(iter(extra.values()), {}))
    header = ["model", *DEPTH_METRIC_NAMES, *extra_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, metrics in rows.items():
        cells = [label, *(f"{metrics[name]:.4f}" for name in DEPTH_METRIC_NAMES),
                 *(extra.get(label, {}).get(name, "") for name in extra_names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info(settings: DemoSettings) -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": settings.device,
        "torch": torch.__version__,
    }


def _colmap_markdown(colmap: dict) -> str:
    lines = ["| scene | frames | registered | items | seconds | status |", "|---|---|---|---|---|---|"]
    for record in colmap["summary"]["sequences"]:
        status = record["status"] if record["status"] == "ok" else f"{record['status']}: {record['reason']}"
        lines.append(f"| {record['scene']} | {record['frames']} | {record['registered']} | "
                     f"{record['items_written']} | {record['seconds']:.1f} | {status} |")
    total = colmap["summary"]["total"]
    lines.append(f"| total | {total['frames']} | {total['registered']} | {total['items_written']} | "
                 f"{total['seconds']:.1f} | {total['ok']} ok, {total['failed']} failed |")
    accuracy = colmap["pose_accuracy"]
    if accuracy is not None:
        overall = accuracy["overall"]
        lines.append("")
        lines.append(f"Coarse poses vs rendered ground truth ({overall['items']} items): relative rotation error "
                     f"median {overall['rotation_deg']['median']:.3f} deg, translation direction error median "
                     f"{overall['translation_direction_deg']['median']:.2f} deg.")
    return "\n".join(lines)


EVAL_SET_TITLES = {
    TEST_SET: "held-out rooms (test set)",
    VAL_FRAMES_SET: "training rooms, validation frames (not trained on)",
}


def describe_abs_rel_change(reduction: float) -> str:
    """``"12.3% lower"`` / ``"4.5% higher"`` for a relative reduction of abs_rel (positive = lower)."""
    return f"{100 * abs(reduction):.1f}% {'lower' if reduction >= 0 else 'higher'}"


def target_verdict(results: dict) -> str:
    """One line: whether the held-out rooms' abs_rel fell by :data:`TARGET_ABS_REL_REDUCTION`."""
    reduction = results["improvement"]["abs_rel_relative_reduction"]
    reached = "reached" if reduction >= TARGET_ABS_REL_REDUCTION else "not reached"
    return (f"target (abs_rel on the held-out rooms at least {100 * TARGET_ABS_REL_REDUCTION:.0f}% lower than "
            f"untrained): {reached} ({describe_abs_rel_change(reduction)})")


def _metrics_section(evaluation: dict, eval_set: str) -> list[str]:
    entry = evaluation[eval_set]
    change = entry["relative_change"]["abs_rel"]
    return [
        f"### {EVAL_SET_TITLES[eval_set]}",
        "",
        f"{entry['num_images']} images, protocol {entry['protocol']} ({entry['protocol_description']}), "
        "per-image median scaling.",
        "",
        markdown_metrics_table({"untrained (same initialisation)": entry["untrained"],
                                "trained (GasMono, all components)": entry["trained"]}),
        "",
        f"abs_rel {describe_abs_rel_change(change)} after training ({entry['untrained']['abs_rel']:.4f} -> "
        f"{entry['trained']['abs_rel']:.4f}); a1 {entry['untrained']['a1']:.4f} -> {entry['trained']['a1']:.4f}.",
        "",
    ]


def results_markdown(results: dict) -> str:
    """``results.md`` of a demo run."""
    settings = results["settings"]
    dataset = results["dataset"]
    lines = [
        "# GasMono demo on synthetic indoor data" + (" (quick)" if results["quick"] else ""),
        "",
        f"Trained from scratch on {results['splits']['train_items']} items with coarse poses "
        f"({len(dataset['train_scenes'])} rendered sequences of {settings['frames_per_scene']} frames, "
        f"{len(dataset['low_texture_scenes'])} of them low-texture) at {settings['height']}x{settings['width']}, "
        f"batch {settings['batch_size']}, {settings['num_epochs']} epochs ({results['training']['steps']} batches) "
        f"on {settings['device']}.",
        "",
        "## Depth metrics",
        "",
        *_metrics_section(results["evaluation"], TEST_SET),
        *_metrics_section(results["evaluation"], VAL_FRAMES_SET),
        target_verdict(results) + ".",
        "",
        "![predictions](predictions.png)",
        "",
        "## Training",
        "",
        f"All components on: coarse poses with AlignNet (www {settings['www']}), residual PoseNet, iterative "
        f"self-distillation (wpp {settings['wpp']} reached after {settings['wpp_ramp_epochs']} epochs, "
        f"{settings['iiters']} passes per batch from epoch {settings['iiters_start_epoch']}). "
        f"Learning rates {settings['learning_rate']:g} (encoder) / {settings['decoder_learning_rate']:g} (rest), "
        f"smoothness {settings['disparity_smoothness']:g}, augmentation {settings['augmentation']}.",
        "",
        "![training curve](training_curve.png)",
        "",
        "`train.py` flags: `" + " ".join(results["training"]["flags"]) + "`",
        "",
        "## Coarse poses (COLMAP)",
        "",
        _colmap_markdown(results["colmap"]),
        "",
        "## Wall time per stage",
        "",
        "| stage | seconds |",
        "|---|---|",
        *(f"| {stage} | {seconds:.1f} |" for stage, seconds in results["timings_s"].items()),
        "",
        f"Machine: {results['machine']['cpu_count']} CPU cores, {results['machine']['torch_threads']} torch threads; "
        f"load average (1, 5, 15 min) at start {results['machine']['load_average_start']}, "
        f"at the end {results['machine']['load_average_end']}.",
        "",
    ]
    return "\n".join(lines)


def finite_metrics(evaluation: dict, label: str) -> dict[str, float]:
    """The depth metrics of an evaluation result as floats; a non-finite one is logged with ``label``."""
    metrics = {name: float(evaluation["metrics"][name]) for name in DEPTH_METRIC_NAMES}
    bad = [name for name, value in metrics.items() if not math.isfinite(value)]
    if bad:
        logger.warning("%s: non-finite metrics %s", label, bad)
    return metrics


def compare_evaluations(untrained: dict[str, dict], trained: dict[str, dict]) -> dict[str, dict]:
    """Per evaluation set: protocol, image count, both metric sets and their relative change."""
    comparison = {}
    for eval_set, result in trained.items():
        before = finite_metrics(untrained[eval_set], f"untrained on {eval_set}")
        after = finite_metrics(result, f"trained on {eval_set}")
        comparison[eval_set] = {
            "description": EVAL_SET_TITLES[eval_set],
            "protocol": result["protocol"],
            "protocol_description": result["protocol_definition"]["description"],
            "num_images": result["num_images"],
            "untrained": before,
            "trained": after,
            "relative_change": metric_changes(before, after),
            "scale_ratios": {"untrained": untrained[eval_set]["scale_ratios"], "trained": result["scale_ratios"]},
        }
    return comparison


def run_demo(out: str | os.PathLike, settings: DemoSettings, quick: bool = False, progress: bool = True) -> dict:
    """Run every stage and write the results under ``out``; returns the ``results.json`` content."""
    paths = DemoPaths.create(out)
    load_start = [round(value, 2) for value in os.getloadavg()]
    timer = StageTimer()
    start = time.perf_counter()

    prepared = prepare_data(paths, settings, timer, progress)
    run = train_and_evaluate(paths, settings, "gasmono", timer, evaluate_untrained=True, progress=progress)

    with timer.stage("figures and results"):
        history_path = paths.out / "training_history.json"
        atomic_write_text(json.dumps(run.history, indent=1) + "\n", history_path)
        curve = plot_training_curve(run.history, paths.out / "training_curve.png", settings)
        predictions = plot_predictions(paths, {"untrained": run.untrained_weights, "trained": run.weights},
                                       paths.out / "predictions.png", settings.num_prediction_examples,
                                       settings.num_prediction_val_frames, settings.device)
    timer.seconds["total"] = round(time.perf_counter() - start, 2)

    evaluation = compare_evaluations(run.untrained_evaluation, run.evaluation)
    colmap = prepared["colmap"]
    results = {
        "quick": quick,
        "settings": dataclasses.asdict(settings),
        "machine": {**machine_info(settings), "load_average_start": load_start,
                    "load_average_end": [round(value, 2) for value in os.getloadavg()]},
        "dataset": {**prepared["data"], "root": paths.relative(paths.data)},
        "colmap": {"summary": colmap["summary"], "pose_accuracy": colmap["pose_accuracy"],
                   "summary_file": paths.relative(paths.cpose / "summary.json")},
        "splits": prepared["splits"],
        "training": {
            "flags": [paths.relative(Path(flag)) if flag.startswith(str(paths.out)) else flag for flag in run.flags],
            "steps": run.steps,
            "final_train_loss": next((e["loss"] for e in reversed(run.history) if e["mode"] == "train"), None),
            "history_file": paths.relative(history_path),
        },
        "evaluation": evaluation,
        "improvement": {
            "abs_rel_relative_reduction": evaluation[TEST_SET]["relative_change"]["abs_rel"],
            "val_frames_abs_rel_relative_reduction": evaluation[VAL_FRAMES_SET]["relative_change"]["abs_rel"],
        },
        "checkpoints": {"untrained": paths.relative(run.untrained_weights), "trained": paths.relative(run.weights)},
        "figures": {"training_curve": paths.relative(curve), "predictions": paths.relative(predictions)},
        "timings_s": timer.seconds,
    }
    atomic_write_text(json.dumps(results, indent=2) + "\n", paths.out / "results.json")
    atomic_write_text(results_markdown(results), paths.out / "results.md")
    return results


def format_final_summary(results: dict) -> str:
    """A few lines: untrained vs trained abs_rel and a1 per evaluation set, and wall time per stage."""
    lines = ["", "== summary ==", f"{'':<22} {'abs_rel':>8} {'a1':>8}"]
    for eval_set, entry in results["evaluation"].items():
        lines.append(f"{entry['description']}:")
        for model in ("untrained", "trained"):
            lines.append(f"  {model:<20} {entry[model]['abs_rel']:>8.4f} {entry[model]['a1']:>8.4f}")
        lines.append(f"  abs_rel {describe_abs_rel_change(entry['relative_change']['abs_rel'])} after training")
    lines += [
        target_verdict(results),
        f"training: {results['training']['steps']} batches",
        "wall time: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in results["timings_s"].items()
                                  if stage != "total"),
        f"total {sec_to_hm_str(results['timings_s']['total'])} "
        f"(load average at start {results['machine']['load_average_start'][0]:.2f})",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser(description: str = "Run the whole GasMono pipeline (synthetic data, COLMAP coarse poses, "
                 "training with every component, evaluation) on the CPU and write results, figures and "
                 "checkpoints under --out.", default_out: str = "demo_output") -> argparse.ArgumentParser:
    parser = OneLineErrorParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(default_out), help="output folder (everything goes there)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and 2 short epochs: every stage in a few minutes (a smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, COLMAP, the split and training")
    parser.add_argument("--device", type=str, default="cpu", help="device for training and evaluation")
    parser.add_argument("--no_progress", action="store_true",
                        help="hide the progress bars of rendering, COLMAP and evaluation (training keeps its "
                             "bar per epoch)")
    return parser


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    settings = quick_settings(args.seed) if args.quick else full_settings(args.seed)
    settings.device = args.device
    return settings


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging()
    settings = settings_from_args(args)
    print(f"GasMono demo{' (quick)' if args.quick else ''} -> {args.out.resolve()}; "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}")
    results = run_demo(args.out, settings, quick=args.quick, progress=not args.no_progress)
    print(format_final_summary(results))
    print(f"results: {args.out / 'results.md'}, {args.out / 'results.json'}, "
          f"{args.out / 'training_curve.png'}, {args.out / 'predictions.png'}")


if __name__ == "__main__":
    main()
