"""training.optimizer.AdamW: torch's fused AdamW, without copies of channels-last weights."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile

from training.optimizer import AdamW


def _network() -> nn.Module:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(),
                            nn.LazyLinear(4))
    network(torch.rand(1, 3, 9, 9))
    return network.to(memory_format=torch.channels_last)


def _train(network: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        images = torch.rand(2, 3, 9, 9, generator=generator).contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        network(images).square().sum().backward()
        optimizer.step()


def test_the_steps_equal_torch_fused_adamw_exactly():
    ours, theirs = _network(), _network()
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


def test_its_state_dict_loads_into_torch_adamw():
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
