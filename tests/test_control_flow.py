"""Shape-dependent Python control flow in forward: decided from the symbolic sizes and the
spec's constraints (and recorded in the report), or reported with the condition as a
formula, the user's line and the symbols to pin."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import lazyfx
from dryrun import assert_same_model, dry_run, materialized


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(open(__file__).read().splitlines(), 1) if marker in line)


class Flexible(nn.Module):
    """Accepts batched and unbatched images; checks channels; loops over channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(8, 3, padding=1)
        self.head = nn.LazyLinear(4)
        self.channels = 3

    def forward(self, x):
        if x.dim() == 3:  # <- rank
            x = x.unsqueeze(0)
        assert x.size(1) == self.channels, "expected RGB"  # <- assert
        if x.shape[-1] != x.shape[-2]:  # <- square
            x = x[..., : x.shape[-2]]
        y = self.conv(x)
        for _ in range(x.size(1)):  # <- range
            y = y + 1
        half = y.shape[0] // 1
        b, c = y.shape[:2]
        return self.head(y.reshape(half, c, -1).flatten(1))


def decisions(report):
    return [(d.location.line, d.condition, d.taken) for d in report.decisions]


def test_decided_conditions_take_their_branch_and_are_recorded():
    report = lazyfx.infer(Flexible(), ("B", 3, 16, 16))
    assert str(report.output) == "(B, 4)"
    recorded = decisions(report)
    assert recorded[0] == (line_of("# <- rank"), "x.dim() == 3", False)
    assert recorded[1] == (line_of("# <- assert"), "x.size(1) == self.channels", True)
    assert report.decisions[1].source == 'assert x.size(1) == self.channels, "expected RGB"'
    assert recorded[2][0] == line_of("# <- square") and recorded[2][2] is False
    assert "decided from shapes:" in str(report)
    assert report.to_dict()["decisions"][0]["taken"] is False


def test_unbatched_input_takes_the_other_branch():
    report = lazyfx.infer(Flexible(), (3, 16, 16))
    assert decisions(report)[0][2] is True
    assert str(report.output) == "(1, 4)"


def test_constraints_decide_a_symbolic_condition():
    square = lazyfx.Dim("S", min=4)
    report = lazyfx.infer(Flexible(), ("B", 3, square, square))
    line, condition, taken = decisions(report)[2]
    assert line == line_of("# <- square") and taken is False


def test_undecided_condition_names_the_formula_line_and_symbols():
    with pytest.raises(lazyfx.UndecidedConditionError) as info:
        lazyfx.infer(Flexible(), ("B", 3, "H", "W"))
    diag = info.value.diagnostics[0]
    assert diag.code.code == "LFX011"
    assert diag.location.line == line_of("# <- square")
    assert "forward needs a branch from `W != H`" in diag.message or "`H != W`" in diag.message
    assert "which depends on H, W" in diag.message
    assert "pin H, W to concrete sizes" in diag.notes[0]


def test_range_over_a_symbolic_size_is_undecided():
    with pytest.raises(lazyfx.UndecidedConditionError) as info:
        lazyfx.infer(Flexible(), ("B", "C", 16, 16), )
    # the assert decides first: C == 3 is undecided
    assert info.value.diagnostics[0].location.line == line_of("# <- assert")


def test_failing_assert_is_a_shape_error_at_its_line():
    with pytest.raises(lazyfx.ShapeError) as info:
        lazyfx.infer(Flexible(), ("B", 4, 16, 16))
    assert "an assertion in forward fails for these inputs: expected RGB" in info.value.message
    assert info.value.diagnostics[0].location.line == line_of("# <- assert")


class Looping(nn.Module):
    def __init__(self):
        super().__init__()
        self.fcs = nn.ModuleList([nn.LazyLinear(5) for _ in range(2)])

    def forward(self, x):
        torch._assert(x.size(1) >= 2, "need two rows")  # <- torch assert
        n = x.shape[0] // 2
        parts = []
        for i in range(len(x.shape) - 1):  # <- len of a shape
            parts.append(self.fcs[i](x[:, i]))
        return torch.cat(parts, -1).view(n * 2, -1).expand(x.size(0), -1)


def test_len_range_and_shape_arithmetic():
    report = lazyfx.infer(Looping(), (4, 3, 7))
    assert str(report.output) == "(4, 10)"
    assert [r.resolution.arguments["in_features"] for r in report.lazy.values()] == [7, 7]
    assert_same_model(dry_run(Looping, (4, 3, 7)), materialized(Looping, (4, 3, 7)))


def test_torch_assert_becomes_a_domain_condition_or_an_error():
    report = lazyfx.infer(Looping(), ("B", "R", 7))
    assert "R >= 2" in str(report.domain)
    with pytest.raises(lazyfx.ShapeError, match="need two rows") as info:
        lazyfx.infer(Looping(), ("B", 1, 7))
    assert info.value.diagnostics[0].location.line == line_of("# <- torch assert")


class TensorValueBranch(nn.Module):
    def forward(self, x):
        if (x > 0).all():  # <- tensor values
            return x
        return -x


def test_control_flow_on_tensor_values_goes_to_abstract_execution():
    report = lazyfx.infer(TensorValueBranch(), ("B", 3))
    assert str(report.output) == "(B, 3)"
    assert "(if (x > 0).all():)" in report.opaque[""]
