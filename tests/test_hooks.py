"""Forward hooks and pre-hooks on leaf modules take part in shape inference (issue 13 point 5).

torch.fx keeps PyTorch's layers and lazy modules as leaves and never runs
their hooks; lazyfx traces each hook's body on the leaf's traced inputs and
output, so a hook that changes a shape gives what a dry run gives. A hook it
cannot follow is an explicit error (LFX013), never a wrong resolution; a hook
that only observes changes nothing.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import lazyfx
from lazyfx.errors import LazyFXError, ShapeError
from tests.dryrun import assert_same_model, dry_run, materialized


def slicing_forward_hook(module, args, out):
    return out[..., :3]


def build_forward_hook():
    model = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(4))
    model[0].register_forward_hook(slicing_forward_hook)
    return model


def test_a_forward_hook_that_changes_the_output_shape_matches_a_dry_run():
    report = lazyfx.infer(build_forward_hook(), ("B", 8))
    assert report.lazy["1"].resolution.arguments == {"in_features": 3}
    assert str(report.output) == "(B, 4)"
    assert_same_model(dry_run(build_forward_hook, (2, 8)), materialized(build_forward_hook, ("B", 8)))


def test_a_forward_hook_with_kwargs():
    def build():
        model = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(4))
        model[0].register_forward_hook(lambda m, args, kwargs, out: torch.cat([out, args[0]], -1), with_kwargs=True)
        return model

    assert lazyfx.infer(build(), ("B", 8)).lazy["1"].resolution.arguments == {"in_features": 16}
    assert_same_model(dry_run(build, (2, 8)), materialized(build, ("B", 8)))


def test_a_pre_hook_on_an_eager_leaf_changes_its_input():
    def build():
        model = nn.Sequential(nn.Flatten(), nn.LazyLinear(4))
        model[0].register_forward_pre_hook(lambda m, args: args[0][:, :2])
        return model

    assert lazyfx.infer(build(), ("B", 5, 6)).lazy["1"].resolution.arguments == {"in_features": 12}
    assert_same_model(dry_run(build, (2, 5, 6)), materialized(build, ("B", 5, 6)))


def test_a_pre_hook_with_kwargs():
    def build():
        model = nn.Sequential(nn.Identity(), nn.LazyLinear(4))
        model[0].register_forward_pre_hook(lambda m, args, kwargs: ((args[0][..., ::2],), kwargs), with_kwargs=True)
        return model

    assert lazyfx.infer(build(), ("B", 10)).lazy["1"].resolution.arguments == {"in_features": 5}
    assert_same_model(dry_run(build, (2, 10)), materialized(build, ("B", 10)))


def test_hooks_run_in_registration_order():
    def build():
        model = nn.Sequential(nn.Identity(), nn.LazyLinear(4))
        model[0].register_forward_hook(lambda m, a, out: out[..., :6])
        model[0].register_forward_hook(lambda m, a, out: torch.cat([out, out], -1))
        model[0].register_forward_hook(lambda m, a, out: None)  # observes only
        return model

    assert lazyfx.infer(build(), ("B", 10)).lazy["1"].resolution.arguments == {"in_features": 12}
    assert_same_model(dry_run(build, (2, 10)), materialized(build, ("B", 10)))


def test_a_hook_inside_a_traced_submodule():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 8)
            self.proj.register_forward_hook(slicing_forward_hook)
            self.head = nn.LazyLinear(2)

        def forward(self, x):
            return self.head(self.proj(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, x):
            return self.block(x)

    assert lazyfx.infer(Net(), ("B", 8)).lazy["block.head"].resolution.arguments == {"in_features": 3}
    assert_same_model(dry_run(Net, (2, 8)), materialized(Net, ("B", 8)))


def test_a_forward_hook_on_a_lazy_module():
    def build():
        model = nn.Sequential(nn.LazyLinear(6), nn.LazyLinear(4))
        model[0].register_forward_hook(lambda m, a, out: out[:, :2])
        return model

    report = lazyfx.infer(build(), ("B", 8))
    assert report.lazy["0"].resolution.arguments == {"in_features": 8}
    assert report.lazy["1"].resolution.arguments == {"in_features": 2}
    assert_same_model(dry_run(build, (2, 8)), materialized(build, ("B", 8)))


def doubled(module, args):
    return (args[0] * 2,)


def test_a_pre_hook_on_a_lazy_module_that_keeps_the_shape():
    def build():
        model = nn.Sequential(nn.LazyLinear(4))
        model[0].register_forward_pre_hook(doubled)
        return model

    assert lazyfx.infer(build(), ("B", 8)).lazy["0"].resolution.arguments == {"in_features": 8}
    assert_same_model(dry_run(build, (2, 8)), materialized(build, ("B", 8)))


def test_a_pre_hook_after_lazy_initialization_that_changes_the_shape_is_refused():
    # a dry run initializes in_features = 8 from the input, then the hook gives forward 3 features: it fails
    model = nn.Sequential(nn.LazyLinear(4))
    model[0].register_forward_pre_hook(lambda m, args: args[0][..., :3])
    with pytest.raises(LazyFXError) as info:
        lazyfx.infer(model, ("B", 8))
    assert info.value.code == "LFX013" and "initial" in str(info.value)
    with pytest.raises(RuntimeError):
        model.eval()(torch.zeros(2, 8))


def test_a_global_forward_hook():
    def hook(module, args, out):
        return out[..., :3] if isinstance(module, nn.Linear) else None

    def build():
        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.LazyLinear(4))

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        assert lazyfx.infer(build(), ("B", 8)).lazy["2"].resolution.arguments == {"in_features": 3}
        assert_same_model(dry_run(build, (2, 8)), materialized(build, ("B", 8)))
    finally:
        handle.remove()


def test_a_hook_that_observes_changes_nothing():
    seen = []

    def build():
        model = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(4))
        model[0].register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape)))
        model[0].register_forward_pre_hook(lambda m, a: None)
        return model

    model = build()
    hooks = dict(model[0]._forward_hooks)
    report = lazyfx.infer(model, ("B", 8))
    assert report.lazy["1"].resolution.arguments == {"in_features": 8}
    assert dict(model[0]._forward_hooks) == hooks
    assert_same_model(dry_run(build, (2, 8)), materialized(build, ("B", 8)))


def test_a_hook_that_breaks_the_shapes_is_a_shape_error():
    model = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(4))
    model[0].register_forward_hook(lambda m, a, out: out.view(3, -1, 7))
    with pytest.raises(ShapeError):
        lazyfx.infer(model, (2, 8))


def test_a_hook_that_uses_tensor_values_is_an_explicit_error():
    def hook(module, args, out):
        if out.sum() > 0:  # a branch on values
            return out[..., :3]
        return None

    model = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(4))
    model[0].register_forward_hook(hook)
    with pytest.raises(LazyFXError) as info:
        lazyfx.infer(model, ("B", 8))
    assert info.value.code == "LFX013" and "forward hook" in str(info.value) and "'0'" in str(info.value)


def test_a_pre_hook_on_the_model_itself():
    def build():
        model = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(4))
        model.register_forward_pre_hook(lambda m, args: (args[0][..., ::2].repeat(1, 8),))
        model.register_forward_hook(lambda m, args, out: out[:, :1])
        return model

    report = lazyfx.infer(build(), ("B", 2))
    assert report.lazy["1"].resolution.arguments == {"in_features": 8} and str(report.output) == "(B, 1)"
    assert_same_model(dry_run(build, (2, 2)), materialized(build, ("B", 2)))


def test_hooks_on_a_bare_lazy_module_are_refused():
    model = nn.LazyLinear(4)
    model.register_forward_hook(lambda m, a, out: out[:, :2])
    with pytest.raises(LazyFXError) as info:
        lazyfx.infer(model, ("B", 8))
    assert info.value.code == "LFX013"


def test_a_hook_on_a_layer_without_a_shape_rule_runs_once():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.loss = nn.L1Loss(reduction="none")  # no rule: PyTorch's meta kernel runs it
            self.loss.register_forward_hook(lambda m, a, out: torch.cat([out, out], -1))
            self.head = nn.LazyLinear(2)

        def forward(self, x):
            return self.head(self.loss(x, x))

    assert lazyfx.infer(Net(), ("B", 4)).lazy["head"].resolution.arguments == {"in_features": 8}
    assert_same_model(dry_run(Net, (2, 4)), materialized(Net, ("B", 4)))


def test_a_hook_on_a_generic_lazy_module_runs_once():
    from tests.zoo.gcn import LazyGraphConv

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = LazyGraphConv(6)
            self.conv.register_forward_hook(lambda m, a, out: torch.cat([out, out], -1))
            self.head = nn.LazyLinear(2)

        def forward(self, x, adj):
            return self.head(self.conv(x, adj))

    report = lazyfx.infer(Net(), (5, 3), (5, 5))
    assert report.lazy["head"].resolution.arguments == {"in_features": 12}
    assert_same_model(dry_run(Net, (5, 3), (5, 5)), materialized(Net, (5, 3), (5, 5)))


def test_a_hook_on_a_module_analysed_by_abstract_execution_runs_once():
    class Gate(nn.Module):
        def forward(self, x):
            if (x > 0).any():  # a branch on values: abstract execution
                return x
            return -x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = Gate()
            self.gate.register_forward_hook(lambda m, a, out: torch.cat([out, out], -1))
            self.head = nn.LazyLinear(2)

        def forward(self, x):
            return self.head(self.gate(x))

    report = lazyfx.infer(Net(), ("B", 4))
    assert "gate" in report.opaque and report.lazy["head"].resolution.arguments == {"in_features": 8}
    assert_same_model(dry_run(Net, (2, 4)), materialized(Net, ("B", 4)))


def sliced(module, args):
    return args[0][..., :3]


def test_a_pre_hook_before_lazy_initialization_shapes_it():
    def build():
        model = nn.Sequential(nn.LazyLinear(4))
        model[0].register_forward_pre_hook(sliced, prepend=True)  # runs before the module's own initialization
        return model

    assert lazyfx.infer(build(), ("B", 8)).lazy["0"].resolution.arguments == {"in_features": 3}
    assert_same_model(dry_run(build, (2, 8)), materialized(build, ("B", 8)))


def test_a_hook_that_reads_the_module_s_parameters():
    def build():
        model = nn.Sequential(nn.Linear(8, 5), nn.LazyLinear(4))
        model[0].register_forward_hook(lambda m, a, out: out.unsqueeze(-1) * m.weight)  # (B, 5, 8)
        model.append(nn.Flatten())
        return model

    report = lazyfx.infer(build(), ("B", 8))
    assert report.lazy["1"].resolution.arguments == {"in_features": 8} and str(report.output) == "(B, 20)"
    assert_same_model(dry_run(build, (2, 8)), materialized(build, ("B", 8)))


def test_hooks_inside_a_module_analysed_by_abstract_execution():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)
            self.fc.register_forward_pre_hook(sliced, prepend=True)

        def forward(self, x):
            if (x > 0).any():  # a branch on values: abstract execution
                x = -x
            return self.fc(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = Gate()

        def forward(self, x):
            return self.gate(x)

    report = lazyfx.infer(Net(), ("B", 8))
    assert "gate" in report.opaque and report.lazy["gate.fc"].resolution.arguments == {"in_features": 3}
    assert_same_model(dry_run(Net, (2, 8)), materialized(Net, ("B", 8)))


def test_a_global_forward_pre_hook():
    def hook(module, args):
        return (args[0][..., :5],) if isinstance(module, nn.ReLU) else None

    def build():
        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.LazyLinear(4))

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        assert lazyfx.infer(build(), ("B", 8)).lazy["2"].resolution.arguments == {"in_features": 5}
        assert_same_model(dry_run(build, (2, 8)), materialized(build, ("B", 8)))
    finally:
        handle.remove()


def noisy_input(module, args):
    return (args[0] + torch.randn_like(args[0]),)


class NoisyPreHook(nn.Module):
    """A lazy module with a pre-hook that draws, registered after the module's own initialization
    pre-hook (the usual case: a dry run initializes first, then draws) or prepended to it."""

    def __init__(self, prepend: bool, untraceable: bool = False):
        super().__init__()
        self.untraceable = untraceable
        self.first = nn.LazyLinear(4)
        self.second = nn.LazyLinear(3)
        self.first.register_forward_pre_hook(noisy_input, prepend=prepend)

    def forward(self, x):
        if self.untraceable and (x > 0).any():  # a branch on values: abstract execution
            x = -x
        return self.second(self.first(x))


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
@pytest.mark.parametrize("prepend", [False, True], ids=["after-initialization", "prepended"])
def test_a_pre_hook_that_draws_draws_where_the_hook_order_puts_it(prepend, untraceable):
    build = lambda: NoisyPreHook(prepend, untraceable)  # noqa: E731
    dry = dry_run(build, (2, 5))
    assert_same_model(dry, materialized(build, (2, 5)))
    torch.manual_seed(0)
    plain = nn.LazyLinear(4)
    plain(torch.zeros(2, 5))  # 'first' initialized from the seed itself: only without a draw before it
    assert torch.equal(dry.first.weight, plain.weight) != prepend
