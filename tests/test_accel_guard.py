"""The kernel switch (``--kernels``): where ``auto`` uses the fast kernels, the
version and private-op guards, the machine-measured choices and their cache,
and the fork check that sets the fast kernels aside when the reference was
edited."""
from __future__ import annotations

import json
import logging

import pytest
import torch

import accel
import trainer as trainer_module
from accel import guard, tuning
from losses import get_smooth_loss, mean_normalised
from options import GasMonoOptions
from trainer import Trainer
from utils import NYU_NORMALISED_INTRINSICS, GasMonoError

CPU = torch.device("cpu")
FLAGS = ["--height", "64", "--width", "96", "--batch_size", "1", "--weights_init", "scratch", "--no_cuda",
         "--depth_encoder", "resnet18", "--use_posegt", "--selfpp", "--iiters", "2", "--wpp", "0.2"]


@pytest.fixture(autouse=True)
def kernel_cache(tmp_path, monkeypatch):
    """Measured choices cached in this test's folder."""
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "kernel_choices.json"


def _trainer(*extra: str, check: bool = False) -> Trainer:
    torch.manual_seed(0)
    return Trainer(GasMonoOptions().parse(FLAGS + list(extra)), with_data=False, check_kernels=check)


# --------------------------------------------------------------------------- where
def test_auto_runs_the_fast_kernels_on_the_cpu_in_float32_only():
    assert accel.plan_training("auto", CPU).fast
    assert not accel.plan_training("reference", CPU).fast
    cuda = accel.plan_training("auto", torch.device("cuda", 0))
    assert not cuda.fast and cuda.describe() == ("kernels: reference (auto: the fast kernels are verified on the CPU "
                                                 "only, this run is on cuda:0)")
    assert not accel.plan_training("auto", CPU, torch.bfloat16).fast
    assert accel.plan_training("fast", torch.device("cuda", 0)).fast  # forced: they run there too


def test_another_torch_version_gets_the_reference_under_auto(monkeypatch, caplog):
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    plan = accel.plan_training("auto", CPU)
    assert not plan.fast and "this is torch 2.99.0" in plan.describe()
    assert accel.plan_training("fast", CPU).fast
    with caplog.at_level(logging.INFO, logger="trainer"):
        trainer = _trainer()
    assert trainer.fast is None
    assert [r.message for r in caplog.records if r.message.startswith("kernels:")] == [plan.describe()]


def test_a_missing_private_op_falls_back_to_the_reference_and_trains(monkeypatch):
    monkeypatch.setattr(guard, "TRAINING_PRIVATE_OPS", (*guard.TRAINING_PRIVATE_OPS, "aten.no_such_op_of_gasmono"))
    assert guard.missing_private_ops(["aten.elu_backward", "aten.no_such_op_of_gasmono"]) == [
        "aten.no_such_op_of_gasmono"]
    for mode in ("auto", "fast"):
        plan = accel.plan_training(mode, CPU)
        assert not plan.fast and "lacks aten.no_such_op_of_gasmono" in plan.describe()
    trainer = _trainer("--kernels", "fast")
    assert trainer.fast is None and type(trainer.optimizer) is torch.optim.AdamW
    batch = accel.random_batch(1, 64, 96, [0, -1, 1], NYU_NORMALISED_INTRINSICS, True, torch.float32, CPU)
    _, losses, _ = trainer.process_batch(batch)
    losses["loss"].backward()
    trainer.optimizer.step()
    assert torch.isfinite(losses["loss"])


def test_the_fast_plan_swaps_the_modules_and_the_optimiser():
    fast, reference = _trainer("--kernels", "fast"), _trainer("--kernels", "reference")
    assert type(fast.optimizer) is accel.AdamW and type(reference.optimizer) is torch.optim.AdamW
    assert any(type(m) is accel.elu.ExpELU for m in fast.models["depth"].modules())
    assert not any(type(m) is accel.elu.ExpELU for m in reference.models["depth"].modules())


# --------------------------------------------------------------------------- measured choices
def test_a_processor_dependent_choice_is_measured_once_and_cached(monkeypatch, kernel_cache):
    calls = []
    monkeypatch.setattr(tuning, "measure_linear_products", lambda: calls.append(1) or (2.0, 1.0))
    assert tuning.onednn_linear_pays() and tuning.onednn_linear_pays()
    assert len(calls) == 1
    cached = json.loads(kernel_cache.read_text())[tuning.machine_key()]["onednn_linear"]
    assert cached["fast"] is True and cached["library_ms"] == 2000.0
    assert f"torch-{torch.__version__}" in tuning.machine_key()
    monkeypatch.setattr(tuning, "measure_linear_products", lambda: (1.0, 0.99))  # within 5 %: not worth it
    kernel_cache.unlink()
    assert not tuning.onednn_linear_pays()


def test_deterministic_runs_make_no_timing_based_choice(monkeypatch):
    def fail():
        raise AssertionError("measured")

    monkeypatch.setattr(tuning, "measure_linear_products", fail)
    plan = accel.plan_training("auto", CPU, deterministic=True)
    assert plan.fast and not plan.onednn_linear


def test_an_unwritable_cache_only_skips_caching(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(tuning.CACHE_ENV, str(blocker / "below_a_file"))
    monkeypatch.setattr(tuning, "measure_linear_products", lambda: (1.0, 2.0))
    assert tuning.onednn_linear_pays() is False


# --------------------------------------------------------------------------- fork check
def test_unedited_paths_pass_the_check():
    trainer = _trainer(check=True)
    assert trainer.fast is not None and trainer.kernels.fast


def test_an_edited_reference_sets_the_fast_kernels_aside_and_training_uses_it(monkeypatch, caplog):
    def doubled_smoothness(disp, image):
        return 2 * get_smooth_loss(disp, image)

    monkeypatch.setattr(trainer_module, "get_smooth_loss", doubled_smoothness)
    with caplog.at_level(logging.INFO, logger="trainer"):
        trainer = _trainer(check=True)
    assert trainer.fast is None and type(trainer.optimizer) is torch.optim.AdamW
    assert not any(type(m) is accel.elu.ExpELU for m in trainer.models["depth"].modules())
    messages = [record.message for record in caplog.records]
    assert any(m.startswith("the fast kernels were set aside: the loss term 'smoothness/0' differs") for m in messages)
    assert messages[-1].startswith("kernels: reference (auto: the loss term 'smoothness/0' differs")
    batch = accel.random_batch(1, 64, 96, [0, -1, 1], NYU_NORMALISED_INTRINSICS, True, torch.float32, CPU)
    with torch.no_grad():
        outputs, losses, _ = trainer.process_batch(batch)
    expected = 2 * get_smooth_loss(mean_normalised(outputs[("disp", 0)]), batch[("color", 0, 0)])
    assert float(losses["smoothness/0"]) == pytest.approx(float(expected), rel=1e-6)


def test_an_edited_reference_stops_a_forced_fast_run_in_one_line(monkeypatch):
    monkeypatch.setattr(trainer_module, "get_smooth_loss", lambda disp, image: 2 * get_smooth_loss(disp, image))
    with pytest.raises(GasMonoError, match=r"^--kernels fast: the reference and the fast kernels disagree: "
                                           r"the loss term 'smoothness/0' differs") as error:
        _trainer("--kernels", "fast", check=True)
    assert "\n" not in str(error.value)


def test_the_check_leaves_models_modes_and_random_state_as_they_were():
    trainer = _trainer()
    trainer.set_train()
    before = {name: {k: v.clone() for k, v in model.state_dict().items()} for name, model in trainer.models.items()}
    formats = {name: [p.stride() for p in model.parameters()] for name, model in trainer.models.items()}
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)
    trainer.check_fast_kernels()
    assert torch.equal(torch.rand(3), expected_draw)
    for name, model in trainer.models.items():
        assert model.training
        assert [p.stride() for p in model.parameters()] == formats[name]
        assert all(p.grad is None and p.dtype == torch.float32 for p in model.parameters())
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[name][key]), (name, key)
