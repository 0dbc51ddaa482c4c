"""The demo and the ablation: the whole GasMono pipeline on bundled synthetic data, on a CPU.

A top layer, like ``train.py``: it imports the trainer, the evaluator and the
libraries (``coarse_poses``, ``synthetic``, ``datasets``), and nothing but its
command lines (``tools/demo.py``, ``tools/ablate.py``) and tests imports it.

* :mod:`experiments.settings`: every knob (:class:`~experiments.settings.DemoSettings`),
  the presets (``full``, ``quick``, ``gpu``) and their command-line options, the output
  paths, stage timing;
* :mod:`experiments.data`: rendering, COLMAP coarse poses, split files, frame test sets;
* :mod:`experiments.pipeline`: training and evaluation (depth and poses) of one run, and
  the whole demo (:func:`~experiments.pipeline.run_demo`);
* :mod:`experiments.report`: figures, metric comparisons, markdown, the console summary;
* :mod:`experiments.ablation`: the variants and their runs per training seed;
* :mod:`experiments.ablation_report`: mean and spread over the seeds, which differences
  exceed their spread, the tables.
* :mod:`experiments.reproducibility`: what ``--deterministic`` made repeatable, per stage;
* :mod:`experiments.seed_distribution`: the demo's seed distribution per preset and where a
  run stands in it;
* :mod:`experiments.supervised`: the supervised bound (the depth network on rendered depth);
* :mod:`experiments.budget_curve`, :mod:`experiments.budget_report`: the schedule at more
  batches against the supervised bound, its figure and table.

Layout of an output folder::

    data/            synthetic indoor set: data/train/<scene>/ sequences (some low-texture),
                     data/test/ views of held-out rooms in the NYUv2 test layout,
                     data/val_frames/ the validation frames of the training rooms in the same layout
    cpose/           coarse poses from COLMAP, summary.json, per-scene colmap.json / colmap.log
    splits/          train_files.txt / val_files.txt of the items that have coarse poses
    logs/<run>/      a training run: checkpoints models/weights_<epoch>/ (with eval_pose.json), TensorBoard
                     logs; the demo's run is "gasmono", the ablation's "<variant>_seed<k>"
    untrained/<run>/ the network of a run before training (same seed and architecture), as a weights folder
    eval/<name>/     depth evaluation results of each checkpoint on test/ and val_frames/
    results.md, results.json, training_curve.png, predictions.png, training_history.json (demo)
    ablation.md, ablation.json (ablation)
    budget_curve.md, budget_curve.json, budget_curve.png, predictions_budget<B>_seed<K>.png (budget curve;
                     its runs logs/budget<B>_seed<K>, logs/supervised<B>_seed<K>)

Training uses every GasMono component (coarse poses with AlignNet, residual
PoseNet, iterative self-distillation with two passes) on a schedule short
enough for a CPU in which the self-distillation passes start and the
distillation weight ramp completes.
"""
