"""The parts of :class:`trainer.Trainer` around the forward pass, one module
each: the networks and their optimiser (:mod:`training.models`), the run
folder (:mod:`training.run_folder`), the data loaders (:mod:`training.data`),
which checkpoint is verified good (:mod:`training.health`) and the
TensorBoard summaries (:mod:`training.summaries`). Used by
``trainer.py`` (and the benchmarks and tests)."""
