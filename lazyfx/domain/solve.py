"""The exact set of valid sizes of one symbol, in the form a person writes it.

The conditions on a single symbol ``H`` that shape rules record are built
from ``+``, ``*`` by constants, floor divisions and remainders by constants
(conv/pool arithmetic, ``cat`` equalities, reshape divisibility), or are
monotone in ``H`` (a product of sizes compared with a Linear's
``in_features``). For those, validity is *decidable by counting*:

* a *floor-linear* condition ``a*H + (bounded periodic part) + b >= 0`` is
  periodic in ``H`` with period ``L`` (the lcm of the divisors) beyond a
  point bounded by its constants, so evaluating it on a finite window gives
  its truth everywhere;
* a *monotone* condition changes truth at most at two points, found by
  exponential and binary search.

:func:`solve` evaluates the conjunction on a window past every such point
and reads off ``H >= 32 and H % 16 == 0``, ``27 <= H <= 28``, ``H in {9, 11}``.
A condition of any other form is not summarized (the caller keeps it as a
formula): exact or explicit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import sympy

from lazyfx.core.constraints import SymbolInfo, as_bound, simplify_condition
from lazyfx.core.symbolic import FloorDiv

MAX_WINDOW = 200_000  # values evaluated per symbol, at most
SEARCH_LIMIT = 1 << 40  # monotone conditions are searched up to this size


@dataclass(frozen=True)
class SizeSet:
    """Valid values: ``explicit`` ones, then (from ``start``, up to ``stop``) those whose
    remainder modulo ``modulus`` is in ``residues``."""

    name: str
    explicit: tuple[int, ...]
    start: Optional[int]
    modulus: int = 1
    residues: frozenset = frozenset({0})
    stop: Optional[int] = None

    @property
    def is_empty(self) -> bool:
        return not self.explicit and self.start is None

    def smallest(self) -> Optional[int]:
        candidates = list(self.explicit)
        if self.start is not None:
            first = next((v for v in range(self.start, self.start + self.modulus) if v % self.modulus in self.residues),
                         None)
            if first is not None and (self.stop is None or first <= self.stop):
                candidates.append(first)
        return min(candidates) if candidates else None

    def values(self) -> Iterator[int]:
        """The valid values in increasing order (endless where the set is)."""
        explicit = sorted(self.explicit)
        pattern = self._pattern_values()
        following = next(pattern, None)
        for value in explicit:
            while following is not None and following < value:
                yield following
                following = next(pattern, None)
            if following == value:
                following = next(pattern, None)
            yield value
        while following is not None:
            yield following
            following = next(pattern, None)

    def _pattern_values(self) -> Iterator[int]:
        if self.start is None:
            return
        value = self.start
        while self.stop is None or value <= self.stop:
            if value % self.modulus in self.residues:
                yield value
            value += 1

    def contains(self, value: int) -> bool:
        if value in self.explicit:
            return True
        return (self.start is not None and value >= self.start and (self.stop is None or value <= self.stop)
                and value % self.modulus in self.residues)

    def conditions(self) -> list[str]:
        """The set as conditions joined by 'and' (one condition when it is a disjunction)."""
        if self.is_empty:
            return [f"no valid {self.name}"]
        pattern = self._pattern()
        if not self.explicit:
            return pattern
        listed = f"{self.name} in {{{', '.join(map(str, self.explicit))}}}"
        if self.start is None:
            return [listed]
        return [f"({listed} or ({' and '.join(pattern)}))"]

    def _pattern(self) -> list[str]:
        n = self.name
        parts = []
        if self.stop is not None and self.stop == self.start:
            return [f"{n} == {self.start}"]
        # ``H % 16 == 0`` already says H >= 16 (sizes are positive): a lower bound only when it says more
        natural = next(v for v in range(1, self.modulus + 1) if v % self.modulus in self.residues)
        if self.start is not None and self.start > natural:
            parts.append(f"{n} >= {self.start}" if self.stop is None else f"{self.start} <= {n} <= {self.stop}")
        elif self.stop is not None:
            parts.append(f"{n} <= {self.stop}")
        if self.modulus > 1:
            if len(self.residues) == 1:
                parts.append(f"{n} % {self.modulus} == {next(iter(self.residues))}")
            else:
                parts.append(f"{n} % {self.modulus} in {{{', '.join(map(str, sorted(self.residues)))}}}")
        return parts


def solve(symbol: sympy.Symbol, conditions: Sequence[sympy.Basic], info: SymbolInfo) -> Optional[SizeSet]:
    """The exact set of valid values of ``symbol``, or None when a condition has a form this
    does not summarize."""
    try:
        return _solve(symbol, conditions, info)
    except (ZeroDivisionError, OverflowError, TypeError, ValueError):  # a size formula undefined somewhere
        return None


_CONNECTIVES = (sympy.And, sympy.Or, sympy.Not)


def _solve(symbol: sympy.Symbol, conditions: Sequence[sympy.Basic], info: SymbolInfo) -> Optional[SizeSet]:
    if any(not isinstance(c, (sympy.core.relational.Relational, *_CONNECTIVES)) or c.free_symbols != {symbol}
           for c in conditions):
        return None
    low = max([1, info.min] + [b[2] for c in conditions if (b := as_bound(simplify_condition(c))) and b[1] == ">="])
    window = [info.multiple_of, low]  # the period and the reach past which every condition is periodic
    checks = [_check(cond, symbol, low, window) for cond in conditions]
    if any(check is None for check in checks):
        return None
    period, reach = window
    if period > MAX_WINDOW:
        return None
    end = info.max if info.max is not None else reach + 2 * period
    if end - low > MAX_WINDOW:
        return None

    def valid(h: int) -> bool:
        return info.admits(h) and all(check(h) for check in checks)

    values = [h for h in range(low, end + 1) if valid(h)]
    if info.max is not None:
        return _finite(symbol.name, values)
    return _periodic(symbol.name, values, low, end, period, valid)


def _check(cond: sympy.Basic, symbol: sympy.Symbol, low: int, window: list) -> Optional[Callable[[int], bool]]:
    """``cond`` as a test of one size (``and``/``or``/``not`` of comparisons too: ``T == 1 or
    T == 16`` from a broadcast), widening ``window`` (period, reach) to cover each comparison;
    None for a comparison of a form this does not decide."""
    if isinstance(cond, _CONNECTIVES):
        parts = [_check(arg, symbol, low, window) for arg in cond.args]
        if any(part is None for part in parts):
            return None
        if isinstance(cond, sympy.Not):
            return lambda h: not parts[0](h)
        combine = all if isinstance(cond, sympy.And) else any
        return lambda h: combine(part(h) for part in parts)
    if not isinstance(cond, sympy.core.relational.Relational):
        return None
    raw = cond.lhs - cond.rhs
    diff = sympy.expand(raw)
    evaluate = _compile(diff, symbol)
    raw_direction = _direction(raw, symbol, low)
    direction = raw_direction if raw_direction is not None else _direction(diff, symbol, low)
    if direction == 0:  # constant in the symbol: the same answer at every size
        return _relation(cond.rel_op, evaluate)
    reaches: tuple = ()
    if direction is not None:
        # monotone: a comparison with 0 keeps its answer below where the formula reaches 0,
        # from there to where it passes 0, and beyond, so the window need only reach past those
        # two sizes (a floor-linear bound reaches past every constant: 56,000 sizes for the
        # checkpoint fit 64*((H - 9)//4 + 1)*((W - 9)//4 + 1) == 2304, at each H)
        reaches = (_first(lambda h: direction * evaluate(h) >= 0, low),
                   _first(lambda h: direction * evaluate(h) > 0, low))
        if None not in reaches:
            window[1] = max(window[1], *reaches)
            return _relation(cond.rel_op, evaluate)
    linear = _floor_linear(diff, symbol)
    if linear is not None:
        modulus, constants = linear
        window[0] = _lcm(window[0], modulus)
        window[1] = max(window[1], low + (constants + 2) * modulus)
    elif raw_direction is None:
        return None
    else:  # a point not reached by SEARCH_LIMIT is taken as never reached: the window need not reach it
        window[1] = max(window[1], *(low if r is None else r for r in reaches))
    return _relation(cond.rel_op, evaluate)


def _finite(name: str, values: list[int]) -> SizeSet:
    if not values:
        return SizeSet(name, (), None)
    if values == list(range(values[0], values[-1] + 1)):
        return SizeSet(name, (), values[0], stop=values[-1])
    modulus = next((m for m in range(2, 65) if all((v - values[0]) % m == 0 for v in values)
                    and values == list(range(values[0], values[-1] + 1, m))), None)
    if modulus:
        return SizeSet(name, (), values[0], modulus, frozenset({values[0] % modulus}), values[-1])
    return SizeSet(name, tuple(values), None)


def _periodic(name: str, values: list[int], low: int, end: int, period: int, valid) -> Optional[SizeSet]:
    """Read off the pattern of the last two periods and where it starts."""
    tail = range(end - 2 * period + 1, end + 1)
    residues = frozenset(h % period for h in tail if valid(h))
    if residues != frozenset(h % period for h in range(end - period + 1, end + 1) if valid(h)):
        return None  # pragma: no cover - the window reaches past every transition
    if not residues:
        return _finite(name, values)
    start = end - 2 * period + 1
    while start - 1 >= low and valid(start - 1) == ((start - 1) % period in residues):
        start -= 1
    explicit = tuple(v for v in values if v < start)
    first = next(h for h in range(start, end + 1) if h % period in residues)
    modulus, residues = _coarsest(period, residues)
    return SizeSet(name, explicit, first, modulus, residues)


def _coarsest(period: int, residues: frozenset) -> tuple[int, frozenset]:
    """The smallest modulus that describes the same residue classes (``H % 16 == 0``, not
    ``H % 32 in {0, 16}``)."""
    for m in sorted(d for d in range(1, period + 1) if period % d == 0):
        reduced = frozenset(r % m for r in residues)
        if all((r % m in reduced) == (r in residues) for r in range(period)):
            return m, reduced
    return period, residues  # pragma: no cover


def _relation(op: str, evaluate) -> Callable[[int], bool]:
    import operator

    compare = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
               "==": operator.eq, "!=": operator.ne}[op]
    return lambda h: compare(evaluate(h), 0)


@functools.lru_cache(maxsize=1024)  # lambdify generates and compiles Python source: the same conditions recur
def _compile(expr: sympy.Expr, symbol: sympy.Symbol) -> Callable[[int], int]:
    functions = {"FloorDiv": lambda a, b: a // b, "Mod": lambda a, b: a % b, "Max": max, "Min": min}
    return sympy.lambdify(symbol, expr, modules=[functions, "math"])


def _floor_linear(expr: sympy.Expr, symbol: sympy.Symbol) -> Optional[tuple[int, int]]:
    """(lcm of divisors, sum of constants) when ``expr`` is linear in the symbol and in floor
    divisions/remainders of such forms by integers; else None."""
    if expr.is_Integer:
        return 1, abs(int(expr))
    if expr == symbol:
        return 1, 1
    if expr.is_Add or isinstance(expr, (sympy.Min, sympy.Max)):
        # min/max of floor-linear terms: their slopes differ by at least 1/lcm where they
        # differ at all, so the choice settles within the same reach as a sum's constants
        parts = [_floor_linear(a, symbol) for a in expr.args]
        if any(p is None for p in parts):
            return None
        return _lcm(*(p[0] for p in parts)), sum(p[1] for p in parts)
    if expr.is_Mul:
        coeff, rest = expr.as_coeff_Mul()
        inner = _floor_linear(rest, symbol) if coeff.is_Integer and rest is not expr else None
        return None if inner is None else (inner[0], abs(int(coeff)) * (inner[1] + 1))
    if isinstance(expr, (FloorDiv, sympy.Mod)):
        p, q = expr.args
        inner = _floor_linear(p, symbol)
        if inner is None or not q.is_Integer or q <= 0:
            return None
        return _lcm(inner[0], int(q)), inner[1] + (int(q) if isinstance(expr, sympy.Mod) else 0)
    return None


def _direction(expr: sympy.Expr, symbol: sympy.Symbol, low: int) -> Optional[int]:
    """+1 nondecreasing, -1 nonincreasing, 0 constant in the symbol for values >= low; None unknown."""
    if expr.is_Number:
        return 0
    if expr == symbol:
        return 1
    if expr.is_Add:
        directions = [_direction(a, symbol, low) for a in expr.args]
        if None in directions or (1 in directions and -1 in directions):
            return None
        return 1 if 1 in directions else (-1 if -1 in directions else 0)
    if expr.is_Mul:
        coeff, rest = expr.as_coeff_Mul()
        factors = sympy.Mul.make_args(rest)
        if len(factors) == 1 and coeff.is_Number and coeff != 0:  # a monotone formula times a constant, of any sign
            direction = _direction(factors[0], symbol, low)
            return None if direction is None else direction * (1 if coeff > 0 else -1)
        directions = [_direction(f, symbol, low) for f in factors]
        at_low = [_value_at(f, symbol, low) for f in factors]
        if None in directions or -1 in directions or any(v is None or v < 0 for v in at_low):
            return None
        sign = 1 if coeff > 0 else -1
        return sign if 1 in directions else 0
    if expr.is_Pow and expr.args[1].is_Integer and expr.args[1] > 0:
        base = expr.args[0]
        direction, value = _direction(base, symbol, low), _value_at(base, symbol, low)
        return direction if direction is not None and value is not None and value >= 0 else None
    if isinstance(expr, FloorDiv) and expr.args[1].is_Integer and expr.args[1] > 0:
        return _direction(expr.args[0], symbol, low)
    if isinstance(expr, (sympy.Max, sympy.Min)):
        directions = {_direction(a, symbol, low) for a in expr.args}
        return directions.pop() if len(directions) == 1 else None
    return None


def _value_at(expr: sympy.Expr, symbol: sympy.Symbol, value: int) -> Optional[int]:
    result = expr.xreplace({symbol: sympy.Integer(value)})
    return int(result) if result.is_Integer else None


def _first(predicate: Callable[[int], bool], low: int) -> Optional[int]:
    """The smallest size from ``low`` where a predicate that stays true once true holds (doubling,
    then bisecting), or None when it does not hold up to ``SEARCH_LIMIT``."""
    if predicate(low):
        return low
    high = low + 1
    while not predicate(high):
        if high > SEARCH_LIMIT:
            return None
        high = 2 * high - low
    lo = low
    while high - lo > 1:
        mid = (lo + high) // 2
        lo, high = (lo, mid) if predicate(mid) else (mid, high)
    return high


def _lcm(*values: int) -> int:
    result = 1
    for v in values:
        result = result * v // math.gcd(result, v)
    return result


def solve_pair(cond: sympy.Basic, x: sympy.Symbol, y: sympy.Symbol, sizes_x: SizeSet, sizes_y: SizeSet,
               info_y: SymbolInfo, limit: int = 10_000) -> Optional[list[tuple[int, int]]]:
    """The pairs that satisfy an equality between a formula in two symbols and a constant,
    when the formula grows with each (``64*((H - 4)//4)*((W - 4)//4) == 6272``): x only goes
    up to where the formula, with y at its smallest, passes the constant."""
    if not isinstance(cond, sympy.Eq) or cond.free_symbols != {x, y}:
        return None
    low_x, low_y = sizes_x.smallest(), sizes_y.smallest()
    if low_x is None or low_y is None:
        return []
    raw = cond.lhs - cond.rhs
    at_low_y = raw.xreplace({y: sympy.Integer(low_y)})
    if _direction(at_low_y, x, low_x) != 1 or _direction(raw.xreplace({x: sympy.Integer(low_x)}), y, low_y) != 1:
        return None
    evaluate = _compile(at_low_y, x)
    pairs = []
    value = low_x
    while evaluate(value) <= 0:
        if value - low_x > limit:
            return None
        if sizes_x.contains(value):
            fixed = sympy.Eq(raw.xreplace({x: sympy.Integer(value)}), 0)
            found = solve(y, [fixed], info_y)
            if found is None or found.start is not None and found.stop is None:
                return None
            pairs += [(value, v) for v in _members(found) if sizes_y.contains(v)]
        value += 1
    return pairs


def _members(sizes: SizeSet) -> list[int]:
    values = list(sizes.explicit)
    if sizes.start is not None and sizes.stop is not None:
        values += [v for v in range(sizes.start, sizes.stop + 1) if v % sizes.modulus in sizes.residues]
    return values
