"""The whole GasMono pipeline on bundled synthetic data, on a CPU, in minutes.

Example::

    python tools/demo.py --out demo_output            # about 10 minutes on 2 cores
    python tools/demo.py --out demo_output --quick    # every stage, tiny sizes, under 3 minutes
    python tools/demo.py --out demo_gpu --device cuda # the gpu preset: more rooms, 256x320, ~10 GPU minutes
    python tools/demo.py --out demo_output --deterministic  # every stage repeatable bit for bit

Renders synthetic rooms, computes coarse poses with COLMAP, trains GasMono with
every component, evaluates the depth of the untrained and the trained network
and the trained network's poses, and writes results, figures and checkpoints
under ``--out`` (layout and stages: :mod:`experiments`; settings and presets:
:mod:`experiments.settings`). Running it again with the same ``--out`` reuses
the rendered data and finished COLMAP sequences.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# OpenMP threads that spin while they wait make PyTorch many times slower when
# other processes share the cores (measured: 64x96 steps 5-50 s instead of 1-2 s
# on 2 busy cores). It is read when torch loads, so it is set before the imports.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from experiments.pipeline import run_demo  # noqa: E402
from experiments.report import configure_console, format_final_summary  # noqa: E402
from experiments.settings import add_settings_arguments, settings_from_arguments  # noqa: E402
from utils import OneLineErrorParser, cli_entry_point  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="Run the whole GasMono pipeline (synthetic data, COLMAP coarse poses, training with every "
        "component, evaluation of depth and poses) and write results, figures and checkpoints under --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (everything goes there)")
    add_settings_arguments(parser)
    return parser


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_console()
    preset, settings = settings_from_arguments(args)
    print(f"GasMono demo (preset {preset}, {settings.device}) -> {args.out.resolve()}; "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}")
    results = run_demo(args.out, settings, preset=preset, progress=not args.no_progress)
    print(format_final_summary(results))
    print(f"results: {args.out / 'results.md'}, {args.out / 'results.json'}, "
          f"{args.out / 'training_curve.png'}, {args.out / 'predictions.png'}")


if __name__ == "__main__":
    main()
