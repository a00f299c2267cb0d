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
import math
from dataclasses import dataclass
from numbers import Integral
from typing import Iterable, Optional

import sympy

from lazyfx.core.checks import Condition
from lazyfx.core.constraints import Constraints, SymbolInfo, as_bound, simplify_condition
from lazyfx.core.symbolic import fmt, symbol
from lazyfx.domain.solve import SizeSet, solve, solve_pair


class Domain:
    """The inputs a model accepts: conditions on the input symbols.

    Where a check holds for some inputs only (a kernel must fit, two sizes must
    agree, a reshape must divide), lazyfx records it as a condition instead of
    failing. Together with each symbol's [`Dim`][lazyfx.Dim] constraints, these
    conditions are exactly the inputs the analysis accepts. ``str(domain)``
    gives them for reading, simplified: a floor division moves to the other
    side (``(H - 3)//2 + 1 >= 1`` reads ``H >= 3``), a symbol's conditions are
    summarized exactly where possible (``H % 16 == 0``, ``27 <= H <= 28``),
    and conditions the others imply are dropped. With no condition it reads
    ``all positive sizes``.

    ``report.domain`` is the domain of a report; [`Report.fit`][lazyfx.outputs.report.Report.fit]
    returns the part of it that a checkpoint fits.

    Attributes:
        requirements (list[Condition]): The conditions as the rules recorded
            them (unsimplified), each with ``expr`` (a sympy relation),
            ``message`` and the ``node`` that recorded it.
        assumptions (list[Condition]): Choices a rule made where PyTorch's
            behaviour depends on the input and the specs do not tell (a
            symbolic size taken to be != 1 when broadcasting or squeezing).
            The results hold under them; the report lists them under
            ``assuming:``.
        checked_at (dict[str, tuple[int, ...]]): For a symbol a meta kernel
            fixed upstream of a lazy module that was resolved anyway (the
            analysis resolved it the same way at other sizes), the only sizes
            that was checked at: ``str(domain)`` lists them and ``contains``
            admits no other.

    Examples:
        >>> domain = lazyfx.infer(Net(), ("B", 3, "H", "W")).domain
        >>> print(domain)
        H >= 9 and W >= 9
        >>> domain.contains(B=1, H=8, W=32)
        False

        An assumption:

        >>> class Add(nn.Module):
        ...     def forward(self, x, y):
        ...         return x + y
        >>> domain = lazyfx.infer(Add(), ("B", "N"), ("B", "M")).domain
        >>> print(domain)
        N == M
        >>> [condition.message for condition in domain.assumptions]
        ['N != 1 (broadcasting)', 'M != 1 (broadcasting)']
    """

    def __init__(self, constraints: Constraints, conditions: Iterable[Condition],
                 checked_at: Optional[dict[str, tuple[int, ...]]] = None) -> None:
        self.constraints = constraints
        # symbol -> the only sizes at which a claim was checked (a lazy module resolved after a meta
        # kernel fixed that symbol, the same way at each): contains() admits no other size
        self.checked_at: dict[str, tuple[int, ...]] = dict(checked_at or {})
        conditions = list(conditions)
        self.requirements: list[Condition] = [c for c in conditions if c.kind == "requires"]
        self.assumptions: list[Condition] = [c for c in conditions if c.kind == "assumes"]
        self._solved: Optional[dict[str, Optional[SizeSet]]] = None

    @property
    def symbols(self) -> list[str]:
        """The input symbols' names, sorted: those of the specs and any the conditions mention.

        Examples:
            >>> lazyfx.infer(Net(), ("B", 3, "H", "W")).domain.symbols
            ['B', 'H', 'W']
        """
        names = set(self.constraints.infos)
        for c in self.requirements:
            names |= {s.name for s in c.expr.free_symbols}
        return sorted(names)

    def bounds(self) -> dict[str, SymbolInfo]:
        """Each symbol's tightest range: its Dim constraints and the single-symbol bounds.

        Returns:
            By symbol name, the range as ``min``, ``max`` (None: unbounded) and
                ``multiple_of``. Conditions other than bounds (``H % 2 == 0`` from
                a reshape, say) are not included: see [`solved`][lazyfx.domain.domain.Domain.solved].

        Examples:
            >>> bounds = lazyfx.infer(Net(), ("B", 3, "H", "W")).domain.bounds()
            >>> bounds["H"].min, bounds["H"].max, bounds["H"].multiple_of
            (9, None, 1)
        """
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
        """The domain as a list of sympy conditions: per-symbol bounds first, then the rest.

        Conditions the bounds already imply are left out. These are the
        formulas to compute with; [`describe`][lazyfx.domain.domain.Domain.describe]
        gives the summaries to read.

        Examples:
            >>> lazyfx.infer(Net(), ("B", 3, "H", "W")).domain.conditions()
            [H >= 9, W >= 9]
        """
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
        """Each symbol's exact set of valid sizes, from the conditions on that symbol alone.

        Conditions on a single symbol built from ``+``, ``*`` by constants,
        floor divisions and remainders (conv and pool arithmetic, ``cat``
        equalities, reshape divisibility), or monotone in it, are solved
        exactly. Conditions that relate several symbols are not taken into
        account here.

        Returns:
            By symbol name, a set of sizes with ``conditions()`` (as text),
                ``smallest()``, ``contains(size)``, ``values()`` (the valid sizes
                in increasing order, endless where the set is) and ``is_empty``;
                None for a symbol whose conditions are of another form.

        Examples:
            >>> H = lazyfx.Dim("H", multiple_of=8)
            >>> sizes = lazyfx.infer(Net(), ("B", 3, H, "W")).domain.solved()["H"]
            >>> sizes.conditions(), sizes.smallest(), sizes.contains(20)
            (['H >= 16', 'H % 8 == 0'], 16, False)
            >>> import itertools
            >>> list(itertools.islice(sizes.values(), 4))
            [16, 24, 32, 40]
        """
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
        """The domain as conditions a person would write, one string each.

        One exact summary per symbol where possible, then the conditions that
        relate several symbols; an equality between two symbols is given as
        the pairs of sizes that satisfy it. ``str(domain)`` joins them with
        ``and``.

        Examples:
            >>> report = lazyfx.infer(Net(), ("B", 3, "H", "W"))
            >>> report.domain.describe()
            ['H >= 9', 'W >= 9']

            The sizes that fit a checkpoint's ``head.in_features = 2304``:

            >>> state = lazyfx.materialize(Net(), ("B", 3, 32, 32), seed=0).state_dict()
            >>> report.fit(state).describe()
            ['H >= 9', 'W >= 9', '64*((H - 9)//4 + 1)*((W - 9)//4 + 1) == 2304 (144 pairs of sizes, e.g. H=9, W=149)']
        """
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
        """The smallest valid size of each symbol on its own.

        Where a condition relates several symbols these sizes need not be
        valid together: [`example`][lazyfx.domain.domain.Domain.example] gives a
        valid input.

        Returns:
            The sizes by symbol name (a symbol with no valid size maps to
                None), or None when a symbol's valid sizes are not known exactly.

        Examples:
            >>> lazyfx.infer(Net(), ("B", 3, "H", "W")).domain.smallest()
            {'B': 1, 'H': 9, 'W': 9}
        """
        solved = self.solved()
        if any(solved.get(n) is None for n in self.symbols):
            return None
        return {n: solved[n].smallest() for n in self.symbols}

    def example(self, candidates: int = 20_000) -> Optional[dict[str, int]]:
        """A valid input, as small as possible.

        The per-symbol smallest sizes when they are valid together, else the
        first valid combination of each symbol's smallest valid sizes, trying
        those with smaller sizes first.

        Args:
            candidates: How many combinations to try at most.

        Returns:
            A size for every symbol, by name; None when none of the first
                ``candidates`` combinations is valid, or a symbol's valid sizes are
                not known.

        Examples:
            A batch norm in training mode needs more than one value per
            channel, a condition on ``B``, ``H`` and ``W`` together:

            >>> class Bottleneck(nn.Module):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.pool = nn.MaxPool2d(8)
            ...         self.norm = nn.LazyBatchNorm2d()
            ...
            ...     def forward(self, x):
            ...         return self.norm(self.pool(x))
            >>> domain = lazyfx.infer(Bottleneck(), ("B", 3, "H", "W")).domain
            >>> domain.smallest(), domain.contains(B=1, H=8, W=8)
            ({'B': 1, 'H': 8, 'W': 8}, False)
            >>> domain.example()
            {'B': 2, 'H': 8, 'W': 8}
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
        """Whether no input is valid.

        True when a symbol has no valid size, an equality between two symbols
        has no solution, or bounds contradict. A report's domain is never
        empty: [`infer`][lazyfx.infer] raises [`ShapeError`][lazyfx.ShapeError]
        for a model no input fits.

        Examples:
            >>> lazyfx.infer(Net(), ("B", 3, "H", "W")).domain.is_empty
            False

            Built from conditions directly: ``H`` odd and even.

            >>> import sympy
            >>> from lazyfx.core.checks import Condition
            >>> from lazyfx.core.constraints import Constraints
            >>> from lazyfx.domain.domain import Domain
            >>> H = lazyfx.Dim("H").symbol
            >>> domain = Domain(Constraints(), [Condition(sympy.Eq(H % 2, 1), "odd"),
            ...                                 Condition(sympy.Eq(H % 2, 0), "even")])
            >>> domain.is_empty, str(domain)
            (True, 'no valid H')
        """
        if any(s is not None and s.is_empty for s in self.solved().values()):
            return True
        if any(text.startswith("no valid") for text in self.describe()):
            return True
        return any(info.max is not None and info.smallest() > info.max for info in self.bounds().values())

    def contains(self, **sizes: int) -> bool:
        """Whether concrete sizes are a valid input.

        Args:
            **sizes (int): A size for every symbol that a condition mentions,
                by name. A symbol no condition mentions may be left out (the
                batch ``B`` of most models): the answer is then the same for
                each of its valid sizes.

        Returns:
            True when the sizes meet every condition and ``Dim`` constraint
                (sizes are positive: 0 and negative sizes are not valid).

        Raises:
            TypeError: A symbol that a condition mentions has no size, a name
                is not a symbol of the domain (a typo), or a size is not an
                integer.

        Examples:
            >>> domain = lazyfx.infer(Net(), ("B", 3, "H", "W")).domain
            >>> domain.contains(B=1, H=9, W=32), domain.contains(B=1, H=8, W=32)
            (True, False)
            >>> domain.contains(H=64, W=64)
            True
            >>> domain.contains(H=9)
            Traceback (most recent call last):
                ...
            TypeError: contains() needs a size for every symbol a condition mentions; missing: W
        """
        unknown = [name for name in sizes if name not in self.symbols]
        if unknown:
            raise TypeError(f"contains() got sizes for {', '.join(unknown)}, which are not symbols of this domain "
                            f"(its symbols: {', '.join(self.symbols) or 'none'})")
        left_out = [name for name in self.symbols if name not in sizes]
        missing = [name for name in left_out if name in self.conditioned()] if left_out else []
        if missing:
            raise TypeError(f"contains() needs a size for every symbol a condition mentions; missing: "
                            f"{', '.join(missing)}")
        wrong = [name for name, value in sizes.items() if isinstance(value, bool) or not isinstance(value, Integral)]
        if wrong:
            raise TypeError(f"contains() needs integer sizes; got {', '.join(f'{n}={sizes[n]!r}' for n in wrong)}")
        sizes = {name: int(value) for name, value in sizes.items()}
        if any(not self.constraints.info(name).admits(value) for name, value in sizes.items()):
            return False
        if any(name in self.checked_at and value not in self.checked_at[name] for name, value in sizes.items()):
            return False
        if not left_out:
            return first_failing(self, sizes) is None
        return self._contains_for_every(sizes, left_out)

    def _contains_for_every(self, sizes: dict[str, int], left_out: list[str]) -> bool:
        """``contains`` with symbols left out that no condition of ``conditions()`` mentions:
        the requirements that still mention them (those the others imply) must hold for each of
        their sizes, which their Dim constraints decide; a left-out symbol without any valid size
        leaves no valid input."""
        infos = {name: self.constraints.info(name) for name in left_out}
        if any(info.max is not None and info.smallest() > info.max for info in infos.values()):
            return False
        values = {symbol(n): sympy.Integer(v) for n, v in sizes.items()}
        pending = []
        for c in self.requirements:
            expr = c.expr.xreplace(values)
            if expr.free_symbols:
                pending.append((c, expr))
            elif not bool(expr):
                return False
        rest = Constraints(infos)
        for c, expr in pending:
            decided = rest.decide(expr)
            if decided is None:  # never for a condition the others imply: said, not guessed
                names = ", ".join(sorted(s.name for s in expr.free_symbols))
                raise TypeError(f"contains() needs a size for {names}: whether these sizes are valid depends on it "
                                f"({fmt(c.expr)})")
            if not decided:
                return False
        return True

    def conditioned(self) -> set[str]:
        """The symbols the model's conditions constrain beyond their own ``Dim`` constraints
        (a condition the others imply left out), and those checked at some sizes only: the
        symbols [`contains`][lazyfx.domain.domain.Domain.contains] needs a size for.

        Examples:
            >>> sorted(lazyfx.infer(Net(), ("B", 3, "H", "W")).domain.conditioned())
            ['H', 'W']
        """
        names = set(self.checked_at)
        declared = Constraints({name: self.constraints.info(name) for name in self.symbols})
        decider = Constraints(self.bounds())
        for c in self.requirements:
            simple = simplify_condition(c.expr)
            if as_bound(simple) is not None:  # a bound: unless the symbol's own Dim implies it
                if declared.decide(simple) is not True:
                    names |= {s.name for s in simple.free_symbols}
            elif decider.decide(simple) is not True:
                names |= {s.name for s in simple.free_symbols}
        return names

    def __str__(self) -> str:
        described = self.describe()
        checked = [f"{name} in {{{', '.join(map(str, sizes))}}}" for name, sizes in sorted(self.checked_at.items())]
        if checked:  # never "all positive sizes" for what was tried at some sizes only
            return " and ".join(described + checked) + (
                " (checked at these sizes only: a meta kernel fixed "
                f"{', '.join(sorted(self.checked_at))} upstream of a lazy module)")
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


# -- declared sizes as requirements --------------------------------------------------------------

# combinations of declared sizes tried per condition that relates several symbols
_SEARCH_CANDIDATES = 4096


def is_declared(info: SymbolInfo) -> bool:
    """Whether the user declared which sizes a symbol takes (a bound or a multiple), rather than
    leaving it any positive size."""
    return info.declared or info.min > 1 or info.max is not None or info.multiple_of > 1


def declared_values(info: SymbolInfo) -> Iterable[int]:
    """The sizes a declaration allows, in increasing order (endless without a maximum)."""
    value = info.smallest()
    while info.max is None or value <= info.max:
        yield value
        value += info.multiple_of


@dataclass(frozen=True)
class Rejection:
    """A declared size the model rejects, or a declared symbol the model does not let vary.

    ``sizes`` is the counterexample (the smallest declared sizes of the condition's symbols that
    violate it), None where the condition could not be decided for every declared size."""

    condition: Condition
    kind: str  # "rejects" (a declared size fails) | "undecided" | "fixed" | "tied"
    sizes: Optional[dict[str, int]] = None
    symbols: tuple[str, ...] = ()  # the undeclared symbols a "fixed" or "tied" rejection is about
    accepted: Optional[str] = None  # what the model accepts of it, as text

    def sizes_text(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in (self.sizes or {}).items())


def declared_rejections(domain: Domain) -> list[Rejection]:
    """What the model rejects of the sizes its specs declare.

    A symbol with declared sizes (``Dim(min=, max=, multiple_of=)`` or a configured constraint)
    is a promise that each of them works: every requirement that one of them violates is a
    ``"rejects"`` rejection with the smallest such size, or ``"undecided"`` where neither a
    counterexample nor a proof is found. A symbol declared without bounds is any size that
    varies: a domain that admits only finitely many of its sizes (``"fixed"``) or an equality
    that ties it to another symbol (``"tied"``) is a rejection too; lower bounds (a kernel must
    fit) and remainders are not."""
    if not domain.requirements:
        return []
    infos = {name: domain.constraints.info(name) for name in domain.symbols}
    declared = {name for name, info in infos.items() if is_declared(info)}
    out: list[Rejection] = []
    for condition in domain.requirements:
        names = {s.name for s in condition.expr.free_symbols}
        if not names & declared:
            continue
        found = _declared_counterexample(condition, names & declared, names - declared, infos, domain.assumptions)
        if found is None:
            continue
        if found.sizes and any(r.sizes and _violates(r.condition, {**r.sizes, **found.sizes}) for r in out):
            continue  # the same size already fails an earlier condition: one cause, reported once
        out.append(found)
    out += _not_free(domain, [n for n in domain.symbols if n not in declared])
    return out


def _violates(condition: Condition, sizes: dict[str, int]) -> bool:
    names = {s.name for s in condition.expr.free_symbols}
    if not names <= set(sizes):
        return False
    return not bool(condition.expr.xreplace({symbol(n): sympy.Integer(sizes[n]) for n in names}))


def _declared_counterexample(condition: Condition, names: set[str], free: set[str],
                             infos: dict[str, SymbolInfo], assumptions: list[Condition]) -> Optional[Rejection]:
    """The smallest declared sizes of ``names`` that violate ``condition`` whatever the
    undeclared symbols ``free`` are; None when every declared size satisfies it. Sizes that
    break an assumption of the analysis (a broadcast taken as between sizes != 1) are not
    counterexamples: the model was not analysed there, and may work (it is listed as an
    assumption instead)."""
    analysed = _within(assumptions)
    declared_only = Constraints({n: infos[n] for n in names})
    if declared_only.decide(condition.expr) is True:
        return None
    if len(names) == 1 and not free:
        return _single_counterexample(condition, next(iter(names)), infos[next(iter(names))], analysed)
    ordered = sorted(names)
    # with undeclared symbols in it, a point counts only where no size of theirs satisfies the
    # condition, which interval bounds decide rarely: fewer points are worth trying
    candidates = _SEARCH_CANDIDATES if not free else _SEARCH_CANDIDATES // 16
    per_symbol = max(2, int(candidates ** (1 / len(ordered))))
    values = {n: list(itertools.islice(declared_values(infos[n]), per_symbol)) for n in ordered}
    rest = Constraints({n: infos[n] for n in free})
    ranked = sorted(itertools.product(*(range(len(values[n])) for n in ordered)), key=lambda ix: (sum(ix), ix))
    for index in ranked:
        point = {n: values[n][i] for n, i in zip(ordered, index)}
        substituted = condition.expr.xreplace({symbol(n): sympy.Integer(v) for n, v in point.items()})
        if rest.decide(substituted) is False and analysed(point):
            return Rejection(condition, "rejects", point)
    if free:  # an undeclared symbol can absorb it; whether it is then free is asked of it
        return None
    exhausted = all(infos[n].max is not None and len(values[n]) < per_symbol for n in ordered)
    return None if exhausted else Rejection(condition, "undecided")


def _within(assumptions: list[Condition]):
    """Whether sizes meet every assumption on the symbols they give (those that mention other
    symbols are left to them)."""
    def analysed(sizes: dict[str, int]) -> bool:
        values = {symbol(n): sympy.Integer(v) for n, v in sizes.items()}
        return all(bool(a.expr.xreplace(values)) for a in assumptions
                   if {s.name for s in a.expr.free_symbols} <= set(sizes))

    return analysed


def _single_counterexample(condition: Condition, name: str, info: SymbolInfo, analysed) -> Optional[Rejection]:
    """Exact for the conditions :func:`~lazyfx.domain.solve.solve` summarizes: the valid sizes are
    periodic past a point, so one common period of them and of the declared sizes past it
    decides every declared size."""
    sym = symbol(name)
    valid = solve(sym, [condition.expr], SymbolInfo(name))
    if valid is None:
        for value in itertools.islice(declared_values(info), _SEARCH_CANDIDATES):
            if not bool(condition.expr.xreplace({sym: sympy.Integer(value)})) and analysed({name: value}):
                return Rejection(condition, "rejects", {name: value})
        if info.max is not None and info.max < info.smallest() + _SEARCH_CANDIDATES * info.multiple_of:
            return None
        return Rejection(condition, "undecided")
    marks = [info.smallest(), *valid.explicit, valid.start or 0, valid.stop or 0]
    period = math.lcm(valid.modulus, info.multiple_of)
    horizon, skipped = max(marks) + period, 0
    for value in declared_values(info):
        if value > horizon:
            return None
        if not valid.contains(value):
            if analysed({name: value}):
                return Rejection(condition, "rejects", {name: value})
            skipped += 1  # an assumption excludes it: one more period decides the rest
            if skipped > _SEARCH_CANDIDATES:
                return Rejection(condition, "undecided")
            horizon += period
    return None


def _not_free(domain: Domain, names: list[str]) -> list[Rejection]:
    """Undeclared symbols the requirements fix to finitely many sizes or tie to another symbol."""
    out: list[Rejection] = []
    solved = domain.solved()
    for name in names:
        sizes = solved.get(name)
        if sizes is None or sizes.is_empty or (sizes.start is not None and sizes.stop is None):
            continue
        single = [c for c in domain.requirements if {s.name for s in c.expr.free_symbols} == {name}]
        culprit = next((c for k, c in enumerate(single, 1)
                        if _is_finite(solve(symbol(name), [x.expr for x in single[:k]], domain.constraints.info(name)))),
                       single[-1])
        out.append(Rejection(culprit, "fixed", symbols=(name,), accepted=" and ".join(sizes.conditions())))
    tied = set()
    for condition in domain.requirements:
        expr = condition.expr
        names_in = sorted(s.name for s in expr.free_symbols)
        if not isinstance(expr, sympy.Eq) or len(names_in) < 2:
            continue
        loose = [n for n in names_in if n in names and n not in tied]
        if loose:
            tied.update(loose)
            out.append(Rejection(condition, "tied", symbols=tuple(loose), accepted=fmt(simplify_condition(expr))))
    return out


def _is_finite(sizes: Optional[SizeSet]) -> bool:
    return sizes is not None and (sizes.start is None or sizes.stop is not None)
