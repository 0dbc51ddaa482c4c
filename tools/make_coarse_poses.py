"""Compute coarse relative poses with COLMAP for training sequences.

Examples::

    python tools/make_coarse_poses.py --data_path data/nyu --split_files splits/nyu --jobs 2
    python tools/make_coarse_poses.py --dataset folder --data_path data/mine --split mine --jobs 2
    python tools/make_coarse_poses.py --dataset kitti --data_path data/kitti --split_files splits/eigen_zhou --jobs 8

The sequences and their intrinsics come from the ``--dataset`` class
(:meth:`datasets.mono_dataset.MonoDataset.image_sequences`): ``nyu``, the
sub-folders of ``--data_path`` with their ``cam.txt`` or NYUv2's camera;
``folder``, the same, but a sequence without ``cam.txt`` gets COLMAP's
estimate of its focal length, written to its ``cam.txt``; ``kitti`` /
``kitti_odom``, each camera of each drive with the calibration's intrinsics.

With ``--split_files`` the lists are kept and the items without poses are
written to ``<cpose_dir>/missing_<list>.txt``; otherwise new
``train_files.txt`` / ``val_files.txt`` list exactly the items with poses (see
:mod:`coarse_poses.runner`). Poses go to ``splits/<split>/cpose/<scene>/<frame:04d>.npy``
with ``summary.json``; finished sequences are skipped when the command is run
again (``--overwrite`` redoes them). On a cluster, an array job of N tasks
runs the same command with ``--shard K/N`` (K = 0..N-1, disjoint sets of
sequences); a last run with ``--merge_shards`` writes ``summary.json`` and the
lists.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coarse_poses.colmap import ColmapSettings  # noqa: E402
from coarse_poses.runner import (  # noqa: E402
    RunOptions,
    Shard,
    available_cores,
    coarse_poses_for_data_path,
    coarse_poses_for_split_lists,
    format_report,
)
from datasets.registry import DATASET_NAMES, dataset_class  # noqa: E402
from datasets.splits import SPLIT_FILE_NAMES, read_split_items, split_list_paths, write_split_files  # noqa: E402
from utils import PROJECT_ROOT, GasMonoError, OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Run COLMAP (pycolmap, CPU) on every sequence <data_path>/<scene>/*.jpg (or the camera "
        "folders of KITTI drives), write coarse relative poses <cpose_dir>/<scene>/<frame:04d>.npy = "
        "[T_{t->t-1}, T_{t->t+1}] and train/val split files listing the items that have them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data_path", type=str, default=str(PROJECT_ROOT / "data" / "nyu"),
                        help="folder whose sub-folders are sequences of <frame:06d>.jpg (optional cam.txt: "
                             "3x3 pixel intrinsics; else NYUv2 defaults), or a KITTI root with --dataset kitti")
    parser.add_argument("--dataset", type=str, default="nyu", choices=DATASET_NAMES,
                        help="layout of --data_path and where the intrinsics come from: nyu (cam.txt, else "
                             "NYUv2's), folder (cam.txt, else estimated by COLMAP and written to cam.txt), kitti "
                             "and kitti_odom (calibration files; needs --split_files)")
    parser.add_argument("--png", action="store_true", help="frames are .png instead of .jpg")
    parser.add_argument("--split", type=str, default="nyu", help="split name, used for the default output folders")
    parser.add_argument("--cpose_dir", type=str, default=None, help="output folder; default splits/<split>/cpose")
    parser.add_argument("--split_dir", type=str, default=None,
                        help="folder for train_files.txt / val_files.txt; default splits/<split>")
    parser.add_argument("--split_files", type=str, nargs="+", default=None,
                        help="keep these split lists (files, or folders holding train_files.txt / val_files.txt): "
                             "compute poses only for the sequences they name, write no lists, report how many "
                             "listed items got poses and write the others to <cpose_dir>/missing_<list>.txt")
    parser.add_argument("--replace_splits", action="store_true",
                        help="without --split_files: replace train_files.txt / val_files.txt already in the "
                             "split folder")
    parser.add_argument("--val_fraction", type=float, default=0.1, help="fraction of items held out for validation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split and of COLMAP's mapper")
    parser.add_argument("--jobs", type=int, default=1, help="sequences processed in parallel (processes)")
    parser.add_argument("--threads", type=int, default=None,
                        help="COLMAP threads per sequence; default: available cores / jobs")
    parser.add_argument("--deterministic", action="store_true",
                        help="the same frames give the same poses, bit for bit: one COLMAP thread per sequence "
                             "(--threads is ignored; use --jobs for parallelism) and every random generator seeded "
                             "with --seed")
    parser.add_argument("--overlap", type=int, default=10, help="each frame is matched with this many next frames")
    parser.add_argument("--max_image_size", type=int, default=1024, help="longer image side used by SIFT")
    parser.add_argument("--max_num_features", type=int, default=8192, help="SIFT features per frame")
    parser.add_argument("--max_epipolar_error", type=float, default=1.0,
                        help="RANSAC threshold (pixels) of the two-view verification (COLMAP default 4); "
                             "1 admits fewer false matches on repeated textures; raise it for distorted frames")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="folder for COLMAP databases and models; default a temporary folder")
    parser.add_argument("--keep_work", action="store_true", help="keep the COLMAP databases and models")
    parser.add_argument("--overwrite", action="store_true", help="redo sequences that are already done")
    parser.add_argument("--retry_failed", action="store_true", help="redo sequences that failed before")
    parser.add_argument("--shard", type=Shard.parse, default=None, metavar="K/N",
                        help="process only the K-th (from 0) of N disjoint sets of the sequences (name-sorted, "
                             "every N-th); no summary.json or lists until --merge_shards")
    parser.add_argument("--merge_shards", action="store_true",
                        help="process nothing: merge the records of all shards into summary.json and write the "
                             "lists (every sequence must be done)")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        raise GasMonoError(f"--jobs must be at least 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise GasMonoError(f"--threads must be at least 1, got {args.threads}")
    if not 0.0 <= args.val_fraction < 1.0:
        raise GasMonoError(f"--val_fraction must be in [0, 1), got {args.val_fraction}")
    if args.keep_work and args.work_dir is None:
        raise GasMonoError("--keep_work needs --work_dir (the default work folder is temporary)")
    if args.max_epipolar_error <= 0:
        raise GasMonoError(f"--max_epipolar_error must be positive, got {args.max_epipolar_error}")
    if args.overlap < 1:
        raise GasMonoError(f"--overlap must be at least 1, got {args.overlap}")
    if args.shard is not None and args.merge_shards:
        raise GasMonoError("--shard and --merge_shards exclude each other: run the shards, then merge")
    if args.dataset in ("kitti", "kitti_odom") and not args.split_files:
        raise GasMonoError(f"--dataset {args.dataset} needs --split_files (e.g. splits/eigen_zhou): the KITTI lists "
                           "are kept, and poses are computed for the drives they name")


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    check_arguments(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    split_root = PROJECT_ROOT / "splits" / args.split
    cpose_dir = Path(args.cpose_dir) if args.cpose_dir else split_root / "cpose"
    split_dir = Path(args.split_dir) if args.split_dir else split_root
    settings = ColmapSettings(num_threads=args.threads or max(1, available_cores() // args.jobs),
                              overlap=args.overlap, max_image_size=args.max_image_size,
                              max_num_features=args.max_num_features, max_epipolar_error=args.max_epipolar_error,
                              seed=args.seed, deterministic=args.deterministic)
    options = RunOptions(jobs=args.jobs, overwrite=args.overwrite, retry_failed=args.retry_failed,
                         work_dir=args.work_dir, keep_work=args.keep_work, shard=args.shard,
                         merge_shards=args.merge_shards)
    layout = dataset_class(args.dataset)
    sequences = layout.image_sequences(args.data_path, ".png" if args.png else ".jpg")
    if args.split_files:
        lists = {path: read_split_items(path, layout.coarse_pose_scene)
                 for given in args.split_files for path in split_list_paths(given)}
        print(format_report(coarse_poses_for_split_lists(lists, sequences, cpose_dir, settings, options)))
        return

    existing = [split_dir / name for name in SPLIT_FILE_NAMES if (split_dir / name).is_file()]
    if existing and not args.replace_splits and args.shard is None:
        raise GasMonoError(f"{existing[0]} exists: pass --split_files {split_dir} to compute poses for its items "
                           "and keep it, --split_dir for new lists elsewhere, or --replace_splits")
    report = coarse_poses_for_data_path(sequences, cpose_dir, settings, options)
    print(format_report(report))
    if args.shard is not None:
        return
    if not report.items:
        raise GasMonoError("no sequence could be reconstructed, so no split files were written")
    train_path, val_path = write_split_files(report.items, split_dir, val_fraction=args.val_fraction, seed=args.seed)
    print(f"split files: {train_path}, {val_path} ({len(report.items)} items)")


if __name__ == "__main__":
    main()
