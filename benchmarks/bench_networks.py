"""Forward-pass speed of GasMono's networks (eval mode, no gradients).

Prints milliseconds per image for the depth network (``--depth_encoder``,
MPViT-small by default, + depth decoder) and the pose networks (ResNet-18 pair encoder + PoseNet head,
and the same for AlignNet) at batch 1 and 4, on CPU and on CUDA when present
(best and median of ``--repeats`` calls).

    python benchmarks/bench_networks.py [--height 256 --width 320 --repeats 5 --depth_encoder resnet18]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from networks import DepthDecoder, PoseDecoder, ResnetEncoder, TransDecoder, build_depth_encoder  # noqa: E402
from utils import DEFAULT_DEPTH_ENCODER, DEPTH_ENCODERS, OneLineErrorParser  # noqa: E402


def time_ms(run: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float]:
    """(best, median) wall time of ``run`` in milliseconds after one warm-up
    call; the best time is the robust figure on a shared machine."""
    run()
    timings = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - start)
    timings.sort()
    return 1000.0 * timings[0], 1000.0 * timings[len(timings) // 2]


def benchmark(device: torch.device, height: int, width: int, batches: list[int], repeats: int,
              depth_encoder: str) -> None:
    encoder = build_depth_encoder(depth_encoder).to(device).eval()
    decoder = DepthDecoder(encoder.num_ch_enc).to(device).eval()
    pose_encoder = ResnetEncoder(18, False, 2).to(device).eval()
    pose_decoder = PoseDecoder(pose_encoder.num_ch_enc, 1, 2).to(device).eval()
    trans_encoder = ResnetEncoder(18, False, 2).to(device).eval()
    trans_decoder = TransDecoder(trans_encoder.num_ch_enc, 1, 2).to(device).eval()
    for batch in batches:
        image = torch.rand(batch, 3, height, width, device=device)
        pair = torch.rand(batch, 6, height, width, device=device)
        with torch.no_grad():
            depth = time_ms(lambda: decoder(encoder(image)), device, repeats)
            encoder_only = time_ms(lambda: encoder(image), device, repeats)
            pose = time_ms(lambda: pose_decoder([pose_encoder(pair)]), device, repeats)
            align = time_ms(lambda: trans_decoder([trans_encoder(pair)]), device, repeats)
        for label, (best, median), unit in (
            ("depth net (encoder + decoder)", depth, "image"),
            (f"  of which {depth_encoder} encoder", encoder_only, "image"),
            ("pose net (ResNet-18 + PoseDecoder)", pose, "pair"),
            ("align net (ResNet-18 + TransDecoder)", align, "pair"),
        ):
            print(
                f"{device.type:4s} batch {batch}  {label:38s} best {best / batch:8.1f} "
                f"median {median / batch:8.1f} ms/{unit}"
            )


def main() -> None:
    parser = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=256, help="input height (multiple of 32)")
    parser.add_argument("--width", type=int, default=320, help="input width (multiple of 32)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="batch sizes to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per setting")
    parser.add_argument("--no_cuda", action="store_true", help="time the CPU only")
    parser.add_argument("--depth_encoder", choices=DEPTH_ENCODERS, default=DEFAULT_DEPTH_ENCODER,
                        help="the depth network's encoder")
    args = parser.parse_args()

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, input {args.height}x{args.width}")
    benchmark(torch.device("cpu"), args.height, args.width, args.batches, args.repeats, args.depth_encoder)
    if torch.cuda.is_available() and not args.no_cuda:
        print(f"cuda: {torch.cuda.get_device_name(0)}")
        benchmark(torch.device("cuda"), args.height, args.width, args.batches, args.repeats, args.depth_encoder)


if __name__ == "__main__":
    main()
