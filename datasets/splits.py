"""Split files from what is on disk: items whose neighbours exist, frame-level hold-out.

Split lines follow the release: ``<scene> <frame:04d> l`` (the side letter is
ignored for monocular data). An item ``(scene, i)`` needs the frames ``i - 1``
and ``i + 1`` of the same scene, stored as ``<data_path>/<scene>/<frame:06d><ext>``.
"""
from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Callable, Iterable

from datasets.mono_dataset import load_split, parse_split_line
from utils import GasMonoError, atomic_write_text, require_path

logger = logging.getLogger(__name__)

_FRAME_NAME = re.compile(r"^(\d+)$")
SPLIT_FILE_NAMES = ("train_files.txt", "val_files.txt")


def list_scene_frames(scene_dir: str | os.PathLike, img_ext: str = ".jpg") -> list[int]:
    """Sorted frame numbers of the images ``<scene_dir>/<digits><img_ext>``."""
    frames = []
    for path in Path(scene_dir).iterdir():
        if path.suffix == img_ext and path.is_file():
            match = _FRAME_NAME.match(path.stem)
            if match:
                frames.append(int(match.group(1)))
    return sorted(frames)


def find_sequence_items(data_path: str | os.PathLike, img_ext: str = ".jpg") -> list[tuple[str, int]]:
    """All ``(scene, frame)`` items under ``data_path`` whose neighbours ``frame - 1`` and
    ``frame + 1`` are on disk, sorted by scene and frame."""
    data_path = require_path(data_path, "data path")
    if not data_path.is_dir():
        raise GasMonoError(f"data path is not a folder: {data_path}")
    items = []
    for scene_dir in sorted(path for path in data_path.iterdir() if path.is_dir()):
        frames = set(list_scene_frames(scene_dir, img_ext))
        items.extend((scene_dir.name, frame) for frame in sorted(frames) if frame - 1 in frames and frame + 1 in frames)
    logger.info("found %d items with both neighbours under %s", len(items), data_path)
    return items


def format_split_line(scene: str, frame: int) -> str:
    """One split line, ``<scene> <frame:04d> l``."""
    return f"{scene} {frame:04d} l"


def write_split_files(
    items: Iterable[tuple[str, int]],
    out_dir: str | os.PathLike,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``train_files.txt`` and ``val_files.txt`` into ``out_dir``.

    The hold-out is frame-level, as in the release: a seeded shuffle of all
    items, of which ``round(val_fraction * N)`` go to validation (at least one
    when ``val_fraction > 0`` and there are two items or more). Both files list
    their items sorted by scene and frame.

    Returns:
        ``(train_path, val_path)``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise GasMonoError(f"val_fraction must be in [0, 1), got {val_fraction}")
    items = sorted(set(items))
    if not items:
        raise GasMonoError("no items to split (no frame has both neighbours on disk)")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    num_val = round(val_fraction * len(items))
    if val_fraction > 0 and len(items) >= 2:
        num_val = max(num_val, 1)
    val_ids = set(order[:num_val])
    train = [items[i] for i in range(len(items)) if i not in val_ids]
    val = [items[i] for i in range(len(items)) if i in val_ids]
    out_dir = Path(out_dir)
    train_path, val_path = out_dir / "train_files.txt", out_dir / "val_files.txt"
    atomic_write_text("".join(format_split_line(*item) + "\n" for item in train), train_path)
    atomic_write_text("".join(format_split_line(*item) + "\n" for item in val), val_path)
    logger.info("wrote %d training and %d validation items to %s", len(train), len(val), out_dir)
    return train_path, val_path


def split_list_paths(path: str | os.PathLike) -> list[Path]:
    """A split file itself, or the ``train_files.txt`` / ``val_files.txt`` that a folder holds."""
    path = require_path(path, "split list")
    if not path.is_dir():
        return [path]
    found = [path / name for name in SPLIT_FILE_NAMES if (path / name).is_file()]
    if not found:
        raise GasMonoError(f"{path} holds neither {' nor '.join(SPLIT_FILE_NAMES)}")
    return found


def read_split_items(
    list_path: str | os.PathLike, scene_of: Callable[[str, str], str] | None = None
) -> list[tuple[str, str, int]]:
    """``(line, scene, frame)`` for every line of a split file, in order (validated).

    ``scene_of(folder, side)`` names the scene of a line's coarse poses (e.g.
    ``KittiRawDataset.coarse_pose_scene``); by default the line's folder.
    """
    items = []
    for line in load_split(list_path):
        folder, frame, side = parse_split_line(line, str(list_path))
        items.append((line, folder if scene_of is None else scene_of(folder, side), frame))
    return items
