"""Your own videos and image folders as training sequences (``tools/prepare_sequences.py``).

Each source becomes one sequence of :class:`datasets.folder_dataset.FolderDataset`::

    <out>/<name>/<frame:06d>.jpg     frames, renumbered from 0 (every ``stride``-th, at most ``max_frames``)
    <out>/<name>/frames.txt          one line per frame: '<frame:06d>.jpg <source>', the source being the
                                     video's frame number or the image's original file name
    <out>/<name>/cam.txt             3x3 pixel intrinsics at the written size (when known)

A source is a video file OpenCV can read (``<name>`` = its stem) or a folder
of images (``<name>`` = the folder's name), taken in natural order of their
file names (``img2`` before ``img10``); the frames of a sequence must share one
size. Frames are resized to ``width x height`` when given (one of them keeps
the aspect ratio). The intrinsics come from a ``cam.txt`` of the source's
camera (3x3 pixels at the source's size, scaled to the written size), from a
horizontal field of view (pinhole, square pixels, centred principal point),
or, when unknown, are left to COLMAP (``tools/make_coarse_poses.py --dataset
folder`` estimates them and writes ``cam.txt``).
"""
from __future__ import annotations

import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from coarse_poses.sequences import INTRINSICS_FILE, read_intrinsics_file
from utils import GasMonoError, atomic_write_text

__all__ = [
    "VIDEO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "FRAME_MAP_FILE",
    "MIN_FRAMES",
    "PreparedSequence",
    "natural_key",
    "fov_intrinsics",
    "scale_intrinsics",
    "output_size",
    "prepare_sequence",
    "prepare_sequences",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
"""The files read as images and as videos (also by ``predict.py``)."""
FRAME_MAP_FILE = "frames.txt"
MIN_FRAMES = 3
"""A training item needs a frame and both its neighbours."""
JPEG_QUALITY = 95


@dataclass
class PreparedSequence:
    """What :func:`prepare_sequence` wrote: ``frames`` frames of ``size``
    (``(width, height)``) into ``folder``; ``intrinsics`` None when unknown."""

    name: str
    folder: Path
    source: Path
    frames: int
    size: tuple[int, int]
    intrinsics: np.ndarray | None


def natural_key(name: str) -> tuple:
    """Sort key reading runs of digits as numbers (``img2`` before ``img10``)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def fov_intrinsics(fov_degrees: float, width: int, height: int) -> np.ndarray:
    """``3 x 3`` pixel K of a pinhole with this horizontal field of view, square
    pixels and the principal point at the image centre."""
    if not 0.0 < fov_degrees < 180.0:
        raise GasMonoError(f"the field of view must be between 0 and 180 degrees, got {fov_degrees}")
    focal = 0.5 * width / math.tan(math.radians(fov_degrees) / 2.0)
    return np.array([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])


def scale_intrinsics(intrinsics: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """K of ``from_size`` (``(width, height)``) images for the same images resized to ``to_size``."""
    scaled = np.asarray(intrinsics, dtype=np.float64).copy()
    scaled[0] *= to_size[0] / from_size[0]
    scaled[1] *= to_size[1] / from_size[1]
    return scaled


def output_size(size: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """The written ``(width, height)`` of frames of ``size``: both given, one
    given (the other keeps the aspect ratio, rounded), or ``size`` itself."""
    source_width, source_height = size
    if width is None and height is None:
        return size
    if width is None:
        width = max(1, round(source_width * height / source_height))
    if height is None:
        height = max(1, round(source_height * width / source_width))
    return width, height


def _video_frames(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """``(frame number, H x W x 3 RGB uint8)`` of every frame of a video."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise GasMonoError(f"cannot open video {path} with OpenCV (not a video, or a codec OpenCV lacks)")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield str(index), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def _image_files(folder: Path) -> list[Path]:
    files = [path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda path: natural_key(path.name))


def _image_frames(files: Sequence[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """``(file name, H x W x 3 RGB uint8)`` of each image file."""
    for path in files:
        try:
            with Image.open(path) as image:
                yield path.name, np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise GasMonoError(f"cannot read image {path}: {error}") from None


def _source_frames(source: Path) -> tuple[str, Iterator[tuple[str, np.ndarray]], int | None]:
    """``(sequence name, frames, number of frames when known)`` of a video or an image folder."""
    if source.is_dir():
        files = _image_files(source)
        if not files:
            raise GasMonoError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}")
        return source.name, _image_frames(files), len(files)
    if not source.is_file():
        raise GasMonoError(f"input not found: {source}")
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise GasMonoError(f"{source}: not a folder of images or a video ({', '.join(VIDEO_SUFFIXES)})")
    return source.stem, _video_frames(source), None


def _clear_sequence_folder(folder: Path, overwrite: bool) -> None:
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise GasMonoError(f"{folder} is not empty (pass --overwrite to replace its frames)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def prepare_sequence(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    stride: int = 1,
    max_frames: int | None = None,
    width: int | None = None,
    height: int | None = None,
    cam_file: str | os.PathLike | None = None,
    fov: float | None = None,
    overwrite: bool = False,
) -> PreparedSequence:
    """Write one video or image folder as a sequence under ``out_dir`` (see the module docstring).

    Args:
        source: a video file or a folder of images.
        out_dir: the data folder; the sequence goes to ``<out_dir>/<name>``.
        stride: keep every ``stride``-th frame.
        max_frames: stop after this many written frames.
        width, height: written size (see :func:`output_size`).
        cam_file: ``cam.txt`` of the source's camera (3x3 pixels at the source's size).
        fov: horizontal field of view in degrees (instead of ``cam_file``).
        overwrite: replace the frames of an existing sequence folder.

    Raises:
        GasMonoError: a missing or unreadable source, frames of different
            sizes, fewer than three frames, bad options or intrinsics.
    """
    if stride < 1:
        raise GasMonoError(f"--stride must be at least 1, got {stride}")
    if max_frames is not None and max_frames < MIN_FRAMES:
        raise GasMonoError(f"--max_frames must be at least {MIN_FRAMES} (a training item needs 3 frames)")
    if any(side is not None and side < 8 for side in (width, height)):
        raise GasMonoError(f"--width and --height must be at least 8 pixels, got {width} x {height}")
    if cam_file is not None and fov is not None:
        raise GasMonoError("give either --cam or --fov, not both")
    source = Path(source)
    source_intrinsics = read_intrinsics_file(cam_file) if cam_file is not None else None
    name, frames, count = _source_frames(source)
    if count is not None and len(range(0, count, stride)) < MIN_FRAMES:
        raise GasMonoError(f"{source}: {count} image(s), {len(range(0, count, stride))} with --stride {stride}; "
                           f"a training item needs {MIN_FRAMES} consecutive frames")
    folder = Path(out_dir) / name
    _clear_sequence_folder(folder, overwrite)

    written: list[str] = []
    source_size = size = None
    for index, (label, rgb) in enumerate(frames):
        if index % stride:
            continue
        frame_size = (rgb.shape[1], rgb.shape[0])
        if source_size is None:
            source_size, size = frame_size, output_size(frame_size, width, height)
        elif frame_size != source_size:
            raise GasMonoError(f"{source}: frame {label} is {frame_size[0]}x{frame_size[1]}, the first one "
                               f"{source_size[0]}x{source_size[1]}; the frames of a sequence must share one size")
        if size != frame_size:
            shrink = size[0] < frame_size[0]
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        file_name = f"{len(written):06d}.jpg"
        Image.fromarray(rgb).save(folder / file_name, quality=JPEG_QUALITY)
        written.append(f"{file_name} {label}")
        if max_frames is not None and len(written) >= max_frames:
            break
    if len(written) < MIN_FRAMES:
        shutil.rmtree(folder, ignore_errors=True)
        raise GasMonoError(f"{source}: only {len(written)} frame(s) with --stride {stride}; a training item needs "
                           f"{MIN_FRAMES} consecutive frames")

    atomic_write_text(f"# <frame> <source frame or file> of {source}\n" + "\n".join(written) + "\n",
                      folder / FRAME_MAP_FILE)
    intrinsics = None
    if source_intrinsics is not None:
        intrinsics = scale_intrinsics(source_intrinsics, source_size, size)
    elif fov is not None:
        intrinsics = fov_intrinsics(fov, *size)
    if intrinsics is not None:
        np.savetxt(folder / INTRINSICS_FILE, intrinsics, fmt="%.6f")
    logger.info("%s: %d frames of %dx%d into %s", source, len(written), size[0], size[1], folder)
    return PreparedSequence(name, folder, source, len(written), size, intrinsics)


def prepare_sequences(sources: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                      **settings) -> list[PreparedSequence]:
    """:func:`prepare_sequence` on each source (``settings`` are its keyword
    arguments); two sources of the same name are refused before anything is written."""
    names: dict[str, Path] = {}
    for source in map(Path, sources):
        name = source.name if source.is_dir() else source.stem
        if name in names:
            raise GasMonoError(f"{names[name]} and {source} would both be written to {Path(out_dir) / name}; "
                               "rename one of them")
        names[name] = source
    return [prepare_sequence(source, out_dir, **settings) for source in sources]
