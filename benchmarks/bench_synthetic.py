"""Speed, camera motion and COLMAP robustness of the synthetic indoor generator.

For each generator seed, renders one textured training sequence, prints its
per-frame motion (translation in cm, rotation in degrees between consecutive
frames), runs the coarse-pose tool on it with default settings and prints the
registered frames and the median rotation / translation-direction errors
against the ground truth. Finally times the rendering of 640x480 frames on one
process.

    python benchmarks/bench_synthetic.py [--seeds 0 1 2 3 4 5 6 --frames 15 --height 240 --width 320
                                          --speed_frames 5 --out DIR]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coarse_poses.colmap import ColmapSettings  # noqa: E402
from coarse_poses.evaluation import evaluate_coarse_poses, load_gt_poses, rotation_error_deg  # noqa: E402
from coarse_poses.pose_files import relative_pose  # noqa: E402
from coarse_poses.runner import make_coarse_poses  # noqa: E402
from synthetic.dataset import generate_dataset  # noqa: E402
from synthetic.renderer import render  # noqa: E402
from synthetic.rooms import TEXTURED, make_room  # noqa: E402
from synthetic.trajectories import make_trajectory  # noqa: E402
from utils import OneLineErrorParser, describe_cpu, nyu_pixel_intrinsics  # noqa: E402


def motion(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Translation (cm) and rotation (degrees) between consecutive ``N x 4 x 4`` poses."""
    steps = [relative_pose(target, source) for target, source in zip(poses[:-1], poses[1:])]
    translation = np.array([100.0 * np.linalg.norm(step[:3, 3]) for step in steps])
    rotation = np.array([rotation_error_deg(step, np.eye(4)) for step in steps])
    return translation, rotation


def render_seconds(frames: int, height: int, width: int) -> float:
    """Seconds per frame of :func:`render` in this process (median over ``frames`` views)."""
    room = make_room(0, TEXTURED)
    poses = make_trajectory(room, frames, np.random.default_rng(0))
    K = nyu_pixel_intrinsics(height, width)
    render(room, poses[0], K, height, width)  # warm the caches
    times = []
    for pose in poses:
        start = time.perf_counter()
        render(room, pose, K, height, width)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(7)))
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--speed_frames", type=int, default=5, help="640x480 frames timed (0: skip)")
    parser.add_argument("--out", type=str, default=None, help="keep data and poses here (default: temporary)")
    args = parser.parse_args()

    print(f"{'seed':>4}  {'reg':>5}  {'rot med':>8}  {'tdir med':>8}  {'step cm med/min/max':>20}  "
          f"{'rot deg med/max':>16}")
    correct = 0
    with tempfile.TemporaryDirectory(prefix="bench_synthetic_") as temporary:
        root = Path(args.out) if args.out else Path(temporary)
        for seed in args.seeds:
            data = root / f"seed_{seed}"
            generate_dataset(data, num_scenes=1, frames_per_scene=args.frames, num_test=0, height=args.height,
                             width=args.width, num_low_texture=0, seed=seed, progress=False)
            scene_dir = data / "train" / "scene_0000"
            translation, rotation = motion(load_gt_poses(scene_dir / "poses.txt"))
            result = make_coarse_poses(data / "train", data / "cpose", data / "work", ColmapSettings(),
                                       overwrite=True, progress=False)[0]
            rot_med = tdir_med = None
            if result.items_written:
                entry = evaluate_coarse_poses(data / "cpose", data / "train", ["scene_0000"])["scenes"]["scene_0000"]
                rot_med = entry["rotation_deg"]["median"]
                tdir_med = entry["translation_direction_deg"]["median"]
            correct += tdir_med is not None and tdir_med < 10.0

            def show(value: float | None, digits: int) -> str:
                return "-" if value is None else f"{value:.{digits}f}"

            print(f"{seed:>4}  {result.registered:>2}/{result.frames:<2}  {show(rot_med, 3):>8}  "
                  f"{show(tdir_med, 2):>8}  "
                  f"{np.median(translation):>6.2f}/{translation.min():>5.2f}/{translation.max():>5.2f}  "
                  f"{np.median(rotation):>7.2f}/{rotation.max():>5.2f}", flush=True)
    print(f"correct (translation-direction median < 10 deg): {correct}/{len(args.seeds)}")
    if args.speed_frames:
        print(f"render: {render_seconds(args.speed_frames, 480, 640):.3f} s per 640x480 frame (one process, CPU: "
              f"{describe_cpu()})")


if __name__ == "__main__":
    main()
