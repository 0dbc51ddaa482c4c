"""The module-level fast kernels against the library modules they replace:
``accel.linear.Conv1x1Linear`` (``nn.Linear``), ``accel.elu.ExpELU``
(``nn.ELU``), ``accel.optimizer.AdamW`` (``torch.optim.AdamW``), and the
in-place swaps of ``accel.modules``."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import accel
from accel.elu import ExpELU
from accel.linear import Conv1x1Linear, onednn_linear
from accel.optimizer import AdamW
from networks import DepthDecoder
from networks.mpvit import mpvit_small

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from profile_train import group_times  # noqa: E402

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


def _operators(run) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return {event.key for event in prof.key_averages()}


def _fast_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(in_features, out_features, bias=bias)
    layer.__class__ = Conv1x1Linear
    return layer


# --------------------------------------------------------------------------- linear
@needs_onednn
@pytest.mark.parametrize("shape", [(37, 24), (2, 450, 24), (2, 3, 500, 24)])
@pytest.mark.parametrize("bias", [True, False])
def test_the_onednn_linear_equals_the_library_linear_forward_and_backward(shape, bias):
    torch.manual_seed(0)
    library = nn.Linear(24, 40, bias=bias)
    ours = _fast_linear(24, 40, bias=bias)
    ours.load_state_dict(library.state_dict())
    x = torch.randn(*shape)
    x_library, x_ours = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    grad = torch.randn(*shape[:-1], 40)
    expected, out = library(x_library), ours(x_ours)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    expected.backward(grad)
    out.backward(grad)
    torch.testing.assert_close(x_ours.grad, x_library.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, library.weight.grad, rtol=1e-5, atol=1e-4)
    if bias:
        torch.testing.assert_close(ours.bias.grad, library.bias.grad, rtol=1e-5, atol=1e-4)


@needs_onednn
def test_a_non_contiguous_input_gives_the_same_result():
    torch.manual_seed(0)
    weight, bias = torch.randn(16, 8), torch.randn(16)
    x = torch.randn(8, 3000).t()  # 3000 x 8, not contiguous
    torch.testing.assert_close(onednn_linear(x, weight, bias), x @ weight.t() + bias, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_the_cpu_product_runs_on_onednn_and_the_library_layer_on_blas():
    layer, x = _fast_linear(64, 32), torch.randn(400, 64, requires_grad=True)

    def run():
        layer(x).sum().backward()

    onednn = _operators(run)
    assert "aten::mkldnn_convolution" in onednn and not {"aten::addmm", "aten::mm"} & onednn
    layer.__class__ = nn.Linear
    blas = _operators(run)
    assert "aten::addmm" in blas and "aten::mkldnn_convolution" not in blas


@needs_onednn
def test_the_product_runs_on_onednn_on_one_thread_too():
    layer, x = _fast_linear(64, 32), torch.randn(400, 64, requires_grad=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        operators = _operators(lambda: layer(x).sum().backward())
    finally:
        torch.set_num_threads(threads)
    assert "aten::mkldnn_convolution" in operators and not {"aten::addmm", "aten::mm"} & operators


@needs_onednn
@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # torch's flags() context warns
def test_disabling_onednn_in_torch_gives_the_library_linear():
    layer, x = _fast_linear(64, 32), torch.randn(400, 64)
    with torch.backends.mkldnn.flags(enabled=False):
        operators = _operators(lambda: layer(x))
    assert "aten::addmm" in operators and "aten::convolution" not in operators


def test_small_products_and_other_dtypes_stay_on_the_library_linear():
    small, x = _fast_linear(64, 32), torch.randn(320, 64)  # 20480 elements: PyTorch would not use oneDNN
    assert "aten::addmm" in _operators(lambda: small(x)) and "aten::convolution" not in _operators(lambda: small(x))
    double = _fast_linear(6, 3).double()
    x = torch.randn(4000, 6, dtype=torch.float64)
    operators = _operators(lambda: double(x))
    assert "aten::addmm" in operators and "aten::convolution" not in operators
    torch.testing.assert_close(double(x), F.linear(x, double.weight, double.bias), rtol=0, atol=0)


# --------------------------------------------------------------------------- ELU
def test_the_exp_elu_equals_the_library_elu_with_its_gradient():
    x = torch.randn(2, 4, 33, 41, generator=torch.Generator().manual_seed(0)) * 3
    x[0, 0, 0, :4] = torch.tensor([0.0, -1e-9, 1e-9, -80.0])
    ours_input, library_input = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, library = ExpELU(inplace=True)(ours_input * 1.0), F.elu(library_input * 1.0)
    assert float((ours - library).detach().abs().max()) <= 6e-8
    grad = torch.randn_like(ours)
    ours.backward(grad)
    library.backward(grad)
    torch.testing.assert_close(ours_input.grad, library_input.grad, rtol=1e-6, atol=1e-6)


def test_the_exp_elu_in_float64_within_1e_10_and_its_gradient_exact():
    x = torch.randn(3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 4
    ours_input, library_input = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, library = ExpELU(inplace=True)(ours_input * 1.0), F.elu(library_input * 1.0)
    assert float((ours - library).detach().abs().max()) <= 1e-10
    grad = torch.randn_like(ours)
    ours.backward(grad)
    library.backward(grad)
    assert float((ours_input.grad - library_input.grad).abs().max()) <= 1e-10
    assert torch.autograd.gradcheck(lambda t: ExpELU(inplace=True)(t * 1.0), (x[0].clone().requires_grad_(),))


# --------------------------------------------------------------------------- swaps
def test_accelerate_swaps_the_library_modules_in_place_and_restore_swaps_them_back():
    torch.manual_seed(0)
    encoder = mpvit_small()
    decoder = DepthDecoder(encoder.num_ch_enc)
    untouched = nn.ELU(alpha=0.5, inplace=True)  # another alpha: not the kernel's function
    decoder.add_module("other_elu", untouched)
    keys, parameters = list(encoder.state_dict()), [id(p) for p in encoder.parameters()]
    linears = sum(type(m) is nn.Linear for network in (encoder, decoder) for m in network.modules())
    elus = sum(type(m) is nn.ELU for m in decoder.modules()) - 1
    changed = accel.accelerate([encoder, decoder], onednn_linear=True, exp_elu=True)
    assert changed == linears + elus and linears > 0 and elus > 0
    assert not any(type(m) is nn.Linear for m in encoder.modules())
    assert type(untouched) is nn.ELU
    assert list(encoder.state_dict()) == keys and [id(p) for p in encoder.parameters()] == parameters
    accel.restore([encoder, decoder])
    assert sum(type(m) is nn.Linear for network in (encoder, decoder) for m in network.modules()) == linears
    assert not any(isinstance(m, (Conv1x1Linear, ExpELU)) for m in decoder.modules())


@needs_onednn
def test_mpvit_with_the_fast_linear_layers_keeps_its_outputs():
    torch.manual_seed(0)
    encoder = mpvit_small().eval()
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        library = encoder(image)
        with accel.accelerated([encoder], onednn_linear=True, exp_elu=True):
            assert any(isinstance(module, Conv1x1Linear) for module in encoder.modules())
            ours = encoder(image)
    for a, b in zip(ours, library):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_the_profile_counts_a_linear_layer_as_a_matrix_product_and_a_convolution_as_a_convolution():
    layer, x = _fast_linear(64, 32), torch.randn(400, 64, requires_grad=True)
    conv, image = nn.Conv2d(8, 8, 3), torch.randn(2, 8, 40, 40, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        layer(x).sum().backward()
    linear_times = group_times(prof)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        conv(image).sum().backward()
    conv_times = group_times(prof)
    assert linear_times["matrix products"] > 0 and linear_times.get("convolutions", 0.0) == 0.0
    assert conv_times["convolutions"] > 0 and conv_times.get("matrix products", 0.0) == 0.0


# --------------------------------------------------------------------------- AdamW
def _network(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(),
                            nn.LazyLinear(4))
    network(torch.rand(1, 3, 9, 9))
    return network.to(dtype=dtype, memory_format=torch.channels_last)


def _train(network: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    generator = torch.Generator().manual_seed(1)
    dtype = next(network.parameters()).dtype
    for _ in range(steps):
        images = torch.rand(2, 3, 9, 9, generator=generator, dtype=dtype).contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        network(images).square().sum().backward()
        optimizer.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_adamw_steps_equal_torch_fused_adamw_exactly(dtype):
    ours, theirs = _network(dtype), _network(dtype)
    assert not ours[0].weight.is_contiguous()  # a channels-last 3 x 3 weight: the case that is flattened
    ours_optimizer = AdamW(ours.parameters(), lr=1e-2, weight_decay=0.05, fused=True)
    theirs_optimizer = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.05, fused=True)
    _train(ours, ours_optimizer)
    _train(theirs, theirs_optimizer)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert a.stride() == b.stride()
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ours_state, theirs_state = ours_optimizer.state_dict(), theirs_optimizer.state_dict()
    assert ours_state["param_groups"] == theirs_state["param_groups"]
    for index, state in theirs_state["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(ours_state["state"][index][key], value, rtol=0, atol=0)
    assert ours_state["state"][0]["exp_avg"].stride() == ours[0].weight.stride()


def test_the_adamw_state_dict_loads_into_torch_adamw():
    network = _network()
    optimizer = AdamW(network.parameters(), lr=1e-2, fused=True)
    _train(network, optimizer, steps=1)
    restored = torch.optim.AdamW(network.parameters(), lr=1e-2, fused=True)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.state_dict()["state"][0]["step"] == 1


def test_the_fused_step_copies_no_channels_last_weight():
    def clones(optimizer_class: type[torch.optim.Optimizer]) -> int:
        network = _network()
        optimizer = optimizer_class(network.parameters(), lr=1e-2, fused=True)
        _train(network, optimizer, steps=1)
        network(torch.rand(2, 3, 9, 9)).sum().backward()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            optimizer.step()
        return sum(event.count for event in prof.key_averages() if event.key == "aten::clone")

    assert clones(torch.optim.AdamW) > 0
    assert clones(AdamW) == 0
