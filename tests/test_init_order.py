"""Lazy modules initialize in the order a dry run first calls them, whatever order they are
registered in, on every path lazyfx analyses forward by: a traced graph, a lazy module without
a built-in resolver (its own initialization), and abstract execution of code torch.fx cannot
trace. The random number generator is then consumed as in the dry run: bit-identical values."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

import lazyfx
from dryrun import assert_same_model, dry_run, materialized

sys.path.insert(0, str(pathlib.Path(__file__).parent / "data"))
from custom_lazy import LazyScale, PygLinear  # noqa: E402


class CalledInReverse(nn.Module):
    """Registered head first, called last (as attention registers k_proj, v_proj, q_proj and
    calls q_proj first); ``untraceable`` adds a branch on tensor values."""

    def __init__(self, untraceable: bool = False):
        super().__init__()
        self.untraceable = untraceable
        self.head = nn.LazyLinear(3)
        self.scale = LazyScale(6)  # a user's lazy layer: its own initialization
        self.graph = PygLinear(-1, 5)  # a third-party lazy layer: its pre-hook initializes it
        self.stem = nn.LazyLinear(8)

    def forward(self, x):
        if self.untraceable and torch.isnan(x).any():
            x = torch.nan_to_num(x)
        return self.head(self.graph(self.scale(self.stem(x))))


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(open(__file__).read().splitlines(), 1) if marker in line)


FIRST_CALLS = ["stem", "scale", "graph", "head"]


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
def test_lazy_modules_initialize_in_first_call_order(untraceable):
    report = lazyfx.infer(CalledInReverse(untraceable), ("B", 4))
    assert list(report.opaque) == ([""] if untraceable else [])
    assert list(report.lazy) == FIRST_CALLS
    build = lambda: CalledInReverse(untraceable)  # noqa: E731
    assert_same_model(dry_run(build, (2, 4)), materialized(build, ("B", 4)))


class Shared(nn.Module):
    """One lazy module called twice, around another: the first call decides its place."""

    def __init__(self, untraceable: bool = False):
        super().__init__()
        self.untraceable = untraceable
        self.mid = nn.LazyLinear(4)
        self.shared = nn.LazyLinear(4)

    def forward(self, x):
        if self.untraceable and torch.isnan(x).any():
            x = torch.nan_to_num(x)
        return self.shared(self.mid(self.shared(x)))


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
def test_a_module_called_twice_initializes_at_its_first_call(untraceable):
    report = lazyfx.infer(Shared(untraceable), ("B", 4))
    assert list(report.lazy) == ["shared", "mid"]
    build = lambda: Shared(untraceable)  # noqa: E731
    assert_same_model(dry_run(build, (2, 4)), materialized(build, ("B", 4)))


class Nested(nn.Module):
    """First calls inside an untraceable block, between traced ones."""

    def __init__(self):
        super().__init__()
        self.inner = CalledInReverse(untraceable=True)
        self.after = nn.LazyLinear(2)
        self.before = nn.LazyLinear(4)

    def forward(self, x):
        return self.after(self.inner(self.before(x)))


def test_first_calls_inside_an_untraceable_block_keep_their_place():
    report = lazyfx.infer(Nested(), ("B", 4))
    assert list(report.opaque) == ["inner"]
    assert list(report.lazy) == ["before", *(f"inner.{p}" for p in FIRST_CALLS), "after"]
    assert_same_model(dry_run(Nested, (2, 4)), materialized(Nested, ("B", 4)))


class OrderByValue(nn.Module):
    """Which lazy module a dry run initializes first depends on the input's values."""

    def __init__(self):
        super().__init__()
        self.a = nn.LazyLinear(4)
        self.b = nn.LazyLinear(4)

    def forward(self, x):
        if (x > 0).any():
            return self.b(x) + self.a(x)
        return self.a(x) + self.b(x)


def test_a_first_call_order_that_depends_on_values_is_refused():
    with pytest.raises(lazyfx.DataDependentError, match=r"changes the order in which its lazy modules are first "
                                                        r"called .*test_init_order\.py:\d+"):
        lazyfx.materialize(OrderByValue(), ("B", 4))


class SameOrderByValue(OrderByValue):
    def forward(self, x):
        if (x > 0).any():
            return self.a(x) * self.b(x)
        return self.a(x) + self.b(x)


def test_a_value_branch_that_keeps_the_first_call_order_is_accepted():
    assert_same_model(dry_run(SameOrderByValue, (2, 4)), materialized(SameOrderByValue, ("B", 4)))


# -- random draws in forward before a first call ---------------------------------------------------


class DrawsBetween(nn.Module):
    """Draws random numbers between the first calls of two lazy modules, as ``kind`` says."""

    def __init__(self, kind: str, untraceable: bool = False):
        super().__init__()
        self.kind, self.untraceable = kind, untraceable
        self.first = nn.LazyLinear(4)
        self.drop = nn.Dropout(0.5)
        self.second = nn.LazyLinear(3)

    def forward(self, x):
        if self.untraceable and torch.isnan(x).any():
            x = torch.nan_to_num(x)
        x = self.first(x)
        if self.kind == "dropout module":
            x = self.drop(x)  # <- dropout module
        elif self.kind == "F.dropout":
            x = F.dropout(x, 0.5)  # <- F.dropout (training defaults to True)
        elif self.kind == "F.dropout(training=self.training)":
            x = F.dropout(x, 0.5, training=self.training)  # <- F.dropout, training mode only
        elif self.kind == "noise":
            x = x + 0.1 * torch.randn_like(x)  # <- noise
        out = self.second(x)
        return self.drop(out)  # after the last first call: draws nothing a dry run's values see


DRAWS = {  # kind -> (training, the line's marker)
    "dropout module": (True, "<- dropout module"),
    "F.dropout": (False, "<- F.dropout (training"),
    "F.dropout(training=self.training)": (True, "<- F.dropout, training mode only"),
    "noise": (False, "<- noise"),
}


def dry_run_as_is(build, *shapes):
    """A seeded dry run in the mode the model is built in (training mode draws for dropout)."""
    torch.manual_seed(0)
    model = build()
    with torch.no_grad():
        model(*(torch.zeros(shape) for shape in shapes))
    return model


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
@pytest.mark.parametrize("kind", list(DRAWS))
def test_random_draws_before_a_first_call_are_replayed_as_in_a_dry_run(kind, untraceable):
    training, _ = DRAWS[kind]
    build = lambda: DrawsBetween(kind, untraceable).train(training)  # noqa: E731
    dry = dry_run_as_is(build, (2, 4))
    torch.manual_seed(0)
    registration = lazyfx.materialize(build(), (2, 4), init_order="registration")
    assert not torch.equal(registration.second.weight, dry.second.weight)  # the draws do move the values
    report = lazyfx.infer(build(), (2, 4))
    assert [len(r.draws_before) for r in report.lazy.values()] == [0, 1]
    assert not report.diagnostics
    torch.manual_seed(0)
    assert_same_model(dry, lazyfx.materialize(build(), (2, 4)))


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
@pytest.mark.parametrize("kind", list(DRAWS))
def test_random_draws_whose_count_depends_on_a_symbol_are_named(kind, untraceable):
    training, marker = DRAWS[kind]
    model = DrawsBetween(kind, untraceable).train(training)
    report = lazyfx.infer(model, ("B", 4))
    (warning,) = [d for d in report.diagnostics if d.code.code == "LFX025"]
    assert f"test_init_order.py:{line_of(marker)}:" in str(warning)
    assert "before it first calls the lazy module 'second'" in str(warning)
    assert "depends on B: give concrete sizes" in str(warning)
    with pytest.raises(lazyfx.ResolutionError, match="LFX025"):
        lazyfx.materialize(model, ("B", 4))
    eager = lazyfx.materialize(model, ("B", 4), init_order="registration")  # does not depend on forward
    assert eager.second.in_features == 4


class ValueDependentDraws(nn.Module):
    """RReLU in training mode draws for the negative inputs only: how many depends on values."""

    def __init__(self, untraceable: bool = False):
        super().__init__()
        self.untraceable = untraceable
        self.first = nn.LazyLinear(4)
        self.act = nn.RReLU()
        self.second = nn.LazyLinear(3)

    def forward(self, x):
        if self.untraceable and torch.isnan(x).any():
            x = torch.nan_to_num(x)
        return self.second(self.act(self.first(x)))


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
def test_random_draws_whose_count_depends_on_values_are_named(untraceable):
    model = ValueDependentDraws(untraceable).train()
    with pytest.raises(lazyfx.ResolutionError, match="LFX025 .* depends on tensor values"):
        lazyfx.materialize(model, (2, 4))
    build = lambda: ValueDependentDraws(untraceable).eval()  # noqa: E731  (eval mode: no draws)
    assert_same_model(dry_run(build, (2, 4)), materialized(build, (2, 4)))


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
@pytest.mark.parametrize("kind", ["dropout module", "F.dropout(training=self.training)", "none"])
def test_no_draws_before_a_first_call_in_eval_mode_match_a_dry_run(kind, untraceable):
    build = lambda: DrawsBetween(kind, untraceable)  # noqa: E731  (dry_run puts it in eval mode)
    report = lazyfx.infer(build().eval(), ("B", 4))
    assert not report.diagnostics and not any(r.draws_before for r in report.lazy.values())
    assert_same_model(dry_run(build, (2, 4)), materialized(build, ("B", 4)))


def test_dropout_after_the_last_first_call_in_training_mode_matches_a_dry_run():
    build = lambda: DrawsBetween("none").train()  # noqa: E731
    report = lazyfx.infer(build(), ("B", 4))  # a symbolic batch: nothing to replay
    assert not report.diagnostics and not any(r.draws_before for r in report.lazy.values())
    dry = dry_run_as_is(build, (2, 4))
    torch.manual_seed(0)
    assert_same_model(dry, lazyfx.materialize(build(), ("B", 4)))


class DropoutInsideALayer(nn.Module):
    """Dropout inside a layer lazyfx computes by its shape rule, between two first calls."""

    def __init__(self, layer: str):
        super().__init__()
        self.first = nn.LazyLinear(8)
        self.layer = layer
        if layer == "attention":
            self.inner = nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True)
        else:
            self.inner = nn.LSTM(8, 8, num_layers=2, dropout=0.1, batch_first=True)
        self.second = nn.LazyLinear(3)

    def forward(self, x):
        x = self.first(x)
        x = self.inner(x, x, x)[0] if self.layer == "attention" else self.inner(x)[0]
        return self.second(x)


@pytest.mark.parametrize("layer", ["attention", "lstm"])
def test_dropout_inside_a_layer_in_training_mode_is_named(layer):
    model = DropoutInsideALayer(layer).train()
    with pytest.raises(lazyfx.ResolutionError, match=r"LFX025 .*\('inner': \w+\(dropout=0\.1\) in training mode\).*"
                                                     r"it runs inside a layer that lazyfx does not run"):
        lazyfx.materialize(model, (2, 5, 4))
    build = lambda: DropoutInsideALayer(layer)  # noqa: E731  (eval mode: no dropout)
    assert_same_model(dry_run(build, (2, 5, 4)), materialized(build, ("B", "T", 4)))


# -- every kind of draw lazyfx replays draws what the dry run draws ---------------------------------
# A draw of forward's, on the (2, 5) input, between the first calls of two lazy modules: as a graph
# node (its sizes come from the traced input) or, with only concrete arguments, run for real while
# forward is traced (no node: found by the generator moving).
REPLAYED_DRAWS = {
    "randn_like": lambda x: x + torch.randn_like(x),
    "rand_like": lambda x: x + torch.rand_like(x),
    "randint_like": lambda x: x + torch.randint_like(x, 3),
    "rand(x.shape[0], 1)": lambda x: x * (torch.rand(x.shape[0], 1) > 0.5),
    "randn(x.shape)": lambda x: x + torch.randn(x.shape),
    "randint(size from x)": lambda x: x + torch.randint(0, 3, (x.size(0), 1)),
    "randperm(x.size(0))": lambda x: x[torch.randperm(x.size(0))],
    ".normal_()": lambda x: x + torch.empty_like(x).normal_(),
    ".uniform_()": lambda x: x + torch.empty_like(x).uniform_(-1, 1),
    ".bernoulli_()": lambda x: x * torch.empty_like(x).bernoulli_(0.3),
    ".exponential_()": lambda x: x + torch.empty_like(x).exponential_(),
    ".cauchy_()": lambda x: x + torch.empty_like(x).cauchy_(),
    ".log_normal_()": lambda x: x + torch.empty_like(x).log_normal_(),
    ".geometric_()": lambda x: x + torch.empty_like(x).geometric_(0.5),
    ".random_()": lambda x: x + torch.empty_like(x).random_(0, 4),
    "bernoulli(full_like)": lambda x: x * torch.bernoulli(torch.full_like(x, 0.3)),
    "F.dropout": lambda x: F.dropout(x, 0.5),
    "F.dropout1d": lambda x: F.dropout1d(x, 0.5),
    "F.alpha_dropout": lambda x: F.alpha_dropout(x, 0.5, training=True),
    "F.feature_alpha_dropout": lambda x: F.feature_alpha_dropout(x, 0.5, training=True),
    "torch.dropout": lambda x: torch.dropout(x, 0.5, True),
    "F.gumbel_softmax": lambda x: F.gumbel_softmax(x),
    # only concrete arguments: run for real during the trace
    "randn(2, 5)": lambda x: x + torch.randn(2, 5),
    "randperm(2)": lambda x: x[torch.randperm(2)],
    "randint(0, 3, (2, 1))": lambda x: x + torch.randint(0, 3, (2, 1)),
    "bernoulli(full)": lambda x: x * torch.bernoulli(torch.full((2, 5), 0.3)),
    "multinomial(ones)": lambda x: x + torch.multinomial(torch.ones(2, 3), 2).sum(),
    "normal(zeros, 1)": lambda x: x + torch.normal(torch.zeros(2, 5), 1.0),
    "poisson(ones)": lambda x: x + torch.poisson(torch.ones(2, 5)),
    "empty(2, 5).normal_()": lambda x: x + torch.empty(2, 5).normal_(),
    "rand_like(ones)": lambda x: x + torch.rand_like(torch.ones(2, 5)),
    "F.dropout(ones)": lambda x: x + F.dropout(torch.ones(2, 5), 0.5),
}


class DrawBetween(nn.Module):
    def __init__(self, kind: str, untraceable: bool = False):
        super().__init__()
        self.kind, self.untraceable = kind, untraceable
        self.first = nn.LazyLinear(4)
        self.second = nn.LazyLinear(3)

    def forward(self, x):
        if self.untraceable and torch.isnan(x).any():
            x = torch.nan_to_num(x)
        h = self.first(x)
        return self.second(REPLAYED_DRAWS[self.kind](x)).sum() + h.sum()


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
@pytest.mark.parametrize("kind", list(REPLAYED_DRAWS))
def test_a_replayed_draw_moves_the_generator_as_the_draw_itself(kind, untraceable):
    build = lambda: DrawBetween(kind, untraceable)  # noqa: E731
    if untraceable and kind in ("multinomial(ones)", "poisson(ones)"):  # on meta: no values to draw from
        with pytest.raises(lazyfx.ResolutionError, match="LFX025 .* depends on tensor values"):
            lazyfx.materialize(build().eval(), (2, 5))
        return
    (draw,) = lazyfx.infer(build().eval(), (2, 5)).lazy["second"].draws_before
    torch.manual_seed(0)
    REPLAYED_DRAWS[kind](torch.zeros(2, 5))
    drawn = torch.get_rng_state()
    torch.manual_seed(0)
    draw.replay(None)
    assert torch.equal(torch.get_rng_state(), drawn)
    dry = dry_run(build, (2, 5))
    assert_same_model(dry, materialized(build, (2, 5)))
    torch.manual_seed(0)
    assert not torch.equal(lazyfx.materialize(build().eval(), (2, 5), init_order="registration").second.weight,
                           dry.second.weight)  # the draw does move the values


@pytest.mark.parametrize("kind", ["randn(x.shape)", "randperm(x.size(0))", "F.dropout", "randint(size from x)"])
def test_a_draw_whose_size_follows_a_symbol_is_refused(kind):
    with pytest.raises(lazyfx.ResolutionError, match="LFX025 .*'second'.* which depends on B"):
        lazyfx.materialize(DrawBetween(kind).eval(), ("B", 5))
    # counterpart: with only concrete arguments, a symbolic batch does not change what is drawn
    build = lambda: DrawBetween("randn(2, 5)")  # noqa: E731
    assert_same_model(dry_run(build, (2, 5)), materialized(build, ("B", 5)))


def rows_dropped(x, p: float):
    return x * (torch.rand(x.shape[0], 1) > p)  # a per-sample mask (stochastic depth)


torch.fx.wrap("rows_dropped")


class DrawInAWrappedFunction(nn.Module):
    def __init__(self, draws: bool = True):
        super().__init__()
        self.draws = draws
        self.first = nn.LazyLinear(4)

    def forward(self, x):
        return self.first(rows_dropped(x, 0.5) if self.draws else x)  # <- wrapped draw


@pytest.mark.parametrize("spec", [(2, 3), ("B", 3)], ids=["concrete", "symbolic"])
def test_a_draw_inside_a_wrapped_function_is_refused(spec):
    with pytest.raises(lazyfx.ResolutionError, match=r"LFX025 .*\(rand in rows_dropped\) before it first calls the "
                                                     r"lazy module 'first'.* does not run"):
        lazyfx.materialize(DrawInAWrappedFunction(), spec)
    warning = lazyfx.infer(DrawInAWrappedFunction(), spec).diagnostics[0]
    assert f"test_init_order.py:{line_of('<- wrapped draw')}:" in str(warning)
    build = lambda: DrawInAWrappedFunction(draws=False)  # noqa: E731
    assert_same_model(dry_run(build, (2, 3)), materialized(build, spec))


class PrivateGenerator(nn.Module):
    def __init__(self, private: bool, untraceable: bool = False):
        super().__init__()
        self.private, self.untraceable = private, untraceable
        self.first = nn.LazyLinear(3)

    def forward(self, x):
        if self.untraceable and torch.isnan(x).any():
            x = torch.nan_to_num(x)
        generator = torch.Generator().manual_seed(1) if self.private else None
        return self.first(x + torch.randn(x.shape, generator=generator))


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "abstract"])
@pytest.mark.parametrize("spec", [(2, 5), ("B", 5)], ids=["concrete", "symbolic"])
def test_a_draw_from_a_private_generator_does_not_move_the_values(spec, untraceable):
    build = lambda: PrivateGenerator(private=True, untraceable=untraceable)  # noqa: E731
    report = lazyfx.infer(build().eval(), spec)
    assert not report.diagnostics and not report.lazy["first"].draws_before  # nothing to replay
    assert_same_model(dry_run(build, (2, 5)), materialized(build, spec))
    global_draw = lambda: PrivateGenerator(private=False, untraceable=untraceable)  # noqa: E731  (global: it does)
    if spec == ("B", 5):
        with pytest.raises(lazyfx.ResolutionError, match="LFX025"):
            lazyfx.materialize(global_draw().eval(), spec)
    else:
        assert_same_model(dry_run(global_draw, (2, 5)), materialized(global_draw, spec))


class FactoryDrawUntraceable(nn.Module):
    """Abstract execution runs forward with meta as the default device: a factory that names no
    device draws, in a dry run, on the default device (the CPU) whatever the target device."""

    def __init__(self, device_given: bool):
        super().__init__()
        self.device_given = device_given
        self.first = nn.LazyLinear(4)
        self.second = nn.LazyLinear(3)

    def forward(self, x):
        if torch.isnan(x).any():
            x = torch.nan_to_num(x)
        h = self.first(x)
        noise = torch.randn(2, 4, device=x.device) if self.device_given else torch.randn(2, 4)
        return self.second(h + noise)


@pytest.mark.parametrize("device_given", [False, True], ids=["default-device", "device=x.device"])
def test_a_factory_draw_under_abstract_execution_is_replayed_on_the_dry_run_s_device(device_given):
    build = lambda: FactoryDrawUntraceable(device_given)  # noqa: E731
    report = lazyfx.infer(build().eval(), (2, 5))
    assert "" in report.opaque
    (draw,) = report.lazy["second"].draws_before
    torch.manual_seed(0)
    before = torch.get_rng_state()
    torch.randn(2, 4)
    drawn = torch.get_rng_state()
    torch.manual_seed(0)
    draw.replay(torch.device("meta"))  # a dry run on meta: only the factory without a device draws on the CPU
    assert torch.equal(torch.get_rng_state(), before if device_given else drawn)
    assert_same_model(dry_run(build, (2, 5)), materialized(build, (2, 5)))


class DrawFirstFromADict(nn.Module):
    """The draw comes first in forward, after the unpacking of the input dict, whose unused
    entries the trace erases afterwards: the draw keeps its place."""

    def __init__(self):
        super().__init__()
        self.first = nn.LazyLinear(4)

    def forward(self, batch: dict):
        noise = torch.randn(2, 5)
        return self.first(batch["x"] + noise)


@pytest.mark.parametrize("entries", [{"x": (2, 5)}, {"x": (2, 5), "unused": (3,)}], ids=["used", "one-unused"])
def test_a_real_draw_after_an_erased_unpacking_keeps_its_place(entries):
    torch.manual_seed(0)
    dry = DrawFirstFromADict().eval()
    with torch.no_grad():
        dry({name: torch.zeros(shape) for name, shape in entries.items()})
    torch.manual_seed(0)
    assert_same_model(dry, lazyfx.materialize(DrawFirstFromADict().eval(), batch=entries))


class TrainingModeHead(nn.Module):
    """Batch norm and dropout before a lazy head, materialized in training mode."""

    def __init__(self):
        super().__init__()
        self.stem = nn.LazyLinear(6)
        self.norm = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.5)
        self.head = nn.LazyLinear(3)

    def forward(self, x):
        return self.head(self.drop(self.norm(self.stem(x))))


def test_in_training_mode_the_parameters_are_a_dry_run_s_and_the_batch_norm_statistics_as_initialized():
    """docs/models.md: a training-mode dry run updates the running statistics from its batch;
    lazyfx runs nothing on data, so it gives every parameter, and the statistics as initialized."""
    dry = dry_run_as_is(lambda: TrainingModeHead().train(), (4, 5))
    torch.manual_seed(0)
    eager = lazyfx.materialize(TrainingModeHead().train(), (4, 5))
    for name, parameter in dry.named_parameters():
        assert torch.equal(parameter, dict(eager.named_parameters())[name]), name
    fresh = nn.BatchNorm1d(6)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(eager.norm, name), getattr(fresh, name)), name
    assert int(dry.norm.num_batches_tracked) == 1  # what the dry run changed, and lazyfx does not
