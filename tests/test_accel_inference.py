"""The inference kernels (``accel.fusion``, ``inference.DepthEstimator``:
scale 0 only, channels-last, inference mode, fused copies of the networks)
against the release's way of running the same weights (NCHW, all four decoder
scales, the library's ELU) and against the plain networks (``--kernels
reference``), with non-trivial batch-norm statistics; and which kernels
``--kernels`` picks."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import accel
from accel.fusion import (
    OneDNNConv2d,
    OneDNNLinear,
    TokenFactorAtt,
    UpsampledConvBlock,
    fold_batchnorm,
    fuse_for_inference,
)
from inference import DepthEstimator
from networks import DepthDecoder, build_depth_encoder
from networks.depth_decoder import ConvBlock, upsample2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_networks import release_style  # noqa: E402

HEIGHT, WIDTH = 64, 96


@pytest.mark.parametrize("depth_encoder", ["mpvit_small", "resnet18"])
def test_the_estimator_equals_the_full_network_at_scale_0(depth_encoder):
    torch.manual_seed(0)
    encoder = build_depth_encoder(depth_encoder).eval()
    decoder = DepthDecoder(encoder.num_ch_enc).eval()
    release = release_style(encoder, decoder)
    scale0 = DepthDecoder(encoder.num_ch_enc, scales=[0])
    scale0.load_state_dict(decoder.state_dict())
    estimator = DepthEstimator(copy.deepcopy(encoder), scale0, HEIGHT, WIDTH)
    images = torch.rand(3, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    expected = release(images)
    actual = estimator.disparity_batch(images)
    assert actual.shape == (3, 1, HEIGHT, WIDTH)
    assert float((actual - expected).abs().max()) <= 1e-4 * float(expected.abs().max())
    flipped = release(torch.flip(images, dims=[3]))
    blended = estimator.disparity_batch(images, post_process=True)
    assert not torch.allclose(blended, actual)  # the mirrored prediction differs, so the blend is tested
    assert float((blended[..., WIDTH // 2] - 0.5 * (expected + torch.flip(flipped, dims=[3]))[..., WIDTH // 2])
                 .abs().max()) <= 1e-4 * float(expected.abs().max())


def _randomize_batchnorms(network: torch.nn.Module, seed: int) -> None:
    """Running statistics and affine parameters far from the identity."""
    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.rand(channels, generator=generator) - 0.5)
            module.running_var.copy_(0.5 + 1.5 * torch.rand(channels, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(channels, generator=generator))
            module.bias.data.copy_(0.4 * torch.rand(channels, generator=generator) - 0.2)


def test_folding_a_batchnorm_equals_conv_then_batchnorm():
    conv = torch.nn.Conv2d(6, 6, 3, 2, 1, groups=3, bias=True)
    bn = torch.nn.BatchNorm2d(6)
    _randomize_batchnorms(torch.nn.Sequential(bn), 0)
    bn.eval()
    x = torch.randn(2, 6, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("skip_channels", [0, 5])
def test_the_upsampled_conv_block_equals_the_block_on_the_upsampled_map(skip_channels):
    generator = torch.Generator().manual_seed(3)
    block = ConvBlock(4 + skip_channels, 6).eval()
    x = torch.randn(2, 4, 5, 7, generator=generator)
    skip = torch.randn(2, skip_channels, 10, 14, generator=generator) if skip_channels else None
    with torch.no_grad():
        expected = block(upsample2(x) if skip is None else torch.cat([upsample2(x), skip], dim=1))
        actual = UpsampledConvBlock(block, 4)(x, skip)
    assert actual.shape == (2, 6, 10, 14)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("onednn", [False, True])
def test_the_fused_networks_equal_the_eager_ones(onednn):
    if onednn and not torch.backends.mkldnn.is_available():
        pytest.skip("PyTorch without oneDNN")
    torch.manual_seed(0)
    encoder = build_depth_encoder("mpvit_small").eval()
    _randomize_batchnorms(encoder, 1)
    decoder = DepthDecoder(encoder.num_ch_enc, scales=[0]).eval()
    state = copy.deepcopy(encoder.state_dict())
    fused_encoder, fused_decoder = fuse_for_inference(encoder, onednn), fuse_for_inference(decoder, onednn)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused_encoder.modules())
    assert sum(isinstance(m, UpsampledConvBlock) for m in fused_decoder.modules()) == 9
    # one attention per path and layer: paths (2, 3, 3, 3) x layers (1, 3, 6, 3)
    assert sum(isinstance(m, TokenFactorAtt) for m in fused_encoder.modules()) == 2 * 1 + 3 * (3 + 6 + 3)
    assert any(isinstance(m, (OneDNNLinear, OneDNNConv2d)) for m in fused_encoder.modules()) == onednn
    assert all(torch.equal(value, state[key]) for key, value in encoder.state_dict().items())  # unchanged
    images = torch.rand(2, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = decoder(encoder(images))[("disp", 0)]
        actual = fused_decoder(fused_encoder(images))[("disp", 0)]
    assert float((actual - expected).abs().max()) <= 1e-4 * float(expected.abs().max())
    estimator = DepthEstimator(encoder, decoder, HEIGHT, WIDTH)
    unfused = DepthEstimator(encoder, decoder, HEIGHT, WIDTH, kernels="reference")
    assert estimator.kernels.fuse and not unfused.kernels.fuse
    assert float((estimator.disparity_batch(images) - unfused.disparity_batch(images)).abs().max()) <= 1e-4 * float(
        unfused.disparity_batch(images).abs().max())


def test_auto_fuses_on_the_cpu_only_and_reference_never(monkeypatch):
    assert accel.plan_inference("auto", torch.device("cpu")).fuse
    assert not accel.plan_inference("reference", torch.device("cpu")).fuse
    cuda = accel.plan_inference("auto", torch.device("cuda"))
    assert not cuda.fuse and "verified on the CPU only" in cuda.describe()
    forced = accel.plan_inference("fast", torch.device("cuda"))
    assert forced.fuse and not forced.onednn
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    assert not accel.plan_inference("auto", torch.device("cpu")).fuse


def test_the_onednn_modules_are_a_choice_measured_on_the_machine(monkeypatch, tmp_path):
    from accel import tuning
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(tuning, "measure_fused_encoder", lambda: (1.0, 1.2))  # oneDNN slower here
    plan = accel.plan_inference("auto", torch.device("cpu"))
    assert plan.fuse and not plan.onednn and "the library's" in plan.describe()
    (tmp_path / "kernel_choices.json").unlink()
    monkeypatch.setattr(tuning, "measure_fused_encoder", lambda: (1.0, 0.5))
    assert accel.plan_inference("auto", torch.device("cpu")).onednn == torch.backends.mkldnn.is_available()
    assert not accel.plan_inference("auto", torch.device("cpu"), compile=True).onednn
