"""The fast training kernels against the reference they replace, values and
gradients: the batched warp (``layers.warp_image``), the batched photometric
error and its hand-written gradient (``losses.photometric_error``), the
batched losses with the per-batch term reuse (``Trainer.compute_losses``),
whole passes of the trainer under every ablation, four optimiser steps of the
full recipe, and the release-structured step of ``benchmarks/release_step.py``
against the release's losses. float64 within 1e-10; float32 at rounding level."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch
from deterministic_weights import fill_
from parity_fixtures import load_loss_batch, load_loss_reference

import accel
from accel import photometric
from accel.losses import BatchTerms
from accel.photometric import PhotometricTarget, SSIMRelativeL1
from accel.warp import BatchedWarp
from layers import BackprojectDepth, Project3D, transformation_from_parameters, warp_image
from losses import SSIM, photometric_error
from options import GasMonoOptions
from trainer import Trainer
from utils import NYU_NORMALISED_INTRINSICS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from release_step import ReleaseStep  # noqa: E402

HEIGHT, WIDTH = 64, 96
RECIPE = ["--use_posegt", "--selfpp", "--www", "0.2", "--wpp", "0.2", "--iiters", "2", "--disparity_smoothness",
          "1e-3", "--iiters_start_epoch", "0"]
ABLATIONS = {
    "full": [],
    "avg_reprojection": ["--avg_reprojection"],
    "no_automasking": ["--disable_automasking"],
    "no_ssim": ["--no_ssim"],
    "monodepth2": None,  # no coarse poses, no self-distillation
    "stereo": ["--dataset", "kitti", "--split", "eigen_zhou", "--use_stereo", "--frame_ids", "0", "--selfpp"],
    "mono+stereo": ["--dataset", "kitti", "--split", "eigen_zhou", "--use_stereo", *RECIPE],
}


def _relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach(), expected.detach()
    return float((actual - expected).abs().max()) / max(float(expected.abs().max()), 1e-30)


def _trainer(kernels: str, flags: list[str], encoder: str = "resnet18") -> Trainer:
    options = GasMonoOptions().parse(["--height", str(HEIGHT), "--width", str(WIDTH), "--batch_size", "2",
                                      "--weights_init", "scratch", "--no_cuda", "--depth_encoder", encoder,
                                      "--kernels", kernels, *flags])
    torch.manual_seed(0)
    return Trainer(options, with_data=False)


def _pair(flags: list[str], encoder: str = "resnet18") -> tuple[Trainer, Trainer]:
    """A reference and a fast trainer with the same float64 weights."""
    reference, fast = _trainer("reference", flags, encoder), _trainer("fast", flags, encoder)
    assert reference.fast is None and fast.fast is not None
    for name, model in fast.models.items():
        model.load_state_dict(reference.models[name].state_dict())
    for trainer in (reference, fast):
        for model in trainer.models.values():
            model.double()
    return reference, fast


def _batch(frame_ids=(0, -1, 1), batch_size: int = 2, seed: int = 0) -> dict:
    """A random float64 batch of ``frame_ids`` (``"s"``: the other camera, with ``stereo_T``)."""
    return accel.random_batch(batch_size, HEIGHT, WIDTH, list(frame_ids), NYU_NORMALISED_INTRINSICS, True,
                              torch.float64, torch.device("cpu"), seed=seed)


# --------------------------------------------------------------------------- whole passes
@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_a_fast_pass_equals_the_reference_pass_in_float64(ablation):
    flags = ABLATIONS[ablation] if "stereo" in ablation else RECIPE + ABLATIONS[ablation] if ABLATIONS[ablation] \
        is not None else ["--iiters_start_epoch", "0"]
    reference, fast = _pair(flags)
    batch = _batch([0, *reference.source_frames])
    states = {}
    for pass_index in range(2):  # a fresh best disparity, then the one carried into the second pass
        results = {}
        for name, trainer in (("reference", reference), ("fast", fast)):
            trainer.epoch = 25
            torch.manual_seed(pass_index)  # the same tie-break noise and drop-path draws
            outputs, losses, states[name] = trainer.process_batch(batch, states.get(name))
            for model in trainer.models.values():
                model.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grads = {key: p.grad.clone() for name_, model in trainer.models.items()
                     for key, p in ((f"{name_}.{k}", p) for k, p in model.named_parameters()) if p.grad is not None}
            results[name] = (outputs, losses, grads)
        (ref_outputs, ref_losses, ref_grads), (fast_outputs, fast_losses, fast_grads) = results["reference"], \
            results["fast"]
        assert set(fast_losses) == set(ref_losses)
        for term, value in ref_losses.items():
            expected = float(value.detach())
            assert abs(float(fast_losses[term].detach()) - expected) <= 1e-10 * max(1.0, abs(expected)), term
        assert set(fast_grads) == set(ref_grads) and ref_grads
        for key, grad in ref_grads.items():
            assert float((fast_grads[key] - grad).abs().max()) <= 1e-10 * max(float(grad.abs().max()), 1e-8), key
        for key in [k for k in ref_outputs if str(k).startswith("identity_selection")]:
            assert torch.equal(fast_outputs[key], ref_outputs[key]), key
        if "best_disp" in ref_outputs:
            assert _relative_difference(fast_outputs["best_disp"], ref_outputs["best_disp"]) <= 1e-10


def test_four_optimiser_steps_of_the_full_recipe_agree_within_1e_10():
    reference, fast = _pair(RECIPE, encoder="mpvit_small")
    initial = {key: value.clone() for key, value in reference.models["depth"].state_dict().items()}
    for trainer in (reference, fast):
        trainer.set_train()
        trainer.epoch = 25
    for batch_index in range(2):
        batch = _batch(seed=batch_index)
        states = {"reference": None, "fast": None}
        for pass_index in range(2):
            for name, trainer in (("reference", reference), ("fast", fast)):
                torch.manual_seed(10 * batch_index + pass_index)
                _, losses, states[name] = trainer.process_batch(batch, states[name])
                trainer.optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                trainer.optimizer.step()
    worst = 0.0
    for name, model in reference.models.items():
        for (key, expected), actual in zip(model.state_dict().items(), fast.models[name].state_dict().values()):
            if expected.is_floating_point():
                worst = max(worst, float((actual - expected).abs().max()))
    moved = max(float((value - initial[key]).abs().max())
                for key, value in reference.models["depth"].state_dict().items() if value.is_floating_point())
    assert moved > 1e-5  # the optimiser moved the weights
    assert worst <= 1e-10


# --------------------------------------------------------------------------- single kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_batched_warp_equals_warp_image_with_gradients(dtype):
    generator = torch.Generator().manual_seed(2)
    height, width = 12, 20
    sources = torch.rand(2, 3, 3, height, width, generator=generator, dtype=dtype, requires_grad=True)
    depths = (1 + 3 * torch.rand(4, 3, 1, height, width, generator=generator, dtype=dtype)).requires_grad_()
    K = torch.tensor([[0.8 * width, 0, 0.5 * width, 0], [0, 1.1 * height, 0.5 * height, 0], [0, 0, 1, 0],
                      [0, 0, 0, 1]], dtype=dtype).repeat(3, 1, 1)
    axisangle = 0.05 * torch.randn(2, 3, 1, 3, generator=generator, dtype=dtype)
    translation = 0.1 * torch.randn(2, 3, 1, 3, generator=generator, dtype=dtype)
    poses = torch.stack([transformation_from_parameters(a, t) for a, t in zip(axisangle, translation)])
    poses.requires_grad_()
    weights = torch.rand(2, 3, 3, 4, height, width, generator=generator, dtype=dtype)
    fast = BatchedWarp(height, width)(sources, depths, K, torch.linalg.inv(K), poses)
    backproject, project = BackprojectDepth(height, width), Project3D(height, width)
    reference = torch.stack([torch.stack([warp_image(sources[f], depths[s], K, torch.linalg.inv(K), poses[f],
                                                     backproject, project) for s in range(4)], 2) for f in range(2)])
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    assert _relative_difference(fast, reference) <= tolerance
    fast_grads = torch.autograd.grad((fast * weights).sum(), [sources, depths, poses])
    reference_grads = torch.autograd.grad((reference * weights).sum(), [sources, depths, poses])
    for ours, theirs in zip(fast_grads, reference_grads):
        assert _relative_difference(ours, theirs) <= 10 * tolerance


@pytest.mark.parametrize("use_ssim", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_batched_photometric_error_equals_the_reference_with_gradients(use_ssim, dtype):
    generator = torch.Generator().manual_seed(4)
    target = torch.rand(2, 3, 9, 13, generator=generator, dtype=dtype)
    predictions = torch.rand(2, 2, 3, 3, 9, 13, generator=generator, dtype=dtype, requires_grad=True)
    weights = torch.rand(2, 2, 3, 9, 13, generator=generator, dtype=dtype)
    fast = photometric.photometric_errors(predictions, PhotometricTarget.of(target), use_ssim)
    ssim = SSIM() if use_ssim else None
    reference = torch.stack([torch.cat([photometric_error(predictions[f, :, :, s], target, ssim) for s in range(3)], 1)
                             for f in range(2)])
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    assert fast.shape == reference.shape and _relative_difference(fast, reference) <= tolerance
    (ours,) = torch.autograd.grad((fast * weights).sum(), predictions)
    (theirs,) = torch.autograd.grad((reference * weights).sum(), predictions)
    assert _relative_difference(ours, theirs) <= tolerance


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
    trainer = _trainer("fast", ["--use_posegt", "--selfpp"])
    cache = trainer.fast.batch_terms
    inputs = load_loss_batch()
    recipe = trainer.recipe

    def terms(batch):
        return cache.get(batch, lambda: BatchTerms.of(batch, trainer.source_frames, recipe))

    first = terms(inputs)
    assert terms(inputs) is first
    copied = {key: value.clone() for key, value in inputs.items()}
    second = terms(copied)
    assert second is not first and torch.equal(second.identity_errors, first.identity_errors)
    copied[("color", 1, 0)].mul_(0.5)
    third = terms(copied)
    assert third is not second and not torch.equal(third.identity_errors, second.identity_errors)
    copied[("color", 0, 0)].requires_grad_()
    assert terms(copied) is not terms(copied)


def test_the_tie_break_noise_is_drawn_afresh_at_every_pass():
    trainer = _trainer("fast", [])
    trainer.tie_break_noise_std = 1.0
    batch = _batch()
    for model in trainer.models.values():
        model.double()
    with torch.no_grad():
        first = trainer.process_batch(batch)[1]
        second = trainer.process_batch(batch)[1]
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
    compiled = torch.compile(photometric.photometric_errors)
    errors = compiled(predictions, target)
    (grad,) = torch.autograd.grad((errors * weights).sum(), predictions)
    eager = photometric.photometric_errors(predictions, target)
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

