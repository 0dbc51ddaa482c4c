"""PoseNet decoder (file ``pose.pth``) and the regression head it shares with
AlignNet (file ``trans.pth``). Both are built with ``num_input_features=1``
and ``num_frames_to_predict_for=2`` on a ResNet-18 pair encoder; the trainer
uses frame slot 0 only. State-dict keys match the published files."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

__all__ = ["PoseRegressionHead", "PoseDecoder"]

# raw network outputs are multiplied by this factor (small initial motions)
OUTPUT_SCALE = 0.01


class PoseRegressionHead(nn.Module):
    """Squeeze 1x1 -> two 3x3 convs -> 1x1 to ``values_per_frame`` numbers per
    predicted frame, averaged over space and multiplied by 0.01.

    The four convs live in the ``nn.ModuleList`` ``net`` (release key layout:
    ``net.0`` squeeze, ``net.1``/``net.2`` 3x3 convs, ``net.3`` output conv).

    Args:
        num_ch_enc: encoder channels (the last one is used).
        num_input_features: number of encoder feature lists given to forward.
        values_per_frame: outputs per predicted frame.
        num_frames_to_predict_for: frame slots (default ``num_input_features - 1``).
        stride: stride of the two 3x3 convs.
    """

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        num_input_features: int,
        values_per_frame: int,
        num_frames_to_predict_for: int | None = None,
        stride: int = 1,
    ):
        super().__init__()
        self.num_ch_enc = list(num_ch_enc)
        self.num_input_features = num_input_features
        if num_frames_to_predict_for is None:
            num_frames_to_predict_for = num_input_features - 1
        if num_frames_to_predict_for < 1:
            raise ValueError("num_frames_to_predict_for must be >= 1")
        self.num_frames_to_predict_for = num_frames_to_predict_for
        self.values_per_frame = values_per_frame
        self.net = nn.ModuleList(
            [
                nn.Conv2d(self.num_ch_enc[-1], 256, 1),
                nn.Conv2d(num_input_features * 256, 256, 3, stride, 1),
                nn.Conv2d(256, 256, 3, stride, 1),
                nn.Conv2d(256, values_per_frame * num_frames_to_predict_for, 1),
            ]
        )
        self.relu = nn.ReLU()

    def regress(self, input_features: list[list[torch.Tensor]]) -> torch.Tensor:
        """List of ``num_input_features`` encoder feature lists ->
        B x F x 1 x values_per_frame (already multiplied by 0.01)."""
        squeeze, conv1, conv2, out_conv = self.net
        out = torch.cat([self.relu(squeeze(features[-1])) for features in input_features], dim=1)
        out = self.relu(conv1(out))
        out = self.relu(conv2(out))
        out = out_conv(out).mean(3).mean(2)
        return OUTPUT_SCALE * out.view(-1, self.num_frames_to_predict_for, 1, self.values_per_frame)


class PoseDecoder(PoseRegressionHead):
    """PoseNet head: 7 numbers per frame slot.

    Forward: list of feature lists -> (axisangle B x F x 1 x 3,
    translation B x F x 1 x 3, scale B x F x 1 x 1). The 7th output ("scale")
    is kept for checkpoint compatibility; GasMono's trainer does not use it.
    """

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        num_input_features: int,
        num_frames_to_predict_for: int | None = None,
        stride: int = 1,
    ):
        super().__init__(num_ch_enc, num_input_features, 7, num_frames_to_predict_for, stride)

    def forward(self, input_features: list[list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.regress(input_features)
        return out[..., :3], out[..., 3:6], out[..., 6:7]
