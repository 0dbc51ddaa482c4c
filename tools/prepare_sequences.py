"""Turn your own videos and image folders into training sequences (``--dataset folder``).

Examples::

    python tools/prepare_sequences.py walk.mp4 kitchen.mov --out data/mine --stride 3 --width 320
    python tools/prepare_sequences.py photos/hallway --out data/mine --fov 66
    python tools/prepare_sequences.py walk.mp4 --out data/mine --cam my_phone_cam.txt --max_frames 400

Each video (or folder of images, in natural order of their names) becomes
``<out>/<name>/<frame:06d>.jpg`` with ``frames.txt`` (where each frame came
from) and, when the camera is known (``--cam`` or ``--fov``), ``cam.txt``.
Without them, ``tools/make_coarse_poses.py --dataset folder`` estimates the
focal length with COLMAP and writes ``cam.txt``. See docs/datasets.md for the
whole sequence of commands (prepare, coarse poses, split, train, predict) and
:mod:`datasets.sequence_preparation` for the details.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.sequence_preparation import IMAGE_SUFFIXES, VIDEO_SUFFIXES, prepare_sequences  # noqa: E402
from utils import OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Write videos and folders of images as training sequences <out>/<name>/<frame:06d>.jpg "
        "(the layout of --dataset folder), with frames.txt mapping each frame to its source and cam.txt when "
        "the camera is known.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", type=Path, nargs="+",
                        help=f"video files ({', '.join(VIDEO_SUFFIXES)}; name = file stem) or folders of images "
                             f"({', '.join(IMAGE_SUFFIXES)}, any names, natural order; name = folder name)")
    parser.add_argument("--out", type=Path, required=True, help="data folder receiving one sub-folder per input")
    parser.add_argument("--stride", type=int, default=1,
                        help="keep every N-th frame (a phone's 30 fps video moves little between frames: 3-5 "
                             "gives the few centimetres and degrees per frame the training expects)")
    parser.add_argument("--max_frames", type=int, default=None, help="stop each sequence after this many frames")
    parser.add_argument("--width", type=int, default=None,
                        help="resize frames to this width (alone: the height keeps the aspect ratio)")
    parser.add_argument("--height", type=int, default=None,
                        help="resize frames to this height (alone: the width keeps the aspect ratio)")
    parser.add_argument("--cam", type=Path, default=None,
                        help="cam.txt of the camera: 3x3 pixel intrinsics at the inputs' own size (scaled to the "
                             "written size)")
    parser.add_argument("--fov", type=float, default=None,
                        help="horizontal field of view in degrees, when the camera has no calibration (square "
                             "pixels, centred principal point)")
    parser.add_argument("--overwrite", action="store_true", help="replace the frames of existing sequence folders")
    return parser


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    prepared = prepare_sequences(args.inputs, args.out, stride=args.stride, max_frames=args.max_frames,
                                 width=args.width, height=args.height, cam_file=args.cam, fov=args.fov,
                                 overwrite=args.overwrite)
    for sequence in prepared:
        camera = "intrinsics unknown (estimated by make_coarse_poses.py --dataset folder)"
        if sequence.intrinsics is not None:
            camera = f"focal length {sequence.intrinsics[0, 0]:.1f} px"
        print(f"{sequence.folder}: {sequence.frames} frames of {sequence.size[0]}x{sequence.size[1]} from "
              f"{sequence.source}; {camera}")
    print(f"next: python tools/make_coarse_poses.py --dataset folder --data_path {args.out} --split <name>")


if __name__ == "__main__":
    main()
