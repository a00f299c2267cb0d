"""The shared vocabulary of size checks: relations, decisions and requirements.

A rule states what PyTorch requires in three kinds of words:

* **relations** -- :func:`eq`, :func:`ne`, :func:`lt`, :func:`le`, :func:`gt`,
  :func:`ge` (named as in Python's ``operator`` module): a plain ``bool`` when
  both sides are concrete ints, else the sympy relation, undecided;
* **decisions** -- :func:`decide` and :func:`equal`: True or False when the
  relation is settled for every admitted input, None when it depends on it;
* **requirements** -- :func:`require` and its shorthands :func:`require_equal`,
  :func:`require_positive`, :func:`require_divisible`, and :func:`assume`.

With concrete sizes a check is plain Python. With symbolic sizes it is
decided under the analysis' constraints: a condition that always holds costs
nothing, one that always fails raises :class:`~lazyfx.errors.ShapeError` with
the rule's message, and one that holds only for some inputs is recorded as a
condition of the input domain (``report.domain``) with the node it came from.

Rules keep no state of their own and return only their output, but checks
have effects: ``require`` and ``assume`` write what they cannot decide into
the active :class:`Recorder`, and a recorded requirement narrows that
recorder's constraints, under which every later check is decided. The
propagation pass makes its recorder the active one for each node
(:meth:`Recorder.at`, a context variable). Outside propagation (a rule called
directly, as in tests) a process-wide default recorder takes the conditions:
nothing reads them, but they narrow its constraints for every later check
made outside propagation.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Callable, Optional, Union

import sympy

from lazyfx.core.constraints import Constraints
from lazyfx.core.symbolic import DimExpr, is_concrete, mod
from lazyfx.errors import ShapeError

Message = Union[str, Callable[[], str]]
Relation = Union[bool, sympy.Basic]  # what eq, ne, lt, le, gt and ge return


@dataclass
class Condition:
    """A condition on the input symbols that the model needs to be valid."""

    expr: sympy.Basic
    message: str
    node: Optional[str] = None
    kind: str = "requires"  # "requires" | "assumes"


class Recorder:
    """Collects the conditions and assumptions that rules could not decide."""

    def __init__(self, constraints: Optional[Constraints] = None) -> None:
        self.constraints = constraints or Constraints()
        self.conditions: list[Condition] = []
        self.node: Optional[str] = None
        self._seen: set[sympy.Basic] = set()

    def record(self, expr: sympy.Basic, message: Message, kind: str, narrows: bool = False) -> None:
        if expr in self._seen:  # before the message is made: formatting formulas is the costly part
            return
        self._seen.add(expr)
        self.conditions.append(Condition(expr, _text(message), self.node, kind))
        if kind == "requires" or narrows:
            self.constraints.tighten(expr)

    def checkpoint(self) -> tuple:
        # (taken at every traced-into module's call: no copy of what was seen, which rollback
        # rebuilds from the conditions it keeps, as each seen condition is recorded once)
        return len(self.conditions), self.constraints.snapshot()

    def rollback(self, checkpoint: tuple) -> None:
        """Forget what was recorded since ``checkpoint`` (an abandoned analysis attempt)."""
        count, ranges = checkpoint
        del self.conditions[count:]
        self._seen = {condition.expr for condition in self.conditions}
        self.constraints.restore(ranges)

    def at(self, node_name: Optional[str]) -> "_RecordingAt":
        """Within the block, checks record into this recorder, as made at node ``node_name``."""
        return _RecordingAt(self, node_name)


class _RecordingAt:
    """:meth:`Recorder.at`'s block: a class, not a generator (entered once per node)."""

    __slots__ = ("recorder", "node", "previous", "token")

    def __init__(self, recorder: Recorder, node: Optional[str]) -> None:
        self.recorder, self.node = recorder, node

    def __enter__(self) -> None:
        self.previous, self.recorder.node = self.recorder.node, self.node
        self.token = _ACTIVE.set(self.recorder)

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self.token)
        self.recorder.node = self.previous


_ACTIVE: contextvars.ContextVar[Optional[Recorder]] = contextvars.ContextVar("lazyfx_recorder", default=None)
_DEFAULT = Recorder()


def _recorder() -> Recorder:
    return _ACTIVE.get() or _DEFAULT


def _text(message: Message) -> str:
    return message() if callable(message) else message


def current_node() -> Optional[str]:
    """The node whose rule is running (None outside propagation)."""
    return _recorder().node


def decide(cond: object) -> Optional[bool]:
    """True/False when ``cond`` is settled for every admitted input, else None."""
    if cond is True or cond is False:  # (a relation of two concrete ints: most checks)
        return cond
    return _recorder().constraints.decide(cond)


def require(cond: object, message: Message) -> None:
    """PyTorch requires ``cond``: fail when it never holds, record it when it may not."""
    result = decide(cond)
    if result is True:
        return
    if result is False:
        raise ShapeError(_text(message))
    _recorder().record(cond, message, "requires")


def assume(cond: sympy.Basic, message: Message, narrows: bool = False) -> None:
    """Record a choice a rule made where PyTorch's behaviour depends on ``cond``
    (e.g. a symbolic dim is taken to be != 1 when broadcasting). With ``narrows``, later
    checks are decided within it too (the analysis holds only there), so that a second
    choice cannot contradict the first."""
    if decide(cond) is None:
        _recorder().record(cond, message, "assumes", narrows)


def _concrete(a: object, b: object) -> bool:
    return is_concrete(a) and is_concrete(b)


def eq(a: DimExpr, b: DimExpr) -> Relation:
    """``a == b``: a bool for two concrete ints, else ``sympy.Eq(a, b)`` (undecided).

    >>> eq(4, 4), eq(sympy.Symbol("H") + 1, 5)
    (True, Eq(H + 1, 5))
    """
    return a == b if _concrete(a, b) else sympy.Eq(a, b)


def ne(a: DimExpr, b: DimExpr) -> Relation:
    """``a != b``: a bool for two concrete ints, else ``sympy.Ne(a, b)``.

    >>> ne(3, 4), ne(sympy.Symbol("H"), 1)
    (True, Ne(H, 1))
    """
    return a != b if _concrete(a, b) else sympy.Ne(a, b)


def lt(a: DimExpr, b: DimExpr) -> Relation:
    """``a < b``: a bool for two concrete ints, else ``sympy.Lt(a, b)``.

    >>> lt(4, 4), lt(sympy.Symbol("H"), 8)
    (False, H < 8)
    """
    return a < b if _concrete(a, b) else sympy.Lt(a, b)


def le(a: DimExpr, b: DimExpr) -> Relation:
    """``a <= b``: a bool for two concrete ints, else ``sympy.Le(a, b)``.

    >>> le(4, 4), le(3, sympy.Symbol("H"))
    (True, 3 <= H)
    """
    return a <= b if _concrete(a, b) else sympy.Le(a, b)


def gt(a: DimExpr, b: DimExpr) -> Relation:
    """``a > b``: a bool for two concrete ints, else ``sympy.Gt(a, b)``.

    >>> gt(4, 4), gt(sympy.Symbol("T"), 0)
    (False, T > 0)
    """
    return a > b if _concrete(a, b) else sympy.Gt(a, b)


def ge(a: DimExpr, b: DimExpr) -> Relation:
    """``a >= b``: a bool for two concrete ints, else ``sympy.Ge(a, b)``.

    >>> ge(2, 1), ge(sympy.Symbol("H") - 2, 0)
    (True, H - 2 >= 0)
    """
    return a >= b if _concrete(a, b) else sympy.Ge(a, b)


def equal(a: DimExpr, b: DimExpr) -> Optional[bool]:
    """Whether two dims are equal: True, False, or None when it depends on the input.

    >>> H = sympy.Symbol("H", positive=True, integer=True)
    >>> equal(3, 3), equal(H + 1, H), equal(H, 4)
    (True, False, None)
    """
    return decide(eq(a, b))


def require_equal(a: DimExpr, b: DimExpr, message: Message) -> None:
    """PyTorch requires ``a == b`` (:func:`require` of :func:`eq`)."""
    if type(a) is int and type(b) is int:  # (most checks: plain Python, as eq would make it)
        if a != b:
            raise ShapeError(_text(message))
        return
    require(eq(a, b), message)


def require_positive(value: DimExpr, message: Message) -> None:
    """A size PyTorch computes must be at least 1 ("Output size is too small")."""
    if type(value) is int:  # (most checks: plain Python, as ge would make it)
        if value < 1:
            raise ShapeError(_text(message))
        return
    if not is_concrete(value):
        # Decided unevaluated first: sympy evaluating Ge(value, 1) asks its assumptions about every
        # floor division in value, which costs more than the rest of a conv's rule. Only where the
        # constraints leave it open is it built evaluated, as before (sympy may still settle it).
        settled = decide(sympy.Ge(value, 1, evaluate=False))
        if settled is True:
            return
        if settled is False:
            raise ShapeError(_text(message))
    require(ge(value, 1), message)


def require_divisible(size: DimExpr, by: DimExpr, message: Message) -> None:
    """PyTorch requires ``by`` to divide ``size``: ``size % by == 0`` (``by`` positive)."""
    require(eq(mod(size, by), 0), message)
