"""The input domain: the conditions on the input symbols under which the model is valid.

Conditions come from the rules (a kernel must fit, two dims must agree, a
reshape must divide) when they hold for some inputs but not all; together
with each symbol's ``Dim`` constraints they are exactly the inputs the
analysis accepts. For reading they are simplified: a floor division moves to
the other side (``(H - 3)//2 + 1 >= 1`` reads ``H >= 3``), bounds on one
symbol merge into the tightest, and conditions the others imply are dropped.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Optional

import sympy

from lazyfx.checks import Condition
from lazyfx.constraints import Constraints, SymbolInfo, as_bound, simplify_condition
from lazyfx.solve import SizeSet, solve, solve_pair
from lazyfx.symbolic import fmt, symbol


class Domain:
    """The set of valid inputs. ``str(domain)`` gives the conditions; ``contains(H=64)`` tests a point."""

    def __init__(self, constraints: Constraints, conditions: Iterable[Condition]) -> None:
        self.constraints = constraints
        conditions = list(conditions)
        self.requirements: list[Condition] = [c for c in conditions if c.kind == "requires"]
        self.assumptions: list[Condition] = [c for c in conditions if c.kind == "assumes"]
        self._solved: Optional[dict[str, Optional[SizeSet]]] = None

    @property
    def symbols(self) -> list[str]:
        names = set(self.constraints.infos)
        for c in self.requirements:
            names |= {s.name for s in c.expr.free_symbols}
        return sorted(names)

    def bounds(self) -> dict[str, SymbolInfo]:
        """Each symbol's tightest range: its Dim constraints and the single-symbol conditions."""
        infos = {name: self.constraints.info(name) for name in self.symbols}
        for c in self.requirements:
            bound = as_bound(simplify_condition(c.expr))
            if bound is None:
                continue
            sym, op, value = bound
            info = infos[sym.name]
            if op == ">=":
                infos[sym.name] = SymbolInfo(sym.name, max(info.min, value), info.max, info.multiple_of)
            else:
                high = value if info.max is None else min(info.max, value)
                infos[sym.name] = SymbolInfo(sym.name, info.min, high, info.multiple_of)
        return infos

    def conditions(self) -> list[sympy.Basic]:
        """The domain as a list of simple conditions: per-symbol bounds first, then the rest,
        leaving out what those already imply."""
        infos = self.bounds()
        out: list[sympy.Basic] = []
        for info in infos.values():
            out.extend(info.conditions())
        decider = Constraints(infos)
        for c in self.requirements:
            simple = simplify_condition(c.expr)
            if as_bound(simple) is None and decider.decide(simple) is not True and simple not in out:
                out.append(simple)
        return out

    def solved(self) -> dict[str, Optional[SizeSet]]:
        """Each symbol's exact set of valid values (None where its conditions are of a form
        :mod:`lazyfx.solve` does not summarize)."""
        if self._solved is None:
            single: dict[str, list] = {name: [] for name in self.symbols}
            for c in self.requirements:
                names = {s.name for s in c.expr.free_symbols}
                if len(names) == 1:
                    single[names.pop()].append(c.expr)
            self._solved = {
                name: solve(symbol(name), conditions, self.constraints.info(name))
                for name, conditions in single.items()
            }
        return self._solved

    def describe(self) -> list[str]:
        """The domain as conditions a person would write: one exact summary per symbol
        where possible, then the conditions that relate several symbols."""
        solved = self.solved()
        out: list[str] = []
        infos = self.bounds()
        for name in self.symbols:
            sizes = solved.get(name)
            if sizes is not None:
                out += sizes.conditions()
                smallest = sizes.smallest()
                if smallest is not None:
                    info = infos[name]
                    infos[name] = SymbolInfo(name, max(info.min, smallest), info.max, info.multiple_of)
            else:
                out += [fmt(c) for c in self._raw_conditions(name, infos)]
        decider = Constraints(infos)
        for c in self.requirements:
            if len(c.expr.free_symbols) > 1:
                simple = simplify_condition(c.expr)
                text = self._pairs(c.expr, solved) or fmt(simple)
                if decider.decide(simple) is not True and text not in out:
                    out.append(text)
        return out

    def _pairs(self, cond: sympy.Basic, solved: dict) -> Optional[str]:
        """An equality in two symbols as the pairs of sizes that satisfy it (a checkpoint's
        ``in_features`` read back as input sizes)."""
        if len(cond.free_symbols) != 2:
            return None
        x, y = sorted(cond.free_symbols, key=lambda s: s.name)
        if solved.get(x.name) is None or solved.get(y.name) is None:
            return None
        pairs = solve_pair(cond, x, y, solved[x.name], solved[y.name], self.constraints.info(y.name))
        if pairs is None:
            return None
        if not pairs:
            return f"no valid ({x}, {y}): {fmt(cond)} has no solution"
        if len(pairs) > 16:
            return f"{fmt(simplify_condition(cond))} ({len(pairs)} pairs of sizes, e.g. {x}={pairs[0][0]}, {y}={pairs[0][1]})"
        xs, ys = sorted({p[0] for p in pairs}), sorted({p[1] for p in pairs})
        if len(pairs) == len(xs) * len(ys):
            return f"{x} in {{{', '.join(map(str, xs))}}} and {y} in {{{', '.join(map(str, ys))}}}"
        return f"({x}, {y}) in {{{', '.join(f'({a}, {b})' for a, b in pairs)}}}"

    def _raw_conditions(self, name: str, infos: dict[str, SymbolInfo]) -> list[sympy.Basic]:
        out = list(infos[name].conditions())
        decider = Constraints(infos)
        for c in self.requirements:
            if {s.name for s in c.expr.free_symbols} == {name}:
                simple = simplify_condition(c.expr)
                if as_bound(simple) is None and decider.decide(simple) is not True and simple not in out:
                    out.append(simple)
        return out

    def smallest(self) -> Optional[dict[str, int]]:
        """The smallest valid size of each symbol on its own (None where that is not known
        exactly). Where a condition relates two symbols these need not be valid together:
        :meth:`example` gives a valid input."""
        solved = self.solved()
        if any(solved.get(n) is None for n in self.symbols):
            return None
        return {n: solved[n].smallest() for n in self.symbols}

    def example(self, candidates: int = 20_000) -> Optional[dict[str, int]]:
        """A valid input, as small as possible: the per-symbol smallest sizes when they are
        valid together, else the first valid combination of each symbol's smallest valid
        sizes, trying those with smaller sizes first. None when none of the first
        ``candidates`` combinations is valid (or a symbol's valid sizes are not known).

        >>> report = lazyfx.infer(unet, ("B", 3, "H", "W"))
        >>> report.domain.example()
        {'B': 1, 'H': 16, 'W': 32}
        """
        solved = self.solved()
        if any(solved.get(n) is None for n in self.symbols):
            return None
        if not self.symbols:
            return {}
        per_symbol = max(2, int(candidates ** (1 / len(self.symbols))))
        sizes = {n: list(itertools.islice(solved[n].values(), per_symbol)) for n in self.symbols}
        if any(not values for values in sizes.values()):
            return None
        ranked = sorted(itertools.product(*(range(len(sizes[n])) for n in self.symbols)), key=lambda ix: (sum(ix), ix))
        for index in ranked:
            point = {n: sizes[n][i] for n, i in zip(self.symbols, index)}
            if self.contains(**point):
                return point
        return None

    @property
    def is_empty(self) -> bool:
        """True when no input is valid: a symbol has no valid size, an equality between two
        symbols has no solution, or bounds contradict."""
        if any(s is not None and s.is_empty for s in self.solved().values()):
            return True
        if any(text.startswith("no valid") for text in self.describe()):
            return True
        return any(info.max is not None and info.smallest() > info.max for info in self.bounds().values())

    def contains(self, **sizes: int) -> bool:
        """Whether concrete sizes for every symbol are valid inputs."""
        missing = [s for s in self.symbols if s not in sizes]
        if missing:
            raise TypeError(f"contains() needs a size for every symbol; missing: {', '.join(missing)}")
        for name, value in sizes.items():
            if not isinstance(value, int) or not self.constraints.info(name).admits(value):
                return False
        return first_failing(self, sizes) is None

    def __str__(self) -> str:
        described = self.describe()
        if not described:
            return "all positive sizes"
        return " and ".join(described)

    def __repr__(self) -> str:
        return f"<Domain: {self}>"


def first_failing(domain: Domain, sizes: dict[str, int]) -> Optional[Condition]:
    """The first model condition that concrete ``sizes`` violate."""
    values = {symbol(n): sympy.Integer(v) for n, v in sizes.items()}
    for c in domain.requirements:
        if not bool(c.expr.xreplace(values)):
            return c
    return None
