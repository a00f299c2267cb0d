"""Checks inside shape rules: ``require(cond, message)`` and ``decide(cond)``.

A rule states what PyTorch requires (``require(out >= 1, lambda: ...)``).
With concrete sizes the check is plain Python. With symbolic sizes it is
decided under the analysis' constraints: a condition that always holds costs
nothing, one that always fails raises :class:`~lazyfx.errors.ShapeError` with
the rule's message, and one that holds only for some inputs is recorded as a
condition of the input domain (``report.domain``) with the node it came from.

The active :class:`Recorder` is set by the propagation pass for each node, so
rules stay pure functions of their inputs.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Union

import sympy

from lazyfx.core.constraints import Constraints
from lazyfx.core.symbolic import DimExpr, is_concrete
from lazyfx.errors import ShapeError

Message = Union[str, Callable[[], str]]


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
        return len(self.conditions), set(self._seen), self.constraints.snapshot()

    def rollback(self, checkpoint: tuple) -> None:
        """Forget what was recorded since ``checkpoint`` (an abandoned analysis attempt)."""
        count, seen, ranges = checkpoint
        del self.conditions[count:]
        self._seen = seen
        self.constraints.restore(ranges)

    @contextlib.contextmanager
    def at(self, node_name: Optional[str]) -> Iterator[None]:
        previous, self.node = self.node, node_name
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)
            self.node = previous


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


def equal(a: DimExpr, b: DimExpr) -> Optional[bool]:
    """Whether two dims are equal: True, False, or None when it depends on the input."""
    if is_concrete(a) and is_concrete(b):
        return a == b
    return decide(sympy.Eq(a, b))


def require_equal(a: DimExpr, b: DimExpr, message: Message) -> None:
    if is_concrete(a) and is_concrete(b):
        if a != b:
            raise ShapeError(_text(message))
        return
    require(sympy.Eq(a, b), message)


def require_positive(value: DimExpr, message: Message) -> None:
    """A size PyTorch computes must be at least 1 ("Output size is too small")."""
    if is_concrete(value):
        if value < 1:
            raise ShapeError(_text(message))
        return
    require(sympy.Ge(value, 1), message)
