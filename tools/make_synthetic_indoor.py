"""Render the bundled synthetic indoor data set (training sequences and a test set).

Example::

    python tools/make_synthetic_indoor.py --out data/synthetic_indoor --num_scenes 8 \\
        --frames_per_scene 40 --num_test 20

The layout is described in :mod:`synthetic.dataset` and the README.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic.dataset import generate_dataset  # noqa: E402
from synthetic.rooms import LOW_TEXTURE  # noqa: E402
from utils import GasMonoError, OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Render synthetic indoor sequences (NYUv2 layout, intrinsics and test-set format) on the CPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("data/synthetic_indoor"), help="output folder")
    parser.add_argument("--num_scenes", type=int, default=8, help="number of training sequences")
    parser.add_argument("--frames_per_scene", type=int, default=40, help="frames per training sequence (>= 3)")
    parser.add_argument("--num_test", type=int, default=20, help="number of test images (from held-out rooms)")
    parser.add_argument("--height", type=int, default=480, help="image height")
    parser.add_argument("--width", type=int, default=640, help="image width")
    parser.add_argument("--low_texture_fraction", type=float, default=0.25,
                        help="fraction of training scenes painted plain (COLMAP is expected to fail on them)")
    parser.add_argument("--num_low_texture", type=int, default=None,
                        help="explicit number of low-texture training scenes (overrides --low_texture_fraction)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the output is a function of it")
    parser.add_argument("--num_workers", type=int, default=1, help="processes rendering scenes in parallel")
    return parser


@cli_entry_point
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.low_texture_fraction <= 1.0:
        raise GasMonoError(f"--low_texture_fraction must be in [0, 1], got {args.low_texture_fraction}")
    num_low = args.num_low_texture
    if num_low is None:
        num_low = round(args.low_texture_fraction * args.num_scenes)
    start = time.time()
    summary = generate_dataset(
        args.out,
        num_scenes=args.num_scenes,
        frames_per_scene=args.frames_per_scene,
        num_test=args.num_test,
        height=args.height,
        width=args.width,
        num_low_texture=num_low,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    elapsed = time.time() - start
    train = {name: scene for name, scene in summary["scenes"].items() if scene["split"] == "train"}
    low = sorted(name for name, scene in train.items() if scene["kind"] == LOW_TEXTURE)
    frames = sum(scene["frames"] for scene in train.values()) + args.num_test
    print(f"wrote {len(train)} training sequences ({len(low)} low-texture: {', '.join(low) or 'none'}) "
          f"and {args.num_test} test images to {args.out}")
    print(f"{frames} frames in {elapsed:.1f} s ({elapsed / max(frames, 1):.2f} s per frame)")


if __name__ == "__main__":
    main()
