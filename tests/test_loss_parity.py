"""The trainer's losses against the release's ``process_batch`` on the
reference batch (``tests/fixtures/loss_*``, see ``tests/parity_fixtures.py``):
losses within 1e-4 relative, the self-distillation loss and its state within
5e-4, automask fractions within 1e-3."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from deterministic_weights import fill_
from parity_fixtures import load_loss_batch, load_loss_reference

from options import GasMonoOptions
from trainer import Trainer

RECIPE_FLAGS = ["--use_posegt", "--www", "0.2", "--wpp", "0.2", "--iiters", "2", "--selfpp",
                "--disparity_smoothness", "1e-4", "--height", "256", "--width", "320",
                "--frame_ids", "0", "-1", "1", "--scales", "0", "1", "2", "3", "--batch_size", "2",
                "--min_depth", "0.1", "--max_depth", "10", "--weights_init", "scratch", "--no_cuda"]
LOSS_TOLERANCE = 1e-4
DISTILL_TOLERANCE = 5e-4


@pytest.fixture(scope="module")
def reference():
    return load_loss_reference()


@pytest.fixture(scope="module")
def batch():
    return load_loss_batch()


@pytest.fixture(scope="module")
def trainer():
    trainer = Trainer(GasMonoOptions().parse(RECIPE_FLAGS), with_data=False)
    for name, model in trainer.models.items():
        fill_(model, salt=name)
    trainer.set_eval()
    trainer.tie_break_noise_std = 0.0
    return trainer


def _run(trainer: Trainer, batch: dict, epoch: int, state):
    trainer.epoch = epoch
    with torch.no_grad():
        return trainer.process_batch(batch, state)


def _assert_case(case: dict, outputs: dict, losses: dict, state) -> None:
    for name, expected in case["losses"].items():
        assert float(losses[name]) == pytest.approx(expected, rel=LOSS_TOLERANCE), name
    assert float(losses["selfpp_loss"]) == pytest.approx(case["selfpp_loss"], rel=DISTILL_TOLERANCE)
    assert float(losses["selfpp_weight"]) == pytest.approx(case["selfpp_weight"], rel=1e-6)
    diagnostics = case["diagnostics"]
    for scale, expected in diagnostics["disp_mean"].items():
        assert float(outputs[("disp", int(scale))].mean()) == pytest.approx(expected, rel=LOSS_TOLERANCE)
    for frame_id, expected in diagnostics["irw_img_mean"].items():
        assert float(outputs[("irw_img", int(frame_id))].mean()) == pytest.approx(expected, rel=LOSS_TOLERANCE)
    for frame_id, expected in diagnostics["pred_color_scale0_mean"].items():
        assert float(outputs[("color", int(frame_id), 0)].mean()) == pytest.approx(expected, rel=LOSS_TOLERANCE)
    for frame_id, expected in diagnostics["cam_T_cam"].items():
        np.testing.assert_allclose(outputs[("cam_T_cam", 0, int(frame_id))].numpy(), np.array(expected),
                                   rtol=0, atol=1e-5)
    for scale, expected in diagnostics["automask_fraction"].items():
        assert float(outputs[f"identity_selection/{scale}"].mean()) == pytest.approx(expected, abs=1e-3)
    assert float(state.disp.mean()) == pytest.approx(diagnostics["bestpp_disp_mean_after"], rel=DISTILL_TOLERANCE)
    assert float(state.error.mean()) == pytest.approx(diagnostics["bestpp_error_mean_after"], rel=DISTILL_TOLERANCE)


def test_fresh_state_at_epoch_0_and_25_and_reuse(trainer, batch, reference):
    cases = reference["cases"]
    outputs, losses, state = _run(trainer, batch, 0, None)
    _assert_case(cases["i_epoch0_fresh"], outputs, losses, state)

    outputs, losses, state_ii = _run(trainer, batch, 25, None)
    _assert_case(cases["ii_epoch25_fresh"], outputs, losses, state_ii)
    state_after_ii = state_ii.clone()

    outputs, losses, state_iii = _run(trainer, batch, 25, state_ii.clone())
    _assert_case(cases["iii_epoch25_reuse"], outputs, losses, state_iii)
    assert torch.equal(state_iii.disp, state_after_ii.disp) and torch.equal(state_iii.error, state_after_ii.error)

    components = cases["ii_epoch25_fresh"]["components_by_ablation"]
    for scale, expected in components.items():
        assert float(losses[f"min_reprojection/{scale}"]) == pytest.approx(expected["min_reprojection"],
                                                                           rel=LOSS_TOLERANCE)
        assert float(losses["coarse_pose_loss"]) == pytest.approx(expected["coarse_pose_term_weighted"],
                                                                  rel=LOSS_TOLERANCE)



def test_carried_state_with_changed_decoder(trainer, batch, reference):
    cases = reference["cases"]
    _, _, state_ii = _run(trainer, batch, 25, None)
    fill_(trainer.models["depth"], salt="depth/pass2")
    try:
        outputs, losses, state = _run(trainer, batch, 25, state_ii.clone())
        _assert_case(cases["iv_epoch25_reuse_pass2"], outputs, losses, state)
        outputs, losses, state = _run(trainer, batch, 25, None)
        _assert_case(cases["v_epoch25_fresh_pass2"], outputs, losses, state)
    finally:
        fill_(trainer.models["depth"], salt="depth")
