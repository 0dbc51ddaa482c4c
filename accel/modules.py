"""Turning a network's library modules into their fast kernels, in place, and back.

The fast modules subclass the library's (:class:`accel.linear.Conv1x1Linear`
of ``nn.Linear``, :class:`accel.elu.ExpELU` of ``nn.ELU``) and keep their
attributes and parameters, so the swap is a change of class: the parameters,
the optimiser's references to them and the state-dict keys stay as they are.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch.nn as nn

from accel import elu, linear

__all__ = ["accelerate", "restore", "accelerated"]

# fast class -> the library class it replaces
_LIBRARY_CLASS = {linear.Conv1x1Linear: nn.Linear, elu.ExpELU: nn.ELU}


def accelerate(networks: Iterable[nn.Module], onednn_linear: bool, exp_elu: bool) -> int:
    """Turn the modules of ``networks`` into their fast kernels: every plain
    ``nn.Linear`` with ``onednn_linear``, every ``nn.ELU(inplace=True)`` of
    alpha 1 with ``exp_elu``. Returns the number of modules changed."""
    changed = 0
    for network in networks:
        for module in network.modules():
            if onednn_linear and type(module) is nn.Linear:
                module.__class__ = linear.Conv1x1Linear
                changed += 1
            elif exp_elu and elu.applies_to(module):
                module.__class__ = elu.ExpELU
                changed += 1
    return changed


def restore(networks: Iterable[nn.Module]) -> None:
    """Turn every fast module of ``networks`` back into its library class."""
    for network in networks:
        for module in network.modules():
            library = _LIBRARY_CLASS.get(type(module))
            if library is not None:
                module.__class__ = library


@contextmanager
def accelerated(networks: Iterable[nn.Module], onednn_linear: bool, exp_elu: bool) -> Iterator[None]:
    """The networks with their fast kernels inside the block, as they were after it
    (``networks`` must hold no fast module when entering)."""
    networks = list(networks)
    accelerate(networks, onednn_linear, exp_elu)
    try:
        yield
    finally:
        restore(networks)
