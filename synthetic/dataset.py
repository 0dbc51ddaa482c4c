"""The synthetic data set writer: a deterministic plan of scenes, rendered (in parallel) into the NYUv2 layouts.

Output layout (:func:`generate_dataset`)::

    <out>/train/<scene>/<frame:06d>.jpg        RGB, JPEG quality 95, frames from 0
    <out>/train/<scene>/cam.txt                3x3 pixel intrinsics (np.savetxt)
    <out>/train/<scene>/depth/<frame:06d>.png  uint16 depth in millimetres
    <out>/train/<scene>/poses.txt              per frame 16 floats: row-major 4x4 world-to-camera E_i
    <out>/test/color/<i:04d>.png               RGB test images, i = 1..N
    <out>/test/gt_depths.npz                   key "data": float32 N x H x W, metres
    <out>/test/test_files.txt                  lines "color <i:04d> l"
    <out>/scenes.json                          per scene: split, kind, room size, seed, frames
"""
from __future__ import annotations

import json
import logging
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from synthetic.renderer import render
from synthetic.rooms import LOW_TEXTURE, TEXTURED, make_room
from synthetic.trajectories import make_trajectory, random_view
from utils import GasMonoError, atomic_write_text, nyu_pixel_intrinsics

logger = logging.getLogger(__name__)

_JPEG_QUALITY = 95


@dataclass
class SceneSpec:
    """What to render for one scene: a training sequence or a set of test views."""

    name: str
    split: str  # "train" or "test"
    kind: str
    seed: int
    frames: int
    test_indices: list[int] = field(default_factory=list)


def _derived_seed(seed: int, stream: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def plan_scenes(num_scenes: int, num_test: int, num_low_texture: int, seed: int, frames_per_scene: int,
                test_views_per_scene: int = 5) -> list[SceneSpec]:
    """Deterministic plan of training and (held-out) test scenes.

    ``num_low_texture`` of the training scenes (chosen by ``seed``) use plain
    paint everywhere; test scenes are separate rooms, every fourth one low-texture.
    """
    if num_scenes < 0 or num_test < 0 or frames_per_scene < 3:
        raise GasMonoError("need num_scenes >= 0, num_test >= 0 and frames_per_scene >= 3")
    if not 0 <= num_low_texture <= num_scenes:
        raise GasMonoError(f"num_low_texture must be in 0..{num_scenes}, got {num_low_texture}")
    rng = np.random.default_rng(seed)
    low_texture = set(rng.choice(num_scenes, num_low_texture, replace=False).tolist()) if num_scenes else set()
    specs = [
        SceneSpec(f"scene_{index:04d}", "train", LOW_TEXTURE if index in low_texture else TEXTURED,
                  _derived_seed(seed, 0, index), frames_per_scene)
        for index in range(num_scenes)
    ]
    test_ids = list(range(1, num_test + 1))
    for index, start in enumerate(range(0, num_test, test_views_per_scene)):
        chunk = test_ids[start:start + test_views_per_scene]
        kind = LOW_TEXTURE if index % 4 == 3 else TEXTURED
        specs.append(SceneSpec(f"test_{index:04d}", "test", kind, _derived_seed(seed, 1, index), len(chunk), chunk))
    return specs


def render_scene(spec: SceneSpec, out_dir: Path, height: int, width: int) -> dict[str, np.ndarray]:
    """Render and write one scene.

    Returns:
        ``{"room_size": (Lx, Ly, Lz)}``, plus ``"depths"`` (``N x H x W``) for a test scene.
    """
    room = make_room(spec.seed, spec.kind)
    rng = np.random.default_rng([spec.seed, 7])
    intrinsics = nyu_pixel_intrinsics(height, width)
    if spec.split == "train":
        scene_dir = out_dir / "train" / spec.name
        (scene_dir / "depth").mkdir(parents=True, exist_ok=True)
        poses = make_trajectory(room, spec.frames, rng)
        for frame, extrinsics in enumerate(poses):
            rgb, depth = render(room, extrinsics, intrinsics, height, width)
            Image.fromarray(rgb).save(scene_dir / f"{frame:06d}.jpg", quality=_JPEG_QUALITY)
            depth_mm = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
            cv2.imwrite(str(scene_dir / "depth" / f"{frame:06d}.png"), depth_mm)
        np.savetxt(scene_dir / "cam.txt", intrinsics, fmt="%.6f")
        np.savetxt(scene_dir / "poses.txt", poses.reshape(len(poses), 16), fmt="%.9g")
        return {"room_size": room.size}
    color_dir = out_dir / "test" / "color"
    color_dir.mkdir(parents=True, exist_ok=True)
    depths = []
    for index in spec.test_indices:
        rgb, depth = render(room, random_view(room, rng), intrinsics, height, width)
        Image.fromarray(rgb).save(color_dir / f"{index:04d}.png")
        depths.append(depth)
    return {"room_size": room.size, "depths": np.stack(depths)}


def _render_task(args: tuple[SceneSpec, Path, int, int]) -> tuple[SceneSpec, dict[str, np.ndarray]]:
    spec, out_dir, height, width = args
    return spec, render_scene(spec, out_dir, height, width)


def generate_dataset(
    out_dir: str | Path,
    num_scenes: int = 8,
    frames_per_scene: int = 40,
    num_test: int = 20,
    height: int = 480,
    width: int = 640,
    num_low_texture: int = 2,
    seed: int = 0,
    num_workers: int = 1,
    progress: bool = True,
) -> dict:
    """Render a synthetic indoor data set into ``out_dir`` (layout in the module docstring).

    Scenes are independent and deterministic from ``seed``, so ``num_workers``
    processes render them in parallel with identical results.

    Returns:
        The content written to ``scenes.json``.
    """
    if height < 8 or width < 8:
        raise GasMonoError(f"image size too small: {height} x {width}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = plan_scenes(num_scenes, num_test, num_low_texture, seed, frames_per_scene)
    tasks = [(spec, out_dir, height, width) for spec in specs]
    total_frames = sum(spec.frames for spec in specs)
    test_depths: dict[int, np.ndarray] = {}
    room_sizes: dict[str, list[float]] = {}
    with tqdm(total=total_frames, unit="frame", desc="rendering", disable=not progress) as bar:
        if num_workers > 1:
            with multiprocessing.get_context("fork").Pool(num_workers) as pool:
                results = list(_track(pool.imap_unordered(_render_task, tasks), bar))
        else:
            results = list(_track(map(_render_task, tasks), bar))
    for spec, result in results:
        room_sizes[spec.name] = [round(float(value), 4) for value in result["room_size"]]
        for index, depth in zip(spec.test_indices, result.get("depths", [])):
            test_depths[index] = depth
    if num_test:
        test_dir = out_dir / "test"
        gt = np.stack([test_depths[index] for index in range(1, num_test + 1)]).astype(np.float32)
        np.savez_compressed(test_dir / "gt_depths.npz", data=gt)
        test_list = "".join(f"color {index:04d} l\n" for index in range(1, num_test + 1))
        atomic_write_text(test_list, test_dir / "test_files.txt")
    summary = {
        "seed": seed,
        "height": height,
        "width": width,
        "intrinsics": nyu_pixel_intrinsics(height, width).tolist(),
        "scenes": {
            spec.name: {
                "split": spec.split,
                "kind": spec.kind,
                "room_size": room_sizes[spec.name],
                "seed": spec.seed,
                "frames": spec.frames,
                **({"test_indices": spec.test_indices} if spec.split == "test" else {}),
            }
            for spec in specs
        },
    }
    atomic_write_text(json.dumps(summary, indent=2) + "\n", out_dir / "scenes.json")
    logger.info("rendered %d scenes and %d test images into %s", num_scenes, num_test, out_dir)
    return summary


def _track(results: Iterable[tuple[SceneSpec, dict]], bar: tqdm) -> Iterable[tuple[SceneSpec, dict]]:
    for spec, result in results:
        bar.update(spec.frames)
        yield spec, result
