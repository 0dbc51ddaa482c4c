"""COLMAP (through pycolmap) on one sequence: frames in, coarse poses out.

For an :class:`coarse_poses.sequences.ImageSequence` (a folder of numbered
frames and where its poses go) :func:`process_sequence` runs SIFT extraction,
sequential matching (loop detection off) and incremental mapping with one
shared camera, keeps the largest model, and writes the coarse poses of every
frame whose two neighbours are registered in that model (format:
:mod:`coarse_poses.pose_files`). The camera is a PINHOLE fixed to the known
intrinsics (calibration, ``cam.txt`` or NYUv2's); with unknown intrinsics it is
a SIMPLE_PINHOLE whose focal length the mapper refines from COLMAP's own
starting guess (1.2 times the longer image side), with the principal point at
the image centre, and the estimate is written back to ``cam.txt``.
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
from coarse_poses.sequences import (  # re-exported: the sequence helpers lived here before
    IMAGE_SUFFIX,
    INTRINSICS_FILE,
    ImageSequence,
    find_sequences,
    list_frames,
    read_intrinsics_file,
)
from utils import atomic_output_file, atomic_write_text, nyu_pixel_intrinsics

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIX",
    "INTRINSICS_FILE",
    "ImageSequence",
    "find_sequences",
    "list_frames",
    "read_intrinsics_file",
    "ColmapSettings",
    "SequenceResult",
    "load_intrinsics",
    "sequence_intrinsics",
    "run_colmap",
    "process_sequence",
]

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
    estimated_focal_length: float | None = None  # pixels, when COLMAP estimated the intrinsics

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


def load_intrinsics(sequence_dir: str | os.PathLike, width: int, height: int) -> np.ndarray:
    """The ``3 x 3`` pixel intrinsics of a sequence folder: its ``cam.txt`` when present,
    else the NYUv2 defaults for a ``width x height`` image."""
    intrinsics = sequence_intrinsics(ImageSequence(Path(sequence_dir).name, Path(sequence_dir)), width, height)
    assert intrinsics is not None
    return intrinsics


def sequence_intrinsics(sequence: ImageSequence, width: int, height: int) -> np.ndarray | None:
    """The ``3 x 3`` pixel intrinsics of a sequence of ``width x height`` frames:
    the known ones, else its ``cam.txt``, else NYUv2's; None when they are to be
    estimated (see :mod:`coarse_poses.sequences`)."""
    if sequence.intrinsics is not None:
        return np.asarray(sequence.intrinsics, dtype=np.float64)
    if sequence.intrinsics_file.is_file():
        return read_intrinsics_file(sequence.intrinsics_file)
    if sequence.unknown_intrinsics == "estimate":
        return None
    return nyu_pixel_intrinsics(height, width)


def write_estimated_intrinsics(path: Path, camera) -> float:
    """Write a pycolmap camera's ``3 x 3`` K to ``path`` (``cam.txt``, with a
    comment saying where it comes from); returns its focal length in pixels."""
    matrix = np.asarray(camera.calibration_matrix(), dtype=np.float64)
    header = f"estimated by COLMAP ({camera.model_name}, focal length refined, principal point at the centre)"
    with atomic_output_file(path, "w") as handle:
        np.savetxt(handle, matrix, fmt="%.6f", header=header)
    return float(matrix[0, 0])


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
    image_dir: Path, image_names: Sequence[str], intrinsics: np.ndarray | None, work_dir: Path,
    settings: ColmapSettings,
) -> dict:
    """Run SIFT extraction, sequential matching and incremental mapping.

    Args:
        image_dir: folder holding the frames.
        image_names: frame file names in temporal order (other files are ignored).
        intrinsics: ``3 x 3`` pixel K shared by all frames (kept fixed); None:
            one shared SIMPLE_PINHOLE camera whose focal length the mapper
            refines from COLMAP's default guess.
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
    if intrinsics is None:
        reader.camera_model = "SIMPLE_PINHOLE"
    else:
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
    mapping.ba_refine_focal_length = intrinsics is None
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
    sequence: ImageSequence | str | os.PathLike,
    cpose_dir: str | os.PathLike,
    work_root: str | os.PathLike,
    settings: ColmapSettings,
    keep_work: bool = False,
) -> SequenceResult:
    """Reconstruct one sequence and write its coarse poses and record.

    COLMAP's native log goes to ``<cpose_dir>/<scene>/colmap.log``. A sequence
    COLMAP cannot reconstruct is returned with ``status="failed"`` and a reason;
    it never raises for that. Previous outputs of the scene are replaced.

    With intrinsics to estimate, a reconstructed sequence's estimate is
    written to its ``cam.txt`` and its focal length recorded.

    Args:
        sequence: the frames and their scene; a folder stands for the NYUv2
            layout (``<frame>.jpg`` frames, optionally ``cam.txt``; scene = its name).
        cpose_dir: root of the coarse-pose output.
        work_root: folder for COLMAP's working files (``<work_root>/<scene>``).
        settings: COLMAP options.
        keep_work: keep the database and models instead of deleting them.
    """
    start = time.perf_counter()
    if not isinstance(sequence, ImageSequence):
        sequence = ImageSequence(Path(sequence).name, Path(sequence))
    scene = sequence.scene
    scene_dir = Path(cpose_dir) / scene
    scene_dir.mkdir(parents=True, exist_ok=True)
    clear_sequence_outputs(scene_dir)
    frames = sequence.frames()
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
                    intrinsics = sequence_intrinsics(sequence, width, height)
                    names = [frame.name for frame in frames]
                    models = run_colmap(Path(sequence.image_dir), names, intrinsics, work_dir, settings)
                    largest = fill_result(result, models, scene_dir)
                    if intrinsics is None and result.status == "ok":
                        camera = next(iter(largest.cameras.values()))
                        result.estimated_focal_length = round(
                            write_estimated_intrinsics(sequence.intrinsics_file, camera), 3)
                except Exception as error:  # one bad sequence must not stop the others
                    logger.exception("COLMAP failed on %s", sequence.image_dir)
                    result.reason = f"{type(error).__name__}: {error}".strip()
        finally:
            if not keep_work:
                shutil.rmtree(work_dir, ignore_errors=True)

    result.seconds = round(time.perf_counter() - start, 3)
    atomic_write_text(json.dumps(result.to_dict(), indent=2) + "\n", sequence_record_path(cpose_dir, scene))
    return result


def fill_result(result: SequenceResult, models: dict, scene_dir: Path):
    """Pick the largest model, write its coarse poses and fill ``result``;
    returns that model (None when there is none)."""
    result.models = len(models)
    if not models:
        result.reason = "COLMAP could not reconstruct the sequence (no model)"
        return None
    largest = max(models.values(), key=lambda reconstruction: reconstruction.num_reg_images())
    result.registered = largest.num_reg_images()
    result.mean_reprojection_error = round(float(largest.compute_mean_reprojection_error()), 4)
    result.items_written = write_coarse_poses(coarse_poses_from_extrinsics(extrinsics_of_model(largest)), scene_dir)
    if result.items_written == 0:
        result.reason = "no frame has both neighbours registered"
    else:
        result.status = "ok"
    return largest
