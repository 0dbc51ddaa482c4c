"""Shared test fixtures: the project root on sys.path, the reference folder and
a small-thread torch setup (CI machines have 2 cores)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference"

for path in (PROJECT_ROOT, REFERENCE_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.fail(f"reference fixtures not found at {REFERENCE_DIR} (expected ../shared/reference)")
    return REFERENCE_DIR
