"""The acceleration package: every fast kernel of the project, behind one switch.

The math a researcher reads and edits is plain PyTorch elsewhere: the loss
terms in ``losses.py``, the geometry in ``layers.py``, the networks in
``networks/`` (``nn.Linear``, ``nn.ELU``), the optimiser
``torch.optim.AdamW`` and ``Trainer.compute_losses``, which assembles the
terms. Each module here is a drop-in for one of those, tested equal to it
(``tests/test_accel_*.py``), and is the only place in the project that uses
private torch API:

==========================  ===========================================  ===============================================
kernel                      replaces                                     why it is faster
==========================  ===========================================  ===============================================
:mod:`accel.warp`           ``layers.warp_image`` per source and scale   one batched transform and one sampling call;
                                                                         the grid's gradient written out
:mod:`accel.photometric`    ``losses.photometric_error`` per comparison  one call for every comparison, the target's
                                                                         SSIM statistics once, 3 separable means instead
                                                                         of 5 pooled ones, a hand-written gradient
:mod:`accel.losses`         ``Trainer.compute_losses``'s loop            all scales at once; the terms of the batch's
                                                                         images computed once per batch, not per pass
:mod:`accel.linear`         ``nn.Linear`` (CPU float32)                  oneDNN's product instead of MKL's GEMM, where
                                                                         a measurement on the machine says it pays
:mod:`accel.elu`            ``nn.ELU(inplace=True)``                     ``exp`` instead of the slower ``expm1``
:mod:`accel.optimizer`      ``torch.optim.AdamW(fused=True)``            no copies of the channels-last weights per step
:mod:`accel.fusion`         the networks at inference                    batch norms folded, upsampled convolutions at
                                                                         low resolution, oneDNN with fused activations
==========================  ===========================================  ===============================================

The switch is ``--kernels {auto,reference,fast}`` (:mod:`accel.guard`):
``auto`` uses the fast kernels only where they were verified (CPU, float32,
the torch versions they were tested with) and says which in one log line;
before training, :mod:`accel.fork_check` runs a small batch through both
paths and sets the fast kernels aside when an edited reference differs.
Processor-dependent choices are measured on the machine (:mod:`accel.tuning`).
"""
from accel.fork_check import PathResult, first_difference, random_batch
from accel.guard import KERNEL_MODES, InferencePlan, KernelPlan, plan_inference, plan_training
from accel.modules import accelerate, accelerated, restore
from accel.optimizer import AdamW
from accel.training import FastTrainingPass

__all__ = [
    "KERNEL_MODES",
    "KernelPlan",
    "InferencePlan",
    "plan_training",
    "plan_inference",
    "FastTrainingPass",
    "accelerate",
    "accelerated",
    "restore",
    "AdamW",
    "PathResult",
    "first_difference",
    "random_batch",
]
