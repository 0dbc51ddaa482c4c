"""Compute coarse relative poses with COLMAP for training sequences.

Two modes:

* ``--split_files splits/nyu`` (files, or folders holding ``train_files.txt``
  / ``val_files.txt``): poses for the sequences those lists name, for example
  the release's lists that the project ships. The lists are kept as they are;
  the tool reports, per list, how many items got the poses of both
  neighbours and writes the others to ``<cpose_dir>/missing_<list>.txt``
  (training on them fails, naming the item, until they are removed).
* otherwise: poses for every sequence under ``--data_path``, then new
  ``train_files.txt`` / ``val_files.txt`` listing exactly the items that have
  them (a seeded frame-level hold-out). Existing lists in the target folder
  are replaced only with ``--replace_splits``.

Examples::

    python tools/make_coarse_poses.py --data_path data/nyu --split_files splits/nyu --jobs 2
    python tools/make_coarse_poses.py --data_path data/mine --split mine --jobs 2

write ``splits/<split>/cpose/<scene>/<frame:04d>.npy`` and
``splits/<split>/cpose/summary.json``. Finished sequences are skipped when the
command is run again (``--overwrite`` redoes them).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.splits import (
    SPLIT_FILE_NAMES,
    filter_items_with_coarse_poses,
    read_split_items,
    split_list_paths,
    write_split_files,
)
from tools.colmap_poses import (
    ColmapSettings,
    available_cores,
    collect_items,
    find_sequences,
    format_summary_table,
    make_coarse_poses,
)
from utils import PROJECT_ROOT, GasMonoError, OneLineErrorParser, atomic_write_text, cli_entry_point


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Run COLMAP (pycolmap, CPU) on every sequence <data_path>/<scene>/*.jpg, write coarse "
        "relative poses <cpose_dir>/<scene>/<frame:04d>.npy = [T_{t->t-1}, T_{t->t+1}] and train/val split "
        "files listing the items that have them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data_path", type=str, default=str(PROJECT_ROOT / "data" / "nyu"),
                        help="folder whose sub-folders are sequences of <frame:06d>.jpg (optional cam.txt: "
                             "3x3 pixel intrinsics; else NYUv2 defaults)")
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
    parser.add_argument("--overlap", type=int, default=10, help="each frame is matched with this many next frames")
    parser.add_argument("--max_image_size", type=int, default=1024, help="longer image side used by SIFT")
    parser.add_argument("--max_num_features", type=int, default=8192, help="SIFT features per frame")
    parser.add_argument("--max_epipolar_error", type=float, default=1.0,
                        help="RANSAC threshold (pixels) of the two-view verification (COLMAP default 4); "
                             "1 admits fewer false matches on repeated textures; raise it for distorted frames")
    parser.add_argument("--work_dir", type=str, default=None,
                        help="folder for COLMAP databases and models; default a temporary folder")
    parser.add_argument("--keep_work", action="store_true", help="keep the COLMAP databases and models")
    parser.add_argument("--overwrite", action="store_true", help="redo sequences that are already done")
    parser.add_argument("--retry_failed", action="store_true", help="redo sequences that failed before")
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


def listed_scenes(lists: dict[Path, list[tuple[str, str, int]]], data_path: str) -> list[str]:
    """The scenes the lists name that are sequences under ``data_path``; the others are reported."""
    named = sorted({scene for items in lists.values() for _, scene, _ in items})
    on_disk = {sequence.name for sequence in find_sequences(data_path)}
    scenes = [scene for scene in named if scene in on_disk]
    absent = [scene for scene in named if scene not in on_disk]
    if not scenes:
        raise GasMonoError(f"none of the {len(named)} sequences named by the split lists is under {data_path} "
                           f"(e.g. {named[0]})")
    if absent:
        print(f"{len(absent)} of {len(named)} listed sequence(s) are not under {data_path} (e.g. {absent[0]}); "
              "their items get no poses")
    return scenes


def report_coverage(lists: dict[Path, list[tuple[str, str, int]]], cpose_dir: Path) -> None:
    """Per list: the items with a coarse-pose file; the others go to ``<cpose_dir>/missing_<list>.txt``."""
    for list_path, items in lists.items():
        with_poses = set(filter_items_with_coarse_poses([(scene, frame) for _, scene, frame in items], cpose_dir))
        missing = [line for line, scene, frame in items if (scene, frame) not in with_poses]
        missing_path = cpose_dir / f"missing_{list_path.stem}.txt"
        atomic_write_text("".join(line + "\n" for line in missing), missing_path)
        print(f"{list_path}: {len(items) - len(missing)} of {len(items)} listed items have the poses of both "
              f"neighbours; {len(missing)} missing, listed in {missing_path}")


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    check_arguments(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    split_root = PROJECT_ROOT / "splits" / args.split
    cpose_dir = Path(args.cpose_dir) if args.cpose_dir else split_root / "cpose"
    split_dir = Path(args.split_dir) if args.split_dir else split_root
    lists = None
    scenes = None
    if args.split_files:
        lists = {path: read_split_items(path) for given in args.split_files for path in split_list_paths(given)}
        scenes = listed_scenes(lists, args.data_path)
        num_sequences = len(scenes)
    else:
        num_sequences = len(find_sequences(args.data_path))
        existing = [split_dir / name for name in SPLIT_FILE_NAMES if (split_dir / name).is_file()]
        if existing and not args.replace_splits:
            raise GasMonoError(f"{existing[0]} exists: pass --split_files {split_dir} to compute poses for its items "
                               "and keep it, --split_dir for new lists elsewhere, or --replace_splits")
    threads = args.threads or max(1, available_cores() // args.jobs)
    settings = ColmapSettings(
        num_threads=threads,
        overlap=args.overlap,
        max_image_size=args.max_image_size,
        max_num_features=args.max_num_features,
        max_epipolar_error=args.max_epipolar_error,
        seed=args.seed,
    )
    print(f"{num_sequences} sequence(s) under {args.data_path}; {args.jobs} job(s) x {threads} thread(s)")

    with tempfile.TemporaryDirectory(prefix="gasmono_colmap_") as temporary:
        work_dir = Path(args.work_dir) if args.work_dir else Path(temporary)
        results = make_coarse_poses(
            args.data_path,
            cpose_dir,
            work_dir,
            settings,
            jobs=args.jobs,
            overwrite=args.overwrite,
            retry_failed=args.retry_failed,
            keep_work=args.keep_work,
            scenes=scenes,
        )
    print(format_summary_table(results))
    print(f"summary: {cpose_dir / 'summary.json'} (COLMAP logs: {cpose_dir}/<scene>/colmap.log)")

    if lists is not None:
        report_coverage(lists, cpose_dir)
        return
    items = collect_items(cpose_dir, [result.scene for result in results])
    if not items:
        raise GasMonoError("no sequence could be reconstructed, so no split files were written")
    train_path, val_path = write_split_files(items, split_dir, val_fraction=args.val_fraction, seed=args.seed)
    print(f"split files: {train_path}, {val_path} ({len(items)} items)")


if __name__ == "__main__":
    main()
