"""The parity fixtures: where they live, how they were subsampled, how to load them.

``tests/fixtures/`` holds a compact subset of the reference fixtures computed by
the published GasMono networks and trainer (float32 on the CPU, eval mode,
weights from :mod:`deterministic_weights`), so that a plain clone of the
project tests its numerics. ``tests/fixtures/derive_fixtures.py`` rebuilds the
subset from the full reference folder. What was kept:

* ``network_outputs.npz``: every network output, subsampled as given by
  :data:`NETWORK_SAMPLES` (the small pose outputs and channel means whole),
  plus ``<key>.absmax``, the maximum absolute value of the *full* array, so
  that the tolerances are those of the full comparison;
* ``loss_batch.npz``: the two source frames at scale 0 (uint8), the scale-0
  intrinsics and the coarse poses. The target frame is ``make_image(2, 256,
  320, seed=10)`` and ``color_aug`` is ``round255(clamp(color^0.9 * 0.95 +
  0.03, 0, 1))`` of each frame; both are rebuilt here exactly (the derivation
  checks this bit for bit). The trainer reads scale 0 only;
* ``loss_reference.json``: the release's losses and diagnostics for five
  trainer states (whole);
* ``manifest.json``: per model the ordered state-dict keys with shape, dtype
  and alias, parameter counts and the checksum of the deterministic fill.

The network inputs are ``make_image(2, 256, 320, seed=0)`` (the depth image)
and ``make_image(2, 256, 320, seed=1)`` (the other frame of the pose pair).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from deterministic_weights import fill_, make_image

from networks import DepthDecoder, PoseDecoder, ResnetEncoder, TransDecoder, mpvit_small

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
SHARED_REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"

NETWORK_IMAGE_SEED = 0
NETWORK_IMAGE_B_SEED = 1
LOSS_TARGET_SEED = 10
IMAGE_SHAPE = (2, 256, 320)

_ALL = slice(None)
_EVERY_2 = slice(None, None, 2)
_EVERY_4 = slice(None, None, 4)
_EVERY_8 = slice(None, None, 8)
_FIRST_8 = slice(0, 8)

# How each array of the full reference is subsampled (missing keys: kept whole).
NETWORK_SAMPLES: dict[str, tuple[slice, ...]] = {
    "encoder.feat0": (_ALL, _ALL, _EVERY_8, _EVERY_8),
    "encoder.feat1": (_ALL, _ALL, _EVERY_4, _EVERY_4),
    "encoder.feat0.crop": (_ALL, _ALL, _FIRST_8, _FIRST_8),
    "encoder.feat1.crop": (_ALL, _ALL, _FIRST_8, _FIRST_8),
    "encoder.feat2": (_ALL, _ALL, _EVERY_4, _EVERY_4),
    "encoder.feat3": (_ALL, _ALL, _EVERY_2, _EVERY_2),
    "depth.disp0": (_ALL, _ALL, _EVERY_4, _EVERY_4),
    "depth.disp1": (_ALL, _ALL, _EVERY_4, _EVERY_4),
    "depth.disp2": (_ALL, _ALL, _EVERY_4, _EVERY_4),
    "depth.disp3": (_ALL, _ALL, _EVERY_4, _EVERY_4),
    "pose_encoder.feat4": (_ALL, _EVERY_4),
    "trans_encoder.feat4": (_ALL, _EVERY_4),
}


def subsample(key: str, array):
    """The part of a full array (numpy or torch) that the compact fixture keeps."""
    return array[NETWORK_SAMPLES.get(key, (...,))]


def network_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """``(image, pose_pair)``: ``2 x 3 x 256 x 320`` and ``2 x 6 x 256 x 320``
    (``[image_b, image]``, i.e. ``[source, target]`` as for frame -1)."""
    image = make_image(*IMAGE_SHAPE, seed=NETWORK_IMAGE_SEED)
    image_b = make_image(*IMAGE_SHAPE, seed=NETWORK_IMAGE_B_SEED)
    return image, torch.cat([image_b, image], dim=1)


def load_network_reference() -> dict[str, tuple[np.ndarray, float]]:
    """Per output key: ``(subsampled reference, max |full reference|)``."""
    with np.load(FIXTURE_DIR / "network_outputs.npz") as data:
        return {key: (data[key], float(data[f"{key}.absmax"])) for key in data.files if not key.endswith(".absmax")}


def load_manifest() -> dict:
    """Per model name: ``keys`` (``[key, shape, dtype, alias_of]`` lists),
    ``fill_checksum`` and parameter counts."""
    return json.loads((FIXTURE_DIR / "manifest.json").read_text(encoding="utf-8"))


def load_loss_reference() -> dict:
    return json.loads((FIXTURE_DIR / "loss_reference.json").read_text(encoding="utf-8"))


def augment_like_fixture(color: torch.Tensor) -> torch.Tensor:
    """The fixture's deterministic stand-in for colour augmentation."""
    return torch.round(torch.clamp(color**0.9 * 0.95 + 0.03, 0, 1) * 255) / 255


def load_loss_batch() -> dict:
    """The reference training batch at scale 0, in the Monodepth2 input-dict convention."""
    with np.load(FIXTURE_DIR / "loss_batch.npz") as data:
        colors = {0: make_image(*IMAGE_SHAPE, seed=LOSS_TARGET_SEED)}
        for frame_id in (-1, 1):
            colors[frame_id] = torch.from_numpy(data[f"color_{frame_id}_0"].astype(np.float32) / 255)
        batch = {("K", 0): torch.from_numpy(data["K_0"]), ("inv_K", 0): torch.from_numpy(data["inv_K_0"])}
        for frame_id in (-1, 1):
            batch[("pose_gt", frame_id)] = torch.from_numpy(data[f"pose_gt_{frame_id}"])
    for frame_id, color in colors.items():
        batch[("color", frame_id, 0)] = color
        batch[("color_aug", frame_id, 0)] = augment_like_fixture(color)
    return batch


def build_filled_networks() -> dict[str, torch.nn.Module]:
    """The six networks as the trainer builds them, filled with ``fill_(salt=name)``, eval mode."""
    torch.manual_seed(0)
    encoder = mpvit_small()
    pose_encoder = ResnetEncoder(18, False, 2)
    trans_encoder = ResnetEncoder(18, False, 2)
    models = {
        "encoder": encoder,
        "depth": DepthDecoder(encoder.num_ch_enc),
        "pose_encoder": pose_encoder,
        "pose": PoseDecoder(pose_encoder.num_ch_enc, 1, 2),
        "trans_encoder": trans_encoder,
        "trans": TransDecoder(trans_encoder.num_ch_enc, 1, 2),
    }
    for name, model in models.items():
        fill_(model, salt=name)
        model.eval()
    return models


@torch.no_grad()
def run_networks(models: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Every output the fixtures hold, under the reference's key names (full size)."""
    image, pair = network_inputs()
    result = {}
    features = models["encoder"](image)
    for index, feature in enumerate(features):
        result[f"encoder.feat{index}"] = feature
        result[f"encoder.feat{index}.chanmean"] = feature.mean(dim=(2, 3))
    result["encoder.feat0.crop"] = features[0][:, :, :32, :32]
    result["encoder.feat1.crop"] = features[1][:, :, :32, :32]
    disps = models["depth"](features)
    for scale in range(4):
        result[f"depth.disp{scale}"] = disps[("disp", scale)]
    pose_features = models["pose_encoder"](pair)
    result["pose_encoder.feat4"] = pose_features[4]
    axisangle, translation, scale = models["pose"]([pose_features])
    result.update({"pose.axisangle": axisangle, "pose.translation": translation, "pose.scale": scale})
    trans_features = models["trans_encoder"](pair)
    result["trans_encoder.feat4"] = trans_features[4]
    translation, scale = models["trans"]([trans_features])
    result.update({"trans.translation": translation, "trans.scale": scale})
    return result
