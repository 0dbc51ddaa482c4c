"""Fast kernel: AdamW whose fused step sees channels-last parameters as flat vectors.

Replaces ``torch.optim.AdamW(fused=True)``, the reference. The networks train in channels-last memory, so their k x k convolution
weights (68 tensors, 29 of the 54 million parameters of the full recipe) are
not contiguous. PyTorch's fused AdamW kernel copies every such parameter,
gradient and moment to a contiguous tensor and back at each step: a third
of the optimiser step's time on the CPU. AdamW's update is elementwise, so a
parameter, its gradient and its two moments, which share one dense memory
layout, can be updated as flat vectors over their memory: the same numbers,
without the copies. The parameters, the state and the state dict are
``torch.optim.AdamW``'s. It extends the optimiser's private
``_init_group``, which a later torch may change: :mod:`accel.guard` uses it
only with the torch versions it was tested on.
"""
from __future__ import annotations

import torch

__all__ = ["AdamW"]


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """The 1-D view over the memory of a non-overlapping, dense ``tensor``."""
    return tensor.as_strided((tensor.numel(),), (1,), tensor.storage_offset())


def _flattenable(tensors: tuple[torch.Tensor, ...]) -> bool:
    """Non-contiguous, densely packed in one memory layout shared by all of ``tensors``."""
    first = tensors[0]
    return (not first.is_contiguous() and first.is_contiguous(memory_format=torch.channels_last)
            and all(t.shape == first.shape and t.stride() == first.stride() for t in tensors[1:]))


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` (same arguments and state) whose fused step
    updates channels-last parameters as flat vectors (see the module notes)."""

    def _init_group(self, group, params_with_grad, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps):
        has_complex = super()._init_group(group, params_with_grad, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                                          state_steps)
        if not group["fused"]:
            return has_complex
        lists = [params_with_grad, grads, exp_avgs, exp_avg_sqs] + ([max_exp_avg_sqs] if group["amsgrad"] else [])
        for index in range(len(params_with_grad)):
            tensors = tuple(tensor_list[index] for tensor_list in lists)
            if _flattenable(tensors):
                for tensor_list, tensor in zip(lists, tensors):
                    tensor_list[index] = _flat(tensor)
        return has_complex
