"""Python functions marked ``torch.fx.wrap`` (torchvision's Swin helpers, stochastic depth):
torch.fx keeps each as one opaque call, which the meta-kernel fallback would run with sizes
fixed at representative values; lazyfx traces into them instead, so each operation inside
gets its rule and the line of the helper that made it. Where the helper's code cannot be
traced (a branch on tensor values), that attempt is undone and the call is kept whole."""

from __future__ import annotations

import pytest
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

import lazyfx
from dryrun import assert_same_model, dry_run, materialized


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(open(__file__).read().splitlines(), 1) if marker in line)


def pad_to_window(x: torch.Tensor, window: int) -> torch.Tensor:
    T = x.shape[1]
    pad = (window - T % window) % window
    if pad > 0:  # a branch on a size, which torch.fx's proxies cannot follow
        x = F.pad(x, (0, 0, 0, pad))  # <- pad in the helper
    windows = x.view(x.size(0), -1, window, x.size(2))
    return windows.mean(2)[:, : T // window + 1]


torch.fx.wrap("pad_to_window")


def checked_sort(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(torch.Size([x.size(0), -1]))  # torch.Size() takes ints, not traced sizes: kept whole
    return torch.sort(flat, dim=-1).values


torch.fx.wrap("checked_sort")


def skip_empty(x: torch.Tensor) -> torch.Tensor:
    if (x == 0).all():  # a branch on values: neither tracing nor a meta kernel can follow it
        return x
    return x.flip(-1)


torch.fx.wrap("skip_empty")


def reshape_to(x: torch.Tensor, size: int) -> torch.Tensor:
    return x.reshape(x.size(0), size)  # <- reshape in the helper


torch.fx.wrap("reshape_to")


class Windowed(nn.Module):
    def __init__(self, window: int = 4):
        super().__init__()
        self.window = window
        self.embed = nn.LazyLinear(6)
        self.head = nn.LazyLinear(3)

    def forward(self, x):
        return self.head(pad_to_window(self.embed(x), self.window).flatten(1))


class Sorted(nn.Module):
    def __init__(self, on_values: bool = False):
        super().__init__()
        self.on_values = on_values
        self.embed = nn.LazyLinear(6)
        self.head = nn.LazyLinear(3)

    def forward(self, x):
        x = self.embed(x)  # the helpers are looked up as globals, where torch.fx.wrap patches them
        return self.head(skip_empty(x) if self.on_values else checked_sort(x))


def test_a_wrapped_function_is_traced_into_with_its_lines():
    report = lazyfx.infer(Windowed(), ("B", 10, 5))
    assert str(report.output) == "(B, 3)" and not any(n.fallback for n in report.nodes)
    pad = next(n for n in report.nodes if n.target == "F.pad")
    assert pad.location.line == line_of("# <- pad in the helper") and pad.location.function == "pad_to_window"
    assert str(pad.value) == "(B, 12, 6)"
    assert report.lazy["head"].resolution.arguments == {"in_features": 18}
    assert_same_model(dry_run(Windowed, (2, 10, 5)), materialized(Windowed, ("B", 10, 5)))
    # no padding needed: the helper's branch goes the other way, as it does in PyTorch
    assert lazyfx.infer(Windowed(), ("B", 8, 5)).lazy["head"].resolution.arguments == {"in_features": 12}
    assert_same_model(dry_run(Windowed, (2, 8, 5)), materialized(Windowed, ("B", 8, 5)))


def test_a_symbolic_size_in_a_wrapped_function_keeps_its_formula():
    report = lazyfx.infer(Windowed(), ("B", lazyfx.Dim("T", multiple_of=4), 5))
    assert str(next(n for n in report.nodes if n.target == "Tensor.view").value) == "(B, T//4, 4, 6)"
    assert not any(n.fallback for n in report.nodes) and not any(n.target == "F.pad" for n in report.nodes)
    assert str(report.output) == "(B, 3)" and report.lazy["head"].symbols() == ["T"]


def test_a_wrapped_function_that_cannot_be_traced_stays_one_call():
    report = lazyfx.infer(Sorted(), ("B", 5))
    calls = [n for n in report.nodes if n.op == "call_function"]
    assert [n.target for n in calls] == ["test_wrapped_functions.checked_sort"] and calls[0].fallback
    assert [n.name for n in report.nodes] == ["x", "embed", "checked_sort", "head", "output"]  # nothing left over
    assert str(report.output) == "(B, 3)" and report.lazy["head"].materializable
    assert_same_model(dry_run(Sorted, (2, 5)), materialized(Sorted, ("B", 5)))


def test_a_wrapped_function_that_branches_on_values_goes_to_abstract_execution():
    build = lambda: Sorted(on_values=True)  # noqa: E731
    report = lazyfx.infer(build(), ("B", 5))
    assert "" in report.opaque and "(x == 0).all()" in report.opaque[""]
    assert str(report.output) == "(B, 3)"
    assert_same_model(dry_run(build, (2, 5)), materialized(build, ("B", 5)))


def test_a_shape_error_inside_a_wrapped_function_names_its_line():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.LazyLinear(2)

        def forward(self, x):
            return self.head(reshape_to(x, 7))

    with pytest.raises(lazyfx.ShapeError) as info:
        lazyfx.infer(Model(), (2, 3, 4))
    assert info.value.diagnostics[0].location.line == line_of("# <- reshape in the helper")
    assert_same_model(dry_run(Model, (2, 7)), materialized(Model, ("B", 7)))  # a size that fits: accepted


def stochastic_depth(input: torch.Tensor, p: float, mode: str, training: bool = True) -> torch.Tensor:
    """torchvision.ops.stochastic_depth, as torchvision writes it."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ["batch", "row"]:
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device).bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


torch.fx.wrap("stochastic_depth")


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.branch = nn.LazyLinear(6)
        self.head = nn.LazyLinear(2)

    def forward(self, x):
        x = x + stochastic_depth(self.branch(x), 0.2, "row", self.training)
        return self.head(x)


def test_stochastic_depth_is_traced_into():
    report = lazyfx.infer(Residual().eval(), ("B", 6))
    assert not any(n.fallback for n in report.nodes) and not report.opaque
    assert [n.target for n in report.nodes if n.op == "call_function"] == ["operator.add"]  # eval: the input itself
    assert_same_model(dry_run(Residual, (2, 6)), materialized(Residual, ("B", 6)))


def test_stochastic_depth_in_training_mode_draws_as_in_a_dry_run():
    report = lazyfx.infer(Residual().train(), ("B", 6))
    assert "Tensor.bernoulli_" in [n.target for n in report.nodes]  # the helper's own draw, traced
    assert [d.code.code for d in report.diagnostics] == ["LFX025"]  # its count moves with B: not replayable
    torch.manual_seed(0)
    expected = Residual().train()
    expected(torch.zeros(2, 6))
    torch.manual_seed(0)
    actual = lazyfx.materialize(Residual().train(), (2, 6))  # concrete sizes: the draw is replayed
    assert all(torch.equal(a, b) for a, b in zip(expected.state_dict().values(), actual.state_dict().values()))
