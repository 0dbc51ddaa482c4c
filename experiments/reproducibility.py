"""What made a demo, ablation or budget-curve run repeatable, as recorded in its results.

With ``--deterministic`` (:attr:`experiments.settings.DemoSettings.deterministic`)
every stage gives the same bits on the same machine and thread count:

* synthetic data: every scene is drawn from the seed, whatever the number of
  render workers (always so);
* coarse poses: COLMAP on one thread per sequence, the sequences in parallel
  processes, COLMAP's generator, the two-view RANSAC and the mapper seeded
  (:class:`coarse_poses.colmap.ColmapSettings`); with several threads per
  sequence the image ids, the RANSAC draws and the bundle adjustment's sums
  depend on which thread finishes first;
* split: seeded (always so);
* training: ``train.py --deterministic`` (deterministic algorithms, no choice
  made by a timing), the seed, the torch threads and loader workers recorded;
* evaluation: inference only, on the same threads.

:func:`determinism_record` writes this down per stage for the results JSON.
"""
from __future__ import annotations

from typing import Sequence

import torch

from coarse_poses.runner import available_cores
from experiments.settings import DemoSettings


def _stage(repeatable: bool, how: str) -> dict:
    return {"repeatable": repeatable, "how": how}


def colmap_processes(settings: DemoSettings) -> int:
    """The COLMAP processes a run uses: :attr:`DemoSettings.colmap_processes`, at most one per available core."""
    return min(settings.colmap_processes, available_cores())


def determinism_record(settings: DemoSettings, training_seeds: Sequence[int] | None = None) -> dict:
    """Per stage, whether the run is repeatable bit for bit and what makes it so (or not); the seeds and
    thread counts it depends on. ``training_seeds``: those of the runs (default: the settings' seed)."""
    seed, deterministic = settings.seed, settings.deterministic
    training_seeds = [seed] if training_seeds is None else list(training_seeds)
    seeds_text = " ".join(str(value) for value in training_seeds)
    colmap = settings.colmap_settings()
    processes = colmap_processes(settings)
    torch_threads = torch.get_num_threads()
    if deterministic:
        colmap_stage = _stage(True, f"{processes} process(es) x 1 thread; COLMAP's generator, the two-view "
                                    f"RANSAC and the mapper seeded with {seed}")
        training_stage = _stage(True, f"train.py --deterministic, --seed {seeds_text}; {torch_threads} torch "
                                      f"thread(s), {settings.num_workers} loader worker(s)")
    else:
        colmap_stage = _stage(False, f"{processes} process(es) x {colmap.threads} thread(s): the order in "
                                     "which threads finish changes the poses a little (--deterministic fixes it)")
        training_stage = _stage(False, f"--seed {seeds_text} without --deterministic: repeatable only where "
                                       "every kernel is (not guaranteed)")
    return {
        "deterministic": deterministic,
        "stages": {
            "synthetic data": _stage(True, f"every scene drawn from seed {seed}, with any number of render workers"),
            "coarse poses (COLMAP)": colmap_stage,
            "split files": _stage(True, f"seeded with {seed}"),
            "training": training_stage,
            "evaluation": _stage(True, f"inference on {torch_threads} torch thread(s): the same checkpoint gives "
                                       "the same metrics"),
        },
        "seeds": {"data": seed, "colmap": seed, "split": seed, "training": training_seeds},
        "threads": {
            "torch": torch_threads,
            "colmap_processes": processes,
            "colmap_threads_per_process": colmap.threads,
            "render_workers": min(settings.render_workers, available_cores()),
            "loader_workers": settings.num_workers,
        },
    }


def describe_determinism(record: dict) -> str:
    """One line for a summary: whether the run is repeatable bit for bit, and the stages that are not."""
    threads = record["threads"]
    if record["deterministic"]:
        return (f"deterministic (--deterministic): every stage repeatable on this machine with "
                f"{threads['torch']} torch thread(s) and {threads['colmap_processes']} COLMAP process(es) x 1 thread")
    loose = [stage for stage, entry in record["stages"].items() if not entry["repeatable"]]
    return f"not deterministic: {', '.join(loose)} may differ run to run (--deterministic makes them repeatable)"
