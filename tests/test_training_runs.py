"""Short training runs on a tiny synthetic set: the loss goes down, a resumed
run continues exactly like an uninterrupted one, DDP keeps the ranks' parameters
identical (BatchNorm statistics are per rank, as in any DDP run), a
non-finite loss stops the run naming only a checkpoint verified good,
non-finite weights are never saved, a run folder holds one run, and a ResNet-18
depth encoder trains from the command line into a checkpoint that evaluation
and prediction load by the name it records."""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PROJECT_ROOT

import evaluate_depth
import predict
import train
from coarse_poses.evaluation import load_gt_poses
from coarse_poses.pose_files import coarse_poses_from_extrinsics, write_coarse_poses
from datasets.splits import find_sequence_items, write_split_files
from layers import disp_to_depth
from options import GasMonoOptions
from synthetic.dataset import generate_dataset
from trainer import Trainer
from utils import GasMonoError


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> dict:
    """Two textured scenes of 6 frames at 64 x 96, coarse poses from the ground
    truth, and split files."""
    root = tmp_path_factory.mktemp("tiny_synthetic")
    generate_dataset(root, num_scenes=2, frames_per_scene=6, num_test=1, height=64, width=96, num_low_texture=0,
                     seed=3, progress=False)
    train_root = root / "train"
    cpose_dir = root / "cpose"
    for scene_dir in sorted(path for path in train_root.iterdir() if path.is_dir()):
        extrinsics = dict(enumerate(load_gt_poses(scene_dir / "poses.txt")))
        write_coarse_poses(coarse_poses_from_extrinsics(extrinsics), cpose_dir / scene_dir.name)
    split_dir = root / "splits"
    write_split_files(find_sequence_items(train_root), split_dir, val_fraction=0.2, seed=0)
    return {"data_path": train_root, "cpose_dir": cpose_dir, "split_dir": split_dir}


def _flags(tiny_set: dict, log_dir: Path, *extra: str) -> list[str]:
    return [
        "--data_path", str(tiny_set["data_path"]), "--cpose_dir", str(tiny_set["cpose_dir"]),
        "--split_dir", str(tiny_set["split_dir"]), "--log_dir", str(log_dir), "--model_name", "run",
        "--height", "64", "--width", "96", "--batch_size", "2", "--num_workers", "0", "--no_cuda",
        "--weights_init", "scratch", "--use_posegt", "--selfpp", "--iiters", "2", "--iiters_start_epoch", "1",
        "--wpp_ramp_epochs", "2", "--disparity_smoothness", "1e-4", "--log_frequency", "100", *extra,
    ]


class LossRecorder:
    """Wraps ``Trainer.process_batch`` to record every training loss."""

    def __init__(self, trainer: Trainer) -> None:
        self.losses: list[tuple[int, float]] = []
        self._process_batch = trainer.process_batch
        self._trainer = trainer
        trainer.process_batch = self

    def __call__(self, inputs, distill_state=None):
        outputs, losses, state = self._process_batch(inputs, distill_state)
        if torch.is_grad_enabled():
            self.losses.append((self._trainer.epoch, losses["loss"].item()))
        return outputs, losses, state


def test_training_lowers_the_loss_and_writes_checkpoints(tiny_set, tmp_path):
    options = GasMonoOptions().parse(_flags(tiny_set, tmp_path, "--num_epochs", "4", "--augmentation", "none",
                                            "--learning_rate", "2e-4", "--decoder_learning_rate", "2e-4",
                                            "--wpp", "0", "--save_frequency", "2"))
    trainer = Trainer(options)
    recorder = LossRecorder(trainer)
    trainer.train()
    first_epoch = [loss for epoch, loss in recorder.losses if epoch == 0]
    last_epoch = [loss for epoch, loss in recorder.losses if epoch == 3]
    assert sum(last_epoch) / len(last_epoch) < 0.9 * sum(first_epoch) / len(first_epoch)

    models_dir = tmp_path / "run" / "models"
    assert sorted(path.name for path in models_dir.glob("weights_*")) == ["weights_1", "weights_3"]
    expected_files = {"encoder.pth", "depth.pth", "pose_encoder.pth", "pose.pth", "trans_encoder.pth",
                      "trans.pth", "adam.pth", "training_state.pth"}
    assert {path.name for path in (models_dir / "weights_3").iterdir()} == expected_files
    assert (models_dir / "opt.json").is_file()
    assert list((tmp_path / "run" / "train").glob("events.out.tfevents.*"))
    assert list((tmp_path / "run" / "val").glob("events.out.tfevents.*"))


def _scalar_tags(event_folder: Path) -> set[str]:
    """The tags of the scalars in the TensorBoard event files of a folder (TFRecord framing)."""
    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for path in event_folder.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            length = int.from_bytes(data[offset:offset + 8], "little")
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            offset += 12 + length + 4
    return tags


def test_validation_reports_depth_metrics_where_the_data_has_depth(tiny_set, tmp_path):
    trainer = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path, "--num_epochs", "1", "--max_train_steps",
                                                    "3", "--log_frequency", "1")))
    assert trainer.val_loader.dataset.load_depth and not trainer.train_loader.dataset.load_depth
    trainer.train()
    val = [entry for entry in trainer.history if entry["mode"] == "val"]
    assert len(val) == 3
    for entry in val:
        assert 0 < entry["val/abs_rel"] < 1 and entry["val/rmse"] > 0 and 0 <= entry["val/a1"] <= 1
    assert all("val/abs_rel" not in entry for entry in trainer.history if entry["mode"] == "train")
    assert {"val/abs_rel", "val/rmse", "val/a1", "loss"} <= _scalar_tags(tmp_path / "run" / "val")
    assert "val/abs_rel" not in _scalar_tags(tmp_path / "run" / "train")

    # the metrics are median-scaled: ground truth proportional to the prediction scores perfectly
    trainer.set_eval()
    batch = next(iter(trainer.val_loader))
    with torch.no_grad():
        outputs, _, _ = trainer.process_batch(batch)
    _, depth = disp_to_depth(outputs[("disp", 0)], 0.1, 10.0)
    perfect = trainer.compute_depth_metrics({"depth_gt": 0.7 * depth}, outputs)
    assert perfect["val/abs_rel"] < 1e-5 and perfect["val/a1"] == 1.0


def test_validation_without_ground_truth_depth_logs_losses_only(tiny_set, tmp_path):
    data_path = tmp_path / "no_depth"
    shutil.copytree(tiny_set["data_path"], data_path, ignore=shutil.ignore_patterns("depth"))
    flags = _flags({**tiny_set, "data_path": data_path}, tmp_path, "--num_epochs", "1", "--max_train_steps", "1",
                   "--log_frequency", "1")
    trainer = Trainer(GasMonoOptions().parse(flags))
    trainer.train()
    val = [entry for entry in trainer.history if entry["mode"] == "val"]
    assert val and set(val[0]) == {"mode", "epoch", "step", "loss"}


def test_resumed_run_continues_like_an_uninterrupted_one(tiny_set, tmp_path):
    uninterrupted = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path / "a", "--num_epochs", "2")))
    recorder_a = LossRecorder(uninterrupted)
    uninterrupted.train()

    first_half = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path / "b", "--num_epochs", "1")))
    first_half.train()
    weights_0 = tmp_path / "b" / "run" / "models" / "weights_0"
    resumed = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path / "b", "--num_epochs", "2",
                                                    "--load_weights_folder", str(weights_0))))
    assert (resumed.start_epoch, resumed.step) == (1, uninterrupted.step // 2)
    recorder_b = LossRecorder(resumed)
    resumed.train()

    epoch_1_a = [loss for epoch, loss in recorder_a.losses if epoch == 1]
    assert recorder_b.losses and [loss for _, loss in recorder_b.losses] == epoch_1_a
    for name, model in uninterrupted.models.items():
        for (key, a), b in zip(model.state_dict().items(), resumed.models[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key}"
    # the resumed run keeps the options of the first part
    models_dir = tmp_path / "b" / "run" / "models"
    assert json.loads((models_dir / "opt.1.json").read_text())["num_epochs"] == 1
    assert json.loads((models_dir / "opt.json").read_text())["num_epochs"] == 2
    assert resumed.health.last_good == weights_0


def test_the_distillation_state_is_carried_across_the_passes_of_one_batch_only(tiny_set, tmp_path):
    trainer = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path, "--num_epochs", "2", "--max_train_steps", "2",
                                                    "--log_frequency", "1")))
    process_batch = trainer.process_batch
    calls = []

    def recording(inputs, distill_state=None):
        outputs, losses, state = process_batch(inputs, distill_state)
        calls.append((torch.is_grad_enabled(), distill_state, state))
        return outputs, losses, state

    trainer.process_batch = recording
    trainer.train()
    training = [(given, returned) for grad, given, returned in calls if grad]
    validation = [(given, returned) for grad, given, returned in calls if not grad]
    # epoch 0: one pass per batch; epoch 1 (--iiters_start_epoch 1): two, the second given the first's state
    assert len(training) == 2 + 2 * 2 and all(given is None for given, _ in training[:2])
    for (first_given, first_returned), (second_given, _) in zip(training[2::2], training[3::2]):
        assert first_given is None and second_given is first_returned is not None
    assert len(validation) == 4 and all(given is None and returned is not None for given, returned in validation)


def test_non_finite_loss_stops_with_the_step(tiny_set, tmp_path):
    trainer = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path, "--num_epochs", "1")))
    original = trainer.compute_losses

    def poisoned(inputs, outputs, *rest):
        losses, state = original(inputs, outputs, *rest)
        losses["loss"] = losses["loss"] * float("nan")
        return losses, state

    trainer.compute_losses = poisoned
    with pytest.raises(GasMonoError, match="non-finite loss at epoch 0, step 0"):
        trainer.train()
    assert not list((tmp_path / "run" / "models").glob("weights_*"))


def test_blow_up_names_no_exploded_checkpoint_as_good(tiny_set, tmp_path):
    """--learning_rate 1e10: the first step leaves finite but exploded weights,
    saved as weights_0; the next loss is non-finite. weights_0 must not be
    offered as the checkpoint to resume from."""
    flags = _flags(tiny_set, tmp_path, "--num_epochs", "3", "--max_train_steps", "1", "--learning_rate", "1e10")
    with pytest.raises(GasMonoError) as info:
        Trainer(GasMonoOptions().parse(flags)).train()
    message = str(info.value)
    weights_0 = tmp_path / "run" / "models" / "weights_0"
    assert message.startswith("non-finite loss at epoch 1, step 1 (parameters finite); training stopped")
    assert f"{weights_0} holds the weights that gave it: do not resume from it" in message
    assert message.endswith("no checkpoint of this run is verified good")
    assert "last good checkpoint" not in message and "\n" not in message


def test_last_good_checkpoint_is_one_a_finite_loss_verified(tiny_set, tmp_path):
    trainer = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path, "--num_epochs", "3",
                                                    "--max_train_steps", "1")))
    original = trainer.compute_losses

    def poisoned_from_step_2(inputs, outputs, *rest):
        losses, state = original(inputs, outputs, *rest)
        if trainer.step >= 2:
            losses["loss"] = losses["loss"] * float("nan")
        return losses, state

    trainer.compute_losses = poisoned_from_step_2
    with pytest.raises(GasMonoError) as info:
        trainer.train()
    models_dir = tmp_path / "run" / "models"
    assert str(info.value).endswith(f"{models_dir / 'weights_1'} holds the weights that gave it: do not resume "
                                    f"from it; the last good checkpoint is {models_dir / 'weights_0'}")


def test_non_finite_weights_are_not_saved(tiny_set, tmp_path):
    """A NaN written by the last optimiser step of an epoch is caught before the save."""
    trainer = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path, "--num_epochs", "1",
                                                    "--max_train_steps", "1")))

    def poison_after_the_step(optimizer, args, kwargs):
        with torch.no_grad():
            trainer.models["depth"].decoder[0].conv.conv.weight[0, 0, 0, 0] = float("nan")

    trainer.optimizer.register_step_post_hook(poison_after_the_step)
    with pytest.raises(GasMonoError) as info:
        trainer.train()
    assert str(info.value).startswith(
        "non-finite weights after epoch 0, step 1 (1 tensor(s) with NaN or infinity: "
        "depth.decoder.0.conv.conv.weight): weights_0 not saved; training stopped; "
        "no checkpoint of this run is verified good")
    assert [path.name for path in (tmp_path / "run" / "models").iterdir()] == ["opt.json"]


def test_a_resnet18_depth_encoder_trains_and_its_checkpoint_loads_by_name(tiny_set, tmp_path, capsys):
    flags = _flags(tiny_set, tmp_path, "--num_epochs", "1", "--max_train_steps", "2", "--depth_encoder", "resnet18")
    result = subprocess.run([sys.executable, "train.py", *flags], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    weights = tmp_path / "run" / "models" / "weights_0"
    assert torch.load(weights / "encoder.pth")["depth_encoder"] == "resnet18"
    assert json.loads((weights.parent / "opt.json").read_text())["depth_encoder"] == "resnet18"

    # evaluation and prediction are not told the encoder
    test_set = tiny_set["data_path"].parent / "test"
    evaluation = ["--load_weights_folder", str(weights), "--data_path", str(test_set), "--eval_protocol", "release",
                  "--eval_out_dir", str(tmp_path / "eval"), "--no_cuda", "--num_workers", "0"]
    results = evaluate_depth.main(evaluation)
    assert results["depth_encoder"] == "resnet18" and math.isfinite(results["metrics"]["abs_rel"])
    predict.main(["--load_weights_folder", str(weights), "--input", str(test_set / "color" / "0001.png"),
                  "--output_dir", str(tmp_path / "predictions"), "--no_cuda"])
    assert np.load(tmp_path / "predictions" / "0001_depth.npy").shape == (64, 96)

    # the checkpoint given as another encoder's: one line, in evaluation and in training
    expected = f"error: {weights / 'encoder.pth'} holds the resnet18 depth encoder, not mpvit_small"
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        evaluate_depth.main(evaluation + ["--depth_encoder", "mpvit_small"])
    assert info.value.code == 2 and capsys.readouterr().err.strip() == expected
    with pytest.raises(SystemExit) as info:
        train.main(_flags(tiny_set, tmp_path / "resumed", "--load_weights_folder", str(weights)))
    assert info.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1] == expected


def _existing_run(log_dir: Path, checkpoint: bool) -> Path:
    models_dir = log_dir / "run" / "models"
    models_dir.mkdir(parents=True)
    (models_dir / "opt.json").write_text('{"num_epochs": 40}\n')
    if checkpoint:
        (models_dir / "weights_12").mkdir()
        (models_dir / "weights_12" / "encoder.pth").write_bytes(b"old weights")
        (models_dir / "weights_9").mkdir()
    return models_dir


def test_a_new_run_never_replaces_an_existing_one(tiny_set, tmp_path):
    models_dir = _existing_run(tmp_path / "a", checkpoint=True)
    with pytest.raises(GasMonoError) as info:
        Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path / "a", "--num_epochs", "1")))
    assert str(info.value) == (
        f"run folder {tmp_path / 'a' / 'run'} already holds a run (2 checkpoint(s)); choose another --model_name, "
        f"continue it with --load_weights_folder {models_dir / 'weights_12'}, or replace it with --overwrite")
    assert (models_dir / "weights_12" / "encoder.pth").read_bytes() == b"old weights"

    _existing_run(tmp_path / "b", checkpoint=False)
    with pytest.raises(GasMonoError, match=r"already holds a run \(opt.json, no checkpoint\)"):
        Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path / "b", "--num_epochs", "1")))

    models_dir = _existing_run(tmp_path / "c", checkpoint=True)
    (tmp_path / "c" / "run" / "train").mkdir()
    (tmp_path / "c" / "run" / "train" / "events.out.tfevents.old").write_bytes(b"old")
    Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path / "c", "--num_epochs", "1", "--overwrite")))
    assert sorted(path.name for path in models_dir.iterdir()) == ["opt.json"]
    assert json.loads((models_dir / "opt.json").read_text())["num_epochs"] == 1
    assert not (tmp_path / "c" / "run" / "train" / "events.out.tfevents.old").exists()


def test_a_run_clears_what_an_interrupted_save_left(tiny_set, tmp_path, caplog):
    """What ``kill -9`` during a save leaves: a staging folder, a half-written
    temporary file, and (killed between the two renames of a replacement) a
    backup whose original is gone."""
    models_dir = tmp_path / "run" / "models"
    (models_dir / ".weights_1.3f9a0c.tmp").mkdir(parents=True)
    (models_dir / ".weights_1.3f9a0c.tmp" / "encoder.pth").write_bytes(b"half written")
    (models_dir / ".opt.json.77aa01.tmp").write_text("{")
    (models_dir / ".weights_0.51b2c3.old").mkdir()
    (models_dir / ".weights_0.51b2c3.old" / "encoder.pth").write_bytes(b"previous weights_0")
    with caplog.at_level(logging.INFO, logger="training.run_folder"):
        Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path, "--num_epochs", "1")))
    assert sorted(path.name for path in models_dir.iterdir()) == ["opt.json", "weights_0"]
    assert (models_dir / "weights_0" / "encoder.pth").read_bytes() == b"previous weights_0"
    assert oct((models_dir / "opt.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    logged = [record.getMessage() for record in caplog.records]
    assert f"interrupted save in {models_dir}: removed .weights_1.3f9a0c.tmp" in logged
    assert f"interrupted save in {models_dir}: restored weights_0 from .weights_0.51b2c3.old" in logged


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


DDP_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {root!r})
    torch.set_num_threads(1)
    from options import GasMonoOptions
    from trainer import Trainer
    trainer = Trainer(GasMonoOptions().parse({flags!r}))
    trainer.train()
    state = {{f"{{name}}.{{key}}": value.detach() for name, model in trainer.models.items()
             for key, value in model.named_parameters()}}
    torch.save(state, {out!r} + f"/rank{{trainer.dist.rank}}.pt")
    torch.distributed.destroy_process_group()
    """
)


def test_two_process_ddp_on_cpu_keeps_ranks_identical(tiny_set, tmp_path):
    flags = _flags(tiny_set, tmp_path, "--num_epochs", "1", "--batch_size", "1", "--max_train_steps", "2")
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(root=str(PROJECT_ROOT), flags=flags, out=str(tmp_path)))
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         str(script)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    initial = Trainer(GasMonoOptions().parse(flags), with_data=False)
    depth_before = initial.models["depth"].state_dict()["decoder.0.conv.conv.weight"]
    assert not torch.equal(depth_before, rank0["depth.decoder.0.conv.conv.weight"]), "training changed nothing"
    assert (tmp_path / "run" / "models" / "weights_0" / "encoder.pth").is_file()
