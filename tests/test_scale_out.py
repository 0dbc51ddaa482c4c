"""Scale-out entry points that run without a GPU cluster: ``run.sh train_ddp``'s
multi-machine settings (checked before anything starts) and
``benchmarks/gpu_check.sh``'s help and its refusal without CUDA."""
from __future__ import annotations

import os
import subprocess

import pytest
from conftest import PROJECT_ROOT


def _bash(script: str, *arguments: str, **environment: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **environment}
    for name in ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in environment:
            env.pop(name, None)
    return subprocess.run(["bash", str(PROJECT_ROOT / script), *arguments], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("environment, message", [
    ({"NNODES": "two"}, "error: NNODES must be a positive integer, got 'two'"),
    ({"NNODES": "2"}, "error: NODE_RANK must be 0 .. 1 with NNODES=2, got ''"),
    ({"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "node0"},
     "error: NODE_RANK must be 0 .. 1 with NNODES=2, got '2'"),
    ({"NNODES": "2", "NODE_RANK": "1"},
     "error: NNODES=2 needs MASTER_ADDR, the address of the machine with NODE_RANK 0"),
])
def test_train_ddp_checks_the_machine_settings_first(environment, message):
    result = _bash("run.sh", "train_ddp", "4", "/no/data", **environment)
    assert result.returncode == 2 and result.stderr.strip() == message and result.stdout == ""


def test_run_sh_usage_explains_multi_machine_training():
    usage = _bash("run.sh", "--help").stdout
    for name in ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        assert name in usage


def test_gpu_check_explains_itself_and_refuses_without_cuda():
    help_text = _bash("benchmarks/gpu_check.sh", "--help")
    assert help_text.returncode == 0 and "usage: bash benchmarks/gpu_check.sh" in help_text.stdout
    for figure in ("fp32", "bf16 autocast", "torch.compile", "DataLoader", "evaluator images/s", "8 minutes"):
        assert figure in help_text.stdout
    refused = _bash("benchmarks/gpu_check.sh", CUDA_VISIBLE_DEVICES="")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "error: no CUDA device is visible to torch; benchmarks/gpu_check.sh measures a GPU (see --help)"]
