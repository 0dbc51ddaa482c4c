"""Depth inference latency: ours (``inference.DepthEstimator``) against the
release's way of running the same network, side by side on the same weights.

* release-style: the encoder eager in NCHW memory, the decoder computing all
  four scales as the release does (``release_step.release_decoder_forward``),
  the library's ELU and linear layers, under ``torch.no_grad``;
* ours: ``DepthEstimator.disparity_batch``: scale 0 only, channels-last
  weights and activations, ``torch.inference_mode``, with ``--kernels``
  (default auto: on the CPU the fused copies of the networks of
  ``accel.fusion``; ``reference`` runs the plain ones) (plus ``torch.compile``
  with ``--compile``).

The two outputs are compared first (scale-0 disparity, relative to its
largest value); then each batch size is timed in alternating rounds and the
best and median milliseconds per image are printed with the latency ratio
ours / release (median of the per-round ratios).

    python benchmarks/bench_networks.py                       # CPU, 256x320, batch 1 and 8
    python benchmarks/bench_networks.py --threads 1 --clock cpu --rounds 7
    python benchmarks/bench_networks.py --device cuda --batches 1 8 32
    python benchmarks/bench_networks.py --batches 1 --operators 8   # and where batch 1's time goes
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_train import measure  # noqa: E402
from release_step import release_decoder_forward  # noqa: E402

from inference import DepthEstimator  # noqa: E402
from layers import disp_to_depth  # noqa: E402
from networks import DepthDecoder, MPViT, build_depth_encoder  # noqa: E402
from utils import (  # noqa: E402
    DEFAULT_DEPTH_ENCODER,
    DEPTH_ENCODERS,
    KERNEL_MODES,
    OneLineErrorParser,
    describe_cpu,
    require_cuda_if_requested,
)


def release_style(encoder: torch.nn.Module, decoder: DepthDecoder) -> Callable[[torch.Tensor], torch.Tensor]:
    """The release's inference: NCHW, all four scales, library ELU and linear layers -> scaled scale-0 disparity."""
    encoder = copy.deepcopy(encoder).eval()
    decoder = copy.deepcopy(decoder).eval()
    if isinstance(encoder, MPViT):
        encoder.channels_last = False

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return disp_to_depth(release_decoder_forward(decoder, encoder(images))[("disp", 0)], 0.1, 10.0)[0]
    return run


def print_operators(runs: dict[str, Callable[[], object]], count: int) -> None:
    """The ``count`` costliest operators of one call of each run (own CPU time, ms), side by side."""
    times = {}
    for name, run in runs.items():
        run()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        times[name] = {event.key: event.self_cpu_time_total / 1000 for event in prof.key_averages()}
    totals = {name: sum(values.values()) for name, values in times.items()}
    keys = sorted(set().union(*times.values()), key=lambda key: -max(values.get(key, 0.0) for values in times.values()))
    print(f"{'operator':<36}" + "".join(f" {name:>9}" for name in times) + "   (ms per call, own CPU time)")
    for key in keys[:count]:
        print(f"{key[:36]:<36}" + "".join(f" {values.get(key, 0.0):>9.1f}" for values in times.values()))
    print(f"{'all operators':<36}" + "".join(f" {total:>9.1f}" for total in totals.values()))


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=256, help="input height (multiple of 32)")
    parser.add_argument("--width", type=int, default=320, help="input width (multiple of 32)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes to time")
    parser.add_argument("--rounds", type=int, default=5, help="timed calls per setting (alternating)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or this process's CPU time (robust on a loaded machine with --threads 1)")
    parser.add_argument("--compile", action="store_true", help="ours through torch.compile")
    parser.add_argument("--kernels", choices=KERNEL_MODES, default="auto",
                        help="ours: the plain networks (reference) or the fused copies of accel.fusion (fast; auto: "
                             "where verified)")
    parser.add_argument("--depth_encoder", choices=DEPTH_ENCODERS, default=DEFAULT_DEPTH_ENCODER,
                        help="the depth network's encoder")
    parser.add_argument("--operators", type=int, default=0,
                        help="also print the N costliest operators of one call at the first batch size (CPU)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = require_cuda_if_requested(args.device)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    torch.manual_seed(0)
    encoder = build_depth_encoder(args.depth_encoder).to(device).eval()
    decoder = DepthDecoder(encoder.num_ch_enc).to(device).eval()
    release = release_style(encoder, decoder)
    scale0 = DepthDecoder(encoder.num_ch_enc, scales=[0])
    scale0.load_state_dict(decoder.state_dict())
    ours = DepthEstimator(copy.deepcopy(encoder), scale0, args.height, args.width, device=device, compile=args.compile,
                          kernels=args.kernels)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else describe_cpu()
    print(f"device: {name}, {torch.get_num_threads()} threads, input {args.height}x{args.width}, depth encoder "
          f"{args.depth_encoder}, torch {torch.__version__}, {args.rounds} alternating rounds, {args.clock} clock; ours: "
          f"{ours.kernels.describe()}")
    check = torch.rand(2, 3, args.height, args.width, device=device)
    reference = release(check)
    difference = float((ours.disparity_batch(check) - reference).abs().max() / reference.abs().max())
    print(f"ours vs release-style output: max |difference| / max |release| = {difference:.1e}")
    print(f"{'batch':>5} {'release ms/image':>17} {'ours ms/image':>14} {'ours / release':>15}")
    for batch in args.batches:
        images = torch.rand(batch, 3, args.height, args.width, device=device)
        results = measure({"release": lambda: release(images), "ours": lambda: ours.disparity_batch(images)},
                          args.rounds, 1, clock, device)
        times = {name: result["times"] for name, result in results.items()}
        ratios = [mine / theirs for mine, theirs in zip(times["ours"], times["release"])]
        best = {name: 1000 * min(seconds) / batch for name, seconds in times.items()}
        median = {name: 1000 * statistics.median(seconds) / batch for name, seconds in times.items()}
        print(f"{batch:>5} {best['release']:>8.1f} (best) {best['ours']:>6.1f} (best) {statistics.median(ratios):>8.2f}"
              f" (median; best/best {best['ours'] / best['release']:.2f}); median ms/image: release "
              f"{median['release']:.1f}, ours {median['ours']:.1f}")
    if args.operators:
        images = torch.rand(args.batches[0], 3, args.height, args.width, device=device)
        print_operators({"release": lambda: release(images), "ours": lambda: ours.disparity_batch(images)},
                        args.operators)


if __name__ == "__main__":
    main()
