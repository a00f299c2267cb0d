"""The input domain: the conditions on the input symbols under which the model is valid.

Conditions come from the rules (a kernel must fit, two dims must agree, a
reshape must divide) when they hold for some inputs but not all; together
with each symbol's ``Dim`` constraints they are exactly the inputs the
analysis accepts. They print the way a person writes them: a floor division
is moved to the other side (``(H - 3)//2 + 1 >= 1`` prints as ``H >= 3``).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import sympy

from lazyfx.checks import Condition
from lazyfx.constraints import Constraints
from lazyfx.symbolic import FloorDiv, fmt


class Domain:
    """The set of valid inputs. ``str(domain)`` gives the conditions; ``contains(H=64)`` tests a point."""

    def __init__(self, constraints: Constraints, conditions: Iterable[Condition]) -> None:
        self.constraints = constraints
        conditions = list(conditions)
        self.requirements: list[Condition] = [c for c in conditions if c.kind == "requires"]
        self.assumptions: list[Condition] = [c for c in conditions if c.kind == "assumes"]

    @property
    def symbols(self) -> list[str]:
        names = set(self.constraints.infos)
        for c in self.requirements:
            names |= {s.name for s in c.expr.free_symbols}
        return sorted(names)

    def conditions(self) -> list[sympy.Basic]:
        """Every condition, simplified for reading: symbol constraints first, then the model's."""
        out: list[sympy.Basic] = []
        for info in self.constraints.infos.values():
            out.extend(info.conditions())
        for c in self.requirements:
            simple = simplify_condition(c.expr)
            if simple not in out:
                out.append(simple)
        return out

    def contains(self, **sizes: int) -> bool:
        """Whether concrete sizes for every symbol are valid inputs."""
        missing = [s for s in self.symbols if s not in sizes]
        if missing:
            raise TypeError(f"contains() needs a size for every symbol; missing: {', '.join(missing)}")
        for name, value in sizes.items():
            if not isinstance(value, int) or value < 1 or not self.constraints.info(name).admits(value):
                return False
        values = {sympy.Symbol(n, integer=True, positive=True): sympy.Integer(v) for n, v in sizes.items()}
        return all(bool(c.expr.xreplace(values)) for c in self.requirements)

    def __str__(self) -> str:
        conditions = self.conditions()
        if not conditions:
            return "all positive sizes"
        return " and ".join(fmt(c) for c in conditions)

    def __repr__(self) -> str:
        return f"<Domain: {self}>"


def simplify_condition(cond: sympy.Basic) -> sympy.Basic:
    """An equivalent, more readable form of a condition on positive integer symbols."""
    if not isinstance(cond, sympy.core.relational.Relational):
        return cond
    op, diff = cond.rel_op, sympy.expand(cond.lhs - cond.rhs)
    if op in (">", "<"):  # integers: d > 0  <=>  d - 1 >= 0
        diff, op = (diff - 1, ">=") if op == ">" else (diff + 1, "<=")
    if op in (">=", "<="):
        diff = _unwrap_floordiv(diff, op)
        return _solve_linear(diff, op)
    return sympy.Eq(diff, 0) if op == "==" else cond


def _unwrap_floordiv(diff: sympy.Expr, op: str) -> sympy.Expr:
    """``a//q + c >= 0  <=>  a + c*q >= 0`` and ``a//q + c <= 0  <=>  a + c*q - (q - 1) <= 0``."""
    while True:
        const, rest = diff.as_coeff_Add()
        if not isinstance(rest, FloorDiv):
            return diff
        a, q = rest.args
        if not q.is_Integer:
            return diff
        diff = sympy.expand(a + const * q - (q - 1 if op == "<=" else 0))


def _solve_linear(diff: sympy.Expr, op: str) -> sympy.Basic:
    """``k*H + c >= 0`` -> ``H >= ceil(-c/k)``; anything else keeps its constant on the right."""
    symbols = diff.free_symbols
    const, rest = diff.as_coeff_Add()
    if len(symbols) == 1:
        (s,) = symbols
        k = rest.coeff(s)
        if rest == k * s and k.is_Integer and k != 0:
            bound = sympy.Rational(-const, k)
            if (op == ">=") == (k > 0):
                return sympy.Ge(s, math.ceil(bound))
            return sympy.Le(s, math.floor(bound))
    relation = sympy.Ge if op == ">=" else sympy.Le
    return relation(rest, -const, evaluate=False)


def first_failing(domain: Domain, sizes: dict[str, int]) -> Optional[Condition]:
    """The first model condition that ``sizes`` violates (for messages)."""
    values = {sympy.Symbol(n, integer=True, positive=True): sympy.Integer(v) for n, v in sizes.items()}
    for c in domain.requirements:
        if not bool(c.expr.xreplace(values)):
            return c
    return None
