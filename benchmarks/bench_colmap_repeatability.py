"""Which pycolmap options make COLMAP repeatable: each stage's output compared over two runs.

For every textured sequence of the demo's data (rendered into ``--out``,
reused when there) and every configuration of ``--configs`` (threads of
extraction, matching and mapping, and whether the random generators are
seeded: ``E,M,P,seeded|unseeded``), runs COLMAP twice in this process and
reports which stage's output differs between the two runs: the database's
image ids (in the order the extraction writes the images), the keypoints per
image name, the verified two-view geometries, the poses (largest element
difference). ``coarse_poses.colmap.run_colmap`` with ``deterministic`` is the
``1,1,1,seeded`` configuration.

    python benchmarks/bench_colmap_repeatability.py [--configs 2,2,2,unseeded 1,2,2,seeded 1,1,2,seeded
                                                     1,1,1,seeded 1,1,1,unseeded --out DIR]
"""
from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coarse_poses.colmap import list_frames, read_intrinsics_file  # noqa: E402
from experiments.data import generate_data  # noqa: E402
from experiments.settings import DemoPaths, preset_settings  # noqa: E402
from utils import OneLineErrorParser  # noqa: E402


def digest(arrays) -> str:
    hasher = hashlib.sha1()
    for array in arrays:
        hasher.update(np.ascontiguousarray(array).tobytes())
    return hasher.hexdigest()[:10]


def run_once(sequence: Path, work: Path, threads: tuple[int, int, int], seeded: bool) -> dict:
    """COLMAP on one sequence with the demo's options; digests of each stage's output and the poses."""
    import pycolmap

    shutil.rmtree(work, ignore_errors=True)
    (work / "sparse").mkdir(parents=True)
    database_path, seed = work / "database.db", 0
    if seeded:
        pycolmap.set_random_seed(seed)
    settings = preset_settings("full")
    intrinsics = read_intrinsics_file(sequence / "cam.txt")
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    reader.camera_params = ",".join(repr(float(value)) for value in (intrinsics[0, 0], intrinsics[1, 1],
                                                                     intrinsics[0, 2], intrinsics[1, 2]))
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads, extraction.max_image_size = threads[0], settings.colmap_max_image_size
    extraction.sift.max_num_features = settings.colmap_max_num_features
    pycolmap.extract_features(database_path, sequence, image_names=[path.name for path in list_frames(sequence)],
                              camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    matching, pairing = pycolmap.FeatureMatchingOptions(), pycolmap.SequentialPairingOptions()
    matching.num_threads, pairing.overlap, pairing.quadratic_overlap = threads[1], settings.colmap_overlap, False
    pairing.loop_detection = False
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.max_error = 1.0
    if seeded:
        verification.ransac.random_seed = seed
    pycolmap.match_sequential(database_path, matching_options=matching, pairing_options=pairing,
                              verification_options=verification, device=pycolmap.Device.cpu)
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = mapping.mapper.num_threads = threads[2]
    mapping.random_seed = seed
    if seeded:
        mapping.mapper.random_seed = seed
    mapping.ba_refine_focal_length = mapping.ba_refine_principal_point = mapping.ba_refine_extra_params = False
    models = pycolmap.incremental_mapping(database_path, sequence, work / "sparse", options=mapping)

    database = pycolmap.Database.open(database_path)
    images = sorted(database.read_all_images(), key=lambda image: image.image_id)
    ids = [image.image_id for image in images]
    geometries = [np.asarray(database.read_two_view_geometry(a, b).inlier_matches)
                  for index, a in enumerate(ids) for b in ids[index + 1:] if database.exists_two_view_geometry(a, b)]
    record = {"image ids": [image.name for image in images],
              "keypoints": digest(database.read_keypoints(image.image_id)
                                  for image in sorted(images, key=lambda image: image.name)),
              "two-view geometries": digest(geometries)}
    database.close()
    largest = max(models.values(), key=lambda model: model.num_reg_images()) if models else None
    record["poses"] = {} if largest is None else {image.name: image.cam_from_world().matrix()
                                                  for image in largest.images.values() if image.has_pose}
    return record


def compare(first: dict, second: dict) -> str:
    """Which stages' outputs differ between two runs."""
    cells = [name for name in ("image ids", "keypoints", "two-view geometries") if first[name] != second[name]]
    common = sorted(set(first["poses"]) & set(second["poses"]))
    largest = max((float(np.abs(first["poses"][name] - second["poses"][name]).max()) for name in common), default=0.0)
    if largest or set(first["poses"]) != set(second["poses"]):
        cells.append(f"poses (largest difference {largest:.2g})")
    return "differ: " + ", ".join(cells) if cells else "identical"


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["2,2,2,unseeded", "1,2,2,seeded", "1,1,2,seeded",
                                                         "1,1,1,seeded", "1,1,1,unseeded"])
    parser.add_argument("--out", type=Path, default=None, help="keep the data here (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_colmap_repeatability_") as temporary:
        paths = DemoPaths.create(args.out or temporary)
        data = generate_data(paths, preset_settings("full"), progress=False)
        textured = [scene for scene in data["train_scenes"] if scene not in data["low_texture_scenes"]]
        for config in args.configs:
            *threads, seeding = config.split(",")
            for scene in textured:
                runs = [run_once(paths.train_data / scene, paths.out / "repeatability" / scene,
                                 tuple(int(value) for value in threads), seeding == "seeded") for _ in range(2)]
                print(f"{config:<16} {scene}: {compare(*runs)}", flush=True)


if __name__ == "__main__":
    main()
