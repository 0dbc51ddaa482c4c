"""networks.linear.Linear: nn.Linear's parameters and results, its CPU product on oneDNN."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile

from networks.linear import Linear, cpu_linear_backend, onednn_linear, set_cpu_linear_backend
from networks.mpvit import mpvit_small

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from profile_train import group_times  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


@pytest.fixture
def backend():
    """Restores the CPU linear backend after the test."""
    before = cpu_linear_backend()
    yield set_cpu_linear_backend
    set_cpu_linear_backend(before)


def _operators(run) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize("shape", [(37, 24), (2, 450, 24), (2, 3, 500, 24)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_the_library_linear_forward_and_backward(shape, bias):
    torch.manual_seed(0)
    library = nn.Linear(24, 40, bias=bias)
    ours = Linear(24, 40, bias=bias)
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


def test_a_non_contiguous_input_gives_the_same_result():
    torch.manual_seed(0)
    weight, bias = torch.randn(16, 8), torch.randn(16)
    x = torch.randn(8, 3000).t()  # 3000 x 8, not contiguous
    torch.testing.assert_close(onednn_linear(x, weight, bias), x @ weight.t() + bias, rtol=1e-5, atol=1e-5)


def test_the_cpu_product_runs_on_onednn_and_blas_on_request(backend):
    layer, x = Linear(64, 32), torch.randn(400, 64, requires_grad=True)

    def run():
        layer(x).sum().backward()

    onednn = _operators(run)
    assert "aten::mkldnn_convolution" in onednn and not {"aten::addmm", "aten::mm"} & onednn
    backend("blas")
    blas = _operators(run)
    assert "aten::addmm" in blas and "aten::mkldnn_convolution" not in blas


def test_the_product_runs_on_onednn_on_one_thread_too():
    layer, x = Linear(64, 32), torch.randn(400, 64, requires_grad=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        operators = _operators(lambda: layer(x).sum().backward())
    finally:
        torch.set_num_threads(threads)
    assert "aten::mkldnn_convolution" in operators and not {"aten::addmm", "aten::mm"} & operators


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # torch's flags() context warns
def test_disabling_onednn_in_torch_gives_the_library_linear():
    layer, x = Linear(64, 32), torch.randn(400, 64)
    with torch.backends.mkldnn.flags(enabled=False):
        operators = _operators(lambda: layer(x))
    assert "aten::addmm" in operators and "aten::convolution" not in operators


def test_small_products_stay_on_the_library_linear():
    layer, x = Linear(64, 32), torch.randn(320, 64)  # 20480 elements: PyTorch would not use oneDNN
    operators = _operators(lambda: layer(x))
    assert "aten::addmm" in operators and "aten::convolution" not in operators


def test_other_dtypes_use_the_library_product():
    layer = Linear(6, 3).double()
    x = torch.randn(4000, 6, dtype=torch.float64)
    operators = _operators(lambda: layer(x))
    assert "aten::addmm" in operators and "aten::convolution" not in operators
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), rtol=0, atol=0)


def test_an_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="must be one of"):
        set_cpu_linear_backend("mkl")


def test_mpvit_keeps_the_library_linear_keys_and_outputs(backend):
    torch.manual_seed(0)
    encoder = mpvit_small().eval()
    assert all(isinstance(module, Linear) for module in encoder.modules() if isinstance(module, nn.Linear))
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ours = encoder(image)
        backend("blas")
        library = encoder(image)
    for a, b in zip(ours, library):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_the_profile_counts_a_linear_layer_as_a_matrix_product_and_a_convolution_as_a_convolution():
    layer, x = Linear(64, 32), torch.randn(400, 64, requires_grad=True)
    conv, image = nn.Conv2d(8, 8, 3), torch.randn(2, 8, 40, 40, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        layer(x).sum().backward()
    linear_times = group_times(prof)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        conv(image).sum().backward()
    conv_times = group_times(prof)
    assert linear_times["matrix products"] > 0 and linear_times.get("convolutions", 0.0) == 0.0
    assert conv_times["convolutions"] > 0 and conv_times.get("matrix products", 0.0) == 0.0
