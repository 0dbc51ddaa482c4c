"""Shared test setup: the project root on sys.path, a small-thread torch
setup (CI machines have 2 cores), the kernel choices measured on the machine
cached for this session only (not in the user's cache), and disk kept in
check: a checkpoint of the full networks takes about 630 MB, so the files of a
test that passed are removed when it ends (those of a failed test stay for
inspection)."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]

if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

torch.set_num_threads(2)
# accel.tuning's cache (read by subprocesses too); kept out of ~/.cache
os.environ.setdefault("GASMONO_CACHE_DIR", tempfile.mkdtemp(prefix="gasmono_test_kernel_choices_"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.report_call``, ...)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def _remove_files_of_passed_tests(request):
    """Remove a test's ``tmp_path`` once the test has passed."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    report = getattr(request.node, "report_call", None)
    if folder is not None and report is not None and report.passed:
        shutil.rmtree(folder, ignore_errors=True)
