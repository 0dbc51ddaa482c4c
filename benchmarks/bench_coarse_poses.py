"""Accuracy and speed of the COLMAP coarse-pose tool on synthetic indoor sequences.

Renders ``--num_scenes`` sequences with the project's generator (some of them
low-texture), runs the coarse-pose tool on them and prints:

* the per-sequence COLMAP summary (registered frames, reprojection error, seconds);
* relative rotation and translation-direction errors against the ground truth;
* registered % over textured and over all sequences, and seconds per frame.

    python benchmarks/bench_coarse_poses.py [--num_scenes 6 --frames 30 --height 480 --width 640
                                             --num_low_texture 2 --jobs 1 --threads N --out DIR]
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coarse_poses.colmap import ColmapSettings  # noqa: E402
from coarse_poses.evaluation import evaluate_coarse_poses, format_pose_table  # noqa: E402
from coarse_poses.runner import available_cores, make_coarse_poses  # noqa: E402
from coarse_poses.summary import format_summary_table  # noqa: E402
from synthetic.dataset import generate_dataset  # noqa: E402
from synthetic.rooms import TEXTURED  # noqa: E402
from utils import OneLineErrorParser, describe_cpu  # noqa: E402


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children, all threads."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_scenes", type=int, default=6)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--num_low_texture", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="COLMAP threads per job (default cores / jobs)")
    parser.add_argument("--out", type=str, default=None, help="keep data and poses here (default: temporary)")
    args = parser.parse_args()
    threads = args.threads or max(1, available_cores() // args.jobs)

    with tempfile.TemporaryDirectory(prefix="bench_coarse_poses_") as temporary:
        root = Path(args.out) if args.out else Path(temporary)
        start = time.perf_counter()
        summary = generate_dataset(
            root / "synthetic", num_scenes=args.num_scenes, frames_per_scene=args.frames, num_test=0,
            height=args.height, width=args.width, num_low_texture=args.num_low_texture, seed=args.seed,
            num_workers=min(args.num_scenes, available_cores()), progress=False,
        )
        print(f"rendered {args.num_scenes} x {args.frames} frames at {args.width}x{args.height} "
              f"in {time.perf_counter() - start:.1f} s")
        kinds = {name: entry["kind"] for name, entry in summary["scenes"].items()}

        start, cpu_start = time.perf_counter(), cpu_seconds()
        results = make_coarse_poses(
            root / "synthetic" / "train", root / "cpose", root / "work", ColmapSettings(num_threads=threads),
            jobs=args.jobs, overwrite=True,
        )
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        print(f"CPU: {describe_cpu()}")
        print(format_summary_table(results))
        for result in results:
            print(f"  {result.scene}: {kinds[result.scene]}")

        ok = [result.scene for result in results if result.status == "ok"]
        if ok:
            print(format_pose_table(evaluate_coarse_poses(root / "cpose", root / "synthetic" / "train", ok)))
        textured = [result for result in results if kinds[result.scene] == TEXTURED]
        frames = sum(result.frames for result in results)
        print(f"registered: textured {sum(r.registered for r in textured)}/{sum(r.frames for r in textured)} "
              f"frames, all {sum(r.registered for r in results)}/{frames} frames")
        print(f"time: {wall:.1f} s wall for {frames} frames = {wall / frames:.2f} s/frame "
              f"({args.jobs} job(s) x {threads} thread(s), {available_cores()} cores); "
              f"CPU {cpu:.1f} s = {cpu / frames:.2f} CPU s/frame")


if __name__ == "__main__":
    main()
