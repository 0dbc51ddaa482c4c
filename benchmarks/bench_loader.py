"""Training-loader throughput: items per second per worker (one core).

Loads items of the ``--dataset`` class (:mod:`datasets.registry`) as the
trainer builds them (3 frames at scale 0 only, 256 x 320 by default;
``--num_scales 4`` for the release's pyramid; ``--stereo`` adds the other
camera, frame ``"s"``), from 640 x 480 JPEGs of a synthetic indoor set
(``nyu``) or 1242 x 375 JPEGs in KITTI's raw layout (``kitti``), with both
resize filters and augmentation strong / colorjitter / none (training mode:
each item augmented with probability 0.5), in the main process, and
optionally through a ``DataLoader`` with N workers. The targets (NYUv2 at
256 x 320): at least 50 items/s with ``strong`` and LANCZOS, 120 with
``strong`` and area resizing.

Examples::

    python benchmarks/bench_loader.py                     # renders a small 640 x 480 set first
    python benchmarks/bench_loader.py --data_path data/synthetic_indoor/train --num_workers 2
    python benchmarks/bench_loader.py --dataset kitti --height 192 --width 640   # renders 1242 x 375 drives
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.augmentation import AUGMENTATIONS  # noqa: E402
from datasets.mono_dataset import RESIZE_FILTERS, STEREO_FRAME, MonoDataset  # noqa: E402
from datasets.registry import dataset_class  # noqa: E402
from datasets.splits import find_sequence_items  # noqa: E402
from synthetic.dataset import generate_dataset  # noqa: E402
from synthetic.kitti import generate_kitti_raw  # noqa: E402
from utils import GasMonoError, OneLineErrorParser, cli_entry_point, describe_cpu  # noqa: E402

BENCHMARK_DATASETS = ("nyu", "kitti")
FRAMES = 16  # per rendered sequence (two sequences)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(description="Measure a training data set's items/s per worker.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", choices=BENCHMARK_DATASETS, default="nyu",
                        help="data set class (datasets/registry.py)")
    parser.add_argument("--data_path", type=Path, default=None,
                        help="nyu: folder of <scene>/<frame:06d>.jpg sequences; default: render 2 x 16 frames at "
                             "640 x 480 (nyu) or 2 drives x 16 stereo frames at 1242 x 375 (kitti)")
    parser.add_argument("--stereo", action="store_true", help="also load the other camera (frame 's'; kitti)")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--items", type=int, default=100, help="items timed per setting (after 5 warm-up items)")
    parser.add_argument("--num_workers", type=int, default=0, help="also time a DataLoader with this many workers")
    parser.add_argument("--batch_size", type=int, default=1, help="batch size of that DataLoader")
    parser.add_argument("--filters", nargs="+", choices=RESIZE_FILTERS, default=list(RESIZE_FILTERS),
                        help="resize filters to time")
    parser.add_argument("--augmentations", nargs="+", choices=AUGMENTATIONS, default=list(AUGMENTATIONS),
                        help="augmentations to time")
    parser.add_argument("--num_scales", type=int, default=1,
                        help="pyramid levels per frame (the trainer builds 1; the release built 4)")
    return parser


def time_main_process(dataset: MonoDataset, count: int) -> tuple[float, float]:
    """Return (items/s by wall clock, items/s by process CPU time) in this process."""
    for index in range(5):
        dataset[index % len(dataset)]
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        dataset[index % len(dataset)]
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def time_workers(dataset: MonoDataset, count: int, workers: int, batch_size: int) -> float:
    """Items/s through a DataLoader (``batch_size``, ``workers`` processes), all workers together."""
    batches = max(1, count // batch_size)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True,
                                             num_samples=(batches + 2 * workers) * batch_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    iterator = iter(loader)
    for _ in range(2 * workers):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def benchmark_items(dataset: str, data_path: Path | None, tmp: Path) -> tuple[Path, list[str]]:
    """The data folder and the split lines to load: every item with both
    neighbours (rendered into ``tmp`` when ``data_path`` is None)."""
    if dataset == "kitti":
        if data_path is not None:
            raise GasMonoError("--dataset kitti renders its own drives; --data_path is for nyu")
        print(f"rendering 2 drives x {FRAMES} stereo frames at 1242 x 375 ...")
        summary = generate_kitti_raw(tmp, num_drives=2, frames_per_drive=FRAMES, height=375, width=1242,
                                     progress=False)
        return tmp, [f"{drive} {frame} l" for drive in summary["drives"] for frame in range(1, FRAMES - 1)]
    if data_path is None:
        print(f"rendering 2 scenes x {FRAMES} frames at 640 x 480 ...")
        generate_dataset(tmp, num_scenes=2, frames_per_scene=FRAMES, num_test=0, num_low_texture=0, progress=False)
        data_path = tmp / "train"
    return data_path, [f"{scene} {frame:04d} l" for scene, frame in find_sequence_items(data_path)]


@cli_entry_point
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    random.seed(0)
    frame_ids = [0, -1, 1, *([STEREO_FRAME] if args.stereo else [])]
    with tempfile.TemporaryDirectory() as tmp:
        data_path, lines = benchmark_items(args.dataset, args.data_path, Path(tmp))
        print(f"CPU: {describe_cpu()}")
        print(f"{len(lines)} items from {data_path}; {args.height} x {args.width}, frames "
              f"{' '.join(map(str, frame_ids))}, {args.num_scales} scale(s)")
        for resize_filter in args.filters:
            for augmentation in args.augmentations:
                dataset = dataset_class(args.dataset)(
                    data_path, lines, args.height, args.width, frame_ids, args.num_scales,
                    is_train=augmentation != "none", augmentation=augmentation, resize_filter=resize_filter)
                wall, cpu = time_main_process(dataset, args.items)
                line = (f"{resize_filter:>8} {augmentation:>12}: {wall:7.1f} items/s (wall), "
                        f"{cpu:7.1f} items/s per CPU second")
                if args.num_workers > 0:
                    loader = time_workers(dataset, args.items, args.num_workers, args.batch_size)
                    line += (f"; DataLoader ({args.num_workers} workers, batch {args.batch_size}): {loader:7.1f} "
                             f"items/s, {loader / args.num_workers:6.1f} per worker")
                print(line)


if __name__ == "__main__":
    main()
