"""The GasMono release's training step, reconstructed from its description
(the method's forward pass and losses, section 4-5 of the project's
specification) to measure our speed against it on the same machine.

It is built on this project's networks and geometry and keeps the release's
structure, which is what costs time:

* the networks run eagerly in NCHW memory (``--memory_format contiguous``);
  the depth decoder runs every module the release runs, the level-0 edge
  convolutions whose output is never used included;
* every scale upsamples its disparity (a no-op resize at full resolution),
  backprojects and warps each source separately (:func:`layers.warp_image`);
* every comparison is a separate photometric error with a five-pooling SSIM
  (:meth:`losses.SSIM.forward`): the identity errors once per pass, the
  reprojection errors per scale and source, and the coarse-pose errors again
  at every scale (the term is added at every scale);
* smoothness recomputes the image gradients at every scale;
* AdamW as the release builds it (the library's default implementation, a
  loop over the parameters on the CPU).

The numbers are the release's: ``tests/test_batched_losses.py`` checks this
step against the release's losses of the parity fixture.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layers import (  # noqa: E402
    BackprojectDepth,
    Project3D,
    disp_to_depth,
    refine_coarse_pose,
    temporal_pair,
    transformation_from_parameters,
    warp_image,
)
from losses import (  # noqa: E402
    SSIM,
    TIE_BREAK_NOISE_STD,
    BestDisparity,
    Recipe,
    get_smooth_loss,
    mean_normalised,
    photometric_errors,
    self_distillation_loss,
)
from networks.depth_decoder import MASK_LOGIT_SCALE, convex_upsample, upsample2  # noqa: E402
from training.models import build_models  # noqa: E402

Batch = dict[Any, torch.Tensor]


def release_decoder_forward(decoder: torch.nn.Module, features: list[torch.Tensor]) -> dict:
    """The release's depth-decoder forward over the module list of
    :class:`networks.DepthDecoder` (its layout is the release's): the same
    outputs, with the level-0 edge convolutions run as the release runs them."""
    modules = decoder.decoder
    outputs = {}
    x = edge = features[-1]
    for level in range(4, -1, -1):
        upconv0, edge_upconv0, attention, upconv1, edge_upconv1 = (modules[5 * (4 - level) + k] for k in range(5))
        x = upsample2(upconv0(attention(x, edge)))
        if level > 0:
            x = torch.cat([x, features[level - 1]], dim=1)
        x = upconv1(x)
        edge = edge_upconv1(upsample2(edge_upconv0(edge)))
        if level <= 3:
            disp = torch.sigmoid(modules[25 + 2 * level](x))
            if level > 0:
                disp = convex_upsample(disp, MASK_LOGIT_SCALE * modules[26 + 2 * level](edge), 2**level)
            outputs[("disp", level)] = disp
    return outputs


class ReleaseStep:
    """One training pass of the release's full recipe (auto-masking, coarse
    poses, self-distillation): ``process_batch`` then ``step``.

    Args:
        options: parsed :class:`options.GasMonoOptions` with ``--use_posegt
            --selfpp`` (fp32); the networks are built NCHW whatever
            ``--memory_format`` says.
        device: where it runs.
    """

    def __init__(self, options: argparse.Namespace, device: torch.device) -> None:
        self.opt = argparse.Namespace(**{**vars(options), "memory_format": "contiguous"})
        self.recipe = Recipe.from_options(options)
        if not (self.recipe.use_coarse_pose and self.recipe.use_self_distillation and self.recipe.use_automasking
                and self.recipe.use_ssim and not self.recipe.average_reprojection):
            raise ValueError("the release-structured step implements the full recipe only (--use_posegt --selfpp)")
        self.device = device
        self.models = build_models(self.opt, self.device)
        rest = [p for name, model in self.models.items() if name != "encoder" for p in model.parameters()]
        self.optimizer = torch.optim.AdamW([
            {"params": rest, "lr": options.decoder_learning_rate},
            {"params": list(self.models["encoder"].parameters()), "lr": options.learning_rate},
        ])
        self.backproject = BackprojectDepth(options.height, options.width).to(self.device)
        self.project = Project3D(options.height, options.width).to(self.device)
        self.ssim = SSIM().to(self.device)
        self.source_frames = options.frame_ids[1:]
        self.epoch = 0
        self.noise_std = TIE_BREAK_NOISE_STD

    def process_batch(self, inputs: Batch, best: BestDisparity | None = None) -> tuple[dict, dict, BestDisparity]:
        """The release's forward pass and losses -> ``(outputs, losses, best disparity)``."""
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        outputs = release_decoder_forward(self.models["depth"], self.models["encoder"](inputs[("color_aug", 0, 0)]))
        _, depth = disp_to_depth(outputs[("disp", 0)], self.opt.min_depth, self.opt.max_depth)
        target_aug = inputs[("color_aug", 0, 0)]
        for frame_id in self.source_frames:
            pair = temporal_pair(inputs[("color_aug", frame_id, 0)], target_aug, frame_id)
            features = self.models["trans_encoder"](pair)
            translation, scale = self.models["trans"]([features])
            pose = refine_coarse_pose(inputs[("pose_gt", frame_id)].clone(), translation[:, 0], scale[:, 0],
                                      invert=frame_id < 0)
            outputs[("irw_img", frame_id)] = warp_image(inputs[("color", frame_id, 0)], depth, inputs[("K", 0)],
                                                        inputs[("inv_K", 0)], pose, self.backproject, self.project)
        for frame_id in self.source_frames:
            features = self.models["pose_encoder"](temporal_pair(outputs[("irw_img", frame_id)], target_aug, frame_id))
            axisangle, translation, _ = self.models["pose"]([features])
            outputs[("cam_T_cam", 0, frame_id)] = transformation_from_parameters(
                axisangle[:, 0], translation[:, 0], invert=frame_id < 0)
        for scale in self.opt.scales:
            disp = F.interpolate(outputs[("disp", scale)], [self.opt.height, self.opt.width], mode="bilinear",
                                 align_corners=False)
            _, depth = disp_to_depth(disp, self.opt.min_depth, self.opt.max_depth)
            for frame_id in self.source_frames:
                outputs[("color", frame_id, scale)] = warp_image(
                    outputs[("irw_img", frame_id)], depth, inputs[("K", 0)], inputs[("inv_K", 0)],
                    outputs[("cam_T_cam", 0, frame_id)], self.backproject, self.project)
        losses, best = self.compute_losses(inputs, outputs, best)
        return outputs, losses, best

    def compute_losses(self, inputs: Batch, outputs: dict, best: BestDisparity | None) -> tuple[dict, BestDisparity]:
        """The release's losses (full recipe: auto-masking, coarse poses, self-distillation)."""
        target = inputs[("color", 0, 0)]
        identity = photometric_errors([inputs[("color", f, 0)] for f in self.source_frames], target, self.ssim)
        best = best if best is not None else BestDisparity.initial(outputs[("disp", 0)])
        losses, total = {}, 0.0
        for scale in self.opt.scales:
            disp = outputs[("disp", scale)]
            reprojection = photometric_errors([outputs[("color", f, scale)] for f in self.source_frames], target,
                                              self.ssim)
            identity = identity + torch.randn_like(identity) * self.noise_std
            min_error, index = torch.min(torch.cat([identity, reprojection], 1), dim=1, keepdim=True)
            outputs[f"identity_selection/{scale}"] = (index >= identity.shape[1]).float()
            loss = min_error.mean()
            losses[f"min_reprojection/{scale}"] = loss.detach()
            coarse = photometric_errors([outputs[("irw_img", f)] for f in self.source_frames], target, self.ssim)
            loss = loss + self.recipe.coarse_pose_loss_weight * torch.min(torch.cat([identity, coarse], 1), 1)[0].mean()
            loss = loss + self.recipe.smoothness_weight * get_smooth_loss(mean_normalised(disp), target) / 2**scale
            best = best.updated(disp, min_error)
            losses[f"loss/{scale}"] = loss
            total = total + loss
        distill = sum(self_distillation_loss(best.disp, outputs[("disp", scale)]) for scale in self.opt.scales)
        losses["selfpp_loss"] = distill
        losses["loss"] = (total + self.recipe.distill_loss_weight(self.epoch) * distill) / len(self.opt.scales)
        return losses, best
