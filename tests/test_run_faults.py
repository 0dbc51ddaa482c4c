"""Faults of the machine, in one line and without losing work: one training
per run folder (an OS lock), a folder that cannot be written, too little
disk space, a checkpoint write that fails, a loader worker that dies, and
resuming a run that has already finished."""
from __future__ import annotations

import errno
import logging
import os
import re
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from conftest import PROJECT_ROOT
from test_training_runs import _flags, tiny_set  # noqa: F401 (tiny_set is a fixture)

import evaluate_depth
import networks
import train
import training.disk
from options import GasMonoOptions
from trainer import Trainer
from training.disk import checkpoint_bytes
from training.run_folder import latest_checkpoint, list_checkpoints
from utils import GasMonoError

SMALL = ("--depth_encoder", "resnet18", "--num_epochs", "1", "--max_train_steps", "1")

HOLD_LOCK = ("import sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
             "from training.run_lock import RunLock; RunLock.acquire(Path(sys.argv[2])); print('locked', flush=True); "
             "time.sleep(300)")


def _save_epoch_0(flags: list[str], models_dir: Path) -> Path:
    """A checkpoint of epoch 0 (step 3) as training writes it, without training."""
    trainer = Trainer(GasMonoOptions().parse(flags), with_data=False)
    state = {"epoch": 0, "step": 3, "lr_scheduler": trainer.lr_scheduler.state_dict()}
    return networks.save_weights_folder(models_dir / "weights_0", trainer.models, 64, 96, False,
                                        trainer.optimizer.state_dict(), state, "resnet18")


def test_one_training_per_run_folder(tiny_set, tmp_path, caplog):
    """Another process holds the run folder while it saves ``weights_1``: a
    second training stops at once naming the folder and that process, and
    leaves its save alone; evaluation reads the complete ``weights_0``. Once
    the holder is killed, the folder is free: ``--resume`` finds weights_0
    (the run's last epoch) and says there is nothing left to do."""
    flags = _flags(tiny_set, tmp_path, *SMALL)
    run_folder = tmp_path / "run"
    weights_0 = _save_epoch_0(flags, run_folder / "models")
    staging = run_folder / "models" / ".weights_1.0123456789ab.tmp"
    staging.mkdir()
    (staging / "encoder.pth").write_bytes(b"half written")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(PROJECT_ROOT), str(run_folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(GasMonoError) as info:
            Trainer(GasMonoOptions().parse(flags + ["--resume"]))
        assert re.fullmatch(
            f"run folder {re.escape(str(run_folder))} is in use by another training \\(pid {holder.pid} on \\S+ "
            "since [0-9-]+ [0-9:]+\\); wait for it to end or choose another --model_name", str(info.value))
        assert (staging / "encoder.pth").read_bytes() == b"half written"
        assert latest_checkpoint(run_folder) == weights_0

        test_set = tiny_set["data_path"].parent / "test"
        results = evaluate_depth.main(["--load_weights_folder", str(weights_0), "--data_path", str(test_set),
                                       "--eval_protocol", "release", "--eval_out_dir", str(tmp_path / "eval"),
                                       "--no_cuda", "--num_workers", "0"])
        assert results["depth_encoder"] == "resnet18"
    finally:
        holder.kill()
        holder.wait()

    with caplog.at_level(logging.WARNING, logger="trainer"):
        assert train.main(flags + ["--resume"]) is None
    assert caplog.records[-1].getMessage() == (
        f"nothing left to do: {weights_0} ends epoch 0 and --num_epochs is 1; to train longer, resume it with a "
        "larger --num_epochs")
    assert not (run_folder / "train").exists() and not (run_folder / "models" / "opt.json").exists()


def test_checkpoints_are_listed_in_training_order(tmp_path):
    models_dir = tmp_path / "models"
    for name in ("weights_10", "weights_1", "weights_0", "weights_1_step5", "weights_2_step9", "weights_x",
                 ".weights_3.0123456789ab.tmp"):
        (models_dir / name).mkdir(parents=True)
    assert [path.name for path in list_checkpoints(models_dir)] == [
        "weights_0", "weights_1_step5", "weights_1", "weights_2_step9", "weights_10"]
    assert latest_checkpoint(tmp_path) is None
    for name in ("weights_1_step5", "weights_2_step9", ".weights_3.0123456789ab.tmp"):
        (models_dir / name / "training_state.pth").write_bytes(b"")
    assert latest_checkpoint(tmp_path) == models_dir / "weights_2_step9"


def test_an_unwritable_run_folder_is_one_line_before_training(tiny_set, tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for log_dir, expected in ((a_file / "logs", f"cannot create run folder {a_file / 'logs' / 'run'}: "),
                              (a_file, f"cannot create run folder {a_file / 'run'}: ")):
        with pytest.raises(SystemExit) as info:
            train.main(_flags(tiny_set, log_dir, *SMALL))
        error = capsys.readouterr().err.strip()
        assert info.value.code == 2 and error.startswith(f"error: {expected}") and "\n" not in error

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(training.disk, "open", read_only, raising=False)
    with pytest.raises(SystemExit) as info:
        train.main(_flags(tiny_set, tmp_path / "read_only", *SMALL))
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: cannot write in run folder {tmp_path / 'read_only' / 'run'}: Read-only file system")
    monkeypatch.undo()

    if os.geteuid() != 0:  # root writes into read-only folders
        locked_out = tmp_path / "locked_out"
        locked_out.mkdir(mode=0o555)
        with pytest.raises(SystemExit):
            train.main(_flags(tiny_set, locked_out, *SMALL))
        assert capsys.readouterr().err.strip().startswith(f"error: cannot create run folder {locked_out / 'run'}")


def test_free_space_is_checked_before_training(tiny_set, tmp_path, monkeypatch, caplog):
    flags = _flags(tiny_set, tmp_path, *SMALL)
    needed = checkpoint_bytes(*_models_and_optimizer(flags))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(training.disk.shutil, "disk_usage", lambda path: usage(10**12, 0, 10**6))
    with pytest.raises(GasMonoError) as info:
        Trainer(GasMonoOptions().parse(flags))
    assert str(info.value) == (
        f"not enough disk space for a checkpoint: 1.0 MB free in {tmp_path / 'run' / 'models'}, one checkpoint "
        f"takes {training.disk.format_bytes(needed)}; free some space or choose another --log_dir")
    monkeypatch.setattr(training.disk.shutil, "disk_usage", lambda path: usage(10**12, 0, int(1.5 * needed)))
    with caplog.at_level(logging.WARNING, logger="training.disk"):
        Trainer(GasMonoOptions().parse(flags + ["--overwrite"]))
    assert [record.getMessage().split(":")[0] for record in caplog.records if record.name == "training.disk"] == [
        "room for one checkpoint only"]


def _models_and_optimizer(flags: list[str]):
    trainer = Trainer(GasMonoOptions().parse(flags), with_data=False)
    return trainer.models, trainer.optimizer


def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_previous_checkpoint(tiny_set, tmp_path, monkeypatch,
                                                                                  capsys):
    """The disk fills up while ``weights_1`` is written: torch's
    ``inline_container.cc`` error becomes one line naming the file and the
    last good checkpoint; the half-written folder is gone and weights_0
    loads. (weights_0's size also checks the estimate of the disk check.)"""
    flags = _flags(tiny_set, tmp_path, *SMALL, "--num_epochs", "2")
    save = torch.save

    def disk_full_in_weights_1(obj, handle, *args, **kwargs):
        if ".weights_1." in str(getattr(handle, "name", "")):
            raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                               "data/3: file write failed")
        return save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_in_weights_1)
    with pytest.raises(SystemExit) as info:
        train.main(flags)
    monkeypatch.undo()
    models_dir = tmp_path / "run" / "models"
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert info.value.code == 2
    assert re.fullmatch(
        f"error: cannot write {re.escape(str(models_dir / 'weights_1' / 'encoder.pth'))} \\(PytorchStreamWriter "
        "failed writing file data/3: file write failed; \\d+ MB free on that disk\\): weights_1 not saved; training "
        f"stopped; the last good checkpoint is {re.escape(str(models_dir / 'weights_0'))}", error), error
    assert sorted(path.name for path in models_dir.iterdir()) == ["opt.json", "weights_0"]
    models, optimizer = _models_and_optimizer(flags)
    networks.load_weights_folder(models_dir / "weights_0", models)
    optimizer.load_state_dict(networks.load_optimizer_state(models_dir / "weights_0"))
    written = sum(path.stat().st_size for path in (models_dir / "weights_0").iterdir())
    assert 1.0 <= checkpoint_bytes(models, optimizer) / written < 1.03


def test_a_killed_loader_worker_stops_training_in_one_line(tiny_set, tmp_path):
    """SIGKILL (what the out-of-memory killer sends) to a loader worker in
    epoch 1: one line naming the death, its likely cause and weights_0; no
    traceback, no hang, no worker left."""
    trainer = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path, *SMALL, "--num_epochs", "2",
                                                    "--num_workers", "2")))
    dataset = trainer.train_loader.dataset
    load_item = dataset._load_item

    def killed_in_epoch_1(index):
        if torch.utils.data.get_worker_info() is not None and dataset._augmentation_key[1] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return load_item(index)

    dataset._load_item = killed_in_epoch_1
    children_before = set(_children())
    with pytest.raises(GasMonoError) as info:
        trainer.train()
    print(info.value)
    assert re.fullmatch(
        r"a data-loader worker died \(pid \d+ (is killed by signal: Killed|exited unexpectedly)\); likely cause: "
        r"killed( \(SIGKILL\))?, most often by the out-of-memory killer: lower --num_workers or --batch_size, or "
        r"give the job more memory; training stopped at epoch 1, step 1; the last good checkpoint is "
        + re.escape(str(tmp_path / "run" / "models" / "weights_0")), str(info.value)), str(info.value)
    assert set(_children()) <= children_before  # the loader workers are gone


def _children() -> list[int]:
    """The processes whose parent is this one."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found.append(int(status.parent.name))
    return found
