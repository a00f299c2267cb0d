"""Deeply nested modules: 200 levels of nn.Sequential are analysed and materialized; past the
analysis's recursion limit the error says so."""

import sys

import pytest
import torch
import torch.nn as nn

import lazyfx
from dryrun import assert_same_model, dry_run, materialized


def nested(depth: int):
    def build() -> nn.Module:
        model = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.LazyLinear(2))
        for _ in range(depth):
            model = nn.Sequential(model)
        return model

    return build


def test_two_hundred_levels_of_containers():
    build = nested(200)
    report = lazyfx.infer(build(), ("B", 5))
    assert str(report.output) == "(B, 2)" and len(report.lazy) == 2
    assert_same_model(dry_run(build, (2, 5)), materialized(build, ("B", 5)))


def test_past_the_limit_the_error_says_so():
    model = nested(1000)()
    limit = sys.getrecursionlimit()
    with pytest.raises(lazyfx.TraceError, match="LFX010 the model nests calls deeper than lazyfx can follow: "
                                                "Python's recursion limit of 4000 frames"):
        lazyfx.materialize(model, ("B", 5))
    assert sys.getrecursionlimit() == limit
    inner = model
    while len(inner) == 1:  # model.modules() itself recurses too deep at 1000 levels
        inner = inner[0]
    assert isinstance(inner[0], nn.LazyLinear) and isinstance(inner[2], nn.LazyLinear)  # left as it was
    with pytest.raises(RecursionError):  # PyTorch stops earlier, at about 330 levels under its default limit
        model(torch.zeros(2, 5))


def test_a_higher_recursion_limit_of_the_user_is_kept():
    build = nested(560)
    with pytest.raises(lazyfx.TraceError, match="deeper than lazyfx can follow"):
        lazyfx.infer(build(), ("B", 5))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(8000)
    try:
        assert str(lazyfx.infer(build(), ("B", 5)).output) == "(B, 2)"
        assert sys.getrecursionlimit() == 8000
    finally:
        sys.setrecursionlimit(limit)
