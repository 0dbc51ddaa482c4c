"""Reuse of the loss terms that depend on a batch's images only across the passes over it.

With self-distillation a batch is processed ``--iiters`` times; its identity
errors, target statistics and smoothness edge weights (:class:`losses.BatchTerms`)
do not change between the passes, so they are computed once and reused while
the same, unmodified image tensors come back.
"""
from __future__ import annotations

from typing import Callable

import torch

from losses import BatchTerms

__all__ = ["BatchTermsCache"]


class BatchTermsCache:
    """The :class:`losses.BatchTerms` of the last batch, with what they were computed from.

    Args:
        frame_ids: the frames whose ``("color", f, 0)`` images identify a batch.
    """

    def __init__(self, frame_ids: list[int]) -> None:
        self.frame_ids = list(frame_ids)
        self._entry: tuple[list[tuple[torch.Tensor, int]], BatchTerms] | None = None

    def get(self, inputs: dict, compute: Callable[[], BatchTerms]) -> BatchTerms:
        """The cached terms while the frames of ``inputs`` (``B x 3 x H x W`` each,
        before moving to the device) are the same tensors as last time, not modified
        in place since (their version counters); else ``compute()``, cached.
        Images that require a gradient are never reused."""
        images = [inputs[("color", frame_id, 0)] for frame_id in self.frame_ids]
        if any(image.requires_grad for image in images):
            return compute()
        fingerprint = [(image, image._version) for image in images]
        if self._entry is not None:
            cached, terms = self._entry
            if all(a is b and version_a == version_b for (a, version_a), (b, version_b) in zip(cached, fingerprint)):
                return terms
        terms = compute()
        self._entry = (fingerprint, terms)
        return terms
