"""Lazy modules without a built-in resolver: a user's own LazyModuleMixin subclasses and
third-party layers whose forward pre-hook materializes an UninitializedParameter (as PyTorch
Geometric's Linear(-1, out) does) -- resolved by running their own initialization on
shape-only inputs, and bit-identical to a dry run."""

import pathlib
import re
import sys
import types

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

import lazyfx
from dryrun import assert_same_model, dry_run, materialized
from test_errors import snapshot

sys.path.insert(0, str(pathlib.Path(__file__).parent / "data"))
from custom_lazy import (  # noqa: E402
    Classifier, LazyEagerMLP, LazyFlatBilinear, LazyGate, LazyMLP, LazyScale, LazyStateDependentNoise, LazyWidthMLP, Net, Pair,
    PygLinear,
)


def test_report_resolves_every_kind_of_lazy_module():
    report = lazyfx.infer(Net(), ("B", "T", 5))
    assert str(report.output) == "(B, T, 2)"
    lazy = report.lazy
    assert list(lazy) == ["a", "s", "g", "fc"]
    assert lazy["a"].resolution.arguments == {"in_channels": 5}
    assert lazy["a"].resolution.parameter_shapes == {"weight": (8, 5)}
    assert lazy["s"].resolution.arguments == {"channels": 8}
    assert lazy["s"].resolution.parameter_shapes == {"scale": (8,), "proj": (6, 8)}
    assert lazy["g"].eager_class == "Linear" and lazy["g"].resolution.arguments == {"in_features": 6}
    assert lazy["a"].eager_class == "PygLinear" and lazy["s"].eager_class == "LazyScale"
    assert all(r.materializable for r in lazy.values())


@pytest.mark.parametrize("spec", [(2, 3, 5), ("B", "T", 5), ("B", 7, 5)])
def test_materialize_matches_a_dry_run(spec):
    expected = dry_run(Net, (2, 3, 5))
    actual = materialized(Net, spec)
    assert_same_model(expected, actual)
    assert type(actual.g) is nn.Linear and type(actual.s) is LazyScale
    assert not actual.a._forward_pre_hooks and not hasattr(actual.a, "_hook")


def test_a_size_that_depends_on_a_symbol_is_reported_not_guessed():
    model = Net()
    before = snapshot(model)
    report = lazyfx.infer(model, ("B", "F"))
    assert report.lazy["a"].symbols() == ["F"] and not report.lazy["a"].is_concrete
    with pytest.raises(lazyfx.ResolutionError, match="lazy module 'a' \\(PygLinear\\) needs in_channels = .*depends on F"):
        lazyfx.materialize(model, ("B", "F"))
    assert snapshot(model) == before


def test_meta_device_and_dtype():
    model = lazyfx.materialize(Net(), ("B", 5), device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.s.proj.shape == (6, 8)
    model = lazyfx.materialize(Net(), ("B", 5), dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}


def test_the_given_model_is_untouched_and_inplace_rolls_back():
    model = Net()
    before = snapshot(model)
    lazyfx.materialize(model, ("B", 5))
    assert snapshot(model) == before

    def boom(self):
        # analysis (on meta copies) works; materializing fails (the analysis answers .device with the
        # target device, as a dry run would: the storage says where the tensor is)
        if self.weight.untyped_storage().device.type != "meta":
            raise RuntimeError("boom")

    model.g.reset_parameters = types.MethodType(boom, model.g)  # fails after two lazy modules succeeded
    before = snapshot(model)
    with pytest.raises(lazyfx.MaterializeError, match="boom"):
        lazyfx.materialize(model, ("B", 5), inplace=True)
    assert snapshot(model) == before
    assert isinstance(model.a.weight, UninitializedParameter) and hasattr(model.a, "_hook")
    del model.g.reset_parameters
    torch.manual_seed(0)
    expected = dry_run(Net, (2, 5))
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, 5))  # the restored hooks still initialize it
    assert_same_model(expected, model)


def test_initialization_that_fails_on_shape_only_inputs_is_explained():
    class Picky(LazyScale):
        def __init__(self, out):
            super().__init__(out)
            self.register_buffer("enabled", torch.tensor(True))

        def initialize_parameters(self, x):
            if not self.enabled:  # reads its own buffer's value: a meta copy has none
                raise RuntimeError("disabled")
            super().initialize_parameters(x)

    with pytest.raises(lazyfx.UnsupportedOpError, match="running the initialization of the lazy module ''"):
        lazyfx.infer(Picky(3), ("B", 4))


def test_bare_third_party_layer():
    eager = lazyfx.materialize(PygLinear(-1, 3), ("B", 4))
    assert type(eager) is PygLinear and eager.weight.shape == (3, 4) and eager.in_channels == 4
    assert type(lazyfx.materialize(LazyGate(2), ("N", 3))) is nn.Linear


# -- an initialization that reads its input's values (gSDE-style exploration noise) ---------------


class Policy(nn.Module):
    """Features, then exploration noise over them; ``untraceable`` adds a branch on values, so
    forward is analysed by abstract execution."""

    def __init__(self, fit="none", untraceable=False):
        super().__init__()
        self.untraceable = untraceable
        self.features = nn.LazyLinear(6)
        self.noise = LazyStateDependentNoise(2, fit=fit)

    def forward(self, obs):
        if self.untraceable and torch.isnan(obs).any():
            obs = torch.nan_to_num(obs)
        return self.noise(torch.tanh(self.features(obs)))


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
@pytest.mark.parametrize("fit, what, marker", [
    ("branch", "branches on a value computed from its input", "<- reads the features' values"),
    ("store", "sets 'log_std' from its input's values", "<- stores them"),
])
def test_an_initialization_that_reads_input_values_is_named(untraceable, fit, what, marker):
    model = Policy(fit, untraceable)
    before = snapshot(model)
    source = pathlib.Path(__file__).parent / "data" / "custom_lazy.py"
    line = next(i for i, text in enumerate(source.read_text().splitlines(), 1) if marker in text)
    with pytest.raises(lazyfx.DataDependentError) as caught:
        lazyfx.materialize(model, ("B", 4))
    error = caught.value
    assert error.code == "LFX024"
    assert f"the initialization of the lazy module 'noise' (LazyStateDependentNoise) {what}" in str(error)
    assert f"custom_lazy.py:{line}:" in str(error)
    assert "item()" not in str(error) and "meta" not in str(error)  # not the symptom, the cause
    assert snapshot(model) == before


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
def test_a_gsde_style_initialization_from_sizes_only_matches_a_dry_run(untraceable):
    build = lambda: Policy("none", untraceable)  # noqa: E731
    report = lazyfx.infer(build(), ("B", 4))
    assert report.lazy["noise"].resolution.parameter_shapes == {"log_std": (6, 2), "exploration": (6, 2)}
    assert_same_model(dry_run(build, (3, 4)), materialized(build, ("B", 4)))


# -- lazy containers: a LazyModuleMixin whose lazy tensors are all in its submodules ------------------


def test_lazy_container_is_traced_through_and_becomes_its_eager_class():
    report = lazyfx.infer(Classifier(), "B,5")
    assert str(report.output) == "(B, 2)" and not report.opaque
    assert [(p, r.lazy_class, r.eager_class) for p, r in report.lazy.items()] == [
        ("mlp", "LazyMLP", "Sequential"), ("mlp.0", "LazyLinear", "Linear"), ("mlp.2", "LazyLinear", "Linear"),
        ("head", "LazyLinear", "Linear")]
    assert report.lazy["mlp.2"].resolution.arguments == {"in_features": 8}
    eager = materialized(Classifier, "B,5")
    assert type(eager.mlp) is nn.Sequential and not eager.mlp._forward_pre_hooks
    assert_same_model(dry_run(Classifier, (2, 5)), eager)


def test_bare_lazy_container():
    build = lambda: LazyMLP(8, 4)  # noqa: E731
    assert str(lazyfx.infer(build(), "B,T,5").output) == "(B, T, 4)"
    eager = materialized(build, "B,T,5")
    assert type(eager) is nn.Sequential
    assert_same_model(dry_run(build, (2, 3, 5)), eager)


@pytest.mark.parametrize("mlp, changes", [(LazyWidthMLP, r"sets self\.in_features"),
                                          (LazyEagerMLP, r"initializes 0\.weight, 0\.bias")])
def test_lazy_container_whose_initialization_changes_it_is_refused(mlp, changes):
    """Its forward is traced as the container is before its initialization, which here sets an
    attribute from the input, or initializes a layer inside: refused, the model left as it was."""
    model = Classifier(mlp)
    before = snapshot(model)
    with pytest.raises(lazyfx.UnsupportedOpError, match=rf"'mlp' \({mlp.__name__}\) .* initialize_parameters "
                                                        rf"{changes}: the traced forward"):
        lazyfx.infer(model, "B,5")
    assert snapshot(model) == before


# -- a user's lazy class that becomes a built-in one: that class's shape rule ---------------------


def test_lazy_bilinear_uses_the_bilinear_rule_with_symbolic_sizes():
    report = lazyfx.infer(Pair(), "B,5", "B,6")
    node = next(n for n in report.nodes if n.module_path == "bilinear")
    assert str(node.value) == "(B, 3)" and node.rule.endswith("misc.bilinear_module")
    assert report.lazy["bilinear"].eager_class == "Bilinear"
    assert report.lazy["bilinear"].resolution.arguments == {"in1_features": 5, "in2_features": 6}
    eager = materialized(Pair, "B,5", "B,6")
    assert type(eager.bilinear) is nn.Bilinear
    assert_same_model(dry_run(Pair, (2, 5), (2, 6)), eager)
    # a feature size as a symbol: in1_features depends on it; the output does not
    report = lazyfx.infer(Pair(), "B,F", "B,6")
    assert str(report.output) == "(B, 2)" and report.lazy["bilinear"].symbols() == ["F"]
    assert report.lazy["fc"].materializable and not report.lazy["bilinear"].materializable
    assert_same_model(dry_run(Pair, (2, 7), (2, 6)), materialized(Pair, "B,7", "B,6"))


def test_lazy_bilinear_rejects_what_bilinear_rejects():
    with pytest.raises(RuntimeError):
        dry_run(Pair, (2, 5), (3, 6))
    with pytest.raises(lazyfx.ShapeError, match="input batch dimensions do not match"):
        lazyfx.infer(Pair(), "2,5", "3,6")
    report = lazyfx.infer(Pair(), "B,5", "C,6")
    assert str(report.domain) == "B == C"


def test_a_lazy_class_with_its_own_forward_does_not_get_the_eager_rule():
    """A dry run's first call runs the lazy class's own forward; lazyfx runs it too (through the
    meta kernel), not nn.Bilinear's rule: fc sees the flattened output."""
    build = lambda: Pair(LazyFlatBilinear)  # noqa: E731
    report = lazyfx.infer(build(), "2,5", "2,6")
    node = next(n for n in report.nodes if n.module_path == "bilinear")
    assert str(node.value) == "(6,)" and "meta kernel" in node.rule
    assert report.lazy["fc"].resolution.arguments == {"in_features": 6}
    assert_same_model(dry_run(build, (2, 5), (2, 6)), materialized(build, "2,5", "2,6"))
    # with a symbolic batch the meta kernel fails on bilinear: refused, not guessed
    with pytest.raises(lazyfx.UnsupportedOpError, match="LazyFlatBilinear"):
        lazyfx.infer(build(), "B,5", "B,6")


class LazyDeviceScale(LazyScale):
    """Initializes by the device its input (or its own parameter) is on, as device-specific code does."""

    def initialize_parameters(self, x):
        if self.has_uninitialized_params():
            self.scale.materialize((x.shape[-1],))
            self.proj.materialize((self.out, x.shape[-1]))
            self.channels = x.shape[-1]
            with torch.no_grad():
                on_cpu = x.device.type == "cpu" and x.is_cpu and not x.is_meta and self.scale.device == x.device
                self.scale.fill_(1.0 if on_cpu else 2.0)
                self.proj.copy_(torch.ones(self.out, x.shape[-1], device=x.device) * (3.0 if on_cpu else 4.0))


@pytest.mark.parametrize("spec", [(2, 5), ("B", 5)])
def test_an_initialization_reading_the_input_device_sees_the_target_device(spec):
    # it ran on meta inputs, so it took the other branch: scale 2.0 where a dry run gives 1.0, silently
    def build():
        return nn.Sequential(LazyDeviceScale(3))

    model = build()
    before = snapshot(model)
    expected = dry_run(build, (2, 5))
    assert expected[0].scale.tolist() == [1.0] * 5
    for options in ({}, {"device": "cpu"}):
        actual = materialized(build, spec, seed=0, **options)
        assert_same_model(expected, actual)
        assert torch.equal(actual[0].proj, torch.full((3, 5), 3.0))
    assert not lazyfx.infer(model, spec).diagnostics
    assert snapshot(model) == before  # the user's model is as before


def test_an_initialization_reading_the_device_on_meta_sees_meta():
    # the counterpart: a model built on meta takes the branch a dry run on meta takes
    model = lazyfx.materialize(nn.Sequential(LazyDeviceScale(3)), ("B", 5), device="meta")
    assert model[0].scale.device.type == "meta" and model[0].proj.shape == (3, 5)


class TupleLayerNorm(LazyModuleMixin, nn.LayerNorm):
    """A lazy LayerNorm of your own: its initialization sets a tuple, normalized_shape."""

    cls_to_become = nn.LayerNorm

    def __init__(self):
        super().__init__(0)
        self.weight = UninitializedParameter()
        self.bias = UninitializedParameter()

    def initialize_parameters(self, x):
        if self.has_uninitialized_params():
            self.normalized_shape = (x.shape[-1],)
            self.weight.materialize(self.normalized_shape)
            self.bias.materialize(self.normalized_shape)
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)


class NormThenHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = TupleLayerNorm()
        self.head = nn.LazyLinear(2)

    def forward(self, x):
        return self.head(self.ln(x))


def test_a_tuple_set_by_initialization_follows_the_symbol():
    report = lazyfx.infer(NormThenHead(), ("B", "T"))
    assert str(report.output) == "(B, 2)"
    assert str(report.lazy["head"].resolution.arguments["in_features"]) == "T"  # not the representative size
    assert str(report.domain) == "all positive sizes"
    assert NormThenHead()(torch.zeros(2, 1)).shape == (2, 2)
    with pytest.raises(lazyfx.ResolutionError, match=r"'ln' \(TupleLayerNorm\) needs normalized_shape = .*depends "
                                                     r"on T"):
        lazyfx.materialize(NormThenHead(), ("B", "T"))


def test_a_tuple_set_by_initialization_at_concrete_sizes_is_a_dry_run():
    report = lazyfx.infer(NormThenHead(), ("B", 5))
    assert report.lazy["ln"].resolution.is_concrete and report.lazy["head"].resolution.arguments == {"in_features": 5}
    expected = dry_run(NormThenHead, (2, 5))
    actual = materialized(NormThenHead, ("B", 5))
    assert_same_model(expected, actual)
    x = torch.randn(3, 5)
    assert torch.equal(actual(x), expected(x))


def test_a_symbolic_parameter_without_arguments_names_its_shape():
    class Scale(LazyModuleMixin, nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = UninitializedParameter()

        def initialize_parameters(self, x):
            if self.has_uninitialized_params():
                self.weight.materialize((x.shape[-1],))

        def forward(self, x):
            return x * self.weight

    with pytest.raises(lazyfx.ResolutionError, match=r"needs weight of shape \(<.*depends on T>,\), which depends on T"):
        lazyfx.materialize(nn.Sequential(Scale()), ("B", "T"))


class LazyRowScale(LazyScale):
    """Initializes from Python values: of its input's first row (``data``), or of its size."""

    def __init__(self, out, source):
        super().__init__(out)
        self.source = source

    def initialize_parameters(self, x):
        if self.has_uninitialized_params():
            self.channels = x.shape[-1]
            self.scale.materialize((self.channels,))
            self.proj.materialize((self.out, self.channels))
            with torch.no_grad():
                if self.source == "tolist":
                    values = x[0].tolist()  # <- tolist of the data
                elif self.source == "numpy":
                    values = x[0].numpy().tolist()  # <- numpy of the data
                else:  # the counterpart: a size, through Python values too
                    values = (torch.arange(self.channels) + torch.tensor(x.shape[-1:])).tolist()
                self.scale.copy_(torch.tensor(values, dtype=torch.float32))
                nn.init.ones_(self.proj)


@pytest.mark.parametrize("source, what", [("tolist", "copies a value computed from its input off the meta device"),
                                          ("numpy", "reads a value computed from its input (numpy)")])
def test_an_initialization_reading_values_through_tolist_or_numpy_is_lfx024(source, what):
    # it was LFX020 with PyTorch's "Cannot copy out of meta tensor; no data!"
    model = nn.Sequential(LazyRowScale(2, source))
    before = snapshot(model)
    with pytest.raises(lazyfx.DataDependentError, match=f"LFX024 the initialization of the lazy module '0' "
                                                        rf"\(LazyRowScale\) {re.escape(what)}") as caught:
        lazyfx.materialize(model, ("B", 5))
    line = next(i for i, text in enumerate(pathlib.Path(__file__).read_text().splitlines(), 1)
                if f"<- {source} of the data" in text)
    assert f"test_generic_lazy.py:{line}:" in str(caught.value) and "no data" not in str(caught.value)
    assert snapshot(model) == before
    assert torch.Tensor.numpy.__qualname__ == "TensorBase.numpy"  # given back


def test_an_initialization_reading_python_values_of_sizes_matches_a_dry_run():
    build = lambda: nn.Sequential(LazyRowScale(2, "size"))  # noqa: E731
    expected = dry_run(build, (2, 5))
    assert_same_model(expected, materialized(build, ("B", 5)))
    assert expected[0].scale.tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]


class LazyScaledLinear(LazyModuleMixin, nn.Module):
    """A lazy scale of its own and a lazy child its forward initializes."""

    def __init__(self):
        super().__init__()
        self.scale = UninitializedParameter()
        self.lin = nn.LazyLinear(3)

    def initialize_parameters(self, x):
        if self.has_uninitialized_params():
            self.scale.materialize((x.shape[-1],))
            nn.init.normal_(self.scale)

    def forward(self, x):
        return self.lin(x * self.scale)


@pytest.mark.parametrize("spec", [(2, 5), ("B", 5)])
@pytest.mark.parametrize("nested", [False, True], ids=["root", "nested"])
def test_a_lazy_module_with_lazy_tensors_and_a_lazy_child_matches_a_dry_run(spec, nested):
    # it was LFX030 "variable.set_data(tensor) incompatible tensor type" (LFX020 with a symbol): the
    # meta-kernel fallback ran its forward, where the child's own initialization cannot run
    def build():
        return nn.Sequential(nn.LazyLinear(5), LazyScaledLinear()) if nested else LazyScaledLinear()

    model = build()
    before = snapshot(model)
    expected = dry_run(build, (2, 5))
    actual = materialized(build, spec, seed=0)
    assert_same_model(expected, actual)
    x = torch.randn(2, 5)
    with torch.no_grad():
        assert torch.equal(actual(x), expected(x))
    assert snapshot(model) == before


def test_a_lazy_module_with_lazy_tensors_only_keeps_its_generic_resolution():
    # the counterpart: without a lazy child it is still resolved from its own initialization
    report = lazyfx.infer(nn.Sequential(LazyScale(3)), ("B", 5))
    assert report.lazy["0"].resolution.parameter_shapes == {"scale": (5,), "proj": (3, 5)}
    assert not report.opaque
