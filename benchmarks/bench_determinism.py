"""What ``--deterministic`` costs, and whether each mode repeats itself, on the demo's data.

Renders the full preset's data into ``--out`` (reused when there), then, in
alternating rounds:

* the demo's COLMAP stage in three modes: the default (``colmap_jobs``
  processes x ``colmap_threads`` threads), deterministic (one thread per
  sequence, sequences in parallel processes) and deterministic in one
  process; wall seconds, and a digest of all coarse-pose files per round;
* ``--train_batches`` batches of the demo's training (one epoch), each in a
  fresh process, without and with ``train.py --deterministic``
  (``--train_rounds`` rounds); wall seconds of the training loop, and whether
  the losses of all runs are equal.

    python benchmarks/bench_determinism.py [--rounds 2 --train_rounds 3 --train_batches 29 --out DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from experiments.data import compute_coarse_poses, generate_data, write_splits  # noqa: E402
from experiments.pipeline import training_flags  # noqa: E402
from experiments.settings import DemoPaths, preset_settings  # noqa: E402
from utils import OneLineErrorParser  # noqa: E402

COLMAP_MODES = {
    "default": {},
    "deterministic": {"deterministic": True},
    "deterministic, one process": {"deterministic": True, "colmap_threads": 1},
}


def pose_digest(cpose: Path) -> str:
    """A digest of every coarse-pose file under ``cpose``."""
    digest = hashlib.sha1()
    for path in sorted(cpose.rglob("*.npy")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def train_once(flags: list[str]) -> None:
    """Train with ``flags`` in this process; print the loop's seconds and the losses as JSON."""
    from options import GasMonoOptions
    from trainer import Trainer

    trainer = Trainer(GasMonoOptions().parse(flags))
    start = time.perf_counter()
    trainer.train()
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "losses": [entry["loss"] for entry in trainer.history if entry["mode"] == "train"]}))


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of the COLMAP modes (0: one deterministic COLMAP run, kept if there)")
    parser.add_argument("--train_rounds", type=int, default=3, help="alternating rounds of the training modes")
    parser.add_argument("--train_batches", type=int, default=29, help="training batches per run (0: no training)")
    parser.add_argument("--out", type=Path, default=None, help="keep data, poses and runs here (default: temporary)")
    parser.add_argument("--train_once", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_once is not None:
        train_once(json.loads(args.train_once))
        return
    with tempfile.TemporaryDirectory(prefix="bench_determinism_") as temporary:
        paths = DemoPaths.create(args.out or temporary)
        generate_data(paths, preset_settings("full"), progress=False)
        seconds = {name: [] for name in COLMAP_MODES}
        digests = {name: [] for name in COLMAP_MODES}
        if not args.rounds:
            deterministic = preset_settings("full", deterministic=True)
            results = compute_coarse_poses(paths, deterministic, progress=False)["results"]
        for _ in range(args.rounds):
            for name, overrides in COLMAP_MODES.items():
                shutil.rmtree(paths.cpose, ignore_errors=True)
                start = time.perf_counter()
                results = compute_coarse_poses(paths, preset_settings("full", **overrides), progress=False)["results"]
                seconds[name].append(round(time.perf_counter() - start, 1))
                digests[name].append(pose_digest(paths.cpose))
                print(f"COLMAP {name}: {seconds[name][-1]} s, poses {digests[name][-1]}", flush=True)
        if args.train_batches:
            settings = preset_settings("full", num_epochs=1, max_train_steps=args.train_batches, log_frequency=10**6)
            write_splits(paths, settings, results)
            train = {"default": [], "deterministic": []}
            losses = []
            for _ in range(args.train_rounds):
                for name in train:
                    flags = training_flags(paths, settings, f"bench_{name}") + ["--overwrite"]
                    flags += ["--deterministic"] if name == "deterministic" else []
                    output = subprocess.run([sys.executable, __file__, "--train_once", json.dumps(flags)],
                                            check=True, capture_output=True, text=True).stdout
                    record = json.loads(output.strip().splitlines()[-1])
                    train[name].append(round(record["seconds"], 1))
                    losses.append(record["losses"])
                    print(f"training {name}: {train[name][-1]} s", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if args.rounds:
        for name in COLMAP_MODES:
            print(f"COLMAP {name:<27} seconds {seconds[name]}, poses repeated: {len(set(digests[name])) == 1}")
        print("deterministic COLMAP modes give the same poses:",
              digests["deterministic"][0] == digests["deterministic, one process"][0])
    if args.train_batches:
        for name, values in train.items():
            print(f"training {name:<25} seconds {values}")
        print("training losses equal in every run, with and without --deterministic:",
              all(run == losses[0] for run in losses))


if __name__ == "__main__":
    main()
