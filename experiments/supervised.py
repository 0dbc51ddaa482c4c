"""The supervised bound: the demo's depth network trained on the rendered ground-truth depth.

What the self-supervised signal could reach at most with the same network,
data, resolution, batch size, optimiser, learning-rate schedule, seed and
number of batches: the depth encoder and decoder of a
:class:`trainer.Trainer` built from the demo's ``train.py`` flags (the same
initialisation as the self-supervised run of that seed) are trained on the
items of ``train_files.txt`` (colour-augmented as in the demo) with a
scale-invariant loss, the variance over the valid pixels of
``log(predicted depth) - log(ground truth)`` (invariant to one scale per
image, as the median-scaled evaluation is), averaged over the decoder's
scales, each upsampled to the ground truth's size. PoseNet and AlignNet are
not trained; they are saved untouched so that the weights folder has the
usual layout. The budget curve (:mod:`experiments.budget_curve`) draws it as
the reference line.
"""
from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

import networks
from datasets.nyu_dataset import NYUDataset
from layers import disp_to_depth
from options import GasMonoOptions
from trainer import Trainer
from training.data import make_loader
from utils import seed_everything

logger = logging.getLogger(__name__)


def scale_invariant_log_loss(depth: torch.Tensor, gt: torch.Tensor, min_depth: float,
                             max_depth: float) -> torch.Tensor:
    """Mean over the images of the variance of ``log(depth) - log(gt)`` over their valid pixels
    (``min_depth < gt < max_depth``). ``depth``, ``gt``: ``B x 1 x H x W``."""
    valid = (gt > min_depth) & (gt < max_depth)
    difference = torch.where(valid, torch.log(depth) - torch.log(gt.clamp(min=min_depth)), 0.0)
    count = valid.flatten(1).sum(1).clamp(min=1)
    mean = difference.flatten(1).sum(1) / count
    deviation = torch.where(valid, difference - mean.view(-1, 1, 1, 1), 0.0)
    return (deviation.square().flatten(1).sum(1) / count).mean()


def train_supervised(flags: Sequence[str], weights_dir: Path, progress: bool = True) -> dict:
    """Train the depth network of ``train.py`` ``flags`` on ground-truth depth with their schedule
    (``--num_epochs`` epochs of the training split, at most ``--max_train_steps`` batches each, the
    learning rate decayed at the start of every epoch and the generators seeded per epoch, as
    ``train.py`` does) and save it to ``weights_dir``. Returns ``{"batches", "epochs", "final_loss",
    "weights"}``."""
    options = GasMonoOptions().parse(list(flags))
    trainer = Trainer(options, with_data=False)
    dataset = NYUDataset(options.data_path, Path(options.split_dir) / "train_files.txt", options.height,
                         options.width, [0], 1, is_train=True, augmentation=options.augmentation, load_depth=True,
                         resize_filter=options.resize_filter)
    generator = torch.Generator()
    loader = make_loader(dataset, options, trainer.dist, trainer.device, generator)
    num_batches = min(len(loader), options.max_train_steps or len(loader))
    encoder, decoder = trainer.models["encoder"], trainer.models["depth"]
    encoder.train()
    decoder.train()
    step, loss_value = 0, float("nan")
    with tqdm(total=options.num_epochs * num_batches, desc="supervised", unit="batch", disable=not progress) as bar:
        for epoch in range(options.num_epochs):
            with warnings.catch_warnings():  # the release's order: decay at the start of the epoch
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
                trainer.lr_scheduler.step()
            seed_everything(options.seed + 1009 * (epoch + 1))  # the augmentation's draws, seeded as train.py does
            generator.manual_seed(options.seed + epoch)
            for batch_index, inputs in enumerate(loader):
                if batch_index >= num_batches:
                    break
                loss_value = supervised_step(trainer, options, inputs)
                step += 1
                bar.set_postfix(loss=f"{loss_value:.4f}")
                bar.update()
    networks.save_weights_folder(weights_dir, trainer.models, trainer.height, trainer.width, use_stereo=False,
                                 depth_encoder=trainer.depth_encoder)
    logger.info("supervised: %d batches in %d epoch(s), final loss %.4f", step, options.num_epochs, loss_value)
    return {"batches": step, "epochs": options.num_epochs, "final_loss": loss_value, "weights": weights_dir}


def supervised_step(trainer: Trainer, options: argparse.Namespace, inputs: dict) -> float:
    """One optimiser step of the depth network on a batch's ``depth_gt``; returns the loss."""
    image = inputs[("color_aug", 0, 0)].to(trainer.device)
    if options.memory_format == "channels_last":
        image = image.contiguous(memory_format=torch.channels_last)
    gt = inputs["depth_gt"].to(trainer.device)
    outputs = trainer.models["depth"](trainer.models["encoder"](image))
    losses = []
    for scale in options.scales:
        disp = F.interpolate(outputs[("disp", scale)], gt.shape[-2:], mode="bilinear", align_corners=False)
        _, depth = disp_to_depth(disp, options.min_depth, options.max_depth)
        losses.append(scale_invariant_log_loss(depth, gt, options.min_depth, options.max_depth))
    loss = torch.stack(losses).mean()
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.optimizer.step()
    return loss.item()
