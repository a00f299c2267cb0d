"""The dim algebra (lazyfx.core.symbolic), the decision procedure and condition
simplification (lazyfx.core.constraints), the input domain (lazyfx.domain.domain) and the
checks rules use (lazyfx.core.checks).

The property tests build random shape formulas twice from one description: once
with lazyfx's symbolic operations and once with plain Python ints. Python's
``//`` is the ground truth for every simplification, decision and printout.
"""

from __future__ import annotations

import doctest
import itertools
import operator

import pytest
import sympy
import torch.nn as nn
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lazyfx
from lazyfx import demo
from lazyfx.core import checks
from lazyfx.core.checks import Condition, Recorder
from lazyfx.core import constraints as constraints_module
from lazyfx.core.constraints import Constraints, SymbolInfo, as_bound, simplify_condition
from lazyfx.domain.domain import Domain
from lazyfx.core.symbolic import (
    FloorDiv,
    ceildiv,
    floordiv,
    fmt,
    mod,
    product,
    substitute,
    symbol,
)

H, W, B = symbol("H"), symbol("W"), symbol("B")


# -- random formulas, built symbolically and concretely from one tree -------------------


def _leaves(use_w: bool):
    names = ["H", "W"] if use_w else ["H"]
    # mostly symbols: formulas without one are plain ints and test nothing here
    return st.integers(0, 2).flatmap(lambda i: st.sampled_from(names) if i else st.integers(-4, 9))


def _extend(children, use_w: bool):
    small = st.integers(1, 4)
    divisor = st.integers(1, 9)
    options = [
        st.tuples(st.just("add"), children, children),
        st.tuples(st.just("sub"), children, children),
        st.tuples(st.just("mul"), children, small),
        st.tuples(st.just("floordiv"), children, divisor),
        st.tuples(st.just("ceildiv"), children, divisor),
        # a conv/pool output size: (x + 2p - d(k-1) - 1)//s + 1
        st.tuples(st.just("conv"), children, st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)),
    ]
    if use_w:
        # division by a symbolic (positive) size
        options.append(st.tuples(st.just("div_w"), children, st.integers(0, 2)))
    return st.one_of(options)


def trees(use_w: bool = False, max_leaves: int = 8):
    return st.recursive(_leaves(use_w), lambda c: _extend(c, use_w), max_leaves=max_leaves)


def build(tree, env, fdiv, cdiv):
    """Evaluate ``tree`` with symbols looked up in ``env`` and the given divisions."""
    if isinstance(tree, str):
        return env[tree]
    if isinstance(tree, int):
        return tree
    op, a, *rest = tree
    x = build(a, env, fdiv, cdiv)
    if op == "add":
        return x + build(rest[0], env, fdiv, cdiv)
    if op == "sub":
        return x - build(rest[0], env, fdiv, cdiv)
    if op == "mul":
        return x * rest[0]
    if op == "floordiv":
        return fdiv(x, rest[0])
    if op == "ceildiv":
        return cdiv(x, rest[0])
    if op == "conv":
        k, s, p, d = rest
        return fdiv(x + 2 * p - d * (k - 1) - 1, s) + 1
    if op == "div_w":
        return fdiv(x, env["W"] + rest[0])
    raise AssertionError(op)


def symbolic(tree):
    return build(tree, {"H": H, "W": W}, floordiv, ceildiv)


def concrete(tree, h, w=1):
    return build(tree, {"H": h, "W": w}, lambda a, b: a // b, lambda a, b: -(-a // b))


def at(expr, h, w=1):
    """A sympy formula or condition at concrete sizes."""
    if isinstance(expr, (int, bool)):
        return expr
    return expr.xreplace({H: sympy.Integer(h), W: sympy.Integer(w)})


def holds(cond, h, w=1) -> bool:
    value = at(cond, h, w)
    if isinstance(value, sympy.core.relational.Relational):  # built with evaluate=False
        value = value.func(value.lhs, value.rhs)
    assert value in (sympy.true, sympy.false, True, False), f"{cond} at H={h}, W={w} is {value}"
    return bool(value)


def python_compare(a, op, b) -> bool:
    return {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "==": a == b, "!=": a != b}[op]


RELATIONS = {">=": sympy.Ge, ">": sympy.Gt, "<=": sympy.Le, "<": sympy.Lt, "==": sympy.Eq, "!=": sympy.Ne}


def relation(lhs_tree, op, rhs_tree, evaluate=True):
    """The condition ``lhs op rhs``; ``evaluate=False`` keeps sympy from deciding it first."""
    return RELATIONS[op](symbolic(lhs_tree), symbolic(rhs_tree), evaluate=evaluate)

W_VALUES = (1, 2, 3, 4, 7)


# -- FloorDiv: the identities are correct ---------------------------------------------------


@given(tree=trees(), h=st.integers(1, 500))
def test_formulas_in_H_agree_with_python_ints(tree, h):
    expr = symbolic(tree)
    assert substitute(expr, {"H": h}) == concrete(tree, h)


@given(tree=trees(use_w=True), h=st.integers(1, 300), w=st.integers(1, 40))
def test_formulas_in_H_and_W_agree_with_python_ints(tree, h, w):
    expr = symbolic(tree)
    assert substitute(expr, {"H": h, "W": w}) == concrete(tree, h, w)


@given(tree=trees(use_w=True), h=st.integers(1, 300), w=st.integers(1, 40))
def test_printed_formula_evaluates_like_the_formula(tree, h, w):
    """``fmt`` output is Python: read back with ints it gives the same number."""
    expr = symbolic(tree)
    assert eval(fmt(expr), {"H": h, "W": w}) == concrete(tree, h, w)


@given(
    layers=st.lists(
        st.tuples(st.integers(1, 7), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3)),
        min_size=1,
        max_size=30,
    ),
    h=st.integers(1, 5000),
)
def test_conv_stacks_stay_one_division_deep(layers, h):
    x, ref = H, h
    for k, s, p, d in layers:
        x = floordiv(x + 2 * p - d * (k - 1) - 1, s) + 1
        ref = (ref + 2 * p - d * (k - 1) - 1) // s + 1
    assert substitute(x, {"H": h}) == ref
    if not isinstance(x, int):
        divisions = x.atoms(FloorDiv)
        assert len(divisions) <= 1, x
        assert all(not d.args[0].atoms(FloorDiv) for d in divisions), x
        assert sympy.count_ops(x) <= 5, x


def test_fifty_stride_two_convs_give_one_small_formula():
    x = H
    for _ in range(50):
        x = floordiv(x + 2 * 1 - 1 * (3 - 1) - 1, 2) + 1
    assert sympy.count_ops(x) < 20
    assert x == FloorDiv(H - 1, 2**50) + 1
    assert fmt(x) == f"(H - 1)//{2**50} + 1"
    for h in (1, 2, 3, 2**50, 2**50 + 1, 2**51 + 2, 10**18):
        ref = h
        for _ in range(50):
            ref = (ref - 1) // 2 + 1
        assert substitute(x, {"H": h}) == ref


def test_fifty_pool_then_conv_pairs_stay_small():
    x = H
    for _ in range(50):
        x = floordiv(x, 2)  # MaxPool2d(2)
        x = floordiv(x + 2 * 1 - 1 * (3 - 1) - 1, 1) + 1  # Conv2d(k=3, p=1): same size
    assert x == FloorDiv(H, 2**50)
    assert sympy.count_ops(x) < 20


def test_nested_divisions_merge_structurally():
    assert floordiv(floordiv(floordiv(H, 2), 2), 2) == FloorDiv(H, 8)
    assert floordiv(floordiv(H, 2), 2) == floordiv(H, 4)
    assert floordiv(floordiv(H, W), 3) == FloorDiv(H, 3 * W)
    assert floordiv(floordiv(H, 3) + 2, 5) == FloorDiv(H + 6, 15)
    assert ceildiv(ceildiv(H, 2), 2) == ceildiv(H, 4)


def test_floordiv_identities():
    assert floordiv(2 * H, 2) == H
    assert floordiv(4 * H + 2, 6) == FloorDiv(2 * H + 1, 3)  # common factor 2 cancels
    assert floordiv(4 * H + 3, 4) == H  # whole multiples come out
    assert floordiv(4 * H + 5, 4) == H + 1
    assert floordiv(H * W * 6 + H, 3) == 2 * H * W + FloorDiv(H, 3)
    assert floordiv(H, 1) == H
    assert floordiv(0 * H, 5) == 0
    assert floordiv(H - H, 5) == 0
    with pytest.raises(ZeroDivisionError):
        FloorDiv(H, 0)


def test_concrete_dims_stay_python_ints():
    for value in (floordiv(7, 2), ceildiv(7, 2), mod(7, 3), product([2, 3, 4])):
        assert type(value) is int
    assert (floordiv(7, 2), ceildiv(7, 2), floordiv(-7, 2), ceildiv(-7, 2)) == (3, 4, -4, -3)
    assert type(floordiv(sympy.Integer(8), 2)) is int
    assert type(substitute(floordiv(H, 2), {"H": 9})) is int
    assert substitute(floordiv(H, 2), {H: 9}) == 4  # by symbol or by name


def test_floordiv_sign_assumptions():
    assert FloorDiv(H, 2).is_nonnegative
    assert FloorDiv(H + 1, 2).is_positive
    assert FloorDiv(H, 2).is_positive is None  # H = 1 gives 0
    assert FloorDiv(H - 3, 2).is_nonnegative is None


# -- printing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (floordiv(H - 3, 2) + 1, "(H - 3)//2 + 1"),
        (product([64, floordiv(H, 4) - 1, floordiv(W, 4) - 1]), "64*(H//4 - 1)*(W//4 - 1)"),
        (64 * (floordiv(H, 4) - 1) * (floordiv(W, 4) - 1), "64*(H//4 - 1)*(W//4 - 1)"),
        (sympy.Eq(sympy.Mod(H, 16), 0), "H % 16 == 0"),
        (floordiv(floordiv(floordiv(H, 2), 2), 2), "H//8"),
        (ceildiv(H, 4), "(H + 3)//4"),
        (2 * floordiv(H, 2), "2*(H//2)"),
        (W * floordiv(H, 2), "W*(H//2)"),
        (floordiv(H, W), "H//W"),
        (floordiv(H, 2 * W), "H//(2*W)"),
        # a negated division keeps its parentheses: -H//2 would read as (-H)//2
        (-floordiv(H, 2), "-(H//2)"),
        (-2 * floordiv(H, 2), "-2*(H//2)"),
        (-W * floordiv(H, 2), "-W*(H//2)"),
        (W - 2 * floordiv(H, 2), "W - 2*(H//2)"),
        (3 - floordiv(H, 2), "3 - H//2"),
        (-sympy.Mod(H, 4), "-(H % 4)"),
        (-W - floordiv(H, 2), "-(W + H//2)"),
        (FloorDiv(H, sympy.Mod(W, 3)), "H//(W % 3)"),
        (sympy.Mod(floordiv(H, 2), 3), "(H//2) % 3"),
        (sympy.Ge(-floordiv(H, 2), -5), "-(H//2) >= -5"),
        (sympy.Ge(H, 3), "H >= 3"),
        (sympy.Lt(H + W, 10), "H + W < 10"),
        (sympy.Eq(H, W), "H == W"),
        (sympy.Ne(H, W), "H != W"),
        (sympy.And(sympy.Le(W, 4), sympy.Ge(H, 3)), "H >= 3 and W <= 4"),
        (sympy.Max(H, W), "max(H, W)"),
        (sympy.Min(H, 3), "min(3, H)"),
        ((B, 3, H), "(B, 3, H)"),
        ((H,), "(H,)"),
        ([B, floordiv(H, 2)], "(B, H//2)"),
        ((), "()"),
        (7, "7"),
        (0, "0"),
        (-3, "-3"),
    ],
)
def test_fmt_golden(value, text):
    assert fmt(value) == text


def test_fmt_of_an_int_is_its_str():
    for n in (0, 1, 224, 10**30):
        assert fmt(n) == str(n)


# -- Constraints.decide -------------------------------------------------------------------------


def C(**infos: dict) -> Constraints:
    return Constraints({name: SymbolInfo(name, **kw) for name, kw in infos.items()})


@pytest.mark.parametrize(
    "constraints, cond, expected",
    [
        (C(), sympy.Ge(H, 1), True),
        (C(), sympy.Ge(H - 3, 0), None),
        (C(H=dict(min=32)), sympy.Ge(H - 3, 0), True),
        (C(H=dict(min=32)), sympy.Lt(H, 32), False),
        (C(H=dict(max=8)), sympy.Gt(H, 8), False),
        (C(H=dict(max=8)), sympy.Le(floordiv(H, 2), 4), True),
        (C(H=dict(max=8)), sympy.Le(floordiv(H, 2), 3), None),
        (C(H=dict(multiple_of=32)), sympy.Eq(sympy.Mod(H, 16), 0), True),
        (C(H=dict(multiple_of=32)), sympy.Eq(sympy.Mod(H, 64), 0), None),
        (C(H=dict(multiple_of=32)), sympy.Eq(sympy.Mod(H, 5), 0), None),
        (C(H=dict(multiple_of=32)), sympy.Eq(floordiv(H, 8) * 8, H), True),
        (C(H=dict(multiple_of=4)), sympy.Ge(H, 4), True),
        (C(H=dict(multiple_of=4)), sympy.Ge(H, 5), None),
        (C(H=dict(multiple_of=4, min=5)), sympy.Ge(H, 8), True),  # the smallest multiple is 8
        (C(H=dict(multiple_of=4, max=15)), sympy.Le(H, 12), True),
        (C(), sympy.Eq(H, H + 1), False),
        (C(), sympy.Ne(H, H + 1), True),
        (C(), sympy.Eq(H, W), None),
        (C(H=dict(min=10), W=dict(max=5)), sympy.Gt(H, W), True),
        (C(H=dict(min=10), W=dict(max=5)), sympy.Eq(H, W), False),
        (C(), sympy.Ge(floordiv(H - 3, 2) + 1, 1), None),
        (C(H=dict(min=3)), sympy.Ge(floordiv(H - 3, 2) + 1, 1), True),
        (C(), sympy.Ge(floordiv(H, 2), 0), True),
        (C(), sympy.Ge(sympy.Mod(H, 7), 7), False),
        (C(), sympy.Ge(sympy.Max(H, 5), 5), True),
        (C(), sympy.Le(sympy.Min(H, 5), 5), True),
        (C(), sympy.Ge(sympy.Min(H, 5), 2), None),
        (C(), sympy.Ge(floordiv(H - 10, W), -9), True),
        (C(), sympy.Ge(floordiv(H - 10, W), -1), None),  # H = 1, W = 1 gives -9
        (C(H=dict(max=9)), sympy.Lt(floordiv(H - 10, W), 0), True),
        (C(H=dict(max=9)), sympy.Le(floordiv(H - 10, W + 1), -2), None),  # W large gives -1
        (C(), sympy.Le(floordiv(H - 3, W), 0), None),  # H = 10, W = 1 gives 7
        (C(H=dict(max=3)), sympy.Le(floordiv(H - 3, W), 0), True),
        (C(), sympy.Ge(H**2, 1), True),
        (C(), sympy.And(sympy.Ge(H, 1), sympy.Ge(H, 5)), None),
        (C(), sympy.And(sympy.Ge(H, 5), sympy.Lt(H, 1)), False),
        (C(), sympy.Or(sympy.Ge(H, 5), sympy.Ge(H, 1)), True),
        (C(), sympy.Or(sympy.Lt(H, 1), sympy.Eq(H, 0)), False),
        (C(), sympy.Not(sympy.Ge(H - 3, 0)), None),
        (C(H=dict(min=3)), sympy.Not(sympy.Ge(H - 3, 0)), False),
        (C(), True, True),
        (C(), False, False),
        (C(), sympy.true, True),
        (C(), sympy.false, False),
    ],
)
def test_decide_golden(constraints, cond, expected):
    assert constraints.decide(cond) is expected


def test_decide_after_tighten():
    constraints = C()
    assert constraints.decide(sympy.Ge(H, 5)) is None
    constraints.tighten(sympy.Ge(floordiv(H - 3, 2) + 1, 2))  # H >= 5
    assert constraints.decide(sympy.Ge(H, 5)) is True
    assert constraints.decide(sympy.Ge(H, 6)) is None
    constraints.tighten(sympy.Le(H, 6))
    assert constraints.decide(sympy.Le(H * 2, 12)) is True
    assert constraints.decide(sympy.Eq(H, 7)) is False


def test_tighten_rounds_to_the_multiple():
    constraints = C(H=dict(multiple_of=8))
    constraints.tighten(sympy.Ge(H, 9))
    assert constraints.decide(sympy.Ge(H, 16)) is True
    constraints.tighten(sympy.Le(H, 31))
    assert constraints.decide(sympy.Le(H, 24)) is True
    assert constraints.decide(sympy.Eq(H, 16)) is None


def _info(draw, name):
    multiple = draw(st.sampled_from([1, 1, 2, 3, 4, 8]))
    low = draw(st.integers(1, 40))
    unbounded = draw(st.booleans())
    high = None if unbounded else draw(st.integers(low, low + 60))
    info = SymbolInfo(name, low, high, multiple)
    if high is not None and info.smallest() > high:
        info = SymbolInfo(name, low, None, multiple)
    return info


def _admitted(info: SymbolInfo, limit: int) -> list[int]:
    high = info.max if info.max is not None else info.min + limit
    return [v for v in range(info.min, high + 1) if info.admits(v)]


@settings(max_examples=50)
@given(data=st.data(), op=st.sampled_from(sorted(RELATIONS)), use_w=st.booleans(), evaluate=st.booleans())
def test_decide_agrees_with_brute_force(data, op, use_w, evaluate):
    lhs = data.draw(trees(use_w=use_w), label="lhs")
    rhs = data.draw(trees(use_w=use_w, max_leaves=3) | st.integers(-5, 40), label="rhs")
    h_info = _info(data.draw, "H")
    w_info = _info(data.draw, "W")
    constraints = Constraints({"H": h_info, "W": w_info})
    cond = relation(lhs, op, rhs, evaluate)
    verdict = constraints.decide(cond)
    if verdict is None:
        return
    hs = _admitted(h_info, 150 if not use_w else 40)
    ws = _admitted(w_info, 20) if use_w else [w_info.smallest()]
    for h, w in itertools.product(hs, ws):
        assert python_compare(concrete(lhs, h, w), op, concrete(rhs, h, w)) is verdict, (
            f"decide({cond}) is {verdict} under {h_info}, {w_info}, but H={h}, W={w} disagrees"
        )


# -- simplify_condition ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cond, text",
    [
        (sympy.Ge(floordiv(H - 3, 2) + 1, 1), "H >= 3"),
        (sympy.Gt(floordiv(H - 3, 2) + 1, 0), "H >= 3"),
        (sympy.Ge(floordiv(H, 4), 2), "H >= 8"),
        (sympy.Le(floordiv(H, 4), 2), "H <= 11"),
        (sympy.Lt(floordiv(H, 4), 2), "H <= 7"),
        (sympy.Ge(floordiv(floordiv(H - 7, 2) + 1, 2), 3), "H >= 17"),
        (sympy.Ge(2 * H - 5, 0), "H >= 3"),
        (sympy.Le(10 - 3 * H, 0), "H >= 4"),
        (sympy.Ge(10 - 3 * H, 0), "H <= 3"),
        (sympy.Lt(H, 100), "H <= 99"),
        (sympy.Ge(H + W, 5), "H + W >= 5"),
        (sympy.Eq(sympy.Mod(H, 4), 0), "H % 4 == 0"),
    ],
)
def test_simplify_condition_golden(cond, text):
    assert fmt(simplify_condition(cond)) == text


def test_simplified_bounds_are_read_by_as_bound():
    assert as_bound(simplify_condition(sympy.Ge(floordiv(H - 3, 2) + 1, 1))) == (H, ">=", 3)
    assert as_bound(simplify_condition(sympy.Le(floordiv(H, 4), 2))) == (H, "<=", 11)
    assert as_bound(simplify_condition(sympy.Ge(H + W, 5))) is None
    assert as_bound(sympy.Eq(H, 3)) is None


@settings(max_examples=50)
@given(
    lhs=trees(use_w=False),
    rhs=trees(use_w=False, max_leaves=3) | st.integers(-5, 60),
    op=st.sampled_from(sorted(RELATIONS)),
    evaluate=st.booleans(),
)
def test_simplify_condition_is_equivalent_in_H(lhs, rhs, op, evaluate):
    cond = relation(lhs, op, rhs, evaluate)
    simple = simplify_condition(cond)
    for h in range(1, 201):
        truth = python_compare(concrete(lhs, h), op, concrete(rhs, h))
        assert holds(cond, h) is truth, f"{cond} at H={h}"
        assert holds(simple, h) is truth, f"{cond} simplified to {simple}, which differs at H={h}"


@given(
    lhs=trees(use_w=True),
    rhs=trees(use_w=True, max_leaves=3) | st.integers(-5, 60),
    op=st.sampled_from(sorted(RELATIONS)),
    evaluate=st.booleans(),
)
def test_simplify_condition_is_equivalent_in_H_and_W(lhs, rhs, op, evaluate):
    cond = relation(lhs, op, rhs, evaluate)
    simple = simplify_condition(cond)
    for h, w in itertools.product(range(1, 61), W_VALUES):
        truth = python_compare(concrete(lhs, h, w), op, concrete(rhs, h, w))
        assert holds(simple, h, w) is truth, f"{cond} simplified to {simple}, which differs at H={h}, W={w}"


# -- Domain ------------------------------------------------------------------------------------------


def requires(*exprs) -> list[Condition]:
    return [Condition(e, f"condition {i}", node=f"n{i}") for i, e in enumerate(exprs)]


def test_domain_without_conditions_is_all_positive_sizes():
    domain = Domain(Constraints(), [])
    assert str(domain) == "all positive sizes"
    assert domain.symbols == []
    assert domain.contains()
    assert not domain.is_empty


def test_domain_merges_bounds_on_one_symbol():
    domain = Domain(Constraints(), requires(sympy.Ge(H, 3), sympy.Ge(floordiv(H - 9, 2) + 1, 1)))
    assert str(domain) == "H >= 9"
    domain = Domain(Constraints(), requires(sympy.Ge(H, 9), sympy.Ge(H, 3), sympy.Le(H, 100), sympy.Le(H, 64)))
    assert str(domain) == "9 <= H <= 64"
    assert domain.bounds()["H"] == SymbolInfo("H", 9, 64, 1)


def test_domain_keeps_dim_constraints_and_other_conditions():
    constraints = Constraints({"H": SymbolInfo("H", multiple_of=32), "W": SymbolInfo("W", min=8)})
    domain = Domain(constraints, requires(sympy.Eq(floordiv(H, 4), floordiv(W, 4))))
    assert str(domain) == "H % 32 == 0 and W >= 8 and H//4 == W//4"  # H % 32 == 0 already says H >= 32
    assert domain.symbols == ["H", "W"]


def test_domain_drops_implied_conditions():
    domain = Domain(
        Constraints(),
        requires(
            sympy.Ge(H, 9),
            sympy.Ge(H + W, 5),  # implied by H >= 9
            sympy.Eq(sympy.Mod(H, 16), 0),
            sympy.Eq(sympy.Mod(H, 16), 0),  # a duplicate
            sympy.Ge(floordiv(H, 4), 2),  # H >= 8, weaker than H >= 9
        ),
    )
    assert str(domain) == "H % 16 == 0"  # with H >= 9, exactly the positive multiples of 16
    assert [fmt(c) for c in domain.conditions()] == ["H >= 9", "H % 16 == 0"]


def test_domain_multiple_of_makes_a_condition_implied():
    constraints = Constraints({"H": SymbolInfo("H", multiple_of=32)})
    domain = Domain(constraints, requires(sympy.Eq(sympy.Mod(H, 16), 0), sympy.Ge(H, 20)))
    assert str(domain) == "H % 32 == 0"  # H >= 20 and a multiple of 32: exactly the multiples of 32


def test_domain_ignores_assumptions():
    assumption = Condition(sympy.Ne(H, 1), "H is taken to be != 1", kind="assumes")
    domain = Domain(Constraints(), [assumption, *requires(sympy.Ge(H, 2))])
    assert domain.assumptions == [assumption]
    assert str(domain) == "H >= 2"
    assert not domain.contains(H=1)


def test_domain_is_empty_when_bounds_contradict():
    assert Domain(Constraints(), requires(sympy.Ge(H, 9), sympy.Le(H, 5))).is_empty
    constraints = Constraints({"H": SymbolInfo("H", multiple_of=8)})
    assert Domain(constraints, requires(sympy.Ge(H, 9), sympy.Le(H, 15))).is_empty
    assert not Domain(constraints, requires(sympy.Ge(H, 9), sympy.Le(H, 16))).is_empty


def test_domain_contains():
    constraints = Constraints({"H": SymbolInfo("H", multiple_of=4, max=64)})
    domain = Domain(constraints, requires(sympy.Ge(floordiv(H - 3, 2) + 1, 4), sympy.Le(W, H)))
    assert domain.contains(H=12, W=12)
    assert not domain.contains(H=12, W=13)
    assert not domain.contains(H=8, W=1)  # (8 - 3)//2 + 1 = 3 < 4
    assert domain.contains(H=12, W=1)
    assert not domain.contains(H=14, W=1)  # not a multiple of 4
    assert not domain.contains(H=68, W=1)  # above max
    assert not domain.contains(H=12, W=0)
    with pytest.raises(TypeError, match="integer sizes; got H=12.0"):
        domain.contains(H=12.0, W=1)


def test_domain_contains_names_missing_symbols():
    domain = Domain(Constraints({"B": SymbolInfo("B")}), requires(sympy.Le(W, H)))
    with pytest.raises(TypeError, match="missing: W$"):
        domain.contains(H=3)
    with pytest.raises(TypeError, match="missing: H, W$"):
        domain.contains()
    with pytest.raises(TypeError, match="got sizes for h, which are not symbols"):  # a typo is named first
        domain.contains(h=3, W=1)


def test_domain_contains_without_the_symbols_no_condition_mentions():
    # B is in no condition: the answer is the same at every B, so it may be left out
    domain = Domain(Constraints({"B": SymbolInfo("B", min=2, max=8)}), requires(sympy.Le(W, H)))
    assert domain.contains(H=3, W=2) and domain.contains(B=2, H=3, W=2) and domain.contains(B=8, H=3, W=2)
    assert not domain.contains(H=2, W=3)
    assert not domain.contains(B=1, H=3, W=2)  # a size given is still held to its Dim bounds
    # a left-out symbol with no valid size at all: no input is valid
    empty = Domain(Constraints({"B": SymbolInfo("B", min=9, max=8)}), requires(sympy.Le(W, H)))
    assert not empty.contains(H=3, W=2)
    # checked at some sizes only: the symbol must be given, as one a condition mentions
    checked = Domain(Constraints({"B": SymbolInfo("B")}), requires(sympy.Le(W, H)), checked_at={"B": (2,)})
    with pytest.raises(TypeError, match="missing: B$"):
        checked.contains(H=3, W=2)
    assert checked.contains(B=2, H=3, W=2) and not checked.contains(B=3, H=3, W=2)


def test_report_domain_contains_without_the_batch():
    report = lazyfx.infer(demo.Net(), ("B", 3, "H", "W"))
    assert report.domain.contains(H=64, W=64) == report.domain.contains(B=7, H=64, W=64) is True
    assert report.domain.contains(H=8, W=64) is False
    with pytest.raises(TypeError, match="missing: W$"):
        report.domain.contains(H=64)

    class Bottleneck(nn.Module):  # batch norm in training mode: more than one value per channel
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(8)
            self.norm = nn.LazyBatchNorm2d()

        def forward(self, x):
            return self.norm(self.pool(x))

    domain = lazyfx.infer(Bottleneck(), ("B", 3, "H", "W")).domain
    assert "B" in domain.conditioned()
    with pytest.raises(TypeError, match="missing: B$"):
        domain.contains(H=8, W=8)
    assert domain.contains(B=2, H=8, W=8) and not domain.contains(B=1, H=8, W=8)


@settings(max_examples=40)
@given(
    data=st.data(),
    n=st.integers(0, 4),
    info=st.builds(
        SymbolInfo, st.just("H"), st.integers(1, 20), st.none() | st.integers(20, 120), st.sampled_from([1, 1, 2, 4])
    ),
)
def test_domain_agrees_with_brute_force(data, n, info):
    conds = []
    for _ in range(n):
        lhs = data.draw(trees())
        rhs = data.draw(st.integers(-3, 30) | trees(max_leaves=2))
        op = data.draw(st.sampled_from([">=", ">", "<=", "<", "=="]))
        conds.append((lhs, op, rhs))
    exprs = [relation(lhs, op, rhs) for lhs, op, rhs in conds]
    domain = Domain(Constraints({"H": info}), requires(*exprs))
    printed = domain.conditions()
    for h in range(1, 161):
        expected = info.admits(h) and all(
            python_compare(concrete(lhs, h), op, concrete(rhs, h)) for lhs, op, rhs in conds
        )
        assert domain.contains(H=h) is expected, f"H={h}"
        # what str(domain) says is the same set of inputs
        assert all(holds(c, h) for c in printed) is expected, f"{domain} at H={h}"


@settings(max_examples=60)
@given(
    c=st.integers(-3000, 3000).filter(bool), a=st.integers(-20, 20), d=st.integers(1, 8),
    e=st.integers(-50, 50), k=st.integers(-6000, 6000), op=st.sampled_from(sorted(RELATIONS)),
    low=st.integers(1, 12),
)
@example(c=3000, a=20, d=8, e=50, k=6000, op="==", low=1)  # a bound past every constant: 576,000 sizes
@example(c=-2176, a=9, d=4, e=128, k=-2304, op=">=", low=9)
def test_a_monotone_condition_is_solved_exactly_however_far_its_answer_changes(c, a, d, e, k, op, low):
    # c*((H - a)//d) + e op k: monotone in H (either way), its answer changes where the formula
    # reaches k, which a large c or k puts far out; the solver reads it off past that point only
    # (a checkpoint's fit, 64*((H - 9)//4 + 1)*((W - 9)//4 + 1) == 2304, solves one at each H)
    from lazyfx.domain.solve import solve

    sizes = solve(H, [RELATIONS[op](c * floordiv(H - a, d) + e, k, evaluate=False)], SymbolInfo("H", min=low))
    assert sizes is not None
    value = lambda h: c * ((h - a) // d) + e  # noqa: E731
    settled = low + d * (abs(k) + abs(e) + abs(a) + 2)  # past it the formula is beyond k for good
    for h in [*range(1, settled + 2 * d + 3), settled * 10, settled * 1000 + 7]:
        expected = h >= low and python_compare(value(h), op, k)
        assert sizes.contains(h) is expected, f"H={h}: {sizes.conditions()}"


@settings(max_examples=40)
@given(
    data=st.data(),
    n=st.integers(0, 3),
    batch=st.sampled_from([(1, None), (2, 8), (3, 5)]),
    mixed=st.integers(0, 12),
)
def test_contains_without_a_symbol_is_the_answer_at_each_of_its_sizes(data, n, batch, mixed):
    # conditions on H, and perhaps one relating B and H (B*H >= mixed): leaving B out either
    # answers for every size of B, or is a TypeError; never an answer that some B contradicts
    exprs = [relation(data.draw(trees()), data.draw(st.sampled_from([">=", "<=", "=="])),
                      data.draw(st.integers(-3, 30))) for _ in range(n)]
    exprs += [sympy.Ge(B * H, mixed)] if mixed else []
    low, high = batch
    domain = Domain(Constraints({"H": SymbolInfo("H"), "B": SymbolInfo("B", min=low, max=high)}), requires(*exprs))
    for h in range(1, 41):
        try:
            answer = domain.contains(H=h)
        except TypeError as error:
            assert "B" in str(error)
            continue
        assert all(domain.contains(B=b, H=h) is answer for b in range(low, (high or 40) + 1)), f"H={h}: {domain}"


def test_contains_without_a_symbol_refuses_where_the_answer_depends_on_it():
    # B*H >= 6 is a condition of its own beside H >= 2: B must be given, whatever H is
    domain = Domain(Constraints({"B": SymbolInfo("B")}), requires(sympy.Ge(H, 2), sympy.Ge(B * H, 6)))
    assert "B" in domain.conditioned()
    for h in (3, 6):
        with pytest.raises(TypeError, match="missing: B$"):
            domain.contains(H=h)
    # beside H >= 6 it is implied (as the demo's batch norm condition is): B may be left out
    implied = Domain(Constraints({"B": SymbolInfo("B")}), requires(sympy.Ge(H, 6), sympy.Ge(B * H, 6)))
    assert "B" not in implied.conditioned() and str(implied) == "H >= 6"
    assert implied.contains(H=6) is True and implied.contains(H=5) is False


# -- checks.require & co --------------------------------------------------------------------------------


def _never(message="the message must not be built when the check passes"):
    def build():
        raise AssertionError(message)

    return build


def test_require_decided_true_does_nothing():
    recorder = Recorder(Constraints({"H": SymbolInfo("H", min=8)}))
    with recorder.at("n"):
        checks.require(sympy.Ge(H, 3), _never())
        checks.require(True, _never())
        checks.require_equal(H, H, _never())
        checks.require_equal(4, 4, _never())
        checks.require_positive(H - 7, _never())
        checks.require_positive(floordiv(H, 8), _never())
        checks.require_positive(2, _never())
    assert recorder.conditions == []


def test_require_decided_false_raises_shape_error():
    recorder = Recorder(Constraints({"H": SymbolInfo("H", max=8)}))
    cases = [
        lambda: checks.require(sympy.Gt(H, 8), "H too big"),
        lambda: checks.require(False, "H too big"),
        lambda: checks.require(sympy.Lt(floordiv(H, 2), 0), lambda: "H too big"),
        lambda: checks.require_equal(H, H + 1, "H too big"),
        lambda: checks.require_equal(3, 4, "H too big"),
        lambda: checks.require_positive(H - 9, "H too big"),
        lambda: checks.require_positive(0, "H too big"),
        lambda: checks.require_positive(-2, lambda: "H too big"),
    ]
    with recorder.at("n"):
        for case in cases:
            with pytest.raises(lazyfx.ShapeError, match="H too big") as info:
                case()
            assert info.value.code == "LFX030"
    assert recorder.conditions == []


def test_require_undecided_records_a_condition():
    recorder = Recorder(Constraints())
    with recorder.at("conv1"):
        checks.require(sympy.Ge(floordiv(H - 3, 2) + 1, 1), lambda: "kernel larger than input")
        checks.require(sympy.Ge(floordiv(H - 3, 2) + 1, 1), "again")  # recorded once
    with recorder.at("fc"):
        checks.require_equal(W, 16, "in_features mismatch")
        checks.require_positive(floordiv(B, 4), "batch too small")
    assert [(fmt(c.expr), c.message, c.node, c.kind) for c in recorder.conditions] == [
        ("(H - 3)//2 + 1 >= 1", "kernel larger than input", "conv1", "requires"),
        ("W == 16", "in_features mismatch", "fc", "requires"),
        ("B//4 >= 1", "batch too small", "fc", "requires"),
    ]
    assert recorder.node is None


def test_recorded_requirement_narrows_later_checks():
    recorder = Recorder(Constraints())
    with recorder.at("a"):
        checks.require(sympy.Ge(H, 5), "first")
    with recorder.at("b"):
        checks.require(sympy.Ge(H, 3), _never())  # implied by the first: not recorded
        with pytest.raises(lazyfx.ShapeError, match="contradicts"):
            checks.require(sympy.Lt(H, 5), "contradicts")
        checks.require(sympy.Ge(H, 7), "second")
    assert [(fmt(c.expr), c.node) for c in recorder.conditions] == [("H >= 5", "a"), ("H >= 7", "b")]


def test_assume_records_only_undecided_choices():
    recorder = Recorder(Constraints({"W": SymbolInfo("W", min=2)}))
    with recorder.at("add"):
        checks.assume(sympy.Ne(H, 1), "H taken to be != 1")
        checks.assume(sympy.Ne(W, 1), "W taken to be != 1")
    assert [(fmt(c.expr), c.kind) for c in recorder.conditions] == [("H != 1", "assumes")]
    assert recorder.constraints.decide(sympy.Ge(H, 2)) is None  # assumptions do not narrow


def test_equal_is_three_valued():
    with Recorder(Constraints({"H": SymbolInfo("H", min=4)})).at("n"):
        assert checks.equal(3, 3) is True
        assert checks.equal(3, 4) is False
        assert checks.equal(H, 2) is False
        assert checks.equal(H, W) is None
        assert checks.equal(floordiv(2 * H, 2), H) is True


CHECK_RELATIONS = [
    (checks.eq, operator.eq, sympy.Eq), (checks.ne, operator.ne, sympy.Ne), (checks.lt, operator.lt, sympy.Lt),
    (checks.le, operator.le, sympy.Le), (checks.gt, operator.gt, sympy.Gt), (checks.ge, operator.ge, sympy.Ge),
]


@pytest.mark.parametrize("relation, python, relational", CHECK_RELATIONS, ids=lambda r: getattr(r, "__name__", ""))
def test_relations_are_python_bools_on_ints_and_sympy_relations_otherwise(relation, python, relational):
    for a, b in itertools.product((-1, 0, 3, 4), repeat=2):
        result = relation(a, b)
        assert type(result) is bool and result == python(a, b), (a, b)
    for a, b in ((H, 3), (3, H), (H + 1, W), (floordiv(H, 2), 0), (sympy.Integer(3), 4)):
        assert relation(a, b) == relational(a, b), (a, b)  # the very condition that gets recorded


def test_require_divisible_decides_or_records_the_remainder():
    recorder = Recorder(Constraints({"W": SymbolInfo("W", multiple_of=4)}))
    with recorder.at("shuffle"):
        checks.require_divisible(12, 4, _never())
        checks.require_divisible(2 * W, 8, _never())
        for size in (13, 2 * H + 1):
            with pytest.raises(lazyfx.ShapeError, match="odd"):
                checks.require_divisible(size, 2, "odd")
        checks.require_divisible(H, 3, "H % 3")
    assert [(fmt(c.expr), c.message, c.node) for c in recorder.conditions] == [("H % 3 == 0", "H % 3", "shuffle")]


def test_checks_examples_pass():
    with Recorder(Constraints()).at(None):
        result = doctest.testmod(checks, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 7 and result.failed == 0


def test_formulas_simplify_under_multiple_of_only_where_it_reads_better():
    constraints = Constraints({"H": SymbolInfo("H", multiple_of=4), "W": SymbolInfo("W", multiple_of=2)})
    assert constraints.simplify(4 * (floordiv(H - 1, 4) + 1)) == H
    assert constraints.simplify(2 * floordiv(W + 1, 2)) == W
    assert constraints.simplify(floordiv(H - 1, 4) + 1) == floordiv(H - 1, 4) + 1  # not H/4
    assert constraints.simplify(floordiv(H, 4)) == floordiv(H, 4)
    assert constraints.simplify(2 * floordiv(H + 1, 2) + W) == H + W
    assert Constraints({"H": SymbolInfo("H")}).simplify(4 * floordiv(H, 4)) == 4 * floordiv(H, 4)


@settings(max_examples=60)
@given(trees(), st.sampled_from([2, 3, 4, 8]))
def test_simplified_formulas_agree_at_every_admitted_size(tree, m):
    constraints = Constraints({"H": SymbolInfo("H", multiple_of=m)})
    simple = constraints.simplify(sympy.sympify(symbolic(tree)))
    for h in range(m, 12 * m + 1, m):
        assert sympy.sympify(simple).subs(H, h) == concrete(tree, h)


def test_decisions_stay_right_past_the_ones_kept():
    """Constraints keeps only its latest decisions (see constraints._DECISIONS_KEPT): a decision
    asked again after it was dropped is decided anew, to the same answer, and the kept ones
    stay bounded however many conditions an analysis asks about."""
    kept = constraints_module._DECISIONS_KEPT
    constraints = Constraints({"H": SymbolInfo("H", min=4)})
    first = [constraints.decide(sympy.Ge(H, k)) for k in range(2 * kept)]
    assert first == [k <= 4 or None for k in range(2 * kept)]
    assert len(constraints._cache) <= kept
    assert [constraints.decide(sympy.Ge(H, k)) for k in range(8)] == first[:8]  # dropped, decided again
    assert constraints.decide(sympy.Lt(H, 4)) is False  # the quiet counterpart: a decided False stays False
