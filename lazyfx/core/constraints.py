"""What is known about the input symbols, and deciding comparisons under it.

A comparison between dims is *decided* (True or False for every input the
spec allows) or *undecided*; undecided is a result, never a guess. Deciding
uses interval bounds of the difference of both sides, computed from each
symbol's range (``Dim(min=, max=)``, positive by default), after rewriting
symbols with ``multiple_of=m`` as ``m*k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

import sympy

from lazyfx.core.symbolic import FloorDiv, symbol

Interval = tuple[Union[int, float], Union[int, float]]
INF = math.inf


@dataclass(frozen=True)
class SymbolInfo:
    """A symbol's constraints: ``min <= value <= max`` and ``value % multiple_of == 0``."""

    name: str
    min: int = 1
    max: Optional[int] = None
    multiple_of: int = 1
    # whether the user said which sizes it takes (``H>=1`` or ``Dim("H", min=1)`` too), rather than
    # leaving it any positive size: declared sizes are requirements (lazyfx.domain.domain.declared_rejections)
    declared: bool = field(default=False, compare=False)

    @property
    def symbol(self) -> sympy.Symbol:
        return symbol(self.name)

    def admits(self, value: int) -> bool:
        return (
            value >= self.min
            and (self.max is None or value <= self.max)
            and value % self.multiple_of == 0
        )

    def smallest(self) -> int:
        return -(-self.min // self.multiple_of) * self.multiple_of

    def conditions(self) -> list[sympy.Basic]:
        s = self.symbol
        out: list[sympy.Basic] = []
        if self.min > 1:
            out.append(sympy.Ge(s, self.min))
        if self.max is not None:
            out.append(sympy.Le(s, self.max))
        if self.multiple_of > 1:
            out.append(sympy.Eq(sympy.Mod(s, self.multiple_of), 0))
        return out


# How many decisions a Constraints keeps. Bounded, because Python hashes integers modulo
# 2**61 - 1: 2**k and 2**(k + 61) hash alike, so a deep stack of halvings (sizes
# (H - 1)//2**k + 1) fills one dict bucket chain per residue, and each lookup compares along it.
# Unbounded, that made every decision slower the deeper the model (a 10,000-conv stack with
# symbolic H, W: 43 sympy comparisons per node from this cache alone); the conditions a
# model asks again (its repeated blocks) come again soon after.
_DECISIONS_KEPT = 512


class Constraints:
    """The symbols of one analysis and a decision procedure for comparisons."""

    def __init__(self, infos: dict[str, SymbolInfo] | None = None) -> None:
        self.infos: dict[str, SymbolInfo] = dict(infos or {})
        self._ranges: dict[sympy.Symbol, Interval] = {}
        self._multiples: dict[sympy.Symbol, sympy.Expr] = {}
        for info in self.infos.values():
            if info.multiple_of > 1:
                k = sympy.Symbol(f"_{info.name}_k", integer=True, positive=True)
                self._multiples[info.symbol] = info.multiple_of * k
                hi = INF if info.max is None else info.max // info.multiple_of
                self._ranges[k] = (max(1, -(-info.min // info.multiple_of)), hi)
            else:
                self._ranges[info.symbol] = (info.min, INF if info.max is None else info.max)
        self._cache: dict[sympy.Basic, Optional[bool]] = {}
        self._simplified: dict[sympy.Expr, sympy.Expr] = {}

    def tighten(self, cond: sympy.Basic) -> None:
        """Narrow a symbol's range by a condition the model requires (``H >= 3``), so that
        later comparisons are decided within the domain the earlier ones leave. ``T == 1``
        fixes the range to that one size."""
        if isinstance(cond, sympy.Eq):
            for sym, value in ((cond.lhs, cond.rhs), (cond.rhs, cond.lhs)):
                if sym.is_Symbol and value.is_Integer:
                    self.tighten(sympy.Ge(sym, value))
                    self.tighten(sympy.Le(sym, value))
                    return
        bound = as_bound(simplify_condition(cond))
        if bound is None:
            return
        sym, op, value = bound
        if sym in self._multiples:
            m = int(self._multiples[sym].as_coeff_Mul()[0])
            sym = next(iter(self._multiples[sym].free_symbols))
            value = -(-value // m) if op == ">=" else value // m
        lo, hi = self._ranges.get(sym, (1, INF))
        self._ranges[sym] = (max(lo, value), hi) if op == ">=" else (lo, min(hi, value))
        self._cache.clear()

    def snapshot(self) -> dict:
        """The current ranges, to restore when an analysis attempt is abandoned."""
        return dict(self._ranges)

    def restore(self, ranges: dict) -> None:
        self._ranges = dict(ranges)
        self._cache.clear()

    def range_of(self, sym: sympy.Symbol) -> tuple[int, Optional[int]]:
        """The current (tightened) range of a user symbol: ``(low, high or None)``."""
        if sym in self._multiples:
            m = int(self._multiples[sym].as_coeff_Mul()[0])
            k = next(iter(self._multiples[sym].free_symbols))
            lo, hi = self._ranges.get(k, (1, INF))
            return lo * m, None if hi == INF else hi * m
        lo, hi = self._ranges.get(sym, (1, INF))
        return int(lo), None if hi == INF else int(hi)

    def info(self, name: str) -> SymbolInfo:
        return self.infos.get(name) or SymbolInfo(name)

    @property
    def has_multiples(self) -> bool:
        """Whether a symbol has ``multiple_of`` > 1 (only then can :meth:`simplify` change anything)."""
        return bool(self._multiples)

    def simplify(self, expr: object) -> object:
        """``expr`` rewritten under the symbols' ``multiple_of``, where that makes it simpler:
        with ``H % 4 == 0``, ``4*((H - 1)//4 + 1)`` is ``H``. The rewrite goes through
        ``H = 4*k`` and back, and is kept only when it has integer coefficients and fewer
        operations (``(H - 1)//4 + 1`` would become ``H/4``, which reads worse)."""
        if not self._multiples or not isinstance(expr, sympy.Expr) or expr.is_Number:
            return expr
        used = {s: m for s, m in self._multiples.items() if s in expr.free_symbols}
        if not used:
            return expr
        if expr in self._simplified:
            return self._simplified[expr]
        back = {next(iter(m.free_symbols)): s / m.as_coeff_Mul()[0] for s, m in used.items()}
        result = sympy.expand(expr.xreplace(used).xreplace(back))
        integral = all(r.is_integer for r in result.atoms(sympy.Rational))
        if not (integral and result.free_symbols <= expr.free_symbols
                and sympy.count_ops(result) < sympy.count_ops(expr)):
            result = expr
        self._simplified[expr] = result
        return result

    # -- deciding --------------------------------------------------------------

    def decide(self, cond: object) -> Optional[bool]:
        """True or False when ``cond`` holds resp. fails for every admitted input, else None."""
        if isinstance(cond, bool):
            return cond
        if cond is sympy.true:
            return True
        if cond is sympy.false:
            return False
        if not isinstance(cond, sympy.Basic):
            return bool(cond)
        cache = self._cache
        if cond in cache:
            return cache[cond]
        result = self._decide(cond)
        if len(cache) >= _DECISIONS_KEPT:  # the oldest goes (see _DECISIONS_KEPT)
            del cache[next(iter(cache))]
        cache[cond] = result
        return result

    def _decide(self, cond: sympy.Basic) -> Optional[bool]:
        if isinstance(cond, sympy.And):
            results = [self.decide(a) for a in cond.args]
            return False if False in results else (True if all(results) else None)
        if isinstance(cond, sympy.Or):
            results = [self.decide(a) for a in cond.args]
            return True if True in results else (False if all(r is False for r in results) else None)
        if isinstance(cond, sympy.Not):
            inner = self.decide(cond.args[0])
            return None if inner is None else not inner
        if not isinstance(cond, sympy.core.relational.Relational):
            return None
        raw = cond.lhs - cond.rhs
        if self._multiples:
            raw = raw.xreplace(self._multiples)
        diff = sympy.expand(raw)
        # Interval bounds lose correlations differently in the factored and the expanded
        # form (B*(H//2 + 1) - 1 is clearly positive; its expansion is not): both are
        # sound, so their intersection is too.
        lo, hi = _intersect(self.bounds(raw), self.bounds(diff))
        op = cond.rel_op
        if op == ">=":
            return True if lo >= 0 else (False if hi < 0 else None)
        if op == ">":
            return True if lo > 0 else (False if hi <= 0 else None)
        if op == "<=":
            return True if hi <= 0 else (False if lo > 0 else None)
        if op == "<":
            return True if hi < 0 else (False if lo >= 0 else None)
        if op == "==":  # (a sound interval of one point 0: the sides are equal wherever admitted)
            return True if diff == 0 or lo == hi == 0 else (False if lo > 0 or hi < 0 else None)
        if op == "!=":
            return False if diff == 0 or lo == hi == 0 else (True if lo > 0 or hi < 0 else None)
        return None  # pragma: no cover

    # -- interval bounds ----------------------------------------------------------

    def bounds(self, expr: sympy.Basic) -> Interval:
        """A sound interval containing every value ``expr`` takes on admitted inputs."""
        if expr.is_Integer:
            v = int(expr)
            return (v, v)
        if expr.is_Symbol:
            return self._ranges.get(expr, (1, INF))
        if expr.is_Add:
            lo = hi = 0
            for arg in expr.args:
                a, b = self.bounds(arg)
                lo, hi = _plus(lo, a), _plus(hi, b)
            return (lo, hi)
        if expr.is_Mul:
            result: Interval = (1, 1)
            for arg in expr.args:
                result = _mul(result, self.bounds(arg))
            return result
        if isinstance(expr, FloorDiv):
            return self._floordiv_bounds(*expr.args)
        if isinstance(expr, sympy.Mod):
            p, q = expr.args
            if q.is_Integer and q > 0:
                lo, hi = self.bounds(p)
                if lo >= 0 and hi < q:
                    return (lo, hi)
                return (0, int(q) - 1)
        if isinstance(expr, (sympy.Max, sympy.Min)):
            parts = [self.bounds(a) for a in expr.args]
            pick = max if isinstance(expr, sympy.Max) else min
            return (pick(p[0] for p in parts), pick(p[1] for p in parts))
        if expr.is_Pow:
            base, exp = expr.args
            if exp.is_Integer and exp > 0:
                lo, hi = self.bounds(base)
                n = int(exp)
                if lo >= 0:
                    return (lo**n, hi**n)
                if n % 2 == 0:
                    return (0, max(lo**n, hi**n))
                return (lo**n, hi**n)
        return (-INF, INF)

    def _floordiv_bounds(self, p: sympy.Expr, q: sympy.Expr) -> Interval:
        lo, hi = self.bounds(p)
        qlo, qhi = self.bounds(q)
        if qlo <= 0:
            return (-INF, INF)
        if lo >= 0:
            return (_floor_div(lo, qhi), _floor_div(hi, qlo))
        return (_floor_div(lo, qlo), _floor_div(hi, qlo) if hi >= 0 else _floor_div(hi, qhi))


def _intersect(x: Interval, y: Interval) -> Interval:
    return (max(x[0], y[0]), min(x[1], y[1]))


def _floor_div(a, b):
    if a in (INF, -INF) or b == INF:
        if b == INF:
            return 0 if a >= 0 else -1
        return a
    return a // b


def _plus(a, b):
    """``a + b`` where either may be infinite: an int past 2**1024 plus a float infinity would
    convert the int to a float, which raises OverflowError (a lower bound is never +INF, an
    upper one never -INF, so no sum meets both)."""
    if a in (INF, -INF):
        return a
    if b in (INF, -INF):
        return b
    return a + b


def _mul(x: Interval, y: Interval) -> Interval:
    def times(a, b):
        if a == 0 or b == 0:
            return 0
        if a in (INF, -INF) or b in (INF, -INF):  # without converting a huge int to a float
            return INF if (a > 0) == (b > 0) else -INF
        return a * b

    products = [times(a, b) for a in x for b in y]
    return (min(products), max(products))


# -- reading conditions -------------------------------------------------------------


def simplify_condition(cond: sympy.Basic) -> sympy.Basic:
    """An equivalent, more readable form of a condition on positive integer symbols:
    ``(H - 3)//2 + 1 >= 1`` becomes ``H >= 3``. A condition that does not reduce to a
    bound on one symbol keeps its original (unexpanded) form."""
    if not isinstance(cond, sympy.core.relational.Relational):
        return cond
    op, diff = cond.rel_op, sympy.expand(cond.lhs - cond.rhs)
    if op in (">", "<"):  # integers: d > 0  <=>  d - 1 >= 0
        diff, op = (diff - 1, ">=") if op == ">" else (diff + 1, "<=")
    if op in (">=", "<="):
        solved = _solve_linear(_unwrap_floordiv(diff, op), op)
        if solved is not None:
            return solved
        const, rest = sympy.factor_terms(cond.lhs - cond.rhs).as_coeff_Add()
        if cond.rel_op in (">", "<"):
            return (sympy.Gt if cond.rel_op == ">" else sympy.Lt)(rest, -const, evaluate=False)
        return (sympy.Ge if op == ">=" else sympy.Le)(rest, -const, evaluate=False)
    return cond


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


def _solve_linear(diff: sympy.Expr, op: str) -> Optional[sympy.Basic]:
    """``k*H + c >= 0`` -> ``H >= ceil(-c/k)``; None when ``diff`` is not linear in one symbol."""
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
    return None


def as_bound(cond: sympy.Basic) -> Optional[tuple[sympy.Symbol, str, int]]:
    """``(H, ">=", 3)`` when a simplified condition bounds one symbol, else None."""
    if isinstance(cond, (sympy.GreaterThan, sympy.LessThan)) and cond.lhs.is_Symbol and cond.rhs.is_Integer:
        return cond.lhs, cond.rel_op, int(cond.rhs)
    return None
