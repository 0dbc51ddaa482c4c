"""Checkpoint I/O: weights folders in the release layout, ImageNet initialisation."""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import networks.checkpoints as checkpoints  # noqa: E402
from networks import (  # noqa: E402
    MODEL_NAMES,
    DepthDecoder,
    NonFiniteWeightsError,
    PoseDecoder,
    ResnetEncoder,
    TransDecoder,
    load_mpvit_imagenet,
    load_optimizer_state,
    load_training_state,
    load_weights_folder,
    mpvit_small,
    remove_stale_staging,
    save_weights_folder,
)
from utils import GasMonoError, atomic_write_text  # noqa: E402

HEIGHT, WIDTH = 64, 96


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def build_models(seed: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    encoder = mpvit_small()
    pose_encoder = ResnetEncoder(18, False, 2)
    trans_encoder = ResnetEncoder(18, False, 2)
    models = {
        "encoder": encoder,
        "depth": DepthDecoder(encoder.num_ch_enc),
        "pose_encoder": pose_encoder,
        "pose": PoseDecoder(pose_encoder.num_ch_enc, 1, 2),
        "trans_encoder": trans_encoder,
        "trans": TransDecoder(trans_encoder.num_ch_enc, 1, 2),
    }
    with torch.no_grad():
        # non-trivial values everywhere (BN statistics, biases, norm scales)
        seen = set()
        for model in models.values():
            for tensor in model.state_dict(keep_vars=True).values():
                if torch.is_floating_point(tensor) and id(tensor) not in seen:
                    seen.add(id(tensor))
                    tensor.data.add_(0.01 * torch.randn_like(tensor))
        for model in models.values():
            model.eval()
    return models


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return build_models(seed=0)


@pytest.fixture(scope="module")
def other_models() -> dict[str, torch.nn.Module]:
    return build_models(seed=1)


@pytest.fixture(scope="module")
def saved_folder(models, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "models" / "weights_3"
    return save_weights_folder(folder, models, HEIGHT, WIDTH, False)


def run_all(models: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    image = torch.rand(1, 3, HEIGHT, WIDTH)
    pair = torch.cat([torch.rand(1, 3, HEIGHT, WIDTH), image], dim=1)
    with torch.no_grad():
        disps = models["depth"](models["encoder"](image))
        axisangle, translation, _ = models["pose"]([models["pose_encoder"](pair)])
        residual, scale = models["trans"]([models["trans_encoder"](pair)])
    return {
        "disp0": disps[("disp", 0)],
        "disp3": disps[("disp", 3)],
        "axisangle": axisangle,
        "translation": translation,
        "residual": residual,
        "scale": scale,
    }


def test_saved_folder_holds_exactly_the_release_files(saved_folder):
    assert sorted(path.name for path in saved_folder.iterdir()) == sorted(f"{name}.pth" for name in MODEL_NAMES)
    # no staging or backup folders left next to it
    assert [path.name for path in saved_folder.parent.iterdir()] == ["weights_3"]


def test_encoder_file_layout(saved_folder, models):
    state = torch.load(saved_folder / "encoder.pth", map_location="cpu", weights_only=True)
    keys = list(state)
    assert keys[:-4] == list(models["encoder"].state_dict())
    assert len(keys) == 1261 + 4
    # the release's three entries, then the depth encoder's name (ours)
    assert keys[-4:] == ["height", "width", "use_stereo", "depth_encoder"]
    assert state["depth_encoder"] == "mpvit_small"
    assert type(state["height"]) is int and state["height"] == HEIGHT
    assert type(state["width"]) is int and state["width"] == WIDTH
    assert type(state["use_stereo"]) is bool and state["use_stereo"] is False
    # aliased tensors stay shared in the file
    assert state["mhca_stages.0.mhca_blks.0.MHCA_layers.0.cpe.proj.weight"].data_ptr() == state[
        "mhca_stages.0.mhca_blks.0.cpe.proj.weight"
    ].data_ptr()


def test_round_trip_reproduces_outputs_exactly(saved_folder, models, other_models):
    expected = run_all(models)
    before = run_all(other_models)
    assert not torch.equal(before["disp0"], expected["disp0"])
    extras = load_weights_folder(saved_folder, other_models)
    assert extras == {"height": HEIGHT, "width": WIDTH, "use_stereo": False, "depth_encoder": "mpvit_small"}
    after = run_all(other_models)
    for key, value in expected.items():
        assert torch.equal(after[key], value), key


def test_load_subset_returns_no_extras_without_encoder(saved_folder, models):
    torch.manual_seed(3)
    pose = PoseDecoder([64, 64, 128, 256, 512], 1, 2)
    assert load_weights_folder(saved_folder, {"pose": pose}, names=["pose"]) == {}
    assert torch.equal(pose.net[3].weight, models["pose"].net[3].weight)


def test_optimizer_and_training_state_round_trip(tmp_path):
    torch.manual_seed(2)
    decoder = TransDecoder([64, 64, 128, 256, 512], 1, 2)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=1e-4)
    decoder([[torch.rand(1, 512, 2, 3)]])[1].sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    extra = {
        "epoch": 4,
        "step": 1234,
        "scheduler": {"last_epoch": 4, "_last_lr": [1e-4, 1e-5]},
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
    }
    folder = save_weights_folder(
        tmp_path / "weights_4", {"trans": decoder}, HEIGHT, WIDTH, True, optimizer.state_dict(), extra
    )
    assert sorted(path.name for path in folder.iterdir()) == ["adam.pth", "training_state.pth", "trans.pth"]
    loaded_opt = load_optimizer_state(folder)
    restored = torch.optim.AdamW(decoder.parameters(), lr=1e-4)
    restored.load_state_dict(loaded_opt)
    first = next(iter(optimizer.state.values()))
    again = next(iter(restored.state.values()))
    assert torch.equal(first["exp_avg"], again["exp_avg"])
    loaded = load_training_state(folder)
    assert loaded["epoch"] == 4 and loaded["step"] == 1234 and loaded["scheduler"] == extra["scheduler"]
    assert torch.equal(loaded["torch_rng"], extra["torch_rng"])
    assert np.array_equal(loaded["numpy_rng"][1], extra["numpy_rng"][1])
    assert loaded["python_rng"] == extra["python_rng"]
    assert load_optimizer_state(tmp_path) is None
    assert load_training_state(tmp_path) is None


def test_save_replaces_existing_folder(tmp_path, models):
    folder = tmp_path / "weights_0"
    save_weights_folder(folder, {"pose": models["pose"]}, 10, 20, False)
    save_weights_folder(folder, {"trans": models["trans"]}, HEIGHT, WIDTH, False)
    assert sorted(path.name for path in folder.iterdir()) == ["trans.pth"]
    assert [path.name for path in tmp_path.iterdir()] == ["weights_0"]


def test_interrupted_save_keeps_previous_folder(tmp_path, models, monkeypatch):
    folder = tmp_path / "weights_0"
    save_weights_folder(folder, {"pose": models["pose"]}, HEIGHT, WIDTH, False)
    original_write = checkpoints._write
    calls = []

    def failing_write(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        original_write(obj, path)

    monkeypatch.setattr(checkpoints, "_write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_weights_folder(folder, {"pose": models["pose"], "trans": models["trans"]}, HEIGHT, WIDTH, False)
    assert [path.name for path in tmp_path.iterdir()] == ["weights_0"]
    assert sorted(path.name for path in folder.iterdir()) == ["pose.pth"]


def test_non_finite_weights_are_refused_and_nothing_is_written(tmp_path, models):
    decoder = PoseDecoder([64, 64, 128, 256, 512], 1, 2)
    with torch.no_grad():
        decoder.net[3].weight[0, 0, 0, 0] = float("inf")
    optimizer_state = {"state": {0: {"exp_avg_sq": torch.tensor([1.0, float("nan")])}}, "param_groups": []}
    with pytest.raises(NonFiniteWeightsError) as info:
        save_weights_folder(tmp_path / "weights_0", {"pose": decoder, "trans": models["trans"]}, HEIGHT, WIDTH,
                            False, optimizer_state)
    assert info.value.names == ["pose.net.3.weight", "adam.state.0.exp_avg_sq"]
    assert str(info.value) == (f"{tmp_path / 'weights_0'} not saved: 2 tensor(s) with NaN or infinity: "
                               "pose.net.3.weight, adam.state.0.exp_avg_sq")
    assert list(tmp_path.iterdir()) == []


def test_saved_folders_and_text_files_get_normal_permissions(tmp_path, models):
    previous = os.umask(0o022)
    try:
        folder = save_weights_folder(tmp_path / "weights_0", {"pose": models["pose"]}, HEIGHT, WIDTH, False)
        atomic_write_text("{}\n", tmp_path / "opt.json")
    finally:
        os.umask(previous)
    assert oct(folder.stat().st_mode & 0o777) == oct(0o755)
    assert oct((folder / "pose.pth").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "opt.json").stat().st_mode & 0o777) == oct(0o644)


KILLED_SAVE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    import networks.checkpoints as checkpoints
    from networks import PoseDecoder, save_weights_folder

    original_write = checkpoints._write

    def slow_write(obj, path):
        original_write(obj, path)
        print("written", path, flush=True)
        time.sleep(60)

    models = {{"pose": PoseDecoder([64, 64, 128, 256, 512], 1, 2)}}
    save_weights_folder({folder!r}, models, 64, 96, False)
    checkpoints._write = slow_write
    save_weights_folder({folder!r}, models, 64, 96, False)
    """
)


def test_kill_during_a_save_leaves_a_staging_folder_that_is_cleared(tmp_path):
    """``kill -9`` in the middle of replacing weights_0: weights_0 is intact, a
    hidden staging folder is left; remove_stale_staging clears it."""
    models_dir = tmp_path / "models"
    script = KILLED_SAVE_SCRIPT.format(root=str(PROJECT_ROOT), folder=str(models_dir / "weights_0"))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("written")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    staging = [path for path in models_dir.iterdir() if path.name != "weights_0"]
    assert len(staging) == 1 and staging[0].name.startswith(".weights_0.") and staging[0].name.endswith(".tmp")
    assert [path.name for path in (models_dir / "weights_0").iterdir()] == ["pose.pth"]
    assert remove_stale_staging(models_dir) == [f"removed {staging[0].name}"]
    assert [path.name for path in models_dir.iterdir()] == ["weights_0"]


def test_corrupt_training_state_does_not_advise_unsafe_loading(tmp_path):
    (tmp_path / "training_state.pth").write_bytes(pickle.dumps({"epoch": 3}))
    with pytest.raises(GasMonoError) as info:
        load_training_state(tmp_path)
    message = str(info.value)
    assert message == (f"cannot read training state {tmp_path / 'training_state.pth'}: it is corrupt or holds "
                       "objects other than tensors and plain values (not a file written by this project or the "
                       "GasMono release)")
    good = tmp_path / "good"
    save_weights_folder(good, {}, HEIGHT, WIDTH, False, extra_state={"epoch": 3, "step": 10})
    (tmp_path / "training_state.pth").write_bytes((good / "training_state.pth").read_bytes()[:300])
    with pytest.raises(GasMonoError) as info:
        load_training_state(tmp_path)
    message = str(info.value)
    assert message.startswith(f"cannot read training state {tmp_path / 'training_state.pth'} (")
    assert message.endswith("; truncated or corrupt?)")
    assert "weights_only" not in message and "\n" not in message


def test_wrong_architecture_names_file_and_keys(saved_folder, tmp_path):
    folder = tmp_path / "weights_0"
    folder.mkdir()
    (folder / "depth.pth").write_bytes((saved_folder / "pose_encoder.pth").read_bytes())
    torch.manual_seed(0)
    decoder = DepthDecoder([64, 128, 216, 288, 288])
    with pytest.raises(GasMonoError) as info:
        load_weights_folder(folder, {"depth": decoder})
    message = str(info.value)
    assert "\n" not in message
    assert str(folder / "depth.pth") in message
    assert f"({84 + 122} mismatched keys" in message
    assert "decoder.0.conv.conv.weight" in message and "encoder.conv1.weight" in message


def test_renamed_key_and_shape_mismatch_are_reported(tmp_path, models):
    folder = tmp_path / "weights_0"
    folder.mkdir()
    state = models["pose"].state_dict()
    state["net.3.weights"] = state.pop("net.3.weight")
    torch.save(state, folder / "pose.pth")
    torch.save(models["pose"].state_dict(), folder / "trans.pth")
    with pytest.raises(GasMonoError) as info:
        load_weights_folder(folder, {"pose": models["pose"]})
    message = str(info.value)
    assert "\n" not in message and "(2 mismatched keys; missing: net.3.weight; unexpected: net.3.weights)" in message
    with pytest.raises(GasMonoError, match=r"trans\.pth.*shape: net\.3\.weight \[14, 256, 1, 1\] vs \[8, 256, 1, 1\]"):
        load_weights_folder(folder, {"trans": models["trans"]})


def test_missing_folder_file_and_corrupt_file(tmp_path, models):
    with pytest.raises(GasMonoError, match="weights folder not found: .*nowhere"):
        load_weights_folder(tmp_path / "nowhere", {"pose": models["pose"]})
    with pytest.raises(GasMonoError, match=r"pose checkpoint not found: .*pose\.pth"):
        load_weights_folder(tmp_path, {"pose": models["pose"]})
    (tmp_path / "pose.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(GasMonoError, match=r"cannot read pose checkpoint .*pose\.pth") as info:
        load_weights_folder(tmp_path, {"pose": models["pose"]})
    assert "\n" not in str(info.value)
    with pytest.raises(GasMonoError, match="unknown model name 'posenet'"):
        load_weights_folder(tmp_path, {"pose": models["pose"]}, names=["posenet"])


# --------------------------------------------------------------------------
# ImageNet initialisation
# --------------------------------------------------------------------------


def test_mpvit_imagenet_checkpoint_loads_non_strictly(tmp_path, models, caplog):
    torch.manual_seed(7)
    source = mpvit_small()
    state = source.state_dict()
    wrong = "mhca_stages.3.aggregate.conv.weight"
    state[wrong] = torch.zeros(288, 1152, 1, 2)
    state["cls_head.cls.weight"] = torch.zeros(1000, 288)
    state["cls_head.cls.bias"] = torch.zeros(1000)
    # the original file also pickles its training arguments (not weights-only loadable)
    path = tmp_path / "mpvit_small.pth"
    torch.save({"model": state, "args": argparse.Namespace(lr=5e-4)}, path)

    torch.manual_seed(8)
    encoder = mpvit_small()
    before = encoder.state_dict()[wrong].clone()
    with caplog.at_level(logging.INFO, logger="networks.pretrained"):
        report = load_mpvit_imagenet(encoder, path)
    assert report["dropped"] == ["cls_head.cls.weight", "cls_head.cls.bias"]
    assert report["shape_mismatch"] == [wrong]
    assert report["missing"] == []
    assert wrong in caplog.text and "[288, 1152, 1, 2] vs [288, 1152, 1, 1]" in caplog.text
    assert "cls_head.cls.weight" in caplog.text
    loaded = encoder.state_dict()
    for key, value in source.state_dict().items():
        if key == wrong:
            assert torch.equal(loaded[key], before)
        else:
            assert torch.equal(loaded[key], value), key

    # the factory uses the same loader
    from_factory = mpvit_small(str(path))
    assert torch.equal(from_factory.stem[0].conv.weight, source.stem[0].conv.weight)


def test_mpvit_imagenet_missing_keys_count_aliases_once(tmp_path):
    torch.manual_seed(9)
    encoder = mpvit_small()
    state = encoder.state_dict()
    # drop one alias of a shared tensor (still loaded through another name) and one plain key
    del state["mhca_stages.0.mhca_blks.0.MHCA_layers.0.cpe.proj.weight"]
    del state["stem.0.conv.weight"]
    path = tmp_path / "plain_state.pth"
    torch.save({"model": state}, path)
    report = load_mpvit_imagenet(encoder, path)
    assert report["missing"] == ["stem.0.conv.weight"]


def test_pretrained_files_given_but_missing_are_errors_none_given_warns(tmp_path, caplog):
    missing = tmp_path / "absent.pth"
    with pytest.raises(GasMonoError, match=f"MPViT ImageNet checkpoint not found: {missing}"):
        mpvit_small(str(missing))
    with pytest.raises(GasMonoError, match=f"ResNet ImageNet weights not found: {missing}"):
        ResnetEncoder(18, True, 2, pretrained_path=str(missing))
    with caplog.at_level(logging.WARNING):
        resnet_no_path = ResnetEncoder(18, True, 2)
        assert load_mpvit_imagenet(mpvit_small(), None) is None
    assert resnet_no_path.encoder.conv1.weight.shape == (64, 6, 7, 7)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("no file given" in text for text in warnings)
    assert any("no MPViT ImageNet checkpoint given" in text for text in warnings)


def test_resnet_imagenet_weights_repeat_conv1(tmp_path):
    torch.manual_seed(11)
    torchvision_state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_state, path)
    encoder = ResnetEncoder(18, True, 2, pretrained_path=str(path))
    loaded = encoder.encoder.state_dict()
    conv1 = torchvision_state["conv1.weight"]
    assert torch.equal(loaded["conv1.weight"][:, :3], conv1 / 2)
    assert torch.equal(loaded["conv1.weight"][:, 3:], conv1 / 2)
    for key, value in torchvision_state.items():
        if key != "conv1.weight":
            assert torch.equal(loaded[key], value), key
    single = ResnetEncoder(18, True, 1, pretrained_path=str(path))
    assert torch.equal(single.encoder.conv1.weight, conv1)

    torchvision_state["fc.weights"] = torchvision_state.pop("fc.weight")
    torch.save(torchvision_state, path)
    with pytest.raises(GasMonoError, match=r"resnet18\.pth.*missing: fc\.weight"):
        ResnetEncoder(18, True, 2, pretrained_path=str(path))


def test_networks_contain_no_download_code():
    sources = "\n".join(path.read_text(encoding="utf-8") for path in (PROJECT_ROOT / "networks").glob("*.py"))
    for forbidden in ("model_urls", "load_state_dict_from_url", "torch.hub", "_Weights", "urllib", "requests"):
        assert forbidden not in sources, forbidden
