"""The data stages of the demo: synthetic sequences, COLMAP coarse poses, split files, frame test sets.

Everything is written under :class:`experiments.settings.DemoPaths`; a second
run into the same folder reuses the rendered data and the COLMAP sequences
that were finished with the same settings.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from coarse_poses.colmap import SequenceResult
from coarse_poses.evaluation import evaluate_coarse_poses, format_pose_table, load_gt_poses
from coarse_poses.pose_files import list_pose_items
from coarse_poses.runner import available_cores, make_coarse_poses
from coarse_poses.summary import format_summary_table, summarize
from datasets.eval_base import read_depth_image
from datasets.nyu_dataset import DEPTH_PNG_SCALE, parse_split_line
from datasets.splits import list_scene_frames, write_split_files
from experiments.reproducibility import colmap_processes
from experiments.settings import DemoPaths, DemoSettings, StageTimer
from synthetic.dataset import generate_dataset
from synthetic.rooms import LOW_TEXTURE
from utils import GasMonoError, atomic_write_text

logger = logging.getLogger(__name__)


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
            logger.debug("reusing the synthetic data in %s", paths.data)
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
        num_workers=min(settings.render_workers, available_cores()),
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
        num_workers=min(settings.render_workers, available_cores()),
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
        jobs=colmap_processes(settings),
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
    """The data stages: render, coarse poses (their tables logged), split files and the frame test set."""
    with timer.stage("synthetic data"):
        data = generate_data(paths, settings, progress)
        state = "reused" if data["reused"] else "rendered"
        logger.info(f"{state} {len(data['train_scenes'])} training sequences x {settings.frames_per_scene} frames "
                    f"(every {settings.frame_stride} rendered frames, "
                    f"{settings.render_width}x{settings.render_height}; low-texture: "
                    f"{', '.join(data['low_texture_scenes']) or 'none'}) and {data['test_images']} test views of "
                    f"held-out rooms ({settings.test_width}x{settings.test_height}) in {paths.data}")
    with timer.stage("coarse poses (COLMAP)"):
        colmap = compute_coarse_poses(paths, settings, progress)
        logger.info(format_summary_table(colmap["results"]))
        if colmap["pose_accuracy"] is not None:
            logger.info("\ncoarse poses vs rendered ground truth")
            logger.info(format_pose_table(colmap["pose_accuracy"]))
    with timer.stage("split files"):
        splits = write_splits(paths, settings, colmap["results"])
        logger.info(f"{splits['train_items']} training and {splits['val_items']} validation items with coarse poses "
                    f"(scenes {', '.join(splits['scenes'])}) in {paths.splits}")
        val_items = [parse_split_line(line, "val_files.txt")[:2]
                     for line in (paths.splits / "val_files.txt").read_text(encoding="utf-8").splitlines()]
        write_frame_test_set(paths, val_items, paths.val_frames_data)
    return {"data": data, "colmap": colmap, "splits": splits}
