"""Predict depth for an image, a folder of images or a video with a GasMono checkpoint.

Examples::

    python predict.py --load_weights_folder logs/mdp/models/weights_39 --input room.jpg
    python predict.py --load_weights_folder W --input photos/ --output_dir out --side_by_side
    python predict.py --load_weights_folder W --input walk.mp4 --video_stride 5

For every image (or video frame) ``<name>`` it writes to the output folder
(default: beside the input):

* ``<name>_disp.npy``: scaled disparity (``1 / depth``) at the input resolution;
* ``<name>_depth.npy``: depth in metres up to an unknown scale (``1 / disp``);
* ``<name>_disp.png``: the colour-mapped disparity (``--side_by_side``: next to
  the input image).

Video frames are named ``<video stem>_<frame:06d>``. 16-bit grey images are
scaled to 8 bits. In a folder, an image that cannot be read does not stop the
others: the failures are reported in one line at the end (exit status 2).
Runs on the CPU unless a GPU is available and selected.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets.eval_base import load_rgb
from datasets.sequence_preparation import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from inference import DepthEstimator, colorize_disparity
from utils import KERNEL_MODES, GasMonoError, OneLineErrorParser, cli_entry_point, prepare_output_folder, resolve_device

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "MAX_NAMES_IN_SUMMARY",
    "UnreadableImagesError",
    "collect_images",
    "iter_video_frames",
    "save_prediction",
    "predict_path",
    "build_parser",
    "main",
]

OUTPUT_SUFFIXES = ("_disp", "_depth")
"""Stems ending like this are our own outputs and are skipped in folders."""
MAX_NAMES_IN_SUMMARY = 3


class UnreadableImagesError(GasMonoError):
    """Some images of a folder could not be read; the others were processed.

    Attributes:
        failures: ``(path, reason)`` of every image not processed.
        written: the files written for the other images.
    """

    def __init__(self, message: str = "", failures: Sequence[tuple[Path, str]] = (),
                 written: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)
        self.written = list(written)


def collect_images(folder: Path) -> list[Path]:
    """Images in ``folder`` (sorted), skipping this tool's own outputs."""
    images = sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.stem.endswith(OUTPUT_SUFFIXES)
    )
    if not images:
        raise GasMonoError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return images


def _read_image(path: Path) -> np.ndarray:
    """``H x W x 3`` uint8 RGB (see :func:`datasets.eval_base.load_rgb`)."""
    return np.asarray(load_rgb(path))


def _unreadable_summary(failures: list[tuple[Path, str]], total: int, written: list[Path], output_dir: Path) -> str:
    names = ", ".join(path.name for path, _ in failures[:MAX_NAMES_IN_SUMMARY])
    if len(failures) > MAX_NAMES_IN_SUMMARY:
        names += f" (+{len(failures) - MAX_NAMES_IN_SUMMARY} more)"
    return (
        f"{len(failures)} of {total} images could not be read: {names} (first: {failures[0][1]}); "
        f"the other {total - len(failures)} were processed ({len(written)} files written to {output_dir})"
    )


def iter_video_frames(path: Path, stride: int = 1, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame number, H x W x 3 uint8 RGB)`` for every ``stride``-th frame."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise GasMonoError(f"cannot open video {path}")
    try:
        number = 0
        produced = 0
        while max_frames is None or produced < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if number % stride == 0:
                yield number, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                produced += 1
            number += 1
    finally:
        capture.release()
    if number == 0:
        raise GasMonoError(f"no frame could be read from video {path}")


def save_prediction(
    name: str,
    image: np.ndarray,
    disp: np.ndarray,
    output_dir: Path,
    colormap: str = "magma",
    side_by_side: bool = False,
) -> list[Path]:
    """Write ``<name>_disp.npy``, ``<name>_depth.npy`` and ``<name>_disp.png``.

    Args:
        image: ``H x W x 3`` uint8 RGB input.
        disp: ``H x W`` scaled disparity.

    Returns:
        the written paths.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = [output_dir / f"{name}_disp.npy", output_dir / f"{name}_depth.npy", output_dir / f"{name}_disp.png"]
    np.save(paths[0], disp.astype(np.float32))
    np.save(paths[1], (1.0 / disp).astype(np.float32))
    colored = colorize_disparity(disp, colormap)
    if side_by_side:
        colored = np.concatenate([image, colored], axis=1)
    Image.fromarray(colored).save(paths[2])
    return paths


def predict_path(
    estimator: DepthEstimator,
    input_path: Path,
    output_dir: Path | None = None,
    colormap: str = "magma",
    side_by_side: bool = False,
    post_process: bool = False,
    video_stride: int = 1,
    max_frames: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Predict for an image file, a folder of images or a video file.

    Returns:
        every file written.

    Raises:
        UnreadableImagesError: after processing a folder, when some of its
            images could not be read (the others are processed).
        GasMonoError: a missing or unsupported input, an unreadable single
            image or video, or an output folder that is a file or not writable.
    """
    if not input_path.exists():
        raise GasMonoError(f"input not found: {input_path}")
    if video_stride < 1:
        raise GasMonoError(f"--video_stride must be at least 1, got {video_stride}")
    written: list[Path] = []
    if input_path.is_dir():
        output_dir = prepare_output_folder(output_dir or input_path, "output folder")
        images = collect_images(input_path)
        failures: list[tuple[Path, str]] = []
        for path in tqdm(images, desc="predict", unit="img", disable=not progress):
            try:
                image = _read_image(path)
            except GasMonoError as error:
                failures.append((path, str(error)))
                continue
            disp = estimator.predict_disparity(image, post_process)
            written += save_prediction(path.stem, image, disp, output_dir, colormap, side_by_side)
        if failures:
            raise UnreadableImagesError(_unreadable_summary(failures, len(images), written, output_dir),
                                        failures, written)
    elif input_path.suffix.lower() in VIDEO_SUFFIXES:
        output_dir = prepare_output_folder(output_dir or input_path.parent, "output folder")
        frames = iter_video_frames(input_path, video_stride, max_frames)
        for number, image in tqdm(frames, desc="predict", unit="frame", disable=not progress):
            disp = estimator.predict_disparity(image, post_process)
            written += save_prediction(f"{input_path.stem}_{number:06d}", image, disp, output_dir, colormap,
                                       side_by_side)
    elif input_path.suffix.lower() in IMAGE_SUFFIXES:
        output_dir = prepare_output_folder(output_dir or input_path.parent, "output folder")
        image = _read_image(input_path)
        disp = estimator.predict_disparity(image, post_process)
        written += save_prediction(input_path.stem, image, disp, output_dir, colormap, side_by_side)
    else:
        raise GasMonoError(
            f"{input_path}: not a folder, image ({', '.join(IMAGE_SUFFIXES)}) or video ({', '.join(VIDEO_SUFFIXES)})"
        )
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Predict depth with a GasMono checkpoint for an image, a folder of images or a video.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--load_weights_folder", type=Path, required=True,
                        help="weights folder holding encoder.pth and depth.pth (ours or the release's)")
    parser.add_argument("--input", "--image_path", dest="input", type=Path, required=True,
                        help="an image, a folder of images or a video file")
    parser.add_argument("--output_dir", type=Path, default=None, help="output folder (None: beside the input)")
    parser.add_argument("--colormap", type=str, default="magma", help="matplotlib colormap of the PNG")
    parser.add_argument("--side_by_side", action="store_true", help="put the input image left of the colour map")
    parser.add_argument("--post_process", action="store_true",
                        help="average with the prediction of the mirrored image")
    parser.add_argument("--video_stride", type=int, default=1, help="video: predict every N-th frame")
    parser.add_argument("--max_frames", type=int, default=None, help="video: stop after this many predictions")
    parser.add_argument("--min_depth", type=float, default=0.1, help="minimum depth of the disparity mapping")
    parser.add_argument("--max_depth", type=float, default=10.0, help="maximum depth of the disparity mapping")
    parser.add_argument("--device", type=str, default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda:N'")
    parser.add_argument("--no_cuda", action="store_true", help="run on the CPU even if CUDA is available")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the networks (for GPUs: on the CPU compiling takes minutes)")
    parser.add_argument("--kernels", type=str, default="auto", choices=KERNEL_MODES,
                        help="reference: the networks as trained; fast: fused copies (batch norms folded, "
                             "low-resolution upsampled convolutions, oneDNN on the CPU; same outputs up to float "
                             "rounding); auto: fast where verified (the CPU), else reference")
    return parser


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.min_depth < args.max_depth < float("inf"):
        parser.error(f"need 0 < --min_depth < --max_depth (finite), got {args.min_depth} and {args.max_depth}")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f"--max_frames must be at least 1, got {args.max_frames}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.input.exists():
        raise GasMonoError(f"input not found: {args.input}")
    if args.output_dir is not None:
        prepare_output_folder(args.output_dir, "--output_dir")
    estimator = DepthEstimator.from_checkpoint(
        args.load_weights_folder, resolve_device(args.device, args.no_cuda), args.min_depth, args.max_depth,
        compile=args.compile, kernels=args.kernels,
    )
    logging.getLogger(__name__).info(estimator.kernels.describe())
    written = predict_path(
        estimator, args.input, args.output_dir, args.colormap, args.side_by_side, args.post_process,
        args.video_stride, args.max_frames,
    )
    print(f"-> wrote {len(written)} files to {written[0].parent}")
    return written


if __name__ == "__main__":
    main()
