"""Deterministic demo runs over several seeds, and their seed distribution.

Example::

    python tools/seed_runs.py --out seed_runs --seeds 0 1 2 3 4 --update_reference   # 5 x about 7 min
    python tools/seed_runs.py --out seed_runs_quick --quick --seeds 0 1             # a smoke test

Runs ``tools/demo.py --deterministic --seed K`` for every seed into
``--out/seed<K>`` (a seed whose folder already holds a deterministic run of
the same settings is kept), then writes the mean, standard deviation and
range of the trained network's val-frame and held-out abs_rel to
``--out/seed_distribution.json``; with ``--update_reference`` also into
``experiments/seed_distribution.json``, where the demo's summary reads it
(:mod:`experiments.seed_distribution`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see tools/demo.py

from experiments.pipeline import run_demo  # noqa: E402
from experiments.report import configure_console  # noqa: E402
from experiments.seed_distribution import (  # noqa: E402
    REFERENCE_PATH,
    comparable_settings,
    distribution_from_runs,
    update_reference,
)
from experiments.settings import add_settings_arguments, settings_from_arguments  # noqa: E402
from utils import PROJECT_ROOT, GasMonoError, OneLineErrorParser, atomic_write_text, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Run the demo deterministically for several seeds (data, COLMAP, split and training seed) "
        "and write the seed distribution of its val-frame and held-out abs_rel.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("seed_runs"), help="output folder (one seed<K>/ per seed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="the seeds to run")
    parser.add_argument("--update_reference", action="store_true",
                        help=f"also write the distribution into {REFERENCE_PATH.relative_to(PROJECT_ROOT)} (the "
                             "demo's summary places every run of the same preset and settings in it)")
    add_settings_arguments(parser)
    return parser


def current_commit() -> str | None:
    """The checkout's commit (``+`` when it has changes), None outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+" if changes else "")


def finished_run(folder: Path, settings: dict) -> dict | None:
    """The ``results.json`` of a deterministic run of ``settings`` in ``folder``, else None."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text(encoding="utf-8"))
    same = comparable_settings(results["settings"]) == comparable_settings(settings)
    return results if same and results["settings"]["seed"] == settings["seed"] and \
        results["settings"].get("deterministic") else None


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        raise GasMonoError(f"--seeds must be distinct, got {args.seeds}")
    configure_console()
    preset, settings = settings_from_arguments(args)
    runs = []
    for seed in args.seeds:
        seed_settings = dataclasses.replace(settings, seed=seed, deterministic=True)
        folder = args.out / f"seed{seed}"
        results = finished_run(folder, dataclasses.asdict(seed_settings))
        if results is None:
            print(f"\n=== seed {seed} -> {folder} ===")
            results = run_demo(folder, seed_settings, preset=preset, progress=not args.no_progress)
        else:
            print(f"seed {seed}: kept the run in {folder}")
        runs.append(results)
    command = "python tools/seed_runs.py " + " ".join(sys.argv[1:] if argv is None else argv)
    distribution = distribution_from_runs(runs, command, current_commit())
    atomic_write_text(json.dumps(distribution, indent=2) + "\n", args.out / "seed_distribution.json")
    print(f"\n{'seed':>4} {'val-frame abs_rel':>18} {'reduction':>10} {'held-out abs_rel':>17} {'minutes':>8}")
    for run in runs:
        print(f"{run['settings']['seed']:>4} {run['evaluation']['val_frames']['trained']['abs_rel']:>18.4f} "
              f"{100 * run['target']['reduction']:>9.1f}% {run['evaluation']['test']['trained']['abs_rel']:>17.4f} "
              f"{run['timings_s']['total'] / 60:>8.1f}")
    for name, stats in distribution["statistics"].items():
        spread = "" if stats["std"] is None else f" ± {stats['std']:.4f}"
        print(f"{name}: {stats['mean']:.4f}{spread}, range {stats['min']:.4f}-{stats['max']:.4f}")
    target = distribution["target"]
    print(f"target (val frames {100 * target['required_reduction']:.0f}% below the untrained network): reached by "
          f"{target['reached']} of {len(runs)} seeds")
    print(f"distribution: {args.out / 'seed_distribution.json'}")
    if args.update_reference:
        print(f"reference updated: {update_reference(distribution)}")
    return distribution


if __name__ == "__main__":
    main()
