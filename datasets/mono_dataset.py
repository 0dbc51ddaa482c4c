"""Monocular training data in the Monodepth2 input-dict convention.

:class:`MonoDataset` turns one split line ``<folder> <frame> [<side>]`` into the
dictionary the trainer consumes (keys as in Monodepth2). Frame ids are the
integer offsets of temporal neighbours (``0`` the target, ``-1`` / ``1`` its
neighbours) and, for data sets with two cameras (``has_stereo``), the string
``"s"`` (:data:`STEREO_FRAME`): the other camera's image of the target frame,
as in Monodepth2, where ``--use_stereo`` appends ``"s"`` to the frame ids
(``training.data.dataset_frame_ids``; ``--frame_ids`` stays integers).

* ``("color", f, s)``: frame ``f`` at scale ``s < num_scales``,
  ``3 x H/2^s x W/2^s`` float32 in [0, 1], not augmented;
* ``("color_aug", f, s)``: the same after colour augmentation. Only scale 0
  feeds the networks, so only scale 0 is augmented; the other scales are the
  ``("color", f, s)`` tensors themselves (and so is scale 0 when the item is
  not augmented);
* ``("K", s)``, ``("inv_K", s)``: ``4 x 4`` float32 intrinsics of scale ``s``
  (the normalised intrinsics with row 0 times ``W // 2^s`` and row 1 times
  ``H // 2^s``) and their pseudo-inverse;
* ``("pose_gt", f)`` for ``f`` in ``{-1, 1}``: ``4 x 4`` float32 coarse pose
  ``T_{0->f}`` (target camera to source camera), when ``cpose_dir`` is given
  (files in the format of :mod:`coarse_poses.pose_files`);
* ``"depth_gt"``: ``1 x H_gt x W_gt`` float32 metres, when requested and the
  data set has depth (0 where there is none);
* ``"stereo_T"``: ``4 x 4`` float32, when ``"s"`` is requested: the transform
  from the target camera to the other one, the identity with
  ``T[0, 3] = -0.1`` for a left (``l``) target and ``+0.1`` for a right one
  (Monodepth2's baseline convention, no flipping).

The trainer reads scale 0 only (every decoder scale is compared with the
full-resolution images), so it builds items with ``num_scales=1``: the keys
of scales 1-3 (images and intrinsics) are not made, which saves their
resizing and copying; ``num_scales=4`` gives the release's full dict. The
pyramid is built level by level with PIL's LANCZOS filter (full size ->
scale 0 -> scale 1 -> ...), as in the release, so scale 0 is the same
either way; ``resize_filter="area"`` uses
OpenCV's area averaging instead (also antialiased, several times faster, not
bit-identical to the release's images). Images are decoded at full size, as
the release decodes them. Horizontal flipping is not offered: the release fixes
it off, NYUv2's principal point is off-centre and the coarse poses would have
to be mirrored.

Subclasses override only :meth:`get_image_path` / :meth:`get_color`,
:meth:`check_depth` / :meth:`get_depth`, :meth:`get_intrinsics`,
:meth:`coarse_pose_scene` (where an item's coarse poses are) and, for
``tools/make_coarse_poses.py``, :meth:`image_sequences`; class attributes
say whether the data set has a second camera (``has_stereo``) and how
validation scores its depth (``validation_protocol``). A new data set is one
such class and one line in :mod:`datasets.registry`.

Errors in the data are one-line :class:`GasMonoError` naming the file and
the split line: a malformed split line, a missing frame or coarse-pose file,
a malformed coarse-pose file (shape, NaN or infinity) and unusable
intrinsics (:mod:`datasets.intrinsics`) when the data set is built; an
unreadable image or depth map when its item is loaded (also inside a
DataLoader worker, see :class:`utils.GasMonoError`). Duplicate split lines
are a warning (an error with ``strict_splits``).
"""
from __future__ import annotations

import logging
import os
import random
import types
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils import data

from coarse_poses.pose_files import SOURCE_FRAME_SLOTS, coarse_pose_path, read_coarse_poses
from coarse_poses.sequences import ImageSequence, find_sequences
from datasets.augmentation import (
    AUGMENTATIONS,
    StrongAugmentation,
    require_release_albumentations,
    sample_color_jitter,
)
from utils import GasMonoError, read_text, require_path

logger = logging.getLogger(__name__)

RESIZE_FILTERS = ("lanczos", "area")
_SIDES = ("l", "r")
OTHER_SIDE = {"l": "r", "r": "l"}
STEREO_FRAME = "s"
"""The frame id of the other camera's image of the target frame."""
STEREO_BASELINE = 0.1
"""``|stereo_T[0, 3]|``: Monodepth2's (and the release's) stereo baseline, in the units of the depth."""
FrameId = int | str


def parse_split_line(line: str, where: str) -> tuple[str, int, str]:
    """Parse ``<folder> <frame> [<side>]``; ``where`` (e.g. ``"splits/x.txt line 3"``)
    names the line in the error raised for a malformed one."""
    parts = line.split()
    if len(parts) not in (2, 3):
        raise GasMonoError(f"{where}: expected '<folder> <frame> <side>', got {line.strip()!r}")
    folder, frame = parts[0], parts[1]
    side = parts[2] if len(parts) == 3 else "l"
    if not frame.isdigit():
        raise GasMonoError(f"{where}: frame {frame!r} is not a non-negative integer in {line.strip()!r}")
    if side not in _SIDES:
        raise GasMonoError(f"{where}: side {side!r} is not one of {_SIDES} in {line.strip()!r}")
    return folder, int(frame), side


def read_split_lines(path: str | os.PathLike, strict: bool = False) -> list[tuple[int, str]]:
    """Read a split file and validate every line (``<folder> <frame> <side>``).

    Lines naming the same item twice (the same folder, frame and side, however
    written) are reported once, with their number and the first of them: a
    warning, or with ``strict`` an error. They are kept.

    Returns:
        ``(line number, line)`` of every non-blank line, numbered from 1 as in
        the file.

    Raises:
        GasMonoError: a missing, empty or non-UTF-8 file, a malformed line
            (naming the file and the line number) or, with ``strict``, a
            duplicate line.
    """
    path = require_path(path, "split file")
    lines = []
    first_seen: dict[tuple[str, int, str], int] = {}
    duplicates = []
    for number, line in enumerate(read_text(path, "split file").splitlines(), 1):
        if line.strip():
            item = parse_split_line(line, f"{path} line {number}")
            if item in first_seen:
                duplicates.append((number, first_seen[item], line.strip()))
            first_seen.setdefault(item, number)
            lines.append((number, line))
    if not lines:
        raise GasMonoError(f"split file is empty: {path}")
    if duplicates:
        number, original, line = duplicates[0]
        message = (f"split file {path}: {len(duplicates)} duplicate line(s), the first at line {number} "
                   f"({line!r} repeats line {original})")
        if strict:
            raise GasMonoError(f"{message} (--strict_splits)")
        logger.warning("%s; each is read as often as it is listed", message)
    return lines


def load_split(path: str | os.PathLike) -> list[str]:
    """The non-blank lines of a split file, validated (see :func:`read_split_lines`)."""
    return [line for _, line in read_split_lines(path)]


def pil_loader(path: str | os.PathLike) -> Image.Image:
    """Open an RGB image, decoded at full size.

    Raises:
        GasMonoError: naming the file when it is not an image, is truncated
            or otherwise cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            if image.mode != "RGB":
                return image.convert("RGB")
            image.load()
            return image
    except UnidentifiedImageError:
        raise GasMonoError(f"cannot read image {path}: not an image file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise GasMonoError(f"cannot read image {path}: {error}") from None


def to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """``H x W x 3`` uint8 image -> ``3 x H x W`` float32 tensor in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    out = np.empty(array.shape, np.float32)
    np.divide(array, np.float32(255.0), out=out)
    return torch.from_numpy(out)


class MonoDataset(data.Dataset):
    """Base class of the monocular training data sets (see the module docstring).

    Args:
        data_path: root folder of the frames.
        filenames: split lines ``<folder> <frame> [<side>]``, or the path of a split file.
        height, width: size ``H x W`` of scale 0.
        frame_idxs: frame ids to load, target first (e.g. ``[0, -1, 1]``, or
            ``[0, -1, 1, "s"]`` with the other camera; see the module docstring).
        num_scales: number of pyramid levels (the trainer reads scale 0 only and asks for 1).
        is_train: enables colour augmentation (each item with probability 0.5).
        img_ext: image file extension.
        cpose_dir: folder of coarse poses; adds ``("pose_gt", -1)`` and ``("pose_gt", 1)``
            (for the temporal frames requested; ``"s"`` has none).
        augmentation: ``"strong"``, ``"colorjitter"`` or ``"none"`` (see :mod:`datasets.augmentation`).
        load_depth: add ``"depth_gt"`` when the data set has depth.
        shared_augmentation: with ``"strong"``, one draw for all frames of an
            item instead of the release's independent per-frame draws.
        resize_filter: ``"lanczos"`` (PIL, the release's) or ``"area"`` (OpenCV).
        strict_splits: a split file with duplicate lines is an error, not a warning.
    """

    has_stereo: bool = False
    """Whether items have the other camera's image (frame id ``"s"``)."""
    validation_protocol: str = "depth_range"
    """How training validation scores ``depth_gt`` (see ``evaluation.protocols.validation_protocol``)."""
    unknown_intrinsics: str = "nyu"
    """What ``tools/make_coarse_poses.py`` uses for a sequence without ``cam.txt`` (see
    :mod:`coarse_poses.sequences`)."""

    def __init__(
        self,
        data_path: str | os.PathLike,
        filenames: Sequence[str] | str | os.PathLike,
        height: int,
        width: int,
        frame_idxs: Sequence[FrameId],
        num_scales: int,
        is_train: bool = False,
        img_ext: str = ".jpg",
        cpose_dir: str | os.PathLike | None = None,
        augmentation: str = "strong",
        load_depth: bool = False,
        shared_augmentation: bool = False,
        resize_filter: str = "lanczos",
        strict_splits: bool = False,
    ) -> None:
        super().__init__()
        self.data_path = require_path(data_path, "data path")
        if resize_filter not in RESIZE_FILTERS:
            raise GasMonoError(f"unknown resize filter {resize_filter!r} (choose from {', '.join(RESIZE_FILTERS)})")
        self.resize_filter = resize_filter
        if augmentation not in AUGMENTATIONS:
            raise GasMonoError(f"unknown augmentation {augmentation!r} (choose from {', '.join(AUGMENTATIONS)})")
        if height % 2 ** (num_scales - 1) or width % 2 ** (num_scales - 1):
            raise GasMonoError(f"height and width must be divisible by {2 ** (num_scales - 1)} for {num_scales} scales")
        self.height = height
        self.width = width
        self.frame_idxs = list(frame_idxs)
        self.num_scales = num_scales
        self.is_train = is_train
        self.img_ext = img_ext
        self.augmentation = augmentation
        if is_train and augmentation == "strong":
            require_release_albumentations()
        self.shared_augmentation = shared_augmentation
        self._check_frame_ids()
        self.cpose_dir = None if cpose_dir is None else require_path(cpose_dir, "coarse pose folder")
        temporal = {frame_id for frame_id in self.frame_idxs if frame_id != STEREO_FRAME}
        if self.cpose_dir is not None and not temporal <= {0, *SOURCE_FRAME_SLOTS}:
            raise GasMonoError(f"coarse poses exist for frames -1 and 1 only, not frame_idxs {self.frame_idxs}")

        if isinstance(filenames, (str, os.PathLike)):
            split_name = str(filenames)
            numbered = read_split_lines(filenames, strict_splits)
        else:
            split_name = "split list"
            numbered = list(enumerate(filenames, 1))
        if not numbered:
            raise GasMonoError(f"{split_name} is empty")
        self.filenames = [line for _, line in numbered]
        # where each item comes from, for error messages: "<split file> line <n>: '<line>'"
        self.item_sources = [f"{split_name} line {number}: {line.strip()!r}" for number, line in numbered]
        self.items = [parse_split_line(line, f"{split_name} line {number}") for number, line in numbered]

        self._listings: dict[Path, frozenset[str]] = {}
        self._check_files_exist()
        self.load_depth = load_depth and self.check_depth()
        if load_depth and not self.load_depth:
            logger.info("no ground-truth depth found under %s; items carry no depth_gt", self.data_path)
        self._strong: StrongAugmentation | None = None
        self._intrinsics: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        self._augmentation_key: tuple[int, int] | None = None
        for folder in dict.fromkeys(folder for folder, _, _ in self.items):
            self.scaled_intrinsics(folder)  # reads and checks every folder's intrinsics now

    def _check_frame_ids(self) -> None:
        for frame_id in self.frame_idxs:
            if frame_id != STEREO_FRAME and (isinstance(frame_id, bool) or not isinstance(frame_id, int)):
                raise GasMonoError(f"frame ids are integer offsets or {STEREO_FRAME!r}, got {frame_id!r}")
        if STEREO_FRAME in self.frame_idxs and not self.has_stereo:
            raise GasMonoError(f"{type(self).__name__} has one camera: frame id {STEREO_FRAME!r} (--use_stereo) "
                               "needs a data set with stereo pairs")

    # -- hooks for subclasses ------------------------------------------------

    def get_image_path(self, folder: str, frame_index: int, side: str) -> Path:
        """Path of one frame (the default: ``<data_path>/<folder>/<frame:010d><img_ext>``)."""
        return self.data_path / folder / f"{frame_index:010d}{self.img_ext}"

    def get_color(self, folder: str, frame_index: int, side: str) -> Image.Image:
        """Load one frame as an RGB PIL image."""
        return pil_loader(self.get_image_path(folder, frame_index, side))

    def get_intrinsics(self, folder: str) -> np.ndarray:
        """``4 x 4`` intrinsics normalised by the image size (row 0 by width, row 1 by height)."""
        raise NotImplementedError

    def check_depth(self) -> bool:
        """Whether the data set has ground-truth depth."""
        return False

    def get_depth(self, folder: str, frame_index: int, side: str) -> np.ndarray:
        """Ground-truth depth ``H_gt x W_gt`` float32 in metres."""
        raise NotImplementedError

    def check_folder(self, folder: str) -> None:
        """Check what a folder of the split needs besides its frames (once per
        folder, when the data set is built); raise a :class:`GasMonoError` naming the file."""

    @classmethod
    def coarse_pose_scene(cls, folder: str, side: str) -> str:
        """The scene of an item's coarse poses, ``<cpose_dir>/<scene>/`` (the default: its folder)."""
        return folder

    @classmethod
    def image_sequences(cls, data_path: str | os.PathLike, img_ext: str = ".jpg") -> list[ImageSequence]:
        """The image sequences ``tools/make_coarse_poses.py`` runs COLMAP on, each
        named by the scene of :meth:`coarse_pose_scene` (the default: the NYUv2
        layout, one sequence per sub-folder of ``data_path``)."""
        return find_sequences(data_path, img_ext, cls.unknown_intrinsics)

    def get_coarse_pose_path(self, folder: str, frame_index: int, side: str = "l") -> Path:
        """Path of the coarse poses of one item: ``<cpose_dir>/<scene>/<frame:04d>.npy``."""
        assert self.cpose_dir is not None
        return coarse_pose_path(self.cpose_dir, self.coarse_pose_scene(folder, side), frame_index)

    def get_coarse_poses(self, folder: str, frame_index: int, side: str = "l") -> np.ndarray:
        """``2 x 4 x 4`` float32 ``[T_{t->t-1}, T_{t->t+1}]`` of one item."""
        return read_coarse_poses(self.get_coarse_pose_path(folder, frame_index, side))

    @staticmethod
    def frame_source(frame_index: int, side: str, frame_id: FrameId) -> tuple[int, str]:
        """``(frame, side)`` of the image of ``frame_id`` for the item ``(frame_index, side)``."""
        if frame_id == STEREO_FRAME:
            return frame_index, OTHER_SIDE[side]
        return frame_index + frame_id, side

    @staticmethod
    def stereo_transform(side: str) -> np.ndarray:
        """``stereo_T`` of a target on ``side``: ``4 x 4`` float32 (see the module docstring)."""
        transform = np.eye(4, dtype=np.float32)
        transform[0, 3] = (-1.0 if side == "l" else 1.0) * STEREO_BASELINE
        return transform

    # -- construction-time checks ------------------------------------------

    def _exists(self, path: Path) -> bool:
        """File existence through a cached listing of its folder (fast for large splits)."""
        folder = path.parent
        if folder not in self._listings:
            self._listings[folder] = frozenset(os.listdir(folder)) if folder.is_dir() else frozenset()
        return path.name in self._listings[folder]

    def _check_files_exist(self) -> None:
        """Every frame of every item exists; every coarse-pose file exists and
        is well formed (read in full: about 45 µs per file with a warm file
        cache, 1 s for the 22k items of NYUv2)."""
        checked_folders = set()
        for (folder, frame_index, side), source in zip(self.items, self.item_sources):
            if folder not in checked_folders:
                self.check_folder(folder)
                checked_folders.add(folder)
            for frame_id in self.frame_idxs:
                path = self.get_image_path(folder, *self.frame_source(frame_index, side, frame_id))
                if not self._exists(path):
                    if frame_id == STEREO_FRAME:
                        what = "stereo frame (the other camera)"
                    else:
                        what = "frame" if frame_id == 0 else f"neighbour frame {frame_id:+d}"
                    raise GasMonoError(f"missing {what}: {path} (needed by {source})")
            if self.cpose_dir is not None:
                path = self.get_coarse_pose_path(folder, frame_index, side)
                if not self._exists(path):
                    raise GasMonoError(f"coarse pose file missing: {path} (needed by {source})")
                try:
                    read_coarse_poses(path)
                except GasMonoError as error:
                    raise GasMonoError(f"{error} (needed by {source})") from None
        self._listings.clear()

    # -- item assembly --------------------------------------------------------

    def __len__(self) -> int:
        return len(self.items)

    def scaled_intrinsics(self, folder: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per scale ``s``: ``(K_s, inv_K_s)`` ``4 x 4`` float32 (cached per folder)."""
        if folder not in self._intrinsics:
            normalised = self.get_intrinsics(folder)
            per_scale = {}
            for scale in range(self.num_scales):
                K = normalised.astype(np.float64).copy()
                K[0, :] *= self.width // 2**scale
                K[1, :] *= self.height // 2**scale
                per_scale[scale] = (K.astype(np.float32), np.linalg.pinv(K).astype(np.float32))
            self._intrinsics[folder] = per_scale
        return self._intrinsics[folder]

    def build_pyramid(self, image: Image.Image) -> list[Image.Image | np.ndarray]:
        """Scales ``0..num_scales-1``, each resized from the previous one
        (PIL images with LANCZOS, ``H x W x 3`` uint8 arrays with area averaging)."""
        levels = []
        if self.resize_filter == "area":
            image = np.asarray(image)
        for scale in range(self.num_scales):
            width, height = self.width // 2**scale, self.height // 2**scale
            if isinstance(image, np.ndarray):
                if image.shape[:2] != (height, width):
                    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            elif image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.LANCZOS)
            levels.append(image)
        return levels

    def seed_augmentation(self, seed: int, epoch: int) -> None:
        """Draw the augmentation of item ``i`` from ``(seed, epoch, i)`` alone
        from now on (:class:`random.Random` seeded with ``"<seed>:<epoch>:<i>"``),
        whichever process loads it and in whatever order: training then
        depends neither on the number of loader workers nor on where an epoch
        starts. Without it the draws come from the global :mod:`random`
        (seeded per worker by the loader), as in the release."""
        self._augmentation_key = (seed, epoch)

    def _item_random(self, index: int) -> random.Random | types.ModuleType:
        """The source of the augmentation draws of item ``index`` (see
        :meth:`seed_augmentation`): a generator of its own, or the :mod:`random`
        module (the global generator, whose functions have the same names)."""
        if self._augmentation_key is None:
            return random
        seed, epoch = self._augmentation_key
        return random.Random(f"{seed}:{epoch}:{index}")

    def __getitem__(self, index: int) -> dict:
        """One item: see the module docstring for the keys.

        Raises:
            GasMonoError: a file of the item cannot be read; the message names
                the file and the split line.
        """
        try:
            return self._load_item(index)
        except GasMonoError as error:
            raise GasMonoError(f"{error} (item of {self.item_sources[index]})") from None

    def _load_item(self, index: int) -> dict:
        folder, frame_index, side = self.items[index]
        inputs: dict = {}
        draws = self._item_random(index)
        do_color_aug = self.is_train and self.augmentation != "none" and draws.random() > 0.5

        level0 = {}
        for frame_id in self.frame_idxs:
            pyramid = self.build_pyramid(self.get_color(folder, *self.frame_source(frame_index, side, frame_id)))
            level0[frame_id] = pyramid[0]
            for scale, image in enumerate(pyramid):
                tensor = to_tensor(image)
                inputs[("color", frame_id, scale)] = tensor
                inputs[("color_aug", frame_id, scale)] = tensor
        if do_color_aug:
            for offset, image in self._augment(level0, draws).items():
                inputs[("color_aug", offset, 0)] = to_tensor(image)

        for scale, (K, inv_K) in self.scaled_intrinsics(folder).items():
            inputs[("K", scale)] = torch.from_numpy(K.copy())
            inputs[("inv_K", scale)] = torch.from_numpy(inv_K.copy())

        if STEREO_FRAME in self.frame_idxs:
            inputs["stereo_T"] = torch.from_numpy(self.stereo_transform(side))

        if self.cpose_dir is not None:
            poses = self.get_coarse_poses(folder, frame_index, side)
            for offset, slot in SOURCE_FRAME_SLOTS.items():
                if offset in self.frame_idxs:
                    inputs[("pose_gt", offset)] = torch.from_numpy(poses[slot].copy())

        if self.load_depth:
            depth = self.get_depth(folder, frame_index, side)
            inputs["depth_gt"] = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None]
        return inputs

    def _augment(self, images: dict[FrameId, Image.Image | np.ndarray],
                 draws: random.Random | types.ModuleType) -> dict[FrameId, Image.Image | np.ndarray]:
        """Colour-augment the scale-0 image of every frame (randomness from ``draws``)."""
        if self.augmentation == "colorjitter":
            jitter = sample_color_jitter(random.Random(draws.getrandbits(64)))
            return {offset: jitter(Image.fromarray(np.asarray(image))) for offset, image in images.items()}
        if self._strong is None:
            self._strong = StrongAugmentation()
        shared_seed = draws.getrandbits(32)
        return {
            offset: self._strong(np.array(image), shared_seed if self.shared_augmentation else draws.getrandbits(32))
            for offset, image in images.items()
        }
