"""Training throughput of the full GasMono step (depth, AlignNet, PoseNet,
losses, backward, AdamW) on random images.

    python benchmarks/bench_train.py                    # CPU, 256x320, batch 2
    python benchmarks/bench_train.py --device cuda --batch_size 12 --amp both
    python benchmarks/bench_train.py --depth_encoder resnet18

Prints items/s and peak memory per configuration.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from options import GasMonoOptions  # noqa: E402
from trainer import Trainer  # noqa: E402
from utils import DEFAULT_DEPTH_ENCODER, DEPTH_ENCODERS, NYU_NORMALISED_INTRINSICS, OneLineErrorParser  # noqa: E402


def random_batch(batch_size: int, height: int, width: int) -> dict:
    """A batch in the input-dict convention with random images and NYU intrinsics."""
    generator = torch.Generator().manual_seed(0)
    batch = {}
    for frame_id in (0, -1, 1):
        for scale in range(4):
            image = torch.rand(batch_size, 3, height // 2**scale, width // 2**scale, generator=generator)
            batch[("color", frame_id, scale)] = image
            batch[("color_aug", frame_id, scale)] = image
    for scale in range(4):
        K = torch.from_numpy(NYU_NORMALISED_INTRINSICS).clone()
        K[0] *= width / 2**scale
        K[1] *= height / 2**scale
        K = K.repeat(batch_size, 1, 1)
        batch[("K", scale)] = K
        batch[("inv_K", scale)] = torch.linalg.inv(K)
    for frame_id in (-1, 1):
        pose = torch.eye(4).repeat(batch_size, 1, 1)
        pose[:, 0, 3] = 0.05 * frame_id
        batch[("pose_gt", frame_id)] = pose
    return batch


def measure(device: str, amp: bool, batch_size: int, height: int, width: int, steps: int, warmup: int,
            depth_encoder: str) -> dict:
    flags = ["--height", str(height), "--width", str(width), "--batch_size", str(batch_size), "--use_posegt",
             "--selfpp", "--weights_init", "scratch", "--device", device, "--depth_encoder", depth_encoder]
    if amp:
        flags.append("--amp")
    trainer = Trainer(GasMonoOptions().parse(flags), with_data=False)
    trainer.set_train()
    batch = random_batch(batch_size, height, width)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(warmup + steps):
        if step == warmup:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        _, losses, _ = trainer.process_batch(batch)
        trainer.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        trainer.optimizer.step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elapsed = time.perf_counter() - start
    return {"items_per_s": batch_size * steps / elapsed, "step_s": elapsed / steps, "peak_mb": peak_mb}


def main() -> None:
    parser = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--amp", choices=["off", "on", "both"], default="off",
                        help="bf16 autocast (CUDA only)")
    parser.add_argument("--depth_encoder", choices=DEPTH_ENCODERS, default=DEFAULT_DEPTH_ENCODER)
    args = parser.parse_args()
    amp_modes = {"off": [False], "on": [True], "both": [False, True]}[args.amp]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device: {name}, {torch.get_num_threads()} threads, {args.height}x{args.width}, "
          f"batch {args.batch_size}, depth encoder {args.depth_encoder}")
    print(f"{'precision':<10} {'items/s':>9} {'s/step':>8} {'peak MB':>9}")
    for amp in amp_modes:
        result = measure(args.device, amp, args.batch_size, args.height, args.width, args.steps, args.warmup,
                         args.depth_encoder)
        label = "bf16 amp" if amp else "fp32"
        peak = "(RSS) " if not args.device.startswith("cuda") else ""
        print(f"{label:<10} {result['items_per_s']:>9.2f} {result['step_s']:>8.3f} {peak}{result['peak_mb']:>9.0f}")


if __name__ == "__main__":
    main()
