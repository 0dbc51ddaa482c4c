"""The depth encoders by name: their feature maps size the decoder, ImageNet
init from a local file, the name saved in ``encoder.pth`` and checked on load."""
from __future__ import annotations

import pytest
import torch
import torchvision

import networks
from inference import DepthEstimator
from networks import DEPTH_ENCODER_FACTORIES, DepthDecoder, build_depth_encoder, load_depth_model
from utils import DEFAULT_DEPTH_ENCODER, DEPTH_ENCODERS, GasMonoError

HEIGHT, WIDTH = 64, 96
CHANNELS = {"mpvit_small": [64, 128, 216, 288, 288], "resnet18": [64, 64, 128, 256, 512],
            "resnet50": [64, 256, 512, 1024, 2048]}


def test_every_encoder_name_has_a_factory():
    assert tuple(DEPTH_ENCODER_FACTORIES) == DEPTH_ENCODERS and DEFAULT_DEPTH_ENCODER == "mpvit_small"
    with pytest.raises(GasMonoError, match="unknown depth encoder 'resnet34' \\(choose from mpvit_small, resnet18"):
        build_depth_encoder("resnet34")


@pytest.mark.parametrize("name", DEPTH_ENCODERS)
def test_the_encoder_channels_size_the_decoder(name):
    torch.manual_seed(0)
    encoder = build_depth_encoder(name).eval()
    decoder = DepthDecoder(encoder.num_ch_enc).eval()
    assert encoder.num_ch_enc == CHANNELS[name]
    with torch.no_grad():
        features = encoder(torch.rand(2, 3, HEIGHT, WIDTH))
        outputs = decoder(features)
    assert [tuple(feature.shape) for feature in features] == [
        (2, channels, HEIGHT // 2**level, WIDTH // 2**level) for level, channels in enumerate(CHANNELS[name], 1)
    ]
    for scale in range(4):
        disp = outputs[("disp", scale)]
        assert disp.shape == (2, 1, HEIGHT, WIDTH) and torch.isfinite(disp).all()
        assert 0 < float(disp.min()) and float(disp.max()) < (1 if scale == 0 else 8)


def test_resnet_depth_encoder_starts_from_a_local_imagenet_file(tmp_path):
    torch.manual_seed(3)
    torchvision_state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_state, path)
    encoder = build_depth_encoder("resnet18", path)
    assert encoder.num_input_images == 1
    for key, value in torchvision_state.items():
        assert torch.equal(encoder.encoder.state_dict()[key], value), key
    with pytest.raises(GasMonoError, match="ResNet ImageNet weights not found"):
        build_depth_encoder("resnet50", tmp_path / "absent.pth")
    with pytest.raises(GasMonoError, match=r"resnet18\.pth: checkpoint does not match the network"):
        build_depth_encoder("resnet50", path)


def _save(folder, name: str) -> None:
    encoder = build_depth_encoder(name)
    networks.save_weights_folder(folder, {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                                 HEIGHT, WIDTH, False, depth_encoder=name)


def test_the_encoder_name_is_saved_and_a_checkpoint_loads_with_its_encoder(tmp_path):
    _save(tmp_path / "w", "resnet18")
    assert torch.load(tmp_path / "w" / "encoder.pth")["depth_encoder"] == "resnet18"
    assert networks.read_depth_encoder_name(tmp_path / "w") == "resnet18"
    encoder, decoder, extras = load_depth_model(tmp_path / "w")
    assert isinstance(encoder, networks.ResnetEncoder) and decoder.num_ch_enc == CHANNELS["resnet18"]
    assert extras == {"height": HEIGHT, "width": WIDTH, "use_stereo": False, "depth_encoder": "resnet18"}
    estimator = DepthEstimator.from_checkpoint(tmp_path / "w")
    assert estimator.depth_encoder == "resnet18" and (estimator.height, estimator.width) == (HEIGHT, WIDTH)


def test_a_checkpoint_given_to_another_encoder_is_a_one_line_error(tmp_path):
    _save(tmp_path / "w", "resnet18")
    expected = f"{tmp_path / 'w' / 'encoder.pth'} holds the resnet18 depth encoder, not mpvit_small"
    with pytest.raises(GasMonoError) as info:
        DepthEstimator.from_checkpoint(tmp_path / "w", depth_encoder="mpvit_small")
    assert str(info.value) == expected
    mpvit = build_depth_encoder("mpvit_small")
    with pytest.raises(GasMonoError) as info:
        networks.load_weights_folder(tmp_path / "w", {"encoder": mpvit}, depth_encoder="mpvit_small")
    assert str(info.value) == expected


def test_a_checkpoint_without_a_name_loads_as_mpvit_small(tmp_path):
    """The release's encoder.pth files (and ours before the name was saved) hold MPViT-small."""
    _save(tmp_path / "w", "mpvit_small")
    path = tmp_path / "w" / "encoder.pth"
    state = torch.load(path)
    del state["depth_encoder"]
    torch.save(state, path)
    assert networks.read_depth_encoder_name(tmp_path / "w") == "mpvit_small"
    estimator = DepthEstimator.from_checkpoint(tmp_path / "w")
    assert estimator.depth_encoder == "mpvit_small" and isinstance(estimator.encoder, networks.MPViT)
    with pytest.raises(GasMonoError, match="holds the mpvit_small depth encoder, not resnet18$"):
        DepthEstimator.from_checkpoint(tmp_path / "w", depth_encoder="resnet18")


def test_an_unknown_encoder_name_in_a_checkpoint_is_named(tmp_path):
    _save(tmp_path / "w", "resnet18")
    path = tmp_path / "w" / "encoder.pth"
    state = torch.load(path)
    state["depth_encoder"] = "vit_huge"
    torch.save(state, path)
    with pytest.raises(GasMonoError, match="encoder.pth holds an unknown depth encoder 'vit_huge'"):
        DepthEstimator.from_checkpoint(tmp_path / "w")
    with pytest.raises(GasMonoError, match="weights folder not found"):
        load_depth_model(tmp_path / "nowhere")
