"""Training-loader throughput: items per second per worker (one core).

Loads items of ``NYUDataset`` as the trainer builds them (3 frames at scale
0 only, 256 x 320 by default; ``--num_scales 4`` for the release's pyramid)
from 640 x 480 JPEGs of a synthetic indoor set, with both resize filters and
augmentation strong / colorjitter / none (training mode: each item augmented
with probability 0.5), in the main process, and optionally through a
``DataLoader`` with N workers. The targets: at least 50 items/s with
``strong`` and LANCZOS, 120 with ``strong`` and area resizing.

Example::

    python benchmarks/bench_loader.py                     # renders a small 640 x 480 set first
    python benchmarks/bench_loader.py --data_path data/synthetic_indoor/train --num_workers 2
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
from datasets.mono_dataset import RESIZE_FILTERS  # noqa: E402
from datasets.nyu_dataset import NYUDataset  # noqa: E402
from datasets.splits import find_sequence_items  # noqa: E402
from synthetic.dataset import generate_dataset  # noqa: E402
from utils import OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(description="Measure NYUDataset items/s per worker.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data_path", type=Path, default=None,
                        help="folder of <scene>/<frame:06d>.jpg sequences; default: render 2 x 16 frames at 640 x 480")
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


def time_main_process(dataset: NYUDataset, count: int) -> tuple[float, float]:
    """Return (items/s by wall clock, items/s by process CPU time) in this process."""
    for index in range(5):
        dataset[index % len(dataset)]
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        dataset[index % len(dataset)]
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def time_workers(dataset: NYUDataset, count: int, workers: int, batch_size: int) -> float:
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


@cli_entry_point
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data_path = args.data_path
        if data_path is None:
            print("rendering 2 scenes x 16 frames at 640 x 480 ...")
            generate_dataset(tmp, num_scenes=2, frames_per_scene=16, num_test=0, num_low_texture=0, progress=False)
            data_path = Path(tmp) / "train"
        lines = [f"{scene} {frame:04d} l" for scene, frame in find_sequence_items(data_path)]
        print(f"{len(lines)} items from {data_path}; {args.height} x {args.width}, frames 0 -1 1, "
              f"{args.num_scales} scale(s)")
        for resize_filter in args.filters:
            for augmentation in args.augmentations:
                dataset = NYUDataset(data_path, lines, args.height, args.width, [0, -1, 1], args.num_scales,
                                     is_train=augmentation != "none", augmentation=augmentation,
                                     resize_filter=resize_filter)
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
