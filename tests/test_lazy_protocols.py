"""Lazy parameters used through protocols that are not a plain call of a PyTorch lazy module:
tensordict's ``from_module``/``to_module`` (a TensorDict holds the module's parameters and
swaps them in for the call), and pytorch-pfn-extras' own lazy layers. Each is either resolved
bit-identically to a dry run, or an error that names the protocol and what to do."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from tensordict import TensorDict
from torch.nn.parameter import UninitializedParameter

import lazyfx
from dryrun import assert_same_model, dry_run
from test_errors import snapshot


class Swapped(nn.Module):
    """Keeps its network's parameters in a TensorDict and swaps them in for each call, as
    ensembles and target networks built on tensordict do."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2))
        self.params = TensorDict.from_module(self.net)

    def forward(self, x):
        with self.params.to_module(self.net):
            return self.net(x)


def test_tensordict_parameters_are_initialized_in_place_as_in_a_dry_run():
    dry = dry_run(Swapped, (2, 3))
    torch.manual_seed(0)
    model = Swapped().eval()
    held = model.params["0", "weight"]
    eager = lazyfx.materialize(model, ("B", 3), inplace=True)
    assert_same_model(dry, eager)
    # the TensorDict holds the module's own, now initialized, parameters (a dry run's in-place
    # initialization); new parameter objects would leave it holding the uninitialized ones
    assert eager.params["0", "weight"] is held is eager.net[0].weight and type(held) is nn.Parameter
    assert torch.equal(eager(torch.ones(2, 3)), dry(torch.ones(2, 3)))


def test_copying_a_model_whose_tensordict_holds_lazy_parameters_names_it():
    model = Swapped().eval()
    before = snapshot(model)
    with pytest.raises(lazyfx.MaterializeError, match=r"its attribute 'params' \(TensorDict\) holds lazy parameters "
                                                      r"outside the modules' own") as caught:
        lazyfx.materialize(model, ("B", 3))
    assert "tensordict's from_module/to_module" in str(caught.value) and "inplace=True" in caught.value.diagnostics[0].notes[0]
    assert snapshot(model) == before


def test_a_failed_in_place_materialization_puts_the_tensordict_parameters_back():
    model = Swapped().eval()
    held = model.params["0", "weight"]
    state = {"net.0.weight": torch.zeros(4, 3), "net.0.bias": torch.zeros(4), "net.2.weight": torch.zeros(2, 4),
             "net.2.bias": torch.zeros(2), "unexpected": torch.zeros(1)}
    with pytest.raises(lazyfx.LazyFXError):
        lazyfx.materialize(model, ("B", 3), inplace=True, state_dict=state)
    assert type(held) is UninitializedParameter and model.net[0].weight is held
    assert isinstance(model.net[0], nn.LazyLinear)
    eager = lazyfx.materialize(model, ("B", 3), inplace=True)  # and it still materializes
    assert eager.params["0", "weight"] is held and held.shape == (4, 3)


def test_tensordict_parameters_are_initialized_in_place_on_another_device():
    # on meta the net got new meta parameters while the TensorDict kept the cpu UninitializedParameters
    dry = dry_run(Swapped, (2, 3))
    model = Swapped().eval()
    held = [model.params["0", "weight"], model.params["2", "bias"]]
    eager = lazyfx.materialize(model, ("B", 3), inplace=True, device="meta")
    assert eager.params["0", "weight"] is held[0] is eager.net[0].weight and eager.net[2].bias is held[1]
    assert type(held[0]) is nn.Parameter and held[0].device.type == "meta" and held[0].shape == (4, 3)
    assert {(n, t.shape, t.device.type) for n, t in eager.params.items(True, True)} == {
        (n, t.shape, "meta") for n, t in eager.params.items(True, True)}
    assert [(n, p.shape) for n, p in eager.named_parameters()] == [(n, p.shape) for n, p in dry.named_parameters()]
    assert eager(torch.ones(2, 3, device="meta")).shape == (2, 2)


def test_a_failed_in_place_materialization_on_another_device_puts_the_tensordict_parameters_back():
    model = Swapped().eval()
    held = model.params["0", "weight"]
    state = {"net.0.weight": torch.zeros(4, 3), "net.0.bias": torch.zeros(4), "net.2.weight": torch.zeros(2, 4),
             "net.2.bias": torch.zeros(2), "unexpected": torch.zeros(1)}
    with pytest.raises(lazyfx.LazyFXError):
        lazyfx.materialize(model, ("B", 3), inplace=True, state_dict=state, device="meta")
    assert type(held) is UninitializedParameter and held.device.type == "cpu" and model.net[0].weight is held
    assert isinstance(model.net[0], nn.LazyLinear) and model.params["0", "weight"] is held
    # the counterpart: it then materializes on cpu, bit-identical to a dry run
    torch.manual_seed(0)
    eager = lazyfx.materialize(model, ("B", 3), inplace=True)
    assert_same_model(dry_run(Swapped, (2, 3)), eager)
    assert eager.params["0", "weight"] is held and held.shape == (4, 3)


# -- pytorch-pfn-extras' lazy layers ----------------------------------------------------------------


class PfnNet(nn.Module):
    """pytorch-pfn-extras' LazyConv2d and LazyLinear: ``None`` for the size they infer in forward."""

    def __init__(self, in_channels=None, in_features=None):
        from pytorch_pfn_extras.nn import LazyConv2d, LazyLinear

        super().__init__()
        self.conv = LazyConv2d(in_channels, 4, 3)
        self.head = LazyLinear(in_features, 5)

    def forward(self, x):
        return self.head(torch.flatten(torch.relu(self.conv(x)), 1))


def test_pytorch_pfn_extras_lazy_layers_are_named_with_their_protocol():
    model = PfnNet()
    before = snapshot(model)
    with pytest.raises(lazyfx.ResolutionError) as caught:
        lazyfx.materialize(model, ("B", 3, 8, 8))
    error = caught.value
    assert error.code == "LFX044"
    assert ("'conv' (pytorch-pfn-extras' LazyConv2d) is lazy by pytorch-pfn-extras' own protocol: 'weight' is "
            "pytorch_pfn_extras.nn.modules.lazy.UninitializedParameter") in str(error)
    assert "use PyTorch's own nn.LazyConv2d" in str(error) and "run the model once" in str(error)
    assert "must be 4D" not in str(error)  # not a shape error that blames the model
    assert snapshot(model) == before


def test_pytorch_pfn_extras_layers_after_their_first_call_are_ordinary_layers():
    dry = dry_run(PfnNet, (2, 3, 8, 8))  # forward has created their parameters
    report = lazyfx.infer(dry, ("B", 3, 8, 8))
    assert str(report.output) == "(B, 5)" and not report.lazy
    eager = lazyfx.materialize(dry, ("B", 3, 8, 8))
    assert_same_model(dry, eager)


def test_pytorch_lazy_layers_instead_of_pfn_extras_match_a_dry_run():
    build = lambda: nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))  # noqa: E731
    from dryrun import materialized

    assert_same_model(dry_run(build, (2, 3, 8, 8)), materialized(build, ("B", 3, 8, 8)))


# -- a lazy module used through its parameters ------------------------------------------------------


class Twin(nn.Module):
    """Calls ``twin`` with ``net``'s parameters swapped in (``template=False``: with its own)."""

    def __init__(self, template: bool = True):
        super().__init__()
        self.template = template
        self.net = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2))
        self.twin = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2))

    def forward(self, x):
        called = self.twin if self.template else self.net
        return torch.func.functional_call(called, dict(self.net.named_parameters()), (x,))


def test_a_lazy_module_used_through_its_parameters_is_not_told_to_be_called():
    model = Twin()
    report = lazyfx.infer(model, ("B", 3))
    problems = {d.module_path: d for d in report.diagnostics}
    assert sorted(problems) == ["net.0", "net.2"]
    assert ("lazy module 'net.0' (LazyLinear) is never called itself, but its parameters are: forward swaps them "
            "into 'twin.0' and calls that") in problems["net.0"].message
    assert "call it in forward" not in str(problems["net.0"])
    assert report.lazy["net.2"].used_through == "twin.2" and report.lazy["twin.0"].called
    with pytest.raises(lazyfx.ResolutionError, match="LFX042 lazy module 'net.0'"):
        lazyfx.materialize(model, ("B", 3))


def test_a_lazy_module_called_through_functional_call_with_its_own_parameters_matches_a_dry_run():
    build = lambda: Twin(template=False)  # noqa: E731  (twin is never used: it is left out)
    dry = dry_run(build, (2, 3))
    del dry.twin
    torch.manual_seed(0)
    model = build().eval()
    del model.twin
    assert not lazyfx.infer(model, ("B", 3)).diagnostics
    assert_same_model(dry, lazyfx.materialize(model, ("B", 3)))
