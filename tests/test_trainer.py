"""Trainer behaviour: ablation switches, optimiser layout, error handling.

Training runs on real data (learning, resume, DDP) are in
``test_training_runs.py``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from parity_fixtures import load_loss_batch

from options import GasMonoOptions
from trainer import Trainer
from utils import GasMonoError

HEIGHT, WIDTH = 64, 96
BASE_FLAGS = ["--height", str(HEIGHT), "--width", str(WIDTH), "--batch_size", "2", "--weights_init", "scratch",
              "--no_cuda", "--disparity_smoothness", "1e-4"]


@pytest.fixture(scope="module")
def small_batch() -> dict:
    """The reference loss batch, area-downsampled to 64 x 96 (intrinsics scaled)."""
    full_batch = load_loss_batch()
    batch = {}
    for frame_id in (0, -1, 1):
        for kind in ("color", "color_aug"):
            full = full_batch[(kind, frame_id, 0)]
            for scale in range(4):
                size = (HEIGHT // 2**scale, WIDTH // 2**scale)
                batch[(kind, frame_id, scale)] = F.interpolate(full, size=size, mode="area")
    for scale in range(4):
        K = full_batch[("K", 0)].clone()
        K[:, 0, :] *= (WIDTH // 2**scale) / 320
        K[:, 1, :] *= (HEIGHT // 2**scale) / 256
        batch[("K", scale)] = K
        batch[("inv_K", scale)] = torch.linalg.pinv(K)
    for frame_id in (-1, 1):
        batch[("pose_gt", frame_id)] = full_batch[("pose_gt", frame_id)]
    return batch


def _one_step(flags: list[str], batch: dict) -> tuple[Trainer, dict]:
    trainer = Trainer(GasMonoOptions().parse(BASE_FLAGS + flags), with_data=False)
    trainer.set_train()
    before = {name: p.detach().clone() for name, p in trainer.models["depth"].named_parameters()}
    outputs, losses = trainer.process_batch(batch)
    trainer.optimizer.zero_grad()
    losses["loss"].backward()
    trainer.optimizer.step()
    assert torch.isfinite(losses["loss"])
    changed = [name for name, p in trainer.models["depth"].named_parameters() if not torch.equal(p, before[name])]
    assert changed, "an optimiser step must change the depth decoder"
    return trainer, losses


@pytest.mark.parametrize(
    "flags, present, absent",
    [
        (["--use_posegt", "--selfpp"], {"coarse_pose_loss", "selfpp_loss"}, set()),
        ([], set(), {"coarse_pose_loss", "selfpp_loss"}),
        (["--use_posegt"], {"coarse_pose_loss"}, {"selfpp_loss"}),
        (["--use_posegt", "--selfpp", "--disable_automasking"], {"coarse_pose_loss", "selfpp_loss"}, set()),
        (["--use_posegt", "--selfpp", "--avg_reprojection"], {"coarse_pose_loss", "selfpp_loss"}, set()),
        (["--use_posegt", "--selfpp", "--no_ssim"], {"coarse_pose_loss", "selfpp_loss"}, set()),
        (["--use_posegt", "--selfpp", "--channels_last"], {"coarse_pose_loss", "selfpp_loss"}, set()),
    ],
    ids=["full", "no_coarse_pose_no_distillation", "no_distillation", "no_automasking", "avg_reprojection",
         "no_ssim", "channels_last"],
)
def test_ablation_switches_run_one_step(flags, present, absent, small_batch):
    trainer, losses = _one_step(flags, small_batch)
    assert present <= set(losses) and not absent & set(losses)
    assert ("trans" in trainer.models) == ("--use_posegt" in flags)


def test_without_automasking_the_coarse_term_ignores_identity(small_batch):
    trainer = Trainer(GasMonoOptions().parse(BASE_FLAGS + ["--use_posegt", "--disable_automasking"]),
                      with_data=False)
    trainer.set_eval()
    with torch.no_grad():
        outputs, losses = trainer.process_batch(small_batch)
    assert not any(str(key).startswith("identity_selection") for key in outputs)
    target = small_batch[("color", 0, 0)]
    errors = torch.cat([trainer._photometric_errors([outputs[("irw_img", f)]], target) for f in (-1, 1)], 1)
    expected = 0.2 * errors.min(1, keepdim=True)[0].mean()
    assert float(losses["coarse_pose_loss"]) == pytest.approx(float(expected), rel=1e-6)


def test_optimizer_groups_follow_the_release_layout():
    trainer = Trainer(GasMonoOptions().parse(BASE_FLAGS + ["--use_posegt", "--learning_rate", "5e-5"]),
                      with_data=False)
    decoder_group, encoder_group = trainer.optimizer.param_groups
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert decoder_group["lr"] == pytest.approx(1e-4) and encoder_group["lr"] == pytest.approx(5e-5)
    assert encoder_group["weight_decay"] == pytest.approx(0.01)
    expected_rest = sum(p.numel() for name in ("depth", "pose_encoder", "pose", "trans_encoder", "trans")
                        for p in trainer.models[name].parameters())
    assert sum(p.numel() for p in decoder_group["params"]) == expected_rest
    assert decoder_group["params"][0] is next(trainer.models["depth"].parameters())
    assert sum(p.numel() for p in encoder_group["params"]) == 22_603_400


def test_recipe_schedule_of_passes_and_distillation_weight():
    trainer = Trainer(GasMonoOptions().parse(BASE_FLAGS + ["--selfpp", "--iiters", "2", "--wpp", "0.2"]),
                      with_data=False)
    recipe = trainer.recipe
    assert [recipe.passes_per_batch(epoch) for epoch in (0, 9, 10, 39)] == [1, 1, 2, 2]
    assert recipe.distill_loss_weight(0) == 0
    assert recipe.distill_loss_weight(10) == pytest.approx(0.1)
    assert recipe.distill_loss_weight(25) == pytest.approx(0.2)


def test_a_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    options = GasMonoOptions().parse(["--height", "64", "--width", "96", "--device", "cuda"])
    with pytest.raises(GasMonoError, match="CUDA is not available"):
        Trainer(options, with_data=False)
