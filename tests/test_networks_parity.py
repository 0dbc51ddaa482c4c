"""Parity of the networks with the GasMono release.

Keys, shapes and order against the release's manifest; outputs under
deterministic weights against the release's outputs (``tests/fixtures``, see
``tests/parity_fixtures.py``), with the tolerances of the full comparison:
float32 arrays ``|ours - ref| <= 1e-4 * max|ref| + 1e-6``, the float16-stored
shallow features ``2e-3 * max|ref|``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from deterministic_weights import checksum
from parity_fixtures import build_filled_networks, load_manifest, load_network_reference, run_networks, subsample

from networks import DepthDecoder, mpvit_small
from networks.depth_decoder import convex_upsample
from networks.mpvit import DropPath, drop_path

MODEL_NAMES = ("encoder", "depth", "pose_encoder", "pose", "trans_encoder", "trans")
# README section 3
FLOAT32_REL_TOL = 1e-4
FLOAT32_ABS_TOL = 1e-6
FLOAT16_REL_TOL = 2e-3


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest()


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[np.ndarray, float]]:
    """Per output key: (subsampled release output, max |full release output|)."""
    return load_network_reference()


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return build_filled_networks()


@pytest.fixture(scope="module")
def outputs(models) -> dict[str, torch.Tensor]:
    return run_networks(models)


def assert_close_float32(actual: torch.Tensor, key: str, reference: dict, rel: float = FLOAT32_REL_TOL) -> None:
    """``actual`` (a full output) against the release's at the fixture's samples."""
    expected, absmax = reference[key]
    actual = subsample(key, actual.detach().cpu().numpy())
    assert actual.shape == expected.shape
    bound = rel * absmax + FLOAT32_ABS_TOL
    worst = np.abs(actual - expected).max()
    assert worst <= bound, f"max |diff| {worst:.3g} > {bound:.3g}"


# --------------------------------------------------------------------------
# structure
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_state_dict_keys_shapes_dtypes_and_order_match_manifest(models, manifest, name):
    ours = [
        (key, list(value.shape), str(value.dtype).removeprefix("torch."))
        for key, value in models[name].state_dict().items()
    ]
    release = [(key, shape, dtype) for key, shape, dtype, _ in manifest[name]["keys"]]
    assert ours == release


def test_encoder_aliases_share_tensors_like_the_release(models, manifest):
    state = models["encoder"].state_dict(keep_vars=True)
    entries = manifest["encoder"]["keys"]
    assert len(state) == 1261
    assert len({id(tensor) for tensor in state.values()}) == 1261 - 532
    for key, _, _, alias_of in entries:
        if alias_of is None:
            continue
        assert state[key] is state[alias_of], key
    # the positional convs of a path are one module object under three names
    path = models["encoder"].mhca_stages[2].mhca_blks[1]
    for block in path.MHCA_layers:
        assert block.cpe is path.cpe and block.crpe is path.crpe and block.factoratt_crpe.crpe is path.crpe


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fill_checksum_matches_manifest(models, manifest, name):
    ours = checksum(models[name])
    release = manifest[name]["fill_checksum"]
    assert ours["count"] == release["count"]
    assert ours["sum"] == pytest.approx(release["sum"], rel=1e-12, abs=1e-9)
    assert ours["sum_sq"] == pytest.approx(release["sum_sq"], rel=1e-12)


@pytest.mark.parametrize(
    "name, parameters, buffer_elements",
    [
        ("encoder", 22_603_400, 10_285),
        ("depth", 5_397_297, 0),
        ("pose_encoder", 11_698_920, 9_620),
        ("pose", 1_315_086, 0),
        ("trans_encoder", 11_698_920, 9_620),
        ("trans", 1_313_544, 0),
    ],
)
def test_parameter_counts(models, name, parameters, buffer_elements):
    model = models[name]
    assert sum(parameter.numel() for parameter in model.parameters()) == parameters
    assert sum(buffer.numel() for buffer in model.buffers()) == buffer_elements


def test_channel_lists(models):
    assert models["encoder"].num_ch_enc == [64, 128, 216, 288, 288]
    assert models["pose_encoder"].num_ch_enc == [64, 64, 128, 256, 512]


def test_drop_path_rates_and_scratch_initialisation():
    torch.manual_seed(0)
    encoder = mpvit_small()
    expected = np.linspace(0.0, 0.2, 13)
    rates = []
    for stage in encoder.mhca_stages:
        per_path = []
        for path in stage.mhca_blks:
            per_path.append(
                [block.drop_path.rate if isinstance(block.drop_path, DropPath) else 0.0 for block in path.MHCA_layers]
            )
        assert all(path_rates == per_path[0] for path_rates in per_path)
        rates += per_path[0]
    np.testing.assert_allclose(rates, expected, atol=1e-7)
    assert isinstance(encoder.mhca_stages[0].mhca_blks[0].MHCA_layers[0].drop_path, torch.nn.Identity)

    # section 1.5: the release's conv initialisation (no ImageNet checkpoint)
    def std(module):
        return float(module.weight.detach().std())

    assert std(encoder.stem[0].conv) == pytest.approx(math.sqrt(2 / (9 * 32)), rel=0.1)
    patch_conv = encoder.patch_embed_stages[1].patch_embeds[0].patch_conv
    assert std(patch_conv.dwconv) == pytest.approx(math.sqrt(2 / (9 * 128)), rel=0.1)
    assert std(encoder.mhca_stages[1].InvRes.dwconv) == pytest.approx(math.sqrt(2 / 9), rel=0.1)
    assert torch.all(encoder.mhca_stages[1].InvRes.norm.weight == 1)


def test_drop_path_is_per_sample_and_only_in_training():
    x = torch.ones(4000, 3, 2)
    dropped = drop_path(x, 0.25, training=True)
    per_sample = dropped.view(4000, -1)
    assert torch.all(per_sample == per_sample[:, :1])  # whole samples kept or dropped
    values = per_sample[:, 0].unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.75)
    assert float((per_sample[:, 0] == 0).float().mean()) == pytest.approx(0.25, abs=0.03)
    assert torch.equal(drop_path(x, 0.25, training=False), x)


# --------------------------------------------------------------------------
# convex upsampling
# --------------------------------------------------------------------------


def test_convex_upsample_layout_and_factor_8():
    disp = torch.arange(1.0, 13.0).view(1, 1, 3, 4) / 20
    ratio = 2
    # uniform weights: 8 x the mean of the zero-padded 3x3 neighbourhood
    uniform = convex_upsample(disp, torch.zeros(1, 9 * ratio * ratio, 3, 4), ratio)
    box = torch.nn.functional.avg_pool2d(8 * disp, 3, stride=1, padding=1, count_include_pad=True)
    torch.testing.assert_close(uniform, box.repeat_interleave(2, 2).repeat_interleave(2, 3))
    # sub-pixel row a = 0 takes the upper neighbour (k = 1), row a = 1 the centre (k = 4)
    logits = torch.full((1, 9, ratio, ratio, 3, 4), -1e4)
    logits[:, 1, 0] = 1e4
    logits[:, 4, 1] = 1e4
    out = convex_upsample(disp, logits.view(1, 36, 3, 4), ratio)
    upper = torch.nn.functional.pad(8 * disp, (0, 0, 1, 0))[:, :, :3]
    torch.testing.assert_close(out[0, 0, 0::2, 0::2], upper[0, 0])
    torch.testing.assert_close(out[0, 0, 1::2, 1::2], 8 * disp[0, 0])


def test_depth_decoder_scale_subset_and_resolution():
    torch.manual_seed(0)
    decoder = DepthDecoder([64, 128, 216, 288, 288], scales=[0, 2]).eval()
    features = [torch.rand(1, c, 64 // 2 ** (i + 1), 96 // 2 ** (i + 1)) for i, c in enumerate(decoder.num_ch_enc)]
    with torch.no_grad():
        out = decoder(features)
    assert sorted(out) == [("disp", 0), ("disp", 2)]
    assert all(value.shape == (1, 1, 64, 96) for value in out.values())
    assert 0 < float(out[("disp", 2)].min()) and float(out[("disp", 2)].max()) < 8


# --------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------


@pytest.mark.parametrize("index", [2, 3, 4])
def test_encoder_deep_features_match_reference(outputs, reference, index):
    assert_close_float32(outputs[f"encoder.feat{index}"], f"encoder.feat{index}", reference)


@pytest.mark.parametrize("index", [0, 1])
def test_encoder_shallow_features_match_float16_reference(outputs, reference, index):
    key = f"encoder.feat{index}"
    feature = outputs[key]
    stored, absmax = reference[key]
    sampled = subsample(key, feature.numpy())
    assert sampled.shape == stored.shape
    assert np.abs(sampled - stored.astype(np.float32)).max() <= FLOAT16_REL_TOL * absmax
    assert_close_float32(feature[:, :, :32, :32], f"{key}.crop", reference)


@pytest.mark.parametrize("index", range(5))
def test_encoder_channel_means_match_reference(outputs, reference, index):
    assert_close_float32(outputs[f"encoder.feat{index}"].mean(dim=(2, 3)), f"encoder.feat{index}.chanmean", reference)


@pytest.mark.parametrize("scale", range(4))
def test_disparities_match_reference(outputs, reference, scale):
    disp = outputs[f"depth.disp{scale}"]
    assert disp.shape == (2, 1, 256, 320)
    assert_close_float32(disp, f"depth.disp{scale}", reference)


@pytest.mark.parametrize(
    "key",
    [
        "pose_encoder.feat4",
        "pose.axisangle",
        "pose.translation",
        "pose.scale",
        "trans_encoder.feat4",
        "trans.translation",
        "trans.scale",
    ],
)
def test_pose_and_align_nets_match_reference(outputs, reference, key):
    assert_close_float32(outputs[key], key, reference)
