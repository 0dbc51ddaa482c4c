"""Coarse relative poses from COLMAP (through pycolmap), one sequence at a time.

For every sequence (a folder of ``<frame:06d>.jpg`` frames) this module runs
SIFT extraction, sequential matching (loop detection off) and incremental
mapping with one shared PINHOLE camera fixed to the known intrinsics, keeps
the largest model, and converts COLMAP's world-to-camera extrinsics ``E_i``
into the per-item coarse poses the training loss reads::

    <cpose_dir>/<scene>/<frame:04d>.npy     float32 (2, 4, 4)
    [0] = T_{t->t-1} = E_{t-1} inv(E_t),  [1] = T_{t->t+1} = E_{t+1} inv(E_t)

``T_{t->s}`` maps a 3-D point expressed in camera ``t`` into camera ``s``.
A file is written only for frames whose two neighbours are registered in the
same model. Next to the poses, ``<cpose_dir>/<scene>/colmap.json`` records the
outcome of the sequence (it is the resume marker) and ``colmap.log`` keeps
COLMAP's own log.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Collection, Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from utils import GasMonoError, atomic_write_text, nyu_pixel_intrinsics

logger = logging.getLogger(__name__)

# NYUv2 (Kinect) intrinsics normalised by the image size: fx, fy, cx, cy.

IMAGE_SUFFIX = ".jpg"
INTRINSICS_FILE = "cam.txt"
SEQUENCE_RECORD_FILE = "colmap.json"
SEQUENCE_LOG_FILE = "colmap.log"
SUMMARY_FILE = "summary.json"


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
    """

    num_threads: int = 1
    overlap: int = 10
    max_image_size: int = 1024
    max_num_features: int = 8192
    max_epipolar_error: float = 1.0
    seed: int = 0


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


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """NYUv2 intrinsics scaled to a ``width x height`` image -> ``3 x 3`` pixel K."""
    return nyu_pixel_intrinsics(height, width)


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
    return default_intrinsics(width, height)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header."""
    with Image.open(path) as image:
        return image.size


# ----------------------------------------------------------------------------
# Pose conversion
# ----------------------------------------------------------------------------


def relative_pose(extrinsic_target: np.ndarray, extrinsic_source: np.ndarray) -> np.ndarray:
    """``T_{t->s} = E_s inv(E_t)`` from two ``4 x 4`` world-to-camera matrices.

    The result maps a 3-D point in the target camera ``t`` into the source camera ``s``.
    """
    return extrinsic_source @ np.linalg.inv(extrinsic_target)


def coarse_poses_from_extrinsics(extrinsics: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Per-item coarse poses from world-to-camera extrinsics of one model.

    Args:
        extrinsics: frame number -> ``4 x 4`` (or ``3 x 4``) world-to-camera ``E``.

    Returns:
        frame number ``t`` -> float32 ``2 x 4 x 4`` ``[T_{t->t-1}, T_{t->t+1}]``, only
        for frames whose neighbours ``t-1`` and ``t+1`` are both in ``extrinsics``.
    """
    full = {frame: to_homogeneous(matrix) for frame, matrix in extrinsics.items()}
    poses = {}
    for frame in sorted(full):
        if frame - 1 in full and frame + 1 in full:
            previous = relative_pose(full[frame], full[frame - 1])
            following = relative_pose(full[frame], full[frame + 1])
            poses[frame] = np.stack([previous, following]).astype(np.float32)
    return poses


def to_homogeneous(matrix: np.ndarray) -> np.ndarray:
    """A ``3 x 4`` ``[R|t]`` or ``4 x 4`` matrix -> ``4 x 4`` float64."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape == (4, 4):
        return matrix
    if matrix.shape != (3, 4):
        raise ValueError(f"expected a 3x4 or 4x4 pose, got shape {matrix.shape}")
    full = np.eye(4)
    full[:3] = matrix
    return full


def write_coarse_poses(poses: dict[int, np.ndarray], scene_dir: Path) -> int:
    """Write ``<frame:04d>.npy`` files into ``scene_dir``; returns how many."""
    scene_dir.mkdir(parents=True, exist_ok=True)
    for frame, pose in poses.items():
        np.save(scene_dir / f"{frame:04d}.npy", pose.astype(np.float32))
    return len(poses)


def list_pose_frames(scene_dir: Path) -> list[int]:
    """Frame numbers that have a coarse-pose file in ``scene_dir``, sorted."""
    return sorted(int(path.stem) for path in Path(scene_dir).glob("*.npy") if path.stem.isdigit())


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

    database = work_dir / "database.db"
    models_dir = work_dir / "sparse"
    models_dir.mkdir(parents=True, exist_ok=True)

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    params = (intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2])
    reader.camera_params = ",".join(repr(float(value)) for value in params)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = settings.num_threads
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
    matching.num_threads = settings.num_threads
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = settings.overlap
    pairing.quadratic_overlap = False
    pairing.loop_detection = False
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.max_error = settings.max_epipolar_error
    pycolmap.match_sequential(
        database,
        matching_options=matching,
        pairing_options=pairing,
        verification_options=verification,
        device=pycolmap.Device.cpu,
    )

    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = settings.num_threads
    mapping.random_seed = settings.seed
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
    for path in scene_dir.glob("*.npy"):
        path.unlink()
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


# ----------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------


def summarize(results: Sequence[SequenceResult]) -> dict:
    """Per-sequence records and totals (frames, registered %, items, seconds per frame)."""
    frames = sum(result.frames for result in results)
    registered = sum(result.registered for result in results)
    seconds = sum(result.seconds for result in results)
    return {
        "sequences": [result.to_dict() for result in results],
        "total": {
            "sequences": len(results),
            "ok": sum(result.status == "ok" for result in results),
            "failed": sum(result.status != "ok" for result in results),
            "frames": frames,
            "registered": registered,
            "registered_percent": round(100.0 * registered / frames, 2) if frames else 0.0,
            "items_written": sum(result.items_written for result in results),
            "seconds": round(seconds, 3),
            "seconds_per_frame": round(seconds / frames, 4) if frames else 0.0,
        },
    }


def format_summary_table(results: Sequence[SequenceResult]) -> str:
    """A plain-text table with one row per sequence and a total row."""
    header = ("scene", "frames", "reg", "reg %", "models", "reproj px", "items", "seconds", "status")
    rows = []
    for result in results:
        reproj = "-" if result.mean_reprojection_error is None else f"{result.mean_reprojection_error:.3f}"
        status = result.status if result.status == "ok" else f"{result.status}: {result.reason}"
        rows.append(
            (
                result.scene,
                str(result.frames),
                str(result.registered),
                f"{result.registered_percent:.1f}",
                str(result.models),
                reproj,
                str(result.items_written),
                f"{result.seconds:.1f}",
                status,
            )
        )
    total = summarize(results)["total"]
    rows.append(
        (
            "total",
            str(total["frames"]),
            str(total["registered"]),
            f"{total['registered_percent']:.1f}",
            "",
            "",
            str(total["items_written"]),
            f"{total['seconds']:.1f}",
            f"{total['ok']} ok, {total['failed']} failed, {total['seconds_per_frame']:.2f} s/frame",
        )
    )
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header) - 1)]

    def line(row: Sequence[str]) -> str:
        cells = [cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row[:-1])]
        return "  ".join([*cells, row[-1]])

    separator = "-" * len(line(header))
    return "\n".join([line(header), separator, *(line(row) for row in rows[:-1]), separator, line(rows[-1])])


def write_summary(results: Sequence[SequenceResult], cpose_dir: str | os.PathLike) -> Path:
    """Write ``<cpose_dir>/summary.json``; returns its path."""
    path = Path(cpose_dir) / SUMMARY_FILE
    atomic_write_text(json.dumps(summarize(results), indent=2) + "\n", path)
    return path


# ----------------------------------------------------------------------------
# Many sequences: parallel, resumable
# ----------------------------------------------------------------------------


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def needs_processing(
    sequence_dir: Path, cpose_dir: Path, overwrite: bool, retry_failed: bool
) -> tuple[bool, SequenceResult | None]:
    """Whether a sequence must be (re)processed, and its previous record if not.

    A sequence is redone when ``overwrite`` is set, when it has no readable
    record, when its number of frames changed since, or when it failed and
    ``retry_failed`` is set.
    """
    if overwrite:
        return True, None
    record = load_sequence_record(cpose_dir, sequence_dir.name)
    if record is None or record.frames != len(list_frames(sequence_dir)):
        return True, None
    if retry_failed and record.status != "ok":
        return True, None
    return False, record


def make_coarse_poses(
    data_path: str | os.PathLike,
    cpose_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    settings: ColmapSettings,
    jobs: int = 1,
    overwrite: bool = False,
    retry_failed: bool = False,
    keep_work: bool = False,
    progress: bool = True,
    scenes: Collection[str] | None = None,
) -> list[SequenceResult]:
    """Run :func:`process_sequence` on every sequence under ``data_path``
    (only those named in ``scenes`` when given).

    With ``jobs > 1`` sequences run in that many worker processes (``spawn``:
    a calling script needs the ``if __name__ == "__main__":`` guard), each with
    ``settings.num_threads`` COLMAP threads; with ``jobs == 1`` they run in this
    process, one after the other. Sequences with a record in
    ``cpose_dir`` are skipped unless ``overwrite`` (or ``retry_failed`` for
    failed ones). Writes ``<cpose_dir>/summary.json``.

    Returns:
        one result per sequence, sorted by scene name (skipped ones from their record).
    """
    sequences = find_sequences(data_path)
    if scenes is not None:
        sequences = [sequence_dir for sequence_dir in sequences if sequence_dir.name in scenes]
    for sequence_dir in sequences:
        if (sequence_dir / INTRINSICS_FILE).is_file():
            read_intrinsics_file(sequence_dir / INTRINSICS_FILE)
    cpose_dir = Path(cpose_dir)
    cpose_dir.mkdir(parents=True, exist_ok=True)

    results: dict[str, SequenceResult] = {}
    todo = []
    for sequence_dir in sequences:
        redo, record = needs_processing(sequence_dir, cpose_dir, overwrite, retry_failed)
        if redo:
            todo.append(sequence_dir)
        else:
            results[sequence_dir.name] = record
    if results:
        logger.info("skipping %d sequence(s) already done (use --overwrite to redo them)", len(results))

    if todo:
        bar = tqdm(total=len(todo), desc="sequences", unit="seq", disable=not progress)
        if jobs == 1:
            for sequence_dir in todo:
                results[sequence_dir.name] = process_sequence(sequence_dir, cpose_dir, work_dir, settings, keep_work)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context) as pool:
                futures = {
                    pool.submit(process_sequence, sequence_dir, cpose_dir, work_dir, settings, keep_work): sequence_dir
                    for sequence_dir in todo
                }
                for future in as_completed(futures):
                    sequence_dir = futures[future]
                    try:
                        results[sequence_dir.name] = future.result()
                    except BrokenProcessPool as error:
                        results[sequence_dir.name] = SequenceResult(
                            scene=sequence_dir.name,
                            frames=len(list_frames(sequence_dir)),
                            reason=f"worker process died ({error}); it is retried on the next run",
                        )
                    bar.update()
        bar.close()

    ordered = [results[sequence_dir.name] for sequence_dir in sequences]
    write_summary(ordered, cpose_dir)
    return ordered


def collect_items(cpose_dir: str | os.PathLike, scenes: Sequence[str]) -> list[tuple[str, int]]:
    """``(scene, frame)`` for every coarse-pose file of the given scenes."""
    return [(scene, frame) for scene in scenes for frame in list_pose_frames(Path(cpose_dir) / scene)]
