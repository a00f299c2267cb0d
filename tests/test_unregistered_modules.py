"""Forward code torch.fx rejects: modules that are not submodules of the model (held in a plain
list, a dict or a closure) are traced through, and a root forward fx cannot follow is analysed
by abstract execution, as an untraceable submodule is."""

import pytest
import torch
import torch.nn as nn

import lazyfx
from dryrun import assert_same_model, dry_run, materialized


class InputError(Exception):
    pass


class PlainList(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.LazyLinear(3)
        self.extra = [nn.Linear(3, 2)]  # a plain list: not a submodule
        self.acts = {"act": nn.Tanh()}

    def forward(self, x):
        return self.acts["act"](self.extra[0](self.a(x)))


def closure_model():
    shared = nn.Sequential(nn.Linear(3, 4), nn.ReLU())

    class Closure(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.LazyLinear(3)
            self.b = nn.LazyLinear(2)

        def forward(self, x):
            return self.b(shared(self.a(x)))

    return Closure


def test_a_module_in_a_plain_list_or_dict_is_traced_through():
    model = PlainList()
    report = lazyfx.infer(model, ("B", 5))
    assert str(report.output) == "(B, 2)" and list(report.lazy) == ["a"]
    assert not hasattr(model, "_tensor_constant0")  # its parameters entered the graph as constants
    assert "_tensor_constant0" not in dict(model.named_parameters())
    assert_same_model(dry_run(PlainList, (2, 5)), materialized(PlainList, ("B", 5)))
    x = torch.randn(2, 5)  # the list's Linear is outside state_dict: compare what forward computes
    assert torch.equal(materialized(PlainList, ("B", 5))(x), dry_run(PlainList, (2, 5))(x))


def test_a_module_in_a_closure_is_traced_through():
    build = closure_model()
    report = lazyfx.infer(build(), ("B", 5))
    assert report.lazy["b"].resolution.arguments == {"in_features": 4}
    assert_same_model(dry_run(build, (2, 5)), materialized(build, ("B", 5)))


def test_a_lazy_module_outside_the_model_is_named():
    class LazyInList(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.LazyLinear(3)
            self.heads = [nn.LazyLinear(3)]

        def forward(self, x):
            return self.heads[0](self.a(x))

    model = LazyInList()
    with pytest.raises(lazyfx.ResolutionError, match=r"test_unregistered_modules.py:\d+: LFX043 forward calls a "
                       r"lazy LazyLinear that is not a submodule of LazyInList \(held in a plain list"):
        lazyfx.materialize(model, ("B", 5))
    assert isinstance(model.a, nn.LazyLinear) and not hasattr(model, "_tensor_constant0")
    dry = dry_run(LazyInList, (2, 5))
    assert "heads.0.weight" not in dry.state_dict()  # PyTorch does not see it as part of the model either


def test_a_root_forward_fx_rejects_goes_to_abstract_execution():
    class Checked(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.LazyLinear(3)

        def forward(self, x):
            if torch.isnan(x).any():  # a branch on values: fx cannot follow it
                x = torch.nan_to_num(x)
            return self.a(x)

    report = lazyfx.infer(Checked(), ("B", 5))
    assert str(report.output) == "(B, 3)"
    assert_same_model(dry_run(Checked, (2, 5)), materialized(Checked, ("B", 5)))


def test_a_forward_that_always_raises_is_still_an_error():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.LazyLinear(3)

        def forward(self, x):
            raise InputError("not implemented yet")

    with pytest.raises(lazyfx.ShapeError, match="LFX033 Broken.forward raises at every size lazyfx tried: "
                                                "InputError: not implemented yet"):
        lazyfx.infer(Broken(), ("B", 5))
    with pytest.raises(InputError):
        Broken()(torch.zeros(2, 5))


def test_a_module_outside_the_model_is_left_as_it_was():
    norm = nn.BatchNorm1d(3)  # training mode: forward counts its batches in place

    class Outside(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.LazyLinear(3)
            self.norms = [norm]

        def forward(self, x):
            return self.norms[0](self.a(x))

    report = lazyfx.infer(Outside(), ("B", 5))
    assert str(report.output) == "(B, 3)"
    assert norm.num_batches_tracked.item() == 0 and norm.training
    Outside()(torch.zeros(2, 5))
    assert norm.num_batches_tracked.item() == 1  # as a real call would


class Untraceable(nn.Module):
    """forward goes to abstract execution (it branches on values) and calls a list's module."""

    def __init__(self, extra: nn.Module):
        super().__init__()
        self.a = nn.LazyLinear(3)
        self.extra = [extra]

    def forward(self, x):
        if torch.isnan(x).any():
            x = torch.nan_to_num(x)
        return self.extra[0](self.a(x))


def test_abstract_execution_copies_a_module_in_a_plain_list():
    def build():
        return Untraceable(nn.Linear(3, 2))

    assert str(lazyfx.infer(build(), ("B", 5)).output) == "(B, 2)"
    assert_same_model(dry_run(build, (2, 5)), materialized(build, ("B", 5)))
    x = torch.randn(2, 5)
    assert torch.equal(materialized(build, ("B", 5))(x), dry_run(build, (2, 5))(x))


def test_abstract_execution_names_a_lazy_module_in_a_plain_list():
    with pytest.raises(lazyfx.ResolutionError, match=r"LFX043 the model holds a lazy LazyLinear outside its "
                                                     r"submodules \(in a plain list"):
        lazyfx.infer(Untraceable(nn.LazyLinear(2)), ("B", 5))
