"""Tensors the model holds, read by forward: buffers and constant tensors indexed by traced
sizes, and the known attributes of a lazy parameter that is not initialized yet."""

import json
import math

import pytest
import torch
import torch.nn as nn

import lazyfx
from dryrun import assert_same_model, dry_run, materialized
from lazyfx.core.symbolic import substitute


class PositionalEncoding(nn.Module):
    """PyTorch's transformer tutorial (``pe`` is a buffer, sliced by the sequence length)."""

    def __init__(self, d_model: int = 16, max_len: int = 5000):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(position * div_term)
        pe[:, 0, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.LazyLinear(4)

    def forward(self, x):
        x = x + self.pe[: x.size(0)]
        return self.head(self.dropout(x))


class TableEncoding(nn.Module):
    """d2l.ai's PositionalEncoding: ``P`` is a plain tensor attribute, not a buffer."""

    def __init__(self, num_hiddens: int = 16, max_len: int = 1000):
        super().__init__()
        self.P = torch.zeros((1, max_len, num_hiddens))
        X = torch.arange(max_len, dtype=torch.float32).reshape(-1, 1) / torch.pow(
            10000, torch.arange(0, num_hiddens, 2, dtype=torch.float32) / num_hiddens)
        self.P[:, :, 0::2] = torch.sin(X)
        self.P[:, :, 1::2] = torch.cos(X)
        self.head = nn.LazyLinear(3)

    def forward(self, X):
        X = X + self.P[:, : X.shape[1], :].to(X.device)
        return self.head(X)


def test_a_buffer_sliced_by_a_traced_size_has_a_symbolic_shape():
    report = lazyfx.infer(PositionalEncoding().eval(), ("T", "B", 16))
    assert str(report.output) == "(T, B, 4)"
    assert report.domain.contains(T=5000, B=2) and not report.domain.contains(T=5001, B=2)
    [getitem] = [n for n in report.nodes if n.target == "operator.getitem"]
    assert str(getitem.value) == "(min(5000, T), 1, 16)"
    expected = dry_run(PositionalEncoding, (7, 2, 16)).eval()
    actual = materialized(PositionalEncoding, ("T", "B", 16))
    assert_same_model(expected, actual)
    x = torch.randn(7, 2, 16)
    assert torch.equal(actual.eval()(x), expected(x))


def test_the_declared_sizes_are_checked_against_the_buffer():
    fits = lazyfx.infer(PositionalEncoding().eval(), (lazyfx.Dim("T", max=5000), "B", 16))
    assert fits.diagnostics == []
    too_long = lazyfx.infer(PositionalEncoding().eval(), (lazyfx.Dim("T", max=6000), "B", 16))
    [finding] = [d for d in too_long.diagnostics if d.code.code == "LFX031"]
    assert finding.message.startswith("the declared input size T=5001 fails")
    with pytest.raises(RuntimeError, match="must match the size"):
        PositionalEncoding()(torch.zeros(5001, 1, 16))


def test_a_constant_tensor_attribute_sliced_by_a_traced_size():
    report = lazyfx.infer(TableEncoding(), ("B", "T", 16))
    assert str(report.output) == "(B, T, 3)"
    assert report.domain.contains(B=2, T=1000) and not report.domain.contains(B=2, T=1001)
    model = TableEncoding()
    lazyfx.infer(model, ("B", "T", 16))
    assert not hasattr(model, "_tensor_constant0")  # torch.fx's stowed constant is removed again
    assert_same_model(dry_run(TableEncoding, (2, 9, 16)), materialized(TableEncoding, ("B", "T", 16)))


def test_a_table_indexed_by_a_traced_index_tensor():
    class Lookup(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("table", torch.randn(50, 8))
            self.head = nn.LazyLinear(2)

        def forward(self, ids):
            return self.head(self.table[ids])

    report = lazyfx.infer(Lookup(), "B,T:int64")
    assert str(report.output) == "(B, T, 2)"
    ids = torch.zeros(3, 5, dtype=torch.int64)
    assert_same_model(dry_run(Lookup, (3, 5), dtype=torch.int64), materialized(Lookup, "B,T:int64"))
    assert Lookup()(ids).shape == (3, 5, 2)


class SlicedFromTheEnd(nn.Module):
    """A buffer sliced by a negative traced size: ``pe[-T:]`` (the last T rows) or ``pe[:-T]``."""

    def __init__(self, last: bool):
        super().__init__()
        self.last = last
        self.register_buffer("pe", torch.randn(50, 1, 16))
        self.proj = nn.LazyLinear(4)

    def forward(self, x):
        T = x.size(0)
        return self.proj(x + (self.pe[-T:] if self.last else self.pe[:-T]))


def _torch_accepts(build, shape) -> bool:
    try:
        build()(torch.zeros(shape))
    except RuntimeError:
        return False
    return True


def test_a_buffer_sliced_by_a_negative_traced_size_counts_from_the_end():
    last = lambda: SlicedFromTheEnd(last=True).eval()  # noqa: E731
    report = lazyfx.infer(last(), ("T", 2, 16))
    assert str(report.output) == "(T, 2, 4)"
    for T in (1, 7, 50, 51):
        assert report.domain.contains(T=T) == _torch_accepts(last, (T, 2, 16)) == (T <= 50)
    expected = dry_run(last, (7, 2, 16))
    actual = materialized(last, ("T", 2, 16))
    assert_same_model(expected, actual)
    x = torch.randn(7, 2, 16)
    assert torch.equal(actual(x), expected(x))


def test_a_buffer_without_its_last_traced_size_rows():
    drop = lambda: SlicedFromTheEnd(last=False).eval()  # noqa: E731
    report = lazyfx.infer(drop(), ("T", 2, 16))
    [getitem] = [n for n in report.nodes if n.target == "operator.getitem"]
    assert str(getitem.value) == "(max(0, 50 - T), 1, 16)"
    # x (T, 2, 16) + (50 - T, 1, 16): equal sizes at T = 25; T = 1 and T = 49 broadcast, which
    # lazyfx assumes away (and says so)
    assert [T for T in (2, 7, 25, 26, 48) if report.domain.contains(T=T)] == [25]
    assert [T for T in (2, 7, 25, 26, 48) if _torch_accepts(drop, (T, 2, 16))] == [25]
    assert [c.message for c in report.domain.assumptions] == ["T != 1 (broadcasting)",
                                                              "max(0, 50 - T) != 1 (broadcasting)"]
    assert drop()(torch.zeros(1, 2, 16)).shape == (49, 2, 4)  # the cases the assumptions set aside
    assert drop()(torch.zeros(49, 2, 16)).shape == (49, 2, 4)
    assert_same_model(dry_run(drop, (25, 2, 16)), materialized(drop, ("T", 2, 16)))


def test_a_slice_bound_of_unknown_sign_is_an_assumption():
    class Tail(nn.Module):
        def forward(self, x):
            return x[x.size(0) - 3:]

    report = lazyfx.infer(Tail(), ("T", 4))
    assert [c.message for c in report.domain.assumptions] == ["T - 3 >= 0 (a slice bound that counts from the start)"]
    assert str(report.output) == "(3, 4)"
    for T in (3, 4, 9):
        assert Tail()(torch.zeros(T, 4)).shape == (3, 4)
    assert Tail()(torch.zeros(2, 4)).shape == (1, 4)  # -1 counts from the end: outside the assumption


def test_a_slice_bound_never_positive_counts_from_the_end_except_at_zero():
    class LastHalf(nn.Module):
        def forward(self, x):
            return x[-(x.size(0) // 2):]  # -(T // 2) is 0 at T = 1: the whole tensor there

    report = lazyfx.infer(LastHalf(), ("T", 4))
    assert [c.message for c in report.domain.assumptions] == ["-(T//2) < 0 (a slice bound that counts from the end)"]
    rows = report.output.shape[0]
    for T in (2, 3, 10, 17):
        assert LastHalf()(torch.zeros(T, 4)).shape == (substitute(rows, {"T": T}), 4)
    # outside the assumption (T = 1) PyTorch keeps the one row, which the formula does not say
    assert LastHalf()(torch.zeros(1, 4)).shape == (1, 4) and substitute(rows, {"T": 1}) == 0


class LearnedPositions(nn.Module):
    """GPT's learned positions: ``wpe(arange(T))`` with a table of 10 positions."""

    def __init__(self):
        super().__init__()
        self.wpe = nn.Embedding(10, 6)
        self.head = nn.LazyLinear(3)

    def forward(self, x):
        pos = torch.arange(0, x.size(1), dtype=torch.long, device=x.device).unsqueeze(0)
        return self.head(x + self.wpe(pos))


def test_positions_from_arange_must_fit_the_embedding_table():
    report = lazyfx.infer(LearnedPositions().eval(), ("B", "T", 6))
    assert str(report.domain) == "T <= 10"
    with pytest.raises(IndexError):
        LearnedPositions()(torch.zeros(2, 11, 6))
    with pytest.raises(lazyfx.ShapeError, match="the table has 10 rows, but the indices go from 0 to 10"):
        lazyfx.infer(LearnedPositions().eval(), (2, 11, 6))
    expected = dry_run(LearnedPositions, (2, 10, 6))
    actual = materialized(LearnedPositions, (2, 10, 6))
    assert_same_model(expected, actual)
    x = torch.randn(2, 10, 6)
    assert torch.equal(actual(x), expected(x))


def test_indices_whose_values_are_not_known_stay_unchecked():
    class Shifted(LearnedPositions):
        def forward(self, x):  # the values of arange(T) + 1 are not followed: no bound is made up
            return self.head(x + self.wpe(torch.arange(x.size(1)) + 1))

    report = lazyfx.infer(Shifted().eval(), ("B", "T", 6))
    assert str(report.domain) == "all positive sizes"
    assert Shifted()(torch.zeros(1, 9, 6)).shape == (1, 9, 3)


def test_a_traced_size_as_a_python_number_is_still_undecided():
    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("pe", torch.zeros(100, 16))

        def forward(self, x):
            return sum(self.pe[i] for i in range(x.size(0))) + x

    with pytest.raises(lazyfx.UndecidedConditionError, match="LFX011 forward needs a concrete number"):
        lazyfx.infer(Loop(), ("T", 16))
    assert str(lazyfx.infer(Loop(), (3, 16)).output) == "(3, 16)"


class CastFirst(nn.Module):
    """Casts its input to the projection's dtype before the projection's first call."""

    def __init__(self):
        super().__init__()
        self.proj = nn.LazyLinear(4)

    def forward(self, x):
        weight = self.proj.weight
        if weight.requires_grad and weight.is_floating_point():
            x = x.to(weight.dtype)
        y = self.proj(x)
        return y + self.proj.weight.sum()  # after the call the weight has its shape


def test_the_dtype_of_an_uninitialized_parameter_is_known():
    report = lazyfx.infer(CastFirst(), "B,F:int64")
    assert str(report.output) == "(B, 4)"
    assert report.lazy["proj"].resolution.arguments == {"in_features": report.inputs["x"].shape[1]}
    concrete = lazyfx.infer(CastFirst(), "B,5:int64")
    assert [str(n.value) for n in concrete.nodes if n.name.startswith("proj_weight")] == [
        "uninitialized float32", "(4, 5)"]
    assert_same_model(dry_run(CastFirst, (2, 5), dtype=torch.int64), materialized(CastFirst, "B,5:int64"))
    [before, after] = [n for n in json.loads(concrete.to_json())["nodes"] if n["name"].startswith("proj_weight")]
    assert before["output"] == {"shape": None, "dtype": "float32"}
    assert after["output"] == {"shape": [4, 5], "dtype": "float32"}


def test_the_shape_of_an_uninitialized_parameter_is_still_unknown():
    class ShapeFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.LazyLinear(4)

        def forward(self, x):
            return self.proj(x[..., : self.proj.weight.shape[1]])

    with pytest.raises(lazyfx.UnsupportedOpError, match="LFX020 forward reads the uninitialized lazy tensor "
                       "self.proj.weight before self.proj is called: its dtype is known, but its shape"):
        lazyfx.infer(ShapeFirst(), ("B", 5))
    with pytest.raises(RuntimeError, match="Can't access the shape of an uninitialized parameter"):
        ShapeFirst()(torch.zeros(2, 5))


def test_an_uninitialized_parameter_in_an_operation_is_refused():
    class MatmulFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.LazyLinear(4)

        def forward(self, x):
            return self.proj(x @ self.proj.weight.T)

    with pytest.raises(lazyfx.UnsupportedOpError, match="LFX020 forward reads the uninitialized lazy tensor"):
        lazyfx.infer(MatmulFirst(), ("B", 5))
    with pytest.raises(RuntimeError):  # PyTorch fails too (the uninitialized weight has no data)
        MatmulFirst()(torch.zeros(2, 5))


class TiedScales(nn.Module):
    """Two blocks share one parameter (tied weights); forward reads it through the second."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Module(), nn.Module()
        self.first.scale = nn.Parameter(torch.ones(8))
        self.second.scale = self.first.scale
        self.proj = nn.LazyLinear(4)

    def forward(self, x):
        x = x * self.second.scale + self.first.scale  # one parameter, read twice: one node
        return self.proj(x) * self.proj.bias + self.proj.bias


def _read_parameters(report) -> list[tuple[str, str]]:
    return [(n.target, str(n.value)) for n in report.nodes if n.op == "get_attr"]


def test_a_parameter_read_in_forward_is_named_as_torch_fx_names_it():
    report = lazyfx.infer(TiedScales(), ("B", 8))
    eager = TiedScales()
    eager(torch.zeros(2, 8))  # initialized, so that torch.fx can trace it
    traced = torch.fx.symbolic_trace(eager)
    # torch.fx reads each parameter once; lazyfx reads a lazy one anew at each read (its shape
    # changes at its module's first call), under the same name
    assert [f"self.{n.target}" for n in traced.graph.nodes if n.op == "get_attr"] == [
        "self.first.scale", "self.proj.bias"]
    assert _read_parameters(report) == [("self.first.scale", "(8,)"), ("self.proj.bias", "(4,)"),
                                        ("self.proj.bias", "(4,)")]


def test_a_parameter_forward_replaces_is_read_as_it_is_then():
    class Replaced(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(8))
            self.proj = nn.LazyLinear(4)

        def forward(self, x):
            x = x * self.scale
            self.scale = nn.Parameter(torch.ones(4))  # (a forward that rebinds its own parameter)
            return self.proj(x) * self.scale

    model = Replaced()
    original = model.scale
    report = lazyfx.infer(model, ("B", 8))
    assert _read_parameters(report) == [("self.scale", "(8,)"), ("self.scale", "(4,)")]
    assert str(report.output) == "(B, 4)"
    assert model.scale is original and model.scale.shape == (8,)  # put back after the analysis
