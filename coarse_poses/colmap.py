"""COLMAP (through pycolmap) on one sequence: frames in, coarse poses out.

For a sequence (a folder of ``<frame:06d>.jpg`` frames, optionally with a
``cam.txt`` of ``3 x 3`` pixel intrinsics, else NYUv2's) :func:`process_sequence`
runs SIFT extraction, sequential matching (loop detection off) and incremental
mapping with one shared PINHOLE camera fixed to the known intrinsics, keeps
the largest model, and writes the coarse poses of every frame whose two
neighbours are registered in that model (format: :mod:`coarse_poses.pose_files`).
Next to the poses, ``<cpose_dir>/<scene>/colmap.json`` records the outcome of
the sequence (it is the resume marker) and ``colmap.log`` keeps COLMAP's own log.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from coarse_poses.pose_files import (
    coarse_poses_from_extrinsics,
    list_pose_frames,
    pose_file_name,
    to_homogeneous,
    write_coarse_poses,
)
from utils import GasMonoError, atomic_write_text, nyu_pixel_intrinsics

logger = logging.getLogger(__name__)

IMAGE_SUFFIX = ".jpg"
INTRINSICS_FILE = "cam.txt"
SEQUENCE_RECORD_FILE = "colmap.json"
SEQUENCE_LOG_FILE = "colmap.log"


@dataclasses.dataclass
class ColmapSettings:
    """Options of one COLMAP run (extraction, matching, mapping).

    Args:
        num_threads: CPU threads used by each COLMAP stage of one sequence.
        overlap: number of following frames each frame is matched with (linear, not
            COLMAP's default quadratic overlap).
        max_image_size: frames are downscaled so that their longer side is at most this.
        max_num_features: SIFT features kept per frame.
        max_epipolar_error: RANSAC threshold in pixels of the two-view verification.
            With COLMAP's default of 4 px, matches between copies of a repeated
            texture (tiled wallpaper) pass as inliers when the motion is mostly
            rotation, and bend the model; 1 px admits fewer of them and suits
            sharp, undistorted frames. Raise it for frames with lens distortion.
        seed: random seed of the mapper (RANSAC and view selection).
        deterministic: the same frames give the same poses, bit for bit: every stage runs
            on one thread (``num_threads`` is ignored; several sequences run in parallel
            processes instead) and every random generator (COLMAP's, the two-view RANSAC,
            the mapper) is seeded with ``seed``. With two or more threads, the order in
            which the threads finish changes the image ids of the database, the random
            draws of the two-view RANSAC and the sums of bundle adjustment.
    """

    num_threads: int = 1
    overlap: int = 10
    max_image_size: int = 1024
    max_num_features: int = 8192
    max_epipolar_error: float = 1.0
    seed: int = 0
    deterministic: bool = False

    @property
    def threads(self) -> int:
        """The threads each COLMAP stage uses: one when ``deterministic``."""
        return 1 if self.deterministic else self.num_threads


@dataclasses.dataclass
class SequenceResult:
    """Outcome of one sequence, as shown in the summary table and JSON."""

    scene: str
    frames: int
    registered: int = 0
    models: int = 0
    mean_reprojection_error: float | None = None
    items_written: int = 0
    seconds: float = 0.0
    status: str = "failed"
    reason: str = ""

    @property
    def registered_percent(self) -> float:
        """Registered frames in percent of all frames."""
        return 100.0 * self.registered / self.frames if self.frames else 0.0

    def to_dict(self) -> dict:
        record = dataclasses.asdict(self)
        record["registered_percent"] = round(self.registered_percent, 2)
        return record

    @classmethod
    def from_dict(cls, record: dict) -> "SequenceResult":
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in names})


# ----------------------------------------------------------------------------
# Inputs: sequences, frames, intrinsics
# ----------------------------------------------------------------------------


def list_frames(sequence_dir: Path) -> list[Path]:
    """The ``*.jpg`` frames of a sequence folder, sorted by frame number.

    Raises :class:`GasMonoError` when a frame name is not an integer.
    """
    frames = []
    for path in Path(sequence_dir).glob(f"*{IMAGE_SUFFIX}"):
        if not path.stem.isdigit():
            raise GasMonoError(f"frame name is not a frame number: {path}")
        frames.append(path)
    return sorted(frames, key=lambda path: int(path.stem))


def find_sequences(data_path: str | os.PathLike) -> list[Path]:
    """Sub-folders of ``data_path`` holding ``*.jpg`` frames, sorted by name.

    Raises :class:`GasMonoError` when ``data_path`` is missing or holds none.
    """
    root = Path(data_path)
    if not root.is_dir():
        raise GasMonoError(f"data path not found: {root}")
    sequences = sorted(
        child for child in root.iterdir() if child.is_dir() and any(child.glob(f"*{IMAGE_SUFFIX}"))
    )
    if not sequences:
        nested = sorted(child for child in root.glob(f"*/*/*{IMAGE_SUFFIX}"))
        hint = f" (did you mean {nested[0].parent.parent}?)" if nested else ""
        raise GasMonoError(f"no sequences (sub-folders with {IMAGE_SUFFIX} frames) under {root}{hint}")
    return sequences



def read_intrinsics_file(path: str | os.PathLike) -> np.ndarray:
    """A ``3 x 3`` pixel pinhole K from a text file (``np.savetxt`` layout).

    Raises :class:`GasMonoError` naming the file when it is not one.
    """
    path = Path(path)
    try:
        matrix = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise GasMonoError(f"{path}: not a 3x3 matrix of numbers ({error})") from None
    if matrix.shape != (3, 3):
        raise GasMonoError(f"{path}: expected a 3x3 intrinsics matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)) or matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        raise GasMonoError(f"{path}: focal lengths must be finite and positive")
    if not np.allclose(matrix[2], [0.0, 0.0, 1.0]) or matrix[1, 0] != 0 or matrix[0, 1] != 0:
        raise GasMonoError(f"{path}: not a pinhole matrix [[fx 0 cx] [0 fy cy] [0 0 1]] (skew is not supported)")
    return matrix


def load_intrinsics(sequence_dir: str | os.PathLike, width: int, height: int) -> np.ndarray:
    """The ``3 x 3`` pixel intrinsics of a sequence: its ``cam.txt`` when present,
    else the NYUv2 defaults for a ``width x height`` image."""
    path = Path(sequence_dir) / INTRINSICS_FILE
    if path.is_file():
        return read_intrinsics_file(path)
    return nyu_pixel_intrinsics(height, width)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header."""
    with Image.open(path) as image:
        return image.size


# ----------------------------------------------------------------------------
# Running COLMAP on one sequence
# ----------------------------------------------------------------------------


@contextmanager
def redirect_native_stderr(log_path: Path) -> Iterator[None]:
    """Send everything written to file descriptor 2 (COLMAP's C++ log) to
    ``log_path`` while the context is active."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as log_file:
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def run_colmap(
    image_dir: Path, image_names: Sequence[str], intrinsics: np.ndarray, work_dir: Path, settings: ColmapSettings
) -> dict:
    """Run SIFT extraction, sequential matching and incremental mapping.

    Args:
        image_dir: folder holding the frames.
        image_names: frame file names in temporal order (other files are ignored).
        intrinsics: ``3 x 3`` pixel K shared by all frames (kept fixed).
        work_dir: empty folder for the database and the models.
        settings: COLMAP options.

    Returns:
        pycolmap's ``dict[int, Reconstruction]``; empty when nothing could be reconstructed.
    """
    # Imported here, not at module level: importing pycolmap installs glog's
    # signal handlers, which make any forked worker (data loaders, the synthetic
    # generator's pool) dump a stack trace when it is terminated.
    import pycolmap

    if settings.deterministic:
        pycolmap.set_random_seed(settings.seed)
    database = work_dir / "database.db"
    models_dir = work_dir / "sparse"
    models_dir.mkdir(parents=True, exist_ok=True)

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    params = (intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2])
    reader.camera_params = ",".join(repr(float(value)) for value in params)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = settings.threads
    extraction.max_image_size = settings.max_image_size
    extraction.sift.max_num_features = settings.max_num_features
    pycolmap.extract_features(
        database,
        image_dir,
        image_names=list(image_names),
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )

    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = settings.threads
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = settings.overlap
    pairing.quadratic_overlap = False
    pairing.loop_detection = False
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.max_error = settings.max_epipolar_error
    if settings.deterministic:
        verification.ransac.random_seed = settings.seed
    pycolmap.match_sequential(
        database,
        matching_options=matching,
        pairing_options=pairing,
        verification_options=verification,
        device=pycolmap.Device.cpu,
    )

    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = settings.threads
    mapping.random_seed = settings.seed
    if settings.deterministic:
        mapping.mapper.num_threads = settings.threads
        mapping.mapper.random_seed = settings.seed
    mapping.ba_refine_focal_length = False
    mapping.ba_refine_principal_point = False
    mapping.ba_refine_extra_params = False
    return pycolmap.incremental_mapping(database, image_dir, models_dir, options=mapping)


def extrinsics_of_model(reconstruction) -> dict[int, np.ndarray]:
    """Frame number -> ``4 x 4`` world-to-camera ``E`` for the registered images
    of a pycolmap ``Reconstruction``."""
    extrinsics = {}
    for image in reconstruction.images.values():
        if image.has_pose:
            extrinsics[int(Path(image.name).stem)] = to_homogeneous(image.cam_from_world().matrix())
    return extrinsics


def sequence_record_path(cpose_dir: Path, scene: str) -> Path:
    """``<cpose_dir>/<scene>/colmap.json``, the recorded outcome of a sequence."""
    return Path(cpose_dir) / scene / SEQUENCE_RECORD_FILE


def load_sequence_record(cpose_dir: Path, scene: str) -> SequenceResult | None:
    """The recorded outcome of a finished sequence, or ``None`` when it has not
    been processed (or its record is unreadable)."""
    path = sequence_record_path(cpose_dir, scene)
    if not path.is_file():
        return None
    try:
        return SequenceResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        logger.warning("ignoring unreadable record %s", path)
        return None


def clear_sequence_outputs(scene_dir: Path) -> None:
    """Remove the pose files, record and log of one sequence."""
    for frame in list_pose_frames(scene_dir):
        (scene_dir / pose_file_name(frame)).unlink()
    for name in (SEQUENCE_RECORD_FILE, SEQUENCE_LOG_FILE):
        (scene_dir / name).unlink(missing_ok=True)


def process_sequence(
    sequence_dir: str | os.PathLike,
    cpose_dir: str | os.PathLike,
    work_root: str | os.PathLike,
    settings: ColmapSettings,
    keep_work: bool = False,
) -> SequenceResult:
    """Reconstruct one sequence and write its coarse poses and record.

    COLMAP's native log goes to ``<cpose_dir>/<scene>/colmap.log``. A sequence
    COLMAP cannot reconstruct is returned with ``status="failed"`` and a reason;
    it never raises for that. Previous outputs of the scene are replaced.

    Args:
        sequence_dir: folder of ``<frame>.jpg`` frames (and optionally ``cam.txt``).
        cpose_dir: root of the coarse-pose output.
        work_root: folder for COLMAP's working files (``<work_root>/<scene>``).
        settings: COLMAP options.
        keep_work: keep the database and models instead of deleting them.
    """
    start = time.perf_counter()
    sequence_dir = Path(sequence_dir)
    scene = sequence_dir.name
    scene_dir = Path(cpose_dir) / scene
    scene_dir.mkdir(parents=True, exist_ok=True)
    clear_sequence_outputs(scene_dir)
    frames = list_frames(sequence_dir)
    result = SequenceResult(scene=scene, frames=len(frames))

    if len(frames) < 3:
        result.reason = f"only {len(frames)} frames (an item needs 3)"
    else:
        work_dir = Path(work_root) / scene
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        try:
            with redirect_native_stderr(scene_dir / SEQUENCE_LOG_FILE):
                try:
                    width, height = image_size(frames[0])
                    intrinsics = load_intrinsics(sequence_dir, width, height)
                    names = [frame.name for frame in frames]
                    fill_result(result, run_colmap(sequence_dir, names, intrinsics, work_dir, settings), scene_dir)
                except Exception as error:  # one bad sequence must not stop the others
                    logger.exception("COLMAP failed on %s", sequence_dir)
                    result.reason = f"{type(error).__name__}: {error}".strip()
        finally:
            if not keep_work:
                shutil.rmtree(work_dir, ignore_errors=True)

    result.seconds = round(time.perf_counter() - start, 3)
    atomic_write_text(json.dumps(result.to_dict(), indent=2) + "\n", sequence_record_path(cpose_dir, scene))
    return result


def fill_result(result: SequenceResult, models: dict, scene_dir: Path) -> None:
    """Pick the largest model, write its coarse poses and fill ``result``."""
    result.models = len(models)
    if not models:
        result.reason = "COLMAP could not reconstruct the sequence (no model)"
        return
    largest = max(models.values(), key=lambda reconstruction: reconstruction.num_reg_images())
    result.registered = largest.num_reg_images()
    result.mean_reprojection_error = round(float(largest.compute_mean_reprojection_error()), 4)
    result.items_written = write_coarse_poses(coarse_poses_from_extrinsics(extrinsics_of_model(largest)), scene_dir)
    if result.items_written == 0:
        result.reason = "no frame has both neighbours registered"
    else:
        result.status = "ok"
