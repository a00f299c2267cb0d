"""Stacked pools keep their output formulas one division deep, in every pooling mode
(``ceil_mode`` included), and the formulas agree with PyTorch at several sizes.

A ceil-mode pool's size is the smaller of two floor divisions; which one is decided from the
kernel, stride and padding (lazyfx.rules.pool.pool_output_size). Wrapping both in a ``min``
doubled the formula at each pool: 10 pools took 12 s and printed 24,000 characters.
"""

import pytest
import torch
import torch.nn as nn

import lazyfx
from lazyfx.core.symbolic import fmt, substitute

# (kernel, stride, padding, dilation): the ceil-mode correction goes both ways among these
CONFIGS = [(3, 2, 0, 1), (2, 2, 0, 1), (2, 2, 1, 1), (3, 2, 1, 1), (3, 3, 1, 1), (3, 1, 1, 1), (5, 2, 2, 1),
           (3, 2, 1, 2), (4, 3, 0, 1), (1, 2, 0, 1)]
SIZES = (1, 2, 3, 5, 8, 13, 31, 64, 100, 257, 1000, 1025)


def _pools(kind: str, depth: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool):
    if kind == "max":
        make = lambda: nn.MaxPool1d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)  # noqa: E731
    elif kind == "avg":
        make = lambda: nn.AvgPool1d(kernel, stride, padding, ceil_mode=ceil_mode)  # noqa: E731
    else:
        make = lambda: nn.LPPool1d(2, kernel, stride, ceil_mode=ceil_mode)  # noqa: E731
    return nn.Sequential(*[make() for _ in range(depth)])


def _torch_size(model: nn.Module, T: int):
    try:
        return model(torch.zeros(1, 2, T, device="meta")).shape[-1]
    except RuntimeError:
        return None


def _lazyfx_size(report, T: int):
    if not report.domain.contains(B=1, T=T):
        return None
    return substitute(report.output_shape[-1], {"T": T})


# avg pools have no dilation, lp pools neither dilation nor padding
CASES = [(kind, ceil_mode, config) for kind in ("max", "avg", "lp") for ceil_mode in (True, False) for config in CONFIGS
         if kind == "max" or config[3] == 1 and (kind == "avg" or config[2] == 0)]


@pytest.mark.parametrize("kind, ceil_mode, config", CASES,
                         ids=lambda c: "k{}s{}p{}d{}".format(*c) if isinstance(c, tuple) else str(c))
def test_stacked_pools_stay_one_division_deep_and_match_pytorch(kind, ceil_mode, config):
    kernel, stride, padding, dilation = config
    lengths = {}
    for depth in (1, 3, 10):
        model = _pools(kind, depth, kernel, stride, padding, dilation, ceil_mode)
        report = lazyfx.infer(model, ("B", 2, "T"))
        size = report.output_shape[-1]
        lengths[depth] = len(fmt(size))
        assert "min(" not in fmt(size) and "max(" not in fmt(size)
        for T in SIZES:
            assert _lazyfx_size(report, T) == _torch_size(model, T), (depth, T, fmt(size))
    # one floor division at every depth: only the constants grow (by digits, so far below linear)
    assert lengths[10] <= lengths[1] + 30, lengths


def test_ten_ceil_mode_pools_print_as_one_division():
    report = lazyfx.infer(_pools("max", 10, 3, 2, 0, 1, True), ("B", 2, "T"))
    assert fmt(report.output_shape[-1]) == "T//1024"
    assert str(report.domain) == "T >= 1024"
    report = lazyfx.infer(_pools("max", 10, 2, 2, 1, 1, True), ("B", 2, "T"))
    assert fmt(report.output_shape[-1]) == "(T + 1022)//1024 + 1"


def test_a_2d_ceil_mode_stack_with_asymmetric_pools_matches_pytorch():
    model = nn.Sequential(*[nn.MaxPool2d((3, 2), (2, 1), (1, 0), ceil_mode=True) for _ in range(6)])
    report = lazyfx.infer(model, ("B", 1, "H", "W"))
    h, w = report.output_shape[-2:]
    assert "min(" not in fmt(h) + fmt(w)
    for H, W in ((1, 1), (1, 7), (7, 9), (64, 3), (129, 40), (2, 2)):
        try:
            want = tuple(model(torch.zeros(1, 1, H, W, device="meta")).shape[-2:])
        except RuntimeError:
            want = None
        got = (substitute(h, {"H": H}), substitute(w, {"W": W})) if report.domain.contains(B=1, H=H, W=W) else None
        assert got == want, (H, W)


def test_sizes_past_2_to_the_1024_are_decided_without_float_overflow():
    # 1,100 halvings (stride-2 pools) make T's lower bound 2**1100: interval arithmetic must not
    # turn that int into a float against an infinite bound (it raised OverflowError, LFX021)
    import sympy

    from lazyfx.core.constraints import Constraints
    from lazyfx.core.symbolic import FloorDiv, symbol

    T, B = symbol("T"), symbol("B")
    constraints = Constraints()
    constraints.tighten(sympy.Ge(T, 2**1100))
    assert constraints.decide(sympy.Ge(B * T - 1, 2**1100, evaluate=False)) is None
    assert constraints.decide(sympy.Ge(B * FloorDiv(T, 2**1100) + T, 2, evaluate=False)) is True
    assert constraints.decide(sympy.Lt(T + B, 2**1100, evaluate=False)) is False
    assert constraints.bounds(B * T) == (2**1100, float("inf"))
