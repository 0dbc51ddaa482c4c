"""Optional: the networks against the *full* reference fixtures, every element.

The compact fixtures in ``tests/fixtures`` (what the other parity tests use)
are a subsample of the full reference folder that sits beside the project
(``../shared/reference``) in the development checkout. When that folder is
there, these tests also check every element of every output, and that the
compact fixtures are exactly the subsample they claim to be. In a plain clone
they are skipped.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from parity_fixtures import SHARED_REFERENCE_DIR, build_filled_networks, load_network_reference, run_networks, subsample

FLOAT32_REL_TOL = 1e-4
FLOAT32_ABS_TOL = 1e-6
FLOAT16_REL_TOL = 2e-3
FLOAT16_KEYS = ("encoder.feat0", "encoder.feat1")

pytestmark = pytest.mark.skipif(
    not (SHARED_REFERENCE_DIR / "reference_outputs.npz").is_file(),
    reason=f"the full reference fixtures are not beside the project ({SHARED_REFERENCE_DIR}); "
           "the compact ones in tests/fixtures are checked by test_networks_parity.py",
)


@pytest.fixture(scope="module")
def full_reference() -> dict[str, np.ndarray]:
    with np.load(SHARED_REFERENCE_DIR / "reference_outputs.npz") as data:
        return {key: data[key] for key in data.files if not key.startswith("input.")}


def test_compact_fixtures_are_the_documented_subsample(full_reference):
    compact = load_network_reference()
    assert set(compact) == set(full_reference)
    for key, array in full_reference.items():
        sampled, absmax = compact[key]
        np.testing.assert_array_equal(sampled, subsample(key, array), err_msg=key)
        assert absmax == float(np.abs(array.astype(np.float64)).max()), key


def test_every_element_of_every_output_matches(full_reference):
    torch.set_num_threads(2)
    outputs = run_networks(build_filled_networks())
    for key, expected in full_reference.items():
        actual = outputs[key].numpy()
        assert actual.shape == expected.shape, key
        expected = expected.astype(np.float32)
        rel = FLOAT16_REL_TOL if key in FLOAT16_KEYS else FLOAT32_REL_TOL
        abs_tol = 0.0 if key in FLOAT16_KEYS else FLOAT32_ABS_TOL
        worst = np.abs(actual - expected).max()
        assert worst <= rel * np.abs(expected).max() + abs_tol, f"{key}: max |diff| {worst:.3g}"
