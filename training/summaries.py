"""TensorBoard summaries of a run: ``<run folder>/train`` and ``<run folder>/val``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from utils import normalize_image

__all__ = ["MAX_IMAGES", "open_writers", "write_summaries"]

# images of at most this many samples of a batch are written
MAX_IMAGES = 4


def open_writers(run_folder: Path) -> dict[str, Any]:
    """A ``tensorboardX.SummaryWriter`` for ``train`` and one for ``val``."""
    from tensorboardX import SummaryWriter

    return {mode: SummaryWriter(str(run_folder / mode)) for mode in ("train", "val")}


def write_summaries(writer: Any, step: int, inputs: dict, outputs: dict, losses: dict[str, torch.Tensor],
                    learning_rates: Sequence[float], source_frames: Sequence[int], scales: Sequence[int],
                    metrics: Mapping[str, float] | None = None) -> None:
    """Write every loss, every metric (e.g. ``val/abs_rel``), the learning
    rate of each optimiser group and, for the first samples of the batch, the
    target, the warped sources (also the coarse-warped ones), the
    disparities, the auto-masks and the best disparity of self-distillation,
    where ``outputs`` has them."""
    for name, value in losses.items():
        writer.add_scalar(name, value.item(), step)
    for name, value in (metrics or {}).items():
        writer.add_scalar(name, value, step)
    for group_index, learning_rate in enumerate(learning_rates):
        writer.add_scalar(f"learning_rate/group{group_index}", learning_rate, step)
    for sample in range(min(MAX_IMAGES, inputs[("color", 0, 0)].shape[0])):
        writer.add_image(f"color_0_0/{sample}", inputs[("color", 0, 0)][sample].cpu(), step)
        for frame_id in source_frames:
            writer.add_image(f"color_pred_{frame_id}_0/{sample}",
                             outputs[("color", frame_id, 0)][sample].detach().cpu(), step)
            if ("irw_img", frame_id) in outputs:
                writer.add_image(f"coarse_warped_{frame_id}/{sample}",
                                 outputs[("irw_img", frame_id)][sample].detach().cpu(), step)
        for scale in scales:
            writer.add_image(f"disp_{scale}/{sample}", normalize_image(outputs[("disp", scale)][sample].detach().cpu()),
                             step)
            mask_key = f"identity_selection/{scale}"
            if mask_key in outputs:
                writer.add_image(f"automask_{scale}/{sample}", outputs[mask_key][sample].cpu(), step)
        if "best_disp" in outputs:
            writer.add_image(f"best_disp/{sample}", normalize_image(outputs["best_disp"][sample].cpu()), step)
