"""The relative poses of a trained GasMono checkpoint, against ground truth
(what ``evaluate_pose.py`` runs).

For every item ``(scene, t)`` with coarse poses and both neighbours
``s = t - 1, t + 1``, the networks see the frames as in training (the
checkpoint's ``height x width``, no augmentation, pairs in temporal order) and
give ``T_{t->s}`` of these kinds:

* ``coarse``: the coarse (COLMAP) pose ``T_c`` as stored (no network);
* ``refined``: AlignNet's refinement of it, :func:`layers.refine_coarse_pose`
  (rotation of ``T_c``; translation ``t_c * scale + t_residual``, the residual
  negated for ``s = t - 1``), the pose with which training warps the source
  into the coarse-warped image ``irw = warp(source, D, T_r)``;
* ``final``: the refined pose composed with PoseNet's residual ``C``, which
  PoseNet predicts from ``(irw, target)`` and with which training warps
  ``irw`` again: ``pred = warp(irw, D, C)``. With ``X = D(p) K^-1 p`` the
  target point of pixel ``p`` and ``q`` the projection of ``C X``,
  ``pred(p) = irw(q) = source(proj(K T_r D(q) K^-1 q))``, and
  ``D(q) K^-1 q = C X`` exactly when the target depth at ``q`` equals the
  depth of ``C X``. There ``pred(p) = source(proj(K T_r C X))``: the two warps
  are one rigid motion ``T_final = T_r @ C`` (``C`` first). Elsewhere (where
  the depth at ``q`` differs, at occlusion edges or for a large residual)
  the composition is exact for the rigid part only where the depth is the same;
* ``posenet``: for a checkpoint trained without ``--use_posegt`` (no
  ``trans.pth``), PoseNet alone on the raw pairs (Monodepth2).

A checkpoint with AlignNet gives ``coarse``, ``refined`` and ``final``; one
without gives ``coarse`` and ``posenet``; no checkpoint gives ``coarse``. The
errors and the scale consistency are those of
:func:`coarse_poses.evaluation.evaluate_pose_kinds`.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

import networks
from coarse_poses.evaluation import evaluate_pose_kinds, item_poses, pose_scenes
from coarse_poses.pose_files import SOURCE_FRAME_SLOTS, list_pose_items
from datasets.registry import dataset_class
from layers import (
    BackprojectDepth,
    Project3D,
    disp_to_depth,
    refine_coarse_pose,
    temporal_pair,
    transformation_from_parameters,
    warp_image,
)
from utils import GasMonoError, require_path

__all__ = ["POSE_KIND_DESCRIPTIONS", "SOURCE_FRAMES", "PoseModel", "evaluate_poses"]

# the source frames in the slot order of the pose files (T_{t->t-1}, T_{t->t+1})
SOURCE_FRAMES = tuple(sorted(SOURCE_FRAME_SLOTS, key=SOURCE_FRAME_SLOTS.__getitem__))
# every kind of pose, in the order of the reports
POSE_KIND_DESCRIPTIONS = {
    "coarse": "coarse (COLMAP) poses",
    "refined": "AlignNet: coarse rotation, t_coarse * scale + t_residual",
    "final": "refined @ PoseNet residual (the pose of the training warp)",
    "posenet": "PoseNet alone on raw pairs (checkpoint without --use_posegt)",
}


class PoseModel:
    """The pose networks of a weights folder, ready to predict the relative
    poses of dataset batches.

    Args:
        encoder, depth: the depth network (used for the coarse warp; None without AlignNet).
        pair_networks: ``pose_encoder``, ``pose`` and optionally ``trans_encoder``, ``trans``.
        height, width: the input size of the networks.
        min_depth, max_depth: the range of ``disp_to_depth``.
        device: where the networks run.
    """

    def __init__(self, encoder: nn.Module | None, depth: nn.Module | None, pair_networks: dict[str, nn.Module],
                 height: int, width: int, min_depth: float = 0.1, max_depth: float = 10.0,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.encoder = None if encoder is None else encoder.to(self.device).eval()
        self.depth = None if depth is None else depth.to(self.device).eval()
        self.nets = {name: net.to(self.device).eval() for name, net in pair_networks.items()}
        self.height, self.width = height, width
        self.min_depth, self.max_depth = min_depth, max_depth
        self.backproject = BackprojectDepth(height, width).to(self.device)
        self.project = Project3D(height, width).to(self.device)

    @property
    def uses_coarse_poses(self) -> bool:
        """Whether the checkpoint has AlignNet (trained with ``--use_posegt``)."""
        return "trans" in self.nets

    @property
    def kinds(self) -> tuple[str, ...]:
        """The network kinds this checkpoint predicts (see the module docstring)."""
        return ("refined", "final") if self.uses_coarse_poses else ("posenet",)

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike, device: str | torch.device = "cpu",
                        min_depth: float = 0.1, max_depth: float = 10.0) -> "PoseModel":
        """Load PoseNet, and AlignNet with the depth network where the folder has
        ``trans.pth``; the input size comes from ``encoder.pth``.

        Raises:
            GasMonoError: a missing folder or file, or weights of another architecture.
        """
        folder = require_path(folder, "weights folder (--load_weights_folder)")
        pair_networks = networks.load_pair_networks(folder)
        encoder, depth, extras = networks.load_depth_model(folder, scales=[0])
        if "height" not in extras or "width" not in extras:
            raise GasMonoError(f"{folder / 'encoder.pth'} has no 'height'/'width' entries")
        if "trans" not in pair_networks:
            encoder = depth = None
        return cls(encoder, depth, pair_networks, int(extras["height"]), int(extras["width"]), min_depth, max_depth,
                   device)

    def _pose(self, name: str, source: torch.Tensor, target: torch.Tensor, frame_id: int) -> list[torch.Tensor]:
        """The outputs of frame slot 0 of PoseNet (``name="pose"``: axis-angle, translation, scale, each
        ``B x 1 x n``) or AlignNet (``"trans"``: translation residual, scale) on the pair in temporal order."""
        pair = temporal_pair(source, target, frame_id)
        return [output[:, 0] for output in self.nets[name]([self.nets[f"{name}_encoder"](pair)])]

    @torch.no_grad()
    def predict(self, inputs: dict) -> dict[str, torch.Tensor]:
        """Relative poses of a batch of the dataset (keys ``("color", f, 0)``,
        ``("K", 0)``, ``("inv_K", 0)``, ``("pose_gt", f)``).

        Returns:
            kind -> ``B x 2 x 4 x 4`` ``T_{t->s}`` in the slot order of the pose
            files, for the kinds of :attr:`kinds`.
        """
        inputs = {key: value.to(self.device) for key, value in inputs.items()
                  if isinstance(key, tuple) and key[0] in ("color", "K", "inv_K", "pose_gt")}
        target = inputs[("color", 0, 0)]
        poses: dict[str, list[torch.Tensor]] = {kind: [] for kind in self.kinds}
        if self.uses_coarse_poses:
            disp = self.depth(self.encoder(target))[("disp", 0)]
            _, depth = disp_to_depth(disp, self.min_depth, self.max_depth)
        for frame_id in SOURCE_FRAMES:
            source = inputs[("color", frame_id, 0)]
            if self.uses_coarse_poses:
                translation, scale = self._pose("trans", source, target, frame_id)
                refined = refine_coarse_pose(inputs[("pose_gt", frame_id)], translation, scale, invert=frame_id < 0)
                source = warp_image(source, depth, inputs[("K", 0)], inputs[("inv_K", 0)], refined,
                                    self.backproject, self.project)
            axisangle, translation, _ = self._pose("pose", source, target, frame_id)
            residual = transformation_from_parameters(axisangle, translation, invert=frame_id < 0)
            if self.uses_coarse_poses:
                poses["refined"].append(refined)
                poses["final"].append(refined @ residual)
            else:
                poses["posenet"].append(residual)
        return {kind: torch.stack(values, 1) for kind, values in poses.items()}


def evaluate_poses(
    data_path: str | os.PathLike,
    cpose_dir: str | os.PathLike,
    weights_folder: str | os.PathLike | None = None,
    scenes: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    num_workers: int = 0,
    img_ext: str = ".jpg",
    min_depth: float = 0.1,
    max_depth: float = 10.0,
    progress: bool = True,
    dataset: str = "nyu",
) -> dict:
    """Score the coarse poses and, with ``weights_folder``, the network poses
    against ground truth (``<data_path>/<scene>/poses.txt``).

    Args:
        data_path: root of the sequences.
        cpose_dir: coarse poses; every item with a pose file is evaluated.
        weights_folder: a checkpoint (None: the coarse poses only).
        scenes: default every scene with pose files.
        dataset: the :mod:`datasets.registry` name of the layout of ``data_path``
            (one whose coarse-pose scenes are its folders, e.g. nyu or folder).

    Returns:
        :func:`coarse_poses.evaluation.evaluate_pose_kinds`' report with
        ``"checkpoint"`` (the folder or None), ``"descriptions"`` of the kinds
        and, with a checkpoint, ``"height"``, ``"width"``.

    Raises:
        GasMonoError: a missing path, missing ground truth, an unreadable checkpoint.
    """
    data_path = require_path(data_path, "data path (--data_path)")
    cpose_dir = require_path(cpose_dir, "coarse-pose folder (--cpose_dir)")
    scenes = pose_scenes(cpose_dir) if scenes is None else list(scenes)
    items = list_pose_items(cpose_dir, scenes)
    if not items:
        raise GasMonoError(f"no coarse-pose files of scenes {', '.join(scenes)} under {cpose_dir}")
    truths, coarse = item_poses(data_path, cpose_dir, items)
    estimates = {"coarse": coarse}
    extra: dict = {"checkpoint": None if weights_folder is None else str(weights_folder)}
    if weights_folder is not None:
        model = PoseModel.from_checkpoint(weights_folder, device, min_depth, max_depth)
        items_dataset = dataset_class(dataset)(
            data_path, [f"{scene} {frame} l" for scene, frame in items], model.height, model.width,
            [0, *SOURCE_FRAMES], 1, img_ext=img_ext, cpose_dir=cpose_dir, augmentation="none")
        predicted: dict[str, list[np.ndarray]] = {kind: [] for kind in model.kinds}
        loader = DataLoader(items_dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        for inputs in tqdm(loader, desc="poses", unit="batch", disable=not progress):
            for kind, poses in model.predict(inputs).items():
                predicted[kind].append(poses.double().cpu().numpy().reshape(-1, 4, 4))
        estimates.update({kind: np.concatenate(values) for kind, values in predicted.items()})
        extra.update(height=model.height, width=model.width)
    pair_scenes = [scene for scene, _ in items for _ in SOURCE_FRAMES]
    report = evaluate_pose_kinds(estimates, truths, pair_scenes)
    return {**extra, "descriptions": {kind: POSE_KIND_DESCRIPTIONS[kind] for kind in estimates}, **report}

