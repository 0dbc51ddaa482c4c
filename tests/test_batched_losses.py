"""The batched loss path (one warp, one photometric-error call, terms reused
across passes) against a straightforward per-source, per-scale reference,
values and gradients; the hand-written gradient of the photometric error; the
reuse of the batch terms; ``--compile`` of the loss; and the release-structured
step of ``benchmarks/release_step.py`` against the release's losses."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch
from deterministic_weights import fill_
from parity_fixtures import load_loss_batch, load_loss_reference

import photometric
from layers import BackprojectDepth, BatchedWarp, Project3D, transformation_from_parameters, warp_image
from losses import (
    SSIM,
    BatchTerms,
    BestDisparity,
    Recipe,
    compute_batch_losses,
    get_smooth_loss,
    mean_normalised,
    photometric_errors,
    self_distillation_loss,
)
from options import GasMonoOptions
from photometric import PhotometricTarget, SSIMRelativeL1
from photometric import photometric_errors as batched_photometric_errors
from trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from release_step import ReleaseStep  # noqa: E402

BATCH, HEIGHT, WIDTH, SCALES, SOURCES = 2, 24, 32, [0, 1, 2, 3], [-1, 1]


def recipe(**changes) -> Recipe:
    values = dict(use_coarse_pose=True, coarse_pose_loss_weight=0.2, use_self_distillation=True, distill_weight=0.2,
                  distill_ramp_epochs=20, distill_passes=2, distill_start_epoch=10, use_automasking=True,
                  average_reprojection=False, use_ssim=True, smoothness_weight=1e-3)
    return Recipe(**{**values, **changes})


def reference_losses(inputs: dict, outputs: dict, recipe: Recipe, epoch: int, state: BestDisparity | None,
                     noise_std: float) -> tuple[dict, BestDisparity | None]:
    """The losses written one source, one scale, one comparison at a time, as the release computes them."""
    target = inputs[("color", 0, 0)]
    ssim = SSIM() if recipe.use_ssim else None
    identity = None
    if recipe.use_automasking:
        identity = photometric_errors([inputs[("color", f, 0)] for f in SOURCES], target, ssim,
                                      recipe.average_reprojection)
    if recipe.use_self_distillation and state is None:
        state = BestDisparity.initial(outputs[("disp", 0)])
    losses, total, coarse_terms = {}, 0.0, []
    for scale in SCALES:
        disp = outputs[("disp", scale)]
        errors = photometric_errors([outputs[("color", f, scale)] for f in SOURCES], target, ssim,
                                    recipe.average_reprojection)
        if identity is not None:
            identity = identity + torch.randn_like(identity) * noise_std
            errors = torch.cat([identity, errors], 1)
        min_error, index = torch.min(errors, 1, keepdim=True)
        if identity is not None:
            outputs[f"identity_selection/{scale}"] = (index >= identity.shape[1]).float()
        loss = min_error.mean()
        losses[f"min_reprojection/{scale}"] = loss.detach()
        if recipe.use_coarse_pose:
            coarse = photometric_errors([outputs[("irw_img", f)] for f in SOURCES], target, ssim)
            if identity is not None:
                coarse = torch.cat([identity, coarse], 1)
            coarse_terms.append(recipe.coarse_pose_loss_weight * torch.min(coarse, 1)[0].mean())
            loss = loss + coarse_terms[-1]
        loss = loss + recipe.smoothness_weight * get_smooth_loss(mean_normalised(disp), target) / 2**scale
        if state is not None:
            state = state.updated(disp, min_error)
        losses[f"loss/{scale}"] = loss
        total = total + loss
    if coarse_terms:
        losses["coarse_pose_loss"] = torch.stack(coarse_terms).mean()
    if state is not None:
        losses["selfpp_loss"] = sum(self_distillation_loss(state.disp, outputs[("disp", s)]) for s in SCALES)
        total = total + recipe.distill_loss_weight(epoch) * losses["selfpp_loss"]
        outputs["best_disp"] = state.disp
    losses["loss"] = total / len(SCALES)
    return losses, state


def random_case(seed: int) -> tuple[dict, dict]:
    """Inputs (three frames, intrinsics) and network outputs as leaves that require gradients."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {("color", f, 0): torch.rand(BATCH, 3, HEIGHT, WIDTH, generator=generator) for f in [0] + SOURCES}
    K = torch.tensor([[0.81 * WIDTH, 0, 0.51 * WIDTH, 0], [0, 1.08 * HEIGHT, 0.53 * HEIGHT, 0], [0, 0, 1, 0],
                      [0, 0, 0, 1.0]]).repeat(BATCH, 1, 1)
    inputs[("K", 0)], inputs[("inv_K", 0)] = K, torch.linalg.inv(K)
    leaves = {("disp", s): (torch.rand(BATCH, 1, HEIGHT, WIDTH, generator=generator) * (1 if s == 0 else 8) + 0.01)
              for s in SCALES}
    leaves.update({("irw_img", f): torch.rand(BATCH, 3, HEIGHT, WIDTH, generator=generator) for f in SOURCES})
    leaves.update({("axisangle", f): torch.randn(BATCH, 1, 3, generator=generator) * 0.05 for f in SOURCES})
    leaves.update({("translation", f): torch.randn(BATCH, 1, 3, generator=generator) * 0.1 for f in SOURCES})
    return inputs, {key: value.requires_grad_() for key, value in leaves.items()}


def batched_forward(inputs, leaves, recipe, epoch, state, noise_std):
    outputs = {("disp", s): leaves[("disp", s)] for s in SCALES}
    sources = torch.stack([leaves[("irw_img", f)] for f in SOURCES]) if recipe.use_coarse_pose else torch.stack(
        [inputs[("color", f, 0)] for f in SOURCES])
    outputs["coarse_warped"] = sources.unsqueeze(3)
    poses = torch.stack([transformation_from_parameters(leaves[("axisangle", f)], leaves[("translation", f)],
                                                        invert=f < 0) for f in SOURCES])
    depths = 1 / (0.1 + 9.9 * torch.stack([outputs[("disp", s)] for s in SCALES]))
    outputs["reprojections"] = BatchedWarp(HEIGHT, WIDTH)(sources, depths, inputs[("K", 0)], inputs[("inv_K", 0)],
                                                         poses)
    terms = BatchTerms.of(inputs, SOURCES, recipe)
    losses, state = compute_batch_losses(inputs, outputs, recipe, SCALES, SOURCES, epoch, state, noise_std, terms)
    return outputs, losses, state


def reference_forward(inputs, leaves, recipe, epoch, state, noise_std):
    outputs = {("disp", s): leaves[("disp", s)] for s in SCALES}
    backproject, project = BackprojectDepth(HEIGHT, WIDTH), Project3D(HEIGHT, WIDTH)
    for f in SOURCES:
        source = leaves[("irw_img", f)] if recipe.use_coarse_pose else inputs[("color", f, 0)]
        outputs[("irw_img", f)] = source
        pose = transformation_from_parameters(leaves[("axisangle", f)], leaves[("translation", f)], invert=f < 0)
        for s in SCALES:
            depth = 1 / (0.1 + 9.9 * outputs[("disp", s)])
            outputs[("color", f, s)] = warp_image(source, depth, inputs[("K", 0)], inputs[("inv_K", 0)], pose,
                                                  backproject, project)
    losses, state = reference_losses(inputs, outputs, recipe, epoch, state, noise_std)
    return outputs, losses, state


def _gradients(losses: dict, leaves: dict) -> dict:
    grads = torch.autograd.grad(losses["loss"], list(leaves.values()), allow_unused=True)
    return dict(zip(leaves, grads))


@pytest.mark.parametrize("changes", [{}, {"average_reprojection": True}, {"use_automasking": False},
                                     {"use_ssim": False}, {"use_coarse_pose": False, "use_self_distillation": False}],
                         ids=["full", "avg_reprojection", "no_automasking", "no_ssim", "monodepth2"])
def test_batched_losses_equal_the_per_scale_reference_with_gradients(changes):
    the_recipe = recipe(**changes)
    inputs, leaves = random_case(seed=3)
    state_batched = state_reference = None
    for epoch in (0, 25):  # a fresh state, then the state carried into a second pass
        torch.manual_seed(epoch)
        outputs, losses, state_batched = batched_forward(inputs, leaves, the_recipe, epoch, state_batched, 1e-5)
        torch.manual_seed(epoch)  # the same tie-break noise: a fresh draw per scale, in the same order
        expected_outputs, expected, state_reference = reference_forward(inputs, leaves, the_recipe, epoch,
                                                                        state_reference, 1e-5)
        assert set(losses) - {"selfpp_weight"} == set(expected)
        for name, value in expected.items():
            assert float(losses[name].detach()) == pytest.approx(float(value.detach()), rel=1e-5, abs=1e-9), name
        for key in [key for key in expected_outputs if str(key).startswith("identity_selection")]:
            assert (outputs[key] != expected_outputs[key]).float().mean() < 1e-3, key
        if the_recipe.use_self_distillation:
            assert (state_batched.disp != state_reference.disp).float().mean() < 1e-3
        ours, theirs = _gradients(losses, leaves), _gradients(expected, leaves)
        for key, grad in theirs.items():
            if grad is None:
                assert ours[key] is None, key
                continue
            assert (ours[key] - grad).abs().max() <= 1e-4 * grad.abs().max() + 1e-9, key


def test_the_hand_written_photometric_gradient_is_exact():
    generator = torch.Generator().manual_seed(0)
    target = PhotometricTarget.of(torch.rand(1, 3, 5, 6, generator=generator, dtype=torch.float64))
    predictions = torch.rand(2, 1, 3, 2, 5, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: SSIMRelativeL1.apply(x, target), (predictions,), eps=1e-6, atol=1e-8)


def test_the_photometric_error_is_the_same_whatever_the_grouping_of_comparisons(monkeypatch):
    """The CPU's one-comparison groups and the one-source groups used on other devices give the same numbers."""
    generator = torch.Generator().manual_seed(1)
    target = PhotometricTarget.of(torch.rand(2, 3, 9, 11, generator=generator))
    predictions = torch.rand(2, 2, 3, 4, 9, 11, generator=generator, requires_grad=True)
    weights = torch.rand(2, 2, 4, 9, 11, generator=generator)
    assert len(photometric.comparison_groups(predictions)) == 8  # one per (source, image) on the CPU
    results = []
    for groups in (photometric.comparison_groups, lambda x: [(f, slice(None)) for f in range(x.shape[0])]):
        monkeypatch.setattr(photometric, "comparison_groups", groups)
        error = SSIMRelativeL1.apply(predictions, target)
        (gradient,) = torch.autograd.grad((error * weights).sum(), predictions)
        results.append((error, gradient))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_batch_terms_are_reused_only_for_the_same_unmodified_images():
    trainer = Trainer(GasMonoOptions().parse(["--height", "64", "--width", "96", "--batch_size", "2", "--use_posegt",
                                              "--selfpp", "--weights_init", "scratch", "--no_cuda"]),
                      with_data=False)
    inputs = load_loss_batch()
    first = trainer.batch_terms(inputs, inputs)
    assert trainer.batch_terms(inputs, inputs) is first
    copied = {key: value.clone() for key, value in inputs.items()}
    second = trainer.batch_terms(copied, copied)
    assert second is not first and torch.equal(second.identity_errors, first.identity_errors)
    copied[("color", 1, 0)].mul_(0.5)
    third = trainer.batch_terms(copied, copied)
    assert third is not second and not torch.equal(third.identity_errors, second.identity_errors)
    copied[("color", 0, 0)].requires_grad_()
    assert trainer.batch_terms(copied, copied) is not trainer.batch_terms(copied, copied)


def test_the_tie_break_noise_is_drawn_afresh_at_every_pass():
    inputs, leaves = random_case(seed=5)
    the_recipe = recipe(use_self_distillation=False)
    _, first, _ = batched_forward(inputs, leaves, the_recipe, 0, None, 1.0)
    _, second, _ = batched_forward(inputs, leaves, the_recipe, 0, None, 1.0)
    assert float(first["min_reprojection/0"]) != float(second["min_reprojection/0"])


def test_compiled_photometric_errors_equal_eager():
    """``--compile`` compiles the networks and this function; on the CPU the
    compilation of this size takes about 20-40 s (the networks take minutes,
    so they are not compiled here)."""
    generator = torch.Generator().manual_seed(1)
    target = PhotometricTarget.of(torch.rand(1, 3, 8, 10, generator=generator))
    predictions = torch.rand(2, 1, 3, 2, 8, 10, generator=generator, requires_grad=True)
    weights = torch.rand(2, 1, 2, 8, 10, generator=generator)
    start = time.perf_counter()
    compiled = torch.compile(batched_photometric_errors)
    errors = compiled(predictions, target)
    (grad,) = torch.autograd.grad((errors * weights).sum(), predictions)
    eager = batched_photometric_errors(predictions, target)
    (eager_grad,) = torch.autograd.grad((eager * weights).sum(), predictions)
    torch.testing.assert_close(errors, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-7)
    assert time.perf_counter() - start < 300


def test_release_structured_step_gives_the_release_losses():
    flags = ["--use_posegt", "--www", "0.2", "--wpp", "0.2", "--iiters", "2", "--selfpp", "--disparity_smoothness",
             "1e-4", "--batch_size", "2", "--weights_init", "scratch", "--no_cuda"]
    step = ReleaseStep(GasMonoOptions().parse(flags), torch.device("cpu"))
    for name, model in step.models.items():
        fill_(model, salt=name)
        model.eval()
    step.noise_std = 0.0
    batch, cases = load_loss_batch(), load_loss_reference()["cases"]
    state = None
    with torch.no_grad():
        for case_name, epoch in (("ii_epoch25_fresh", 25), ("iii_epoch25_reuse", 25)):
            step.epoch = epoch
            _, losses, state = step.process_batch(batch, state)
            for name, expected in cases[case_name]["losses"].items():
                assert float(losses[name]) == pytest.approx(expected, rel=1e-4), (case_name, name)
            assert float(losses["selfpp_loss"]) == pytest.approx(cases[case_name]["selfpp_loss"], rel=5e-4)
