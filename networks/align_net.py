"""AlignNet: refines the translation of a coarse pose (file ``trans.pth``,
release class name ``TransDecoder``). The trainer keeps the coarse rotation and
sets ``t = t_coarse * scale + t_residual`` from frame slot 0
(:func:`layers.refine_coarse_pose`)."""
from __future__ import annotations

from typing import Sequence

import torch

from .pose_decoder import PoseRegressionHead

__all__ = ["TransDecoder"]


class TransDecoder(PoseRegressionHead):
    """AlignNet head: 4 numbers per frame slot.

    Forward: list of feature lists -> (translation residual B x F x 1 x 3,
    translation scale B x F x 1 x 1), both already multiplied by 0.01 (the
    scale has no offset and no activation, as in the release).
    """

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        num_input_features: int,
        num_frames_to_predict_for: int | None = None,
        stride: int = 1,
    ):
        super().__init__(num_ch_enc, num_input_features, 4, num_frames_to_predict_for, stride)

    def forward(self, input_features: list[list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.regress(input_features)
        return out[..., :3], out[..., 3:4]
