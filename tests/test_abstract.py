"""Code torch.fx cannot trace does not stop resolution: such submodules are analysed by
abstract execution on meta tensors, the report says which and why, and the result is
bit-identical to a dry run."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch
import torch.nn as nn

import lazyfx
from dryrun import assert_same_model, dry_run, materialized
from test_errors import snapshot

sys.path.insert(0, str(pathlib.Path(__file__).parent / "data"))
from custom_lazy import LazyScale  # noqa: E402


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(open(__file__).read().splitlines(), 1) if marker in line)


class Sanitize(nn.Module):
    """Branches on tensor values (a warning path), which fx cannot trace."""

    def __init__(self):
        super().__init__()
        self.proj = nn.LazyLinear(6)
        self.scale = LazyScale(5)

    def forward(self, x):
        if torch.isnan(x).any():  # <- value branch
            x = torch.nan_to_num(x)
        return self.scale(torch.relu(self.proj(x)))


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.LazyLinear(8)
        self.clean = Sanitize()
        self.head = nn.Sequential(nn.ReLU(), nn.LazyLinear(3))

    def forward(self, x):
        return self.head(self.clean(self.embed(x)))


def test_traceable_and_untraceable_submodules_fully_resolved():
    report = lazyfx.infer(Mixed(), ("B", "T", 4))
    assert str(report.output) == "(B, T, 3)"
    assert list(report.opaque) == ["clean"]
    assert "control flow on a tensor's values" in report.opaque["clean"]
    assert list(report.lazy) == ["embed", "clean.proj", "clean.scale", "head.1"]
    assert report.lazy["clean.proj"].resolution.arguments == {"in_features": 8}
    assert report.lazy["clean.scale"].resolution.parameter_shapes == {"scale": (6,), "proj": (5, 6)}
    assert "not traced into a graph (analysed by abstract execution on meta tensors):" in str(report)
    assert "Sanitize [abstract execution]" in report.table()


def test_matches_a_dry_run_and_leaves_the_model_alone():
    model = Mixed()
    before = snapshot(model)
    lazyfx.infer(model, ("B", 4))
    assert snapshot(model) == before
    for spec in [(2, 4), ("B", 4), ("B", "T", 4)]:
        assert_same_model(dry_run(Mixed, (2, 3, 4) if len(spec) == 3 else (2, 4)), materialized(Mixed, spec))


class ShapeChanging(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(2)

    def forward(self, x):
        if (x > 0).all():  # <- shape branch
            x = x[:, :2]
        return self.fc(x)


def test_a_value_branch_that_changes_shapes_is_reported():
    with pytest.raises(lazyfx.DataDependentError) as info:
        lazyfx.infer(ShapeChanging(), ("B", 5))
    message = str(info.value)
    assert "which branch a tensor's values select changes the shapes" in message
    assert f"test_abstract.py:{line_of('# <- shape branch')}" in message


class UsesItem(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(2)

    def forward(self, x):
        n = int(x.max().item())  # <- item
        return self.fc(x[:, :n])


def test_a_size_taken_from_tensor_values_is_data_dependent():
    with pytest.raises(lazyfx.DataDependentError, match="item()") as info:
        lazyfx.infer(UsesItem(), ("B", 5))
    assert info.value.code == "LFX022" and info.value.diagnostics[0].location.line == line_of("# <- item")


class PythonHeavy(nn.Module):
    """Untraceable Python at the root (a tensor built from a shape)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        width = int(torch.tensor(x.shape[-1]) // 2)
        return self.fc(x[..., :width])


def test_untraceable_root_with_symbolic_sizes():
    report = lazyfx.infer(PythonHeavy(), ("B", 10))
    assert list(report.opaque) == [""] and str(report.output) == "(B, 3)"
    assert report.lazy["fc"].resolution.arguments == {"in_features": 5}
    symbolic = lazyfx.infer(PythonHeavy(), ("B", "F"))
    assert symbolic.lazy["fc"].symbols() == ["F"]
    with pytest.raises(lazyfx.ResolutionError, match="depends on F"):
        lazyfx.materialize(PythonHeavy(), ("B", "F"))
    assert_same_model(dry_run(PythonHeavy, (2, 10)), materialized(PythonHeavy, ("B", 10)))


def test_inplace_rollback_covers_modules_inside_opaque_ones():
    import types

    model = Mixed()

    def boom(self):
        if self.weight.device.type != "meta":
            raise RuntimeError("boom")

    model.head[1].reset_parameters = types.MethodType(boom, model.head[1])
    before = snapshot(model)
    with pytest.raises(lazyfx.MaterializeError, match="boom"):
        lazyfx.materialize(model, ("B", 4), inplace=True)
    assert snapshot(model) == before
