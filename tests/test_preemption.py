"""Preemption-safe training: SIGUSR1, SIGTERM (also to every process of the
job, loader workers included) and, under DDP, a signal to one rank stop the
run between two batches with a checkpoint of that step, and a run resumed
from it continues exactly like one never stopped (with another number of
loader workers, too)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import PROJECT_ROOT
from test_training_runs import LossRecorder, _flags, tiny_set  # noqa: F401 (tiny_set is a fixture)

from networks import load_training_state
from options import GasMonoOptions
from trainer import Trainer
from training.preemption import EXIT_STOPPED, TrainingStopped

SMALL = ("--depth_encoder", "resnet18", "--num_epochs", "1", "--iiters_start_epoch", "0")


class SignalAtPass(LossRecorder):
    """Records the training losses and sends ``signal_number`` to this
    process at the start of training pass ``at_pass`` (counted from 1)."""

    def __init__(self, trainer: Trainer, at_pass: int, signal_number: int) -> None:
        super().__init__(trainer)
        self.at_pass, self.signal_number, self.passes = at_pass, signal_number, 0

    def __call__(self, inputs, distill_state=None):
        if torch.is_grad_enabled():
            self.passes += 1
            if self.passes == self.at_pass:
                os.kill(os.getpid(), self.signal_number)
        return super().__call__(inputs, distill_state)


def test_a_stopped_run_resumes_at_the_next_step_exactly(tiny_set, tmp_path):
    """6 training items, batches of 2, self-distillation from the start: one
    epoch of 3 two-pass batches. SIGUSR1 arrives at the first pass of the
    second batch (pass 3): its second pass still runs, then the run saves
    ``weights_0_step2`` and stops. Resumed with 2 loader workers (the
    uninterrupted run had none), the next step's losses are the uninterrupted
    run's, and so are the final weights."""
    uninterrupted = Trainer(GasMonoOptions().parse(_flags(tiny_set, tmp_path / "a", *SMALL)))
    recorder_a = LossRecorder(uninterrupted)
    uninterrupted.train()
    assert len(recorder_a.losses) == 6

    flags = _flags(tiny_set, tmp_path / "b", *SMALL, "--num_workers", "2")
    stopped = Trainer(GasMonoOptions().parse(flags))
    recorder_b = SignalAtPass(stopped, at_pass=3, signal_number=signal.SIGUSR1)
    with pytest.raises(TrainingStopped) as info:
        stopped.train()
    checkpoint = tmp_path / "b" / "run" / "models" / "weights_0_step2"
    assert str(info.value) == (f"SIGUSR1 received: training stopped at epoch 0, step 2; continue with "
                               f"--load_weights_folder {checkpoint} (or --resume)")
    assert info.value.exit_code == EXIT_STOPPED == 75
    assert recorder_b.losses == recorder_a.losses[:4]
    state = load_training_state(checkpoint)
    assert (state["epoch"], state["step"], state["position"]["batches_done"]) == (0, 2, 2)
    assert sorted(state["position"]["order"].tolist()) == list(range(6))

    resumed = Trainer(GasMonoOptions().parse(flags + ["--resume"]))
    assert resumed.opt.load_weights_folder == str(checkpoint)
    assert (resumed.start_epoch, resumed.step) == (0, 2)
    recorder_c = LossRecorder(resumed)
    resumed.train()
    print("uninterrupted, next step:", recorder_a.losses[4:], "resumed:", recorder_c.losses)
    assert recorder_c.losses == recorder_a.losses[4:]
    for name, model in uninterrupted.models.items():
        for (key, a), b in zip(model.state_dict().items(), resumed.models[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key}"


STOPPING_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time, torch
    sys.path.insert(0, {root!r})
    torch.set_num_threads(1)
    import train
    from trainer import Trainer

    original = Trainer.process_batch
    passes = []
    rank = os.environ.get("RANK", "0")


    def on_pass(self):
        {on_pass}


    def process_batch(self, inputs, state=None):
        if torch.is_grad_enabled() and hasattr(self, "optimizer"):  # not the kernel check's passes
            passes.append(1)
            if len(passes) == {at_pass}:
                on_pass(self)
        return original(self, inputs, state)


    Trainer.process_batch = process_batch
    open({out!r} + f"/pid{{rank}}", "w").write(str(os.getpid()))
    train.main({flags!r})
    """
)

# the body of on_pass: wait, in the middle of a training pass, for the test to send the signal
WAIT_FOR_SIGNAL = """open({out!r} + '/ready', 'w').close()
    deadline = time.time() + 120
    while not self.stop_request.requested and time.time() < deadline:
        time.sleep(0.01)"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sigterm_to_the_whole_job_stops_with_a_checkpoint(tiny_set, tmp_path):
    """What a scheduler does: SIGTERM to every process of the job, the two
    loader workers included, here during the first pass of the last batch of
    epoch 0 (of 2). The run finishes that step (the workers' death is held
    back), saves the epoch's checkpoint, prints one line and exits with
    status 75; no process of the job is left."""
    flags = _flags(tiny_set, tmp_path, *SMALL, "--num_epochs", "2", "--num_workers", "2")
    script = tmp_path / "stopping_run.py"
    on_pass = WAIT_FOR_SIGNAL.format(out=str(tmp_path))
    script.write_text(STOPPING_SCRIPT.format(root=str(PROJECT_ROOT), at_pass=5, on_pass=on_pass, flags=flags,
                                             out=str(tmp_path)))
    process = subprocess.Popen([sys.executable, str(script)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.time() + 300
        while not (tmp_path / "ready").exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "ready").exists(), process.communicate()[1][-3000:]
        os.killpg(process.pid, signal.SIGTERM)
        signalled = time.time()
        _, stderr = process.communicate(timeout=300)
        seconds = time.time() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    checkpoint = tmp_path / "run" / "models" / "weights_0"
    assert process.returncode == 75, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"stopped: SIGTERM received: training stopped at epoch 0, step 3; continue with --load_weights_folder "
        f"{checkpoint} (or --resume)")
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr
    assert load_training_state(checkpoint)["epoch"] == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of the job left
    print(f"SIGTERM to exit: {seconds:.1f} s")


def test_a_signal_to_one_ddp_rank_stops_every_rank_at_the_same_step(tiny_set, tmp_path):
    """Two processes (gloo on the CPU), one batch of 1 each per step (two
    passes): SIGUSR1 to rank 1 only, during step 1 (its pass 3). Both ranks stop before step 2, rank 0
    writes the checkpoint with both ranks' random states, both exit with
    status 75 and no process is left."""
    flags = _flags(tiny_set, tmp_path, *SMALL, "--batch_size", "1")
    script = tmp_path / "stopping_ddp_run.py"
    on_pass = "if rank == '1': os.kill(os.getpid(), signal.SIGUSR1)"
    script.write_text(STOPPING_SCRIPT.format(root=str(PROJECT_ROOT), at_pass=3, on_pass=on_pass, flags=flags,
                                             out=str(tmp_path)))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
         str(script)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    checkpoint = tmp_path / "run" / "models" / "weights_0_step2"
    assert result.returncode != 0
    assert f"stopped: SIGUSR1 received: training stopped at epoch 0, step 2; continue with --load_weights_folder " \
           f"{checkpoint} (or --resume)" not in result.stderr  # rank 1 does not write
    assert ("stopped: a stop signal (to another rank) received: training stopped at epoch 0, step 2; continue with "
            f"--load_weights_folder {checkpoint} (or --resume)") in result.stderr, result.stderr[-3000:]
    assert ("stopped: SIGUSR1 received: training stopped at epoch 0, step 2; continue with the checkpoint rank 0 "
            "saved (or --resume)") in result.stderr
    assert "exitcode  : 75" in result.stderr or "exitcode: 75" in result.stderr.replace(" ", "")
    state = load_training_state(checkpoint)
    assert state["position"]["batches_done"] == 2 and len(state["position"]["rng_states"]) == 2
    assert all(_gone(int((tmp_path / f"pid{rank}").read_text())) for rank in (0, 1))
    assert [path.name for path in (tmp_path / "run" / "models").glob("weights_*")] == ["weights_0_step2"]
