"""Evaluate a GasMono checkpoint (ours or the release's) on a depth test set.

Examples::

    python evaluate_depth.py --load_weights_folder logs/mdp/models/weights_39 \\
        --eval_split nyu --data_path data/nyu_test --eval_mono
    python evaluate_depth.py --load_weights_folder W --data_path D --eval_protocol release
    python evaluate_depth.py --ext_disp_to_eval disps.npy --data_path D --eval_split nyu

The protocols (crop, valid depth range, clamp) are listed in
``evaluation/protocols.py``; results are printed and written to
``<weights folder or --eval_out_dir>/eval_<split>_<protocol>.json``.
"""
from __future__ import annotations

import logging
from typing import Sequence

from evaluation import EvalConfig, evaluate, format_results
from options import GasMonoOptions
from utils import cli_entry_point


@cli_entry_point
def main(argv: Sequence[str] | None = None) -> dict:
    options = GasMonoOptions().parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = evaluate(EvalConfig.from_options(options))
    print(format_results(results))
    if "pred_disps_file" in results:
        print(f"-> predicted disparities saved to {results['pred_disps_file']}")
    if "results_file" in results:
        print(f"-> results written to {results['results_file']}")
    return results


if __name__ == "__main__":
    main()
