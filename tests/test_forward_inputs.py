"""Models take what real forwards take: several positional inputs, keyword inputs, optional
None inputs, containers in and out, integer token ids -- all resolved like a dry run."""

import pytest
import torch
import torch.nn as nn

import lazyfx
from dryrun import assert_same_model, dry_run, materialized


class Multi(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.mix = nn.LazyLinear(6)
        self.side = nn.LazyLinear(6)
        self.out = nn.LazyLinear(2)

    def forward(self, tokens, features, mask=None, *, scale: float = 1.0, extras=None):
        x = self.mix(self.embed(tokens)) * scale
        if mask is not None:
            x = x * mask.unsqueeze(-1)
        if extras is not None:
            x = x + self.side(extras["side"][0])
        y = torch.cat([x, features], -1)
        return {"logits": self.out(y), "hidden": (x, y)}


def build():
    return Multi()


def test_positional_keyword_optional_and_container_inputs():
    report = lazyfx.infer(build(), "B,T:int64", ("B", "T", 3), mask="B,T", extras={"side": [("B", "T", 5)]})
    assert str(report.output["logits"]) == "(B, T, 2)"
    assert [str(t) for t in report.output["hidden"]] == ["(B, T, 6)", "(B, T, 9)"]
    assert report.lazy["side"].resolution.arguments == {"in_features": 5}


def test_optional_inputs_left_out_take_the_none_branch():
    report = lazyfx.infer(build(), "B,T:int64", ("B", "T", 3), scale=0.5)
    assert not report.lazy["side"].called


@pytest.mark.parametrize("with_extras", [False, True])
def test_matches_a_dry_run(with_extras):
    tokens, features = torch.zeros(2, 4, dtype=torch.int64), torch.zeros(2, 4, 3)
    extras = {"side": [torch.zeros(2, 4, 5)]}

    class Wrapped(nn.Module):  # the dry run and lazyfx see the same call
        def __init__(self):
            super().__init__()
            self.m = build()

        def forward(self, t, f, e=None):
            return self.m(t, f, extras=e)

    expected_inputs = (tokens, features, extras) if with_extras else (tokens, features)
    torch.manual_seed(0)
    expected = Wrapped().eval()
    with torch.no_grad():
        expected(*expected_inputs)
    specs = ["B,T:int64", ("B", "T", 3)] + ([{"side": [("B", "T", 5)]}] if with_extras else [])
    if not with_extras:
        with pytest.raises(lazyfx.ResolutionError, match="'m.side' \\(LazyLinear\\) is never called"):
            materialized(Wrapped, *specs)
        return
    assert_same_model(expected, materialized(Wrapped, *specs))


def test_token_ids_must_be_integers():
    with pytest.raises(lazyfx.ShapeError, match="embedding indices must be int64 or int32"):
        lazyfx.infer(build(), ("B", "T"), ("B", "T", 3))


class VarArgs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, *xs):
        return self.fc(torch.cat(xs, -1))


def test_varargs_forward():
    report = lazyfx.infer(VarArgs(), ("B", 2), ("B", 5))
    assert report.lazy["fc"].resolution.arguments == {"in_features": 7}
    assert_same_model(dry_run(VarArgs, (2, 2), (2, 5)), materialized(VarArgs, ("B", 2), ("B", 5)))


def test_tensor_inputs_and_tuple_outputs():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.LazyLinear(2), nn.LazyLinear(3)

        def forward(self, pair):
            left, right = pair
            return self.a(left), self.b(right)

    report = lazyfx.infer(Pair(), (torch.empty(4, 7, device="meta"), ("B", 9)))
    assert [str(t) for t in report.output] == ["(4, 2)", "(B, 3)"]
