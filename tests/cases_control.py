"""Differential cases for assertions in forward (see tests/cases.py for the conventions)."""

import torch
from hypothesis import strategies as st

from cases import case, example, sizes
from differential import fn_module


@case("torch._assert", over=["size equals", "dim", "size ratio"])
def assert_case(draw, kind):
    k = draw(st.integers(1, 4))
    checks = {
        "size equals": lambda x: torch._assert(x.size(1) == k, "channels"),
        "dim": lambda x: torch._assert(x.dim() == 3, "rank"),
        "size ratio": lambda x: torch._assert(x.size(0) // 2 >= x.size(1) - k, "ratio"),
    }
    check = checks[kind]

    def forward(x):
        check(x)
        return x

    return example(draw, fn_module(forward, 1, kind), sizes(draw, draw(st.integers(2, 3)), 1, 5))
