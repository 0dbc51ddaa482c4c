"""Trainer behaviour: ablation switches and their effects, the depth encoder
choice, optimiser layout, error handling.

Training runs on real data (learning, resume, DDP) are in
``test_training_runs.py``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from parity_fixtures import load_loss_batch

from losses import SSIM, get_smooth_loss, mean_normalised, photometric_errors
from networks import ResnetEncoder
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


def _one_step(flags: list[str], batch: dict, noise_std: float | None = None) -> tuple[Trainer, dict, dict]:
    """One optimiser step on ``batch``; the trainer, and the outputs and losses of its forward pass."""
    trainer = Trainer(GasMonoOptions().parse(BASE_FLAGS + flags), with_data=False)
    if noise_std is not None:
        trainer.tie_break_noise_std = noise_std
    trainer.set_train()
    before = {name: p.detach().clone() for name, p in trainer.models["depth"].named_parameters()}
    outputs, losses, _ = trainer.process_batch(batch)
    trainer.optimizer.zero_grad()
    losses["loss"].backward()
    trainer.optimizer.step()
    assert torch.isfinite(losses["loss"])
    changed = [name for name, p in trainer.models["depth"].named_parameters() if not torch.equal(p, before[name])]
    assert changed, "an optimiser step must change the depth decoder"
    return trainer, outputs, losses


@pytest.mark.parametrize(
    "flags, present, absent",
    [
        (["--use_posegt", "--selfpp"], {"coarse_pose_loss", "selfpp_loss"}, set()),
        ([], set(), {"coarse_pose_loss", "selfpp_loss"}),
        (["--use_posegt"], {"coarse_pose_loss"}, {"selfpp_loss"}),
        (["--use_posegt", "--selfpp", "--disable_automasking"], {"coarse_pose_loss", "selfpp_loss"}, set()),
        (["--use_posegt", "--selfpp", "--avg_reprojection"], {"coarse_pose_loss", "selfpp_loss"}, set()),
        (["--use_posegt", "--selfpp", "--no_ssim"], {"coarse_pose_loss", "selfpp_loss"}, set()),
        (["--use_posegt", "--selfpp", "--memory_format", "contiguous"], {"coarse_pose_loss", "selfpp_loss"}, set()),
    ],
    ids=["full", "no_coarse_pose_no_distillation", "no_distillation", "no_automasking", "avg_reprojection",
         "no_ssim", "contiguous"],
)
def test_ablation_switches_run_one_step(flags, present, absent, small_batch):
    trainer, _, losses = _one_step(flags, small_batch)
    assert present <= set(losses) and not absent & set(losses)
    assert ("trans" in trainer.models) == ("--use_posegt" in flags)


def _min_reprojection(outputs: dict, batch: dict, scale: int, ssim: SSIM | None, average: bool,
                      automasking: bool) -> float:
    """``min_reprojection/<scale>`` recomputed from the warped sources (no tie-break noise)."""
    target = batch[("color", 0, 0)]
    with torch.no_grad():
        candidates = photometric_errors([outputs[("color", f, scale)] for f in (-1, 1)], target, ssim, average)
        if automasking:
            identity = photometric_errors([batch[("color", f, 0)] for f in (-1, 1)], target, ssim, average)
            candidates = torch.cat([identity, candidates], 1)
    return float(candidates.min(1)[0].mean())


@pytest.mark.parametrize("flag", [None, "--disable_automasking", "--avg_reprojection", "--no_ssim",
                                  "--memory_format contiguous"])
def test_each_ablation_flag_has_its_effect(flag, small_batch):
    trainer, outputs, losses = _one_step(["--use_posegt", "--selfpp"] + (flag.split() if flag else []), small_batch,
                                         noise_std=0.0)
    automasking, average, with_ssim = flag != "--disable_automasking", flag == "--avg_reprojection", flag != "--no_ssim"
    masks = sorted(key for key in outputs if str(key).startswith("identity_selection/"))
    assert masks == ([f"identity_selection/{scale}" for scale in range(4)] if automasking else [])
    assert trainer.recipe.use_ssim == with_ssim
    ssim = SSIM() if with_ssim else None
    for scale in range(4):
        expected = _min_reprojection(outputs, small_batch, scale, ssim, average, automasking)
        assert float(losses[f"min_reprojection/{scale}"]) == pytest.approx(expected, rel=1e-5)
    # the other choices give other numbers on this batch, so the checks above can fail
    for other in (_min_reprojection(outputs, small_batch, 0, ssim, not average, automasking),
                  _min_reprojection(outputs, small_batch, 0, ssim, average, not automasking),
                  _min_reprojection(outputs, small_batch, 0, None if with_ssim else SSIM(), average, automasking)):
        assert abs(other - float(losses["min_reprojection/0"])) > 1e-3 * other
    weights = [p for model in trainer.models.values() for p in model.parameters() if p.ndim == 4]
    channels_last = [p.is_contiguous(memory_format=torch.channels_last) for p in weights]
    contiguous = flag == "--memory_format contiguous"
    assert not all(channels_last) if contiguous else all(channels_last)
    assert trainer.models["encoder"].channels_last != contiguous


def test_a_resnet18_depth_encoder_trains_with_the_same_decoder(small_batch):
    trainer, _, _ = _one_step(["--use_posegt", "--selfpp", "--depth_encoder", "resnet18"], small_batch)
    encoder = trainer.models["encoder"]
    assert isinstance(encoder, ResnetEncoder) and encoder.num_input_images == 1
    assert trainer.depth_encoder == "resnet18" and trainer.models["depth"].num_ch_enc == [64, 64, 128, 256, 512]
    assert [name for name, p in encoder.named_parameters() if not p.requires_grad] == ["encoder.fc.weight",
                                                                                       "encoder.fc.bias"]
    assert trainer.optimizer.param_groups[1]["params"] == list(encoder.parameters())
    # every trainable parameter takes part in the loss (DDP needs no unused-parameter search)
    for name, model in trainer.models.items():
        unused = [key for key, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not unused, (name, unused)


def test_a_missing_depth_encoder_imagenet_file_is_a_clear_error(tmp_path):
    options = GasMonoOptions().parse(BASE_FLAGS + ["--depth_encoder", "resnet50", "--depth_encoder_pretrained",
                                                   str(tmp_path / "resnet50.pth")])
    with pytest.raises(GasMonoError, match=r"ResNet ImageNet weights \(--depth_encoder_pretrained\) not found: "):
        Trainer(options, with_data=False)


def test_without_automasking_the_coarse_term_ignores_identity(small_batch):
    trainer = Trainer(GasMonoOptions().parse(BASE_FLAGS + ["--use_posegt", "--disable_automasking"]),
                      with_data=False)
    trainer.set_eval()
    with torch.no_grad():
        outputs, losses, _ = trainer.process_batch(small_batch)
    assert not any(str(key).startswith("identity_selection") for key in outputs)
    target = small_batch[("color", 0, 0)]
    errors = torch.cat([photometric_errors([outputs[("irw_img", f)]], target, SSIM()) for f in (-1, 1)], 1)
    expected = 0.2 * errors.min(1, keepdim=True)[0].mean()
    # the trainer compares all images at once (float32 sums in another order): 1e-5, as for min_reprojection
    assert float(losses["coarse_pose_loss"]) == pytest.approx(float(expected), rel=1e-5)


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


def _identity_wins_batch(batch: dict) -> dict:
    """``batch`` with both sources replaced by the target: the identity errors are exactly 0."""
    same = dict(batch)
    for frame_id in (-1, 1):
        for kind in ("color", "color_aug"):
            for scale in range(4):
                same[(kind, frame_id, scale)] = batch[(kind, 0, scale)]
    return same


def test_accumulated_tie_break_noise_picks_the_best_disparity_from_every_scale(small_batch):
    trainer = Trainer(GasMonoOptions().parse(BASE_FLAGS + ["--use_posegt", "--selfpp"]), with_data=False)
    trainer.set_eval()
    torch.manual_seed(0)
    with torch.no_grad():
        outputs, losses, state = trainer.process_batch(_identity_wins_batch(small_batch))
    identity_won = torch.stack([outputs[f"identity_selection/{scale}"] == 0 for scale in range(4)]).all(0)
    assert identity_won.float().mean() > 0.9
    best = state.disp
    from_scale = [(best == outputs[("disp", scale)])[identity_won].float().mean().item() for scale in range(4)]
    assert sum(from_scale) == pytest.approx(1.0)
    assert from_scale[0] < 0.6 and min(from_scale[1:]) > 0.05, from_scale

    # the identity errors are exactly 0, so where they win a scale's minimum is the accumulated noise, of std
    # 1e-5 * sqrt(s + 1): E[min of two N(0, v)] = -sqrt(v / pi); the coarse-pose term sees the same noisy errors
    expected = [-1e-5 * math.sqrt((scale + 1) / math.pi) for scale in range(4)]
    target = small_batch[("color", 0, 0)]
    coarse_terms = []
    for scale in range(4):
        smoothness = 1e-4 * float(get_smooth_loss(mean_normalised(outputs[("disp", scale)]), target)) / 2**scale
        coarse_terms.append(float(losses[f"loss/{scale}"] - losses[f"min_reprojection/{scale}"]) - smoothness)
        assert float(losses[f"min_reprojection/{scale}"]) == pytest.approx(expected[scale], rel=0.15)
        assert coarse_terms[scale] == pytest.approx(0.2 * expected[scale], rel=0.15)
    assert float(losses["coarse_pose_loss"]) == pytest.approx(sum(coarse_terms) / 4, rel=1e-3)


def test_avg_reprojection_keeps_the_coarse_errors_per_source(small_batch):
    trainer = Trainer(GasMonoOptions().parse(BASE_FLAGS + ["--use_posegt", "--avg_reprojection"]), with_data=False)
    trainer.set_eval()
    trainer.tie_break_noise_std = 0.0
    with torch.no_grad():
        outputs, losses, _ = trainer.process_batch(small_batch)
    target = small_batch[("color", 0, 0)]
    identity = torch.cat([photometric_errors([small_batch[("color", f, 0)]], target, SSIM()) for f in (-1, 1)], 1)
    coarse = torch.cat([photometric_errors([outputs[("irw_img", f)]], target, SSIM()) for f in (-1, 1)], 1)
    candidates = torch.cat([identity.mean(1, keepdim=True), coarse], 1)
    expected = 0.2 * candidates.min(1, keepdim=True)[0].mean()
    averaged = 0.2 * torch.cat([identity.mean(1, keepdim=True), coarse.mean(1, keepdim=True)], 1).min(1)[0].mean()
    assert float(losses["coarse_pose_loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(expected) - float(averaged)) > 1e-3 * float(expected)
