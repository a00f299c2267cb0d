"""The dim algebra: positive-integer symbols, one floor division, printing.

A *dim* is either a plain ``int`` (a concrete size stays a Python int, so the
common fully-concrete case never touches sympy) or a sympy expression over
positive-integer symbols named as the user named them (``B``, ``H``, ...).

Floor division has exactly one representation, :class:`FloorDiv`, so that
formulas simplify structurally: ``((H//2)//2)//2`` is ``H//8`` and the output
of a strided conv stack stays one division deep however many layers it has.
Ceil division is ``(a + b - 1)//b``.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, Union

import sympy
from sympy.core.mul import _keep_coeff
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

DimExpr = Union[int, sympy.Expr]
"""A tensor size: a Python int when concrete, else a sympy expression."""


@functools.lru_cache(maxsize=None)
def symbol(name: str) -> sympy.Symbol:
    """The positive-integer symbol called ``name`` (the same object every time)."""
    return sympy.Symbol(name, integer=True, positive=True)


def as_dim(value: object) -> DimExpr:
    """Normalize ``value`` to a dim: sympy integers become Python ints."""
    if isinstance(value, bool):
        raise TypeError(f"a dim must be an integer, not bool {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, sympy.Expr):
        if value.is_Integer:
            return int(value)
        return value
    raise TypeError(f"a dim must be an int or a sympy expression, not {type(value).__name__}")


def is_concrete(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def free_symbols(value: object) -> set[sympy.Symbol]:
    return value.free_symbols if isinstance(value, sympy.Basic) else set()


class FloorDiv(sympy.Function):
    """``p // q`` on integers with ``q > 0``: the only floor division in lazyfx.

    ``eval`` applies the identities that keep formulas flat (each valid for
    integer ``a``, ``c`` and positive integers ``b``, ``q``):

    * ``(g*a) // (g*q) == a // q`` (common factors cancel);
    * ``(q*a + r) // q == a + r // q`` (whole multiples come out);
    * ``(a // b + c) // q == (a + c*b) // (b*q)`` (nested divisions merge).
    """

    nargs = 2
    is_integer = True
    precedence = PRECEDENCE["Mul"]

    @classmethod
    def eval(cls, p, q):
        if q.is_zero:
            raise ZeroDivisionError("division by zero in a shape formula")
        if q is sympy.S.One:
            return p
        if p is sympy.S.Zero:  # not p.is_zero: asking sympy's assumptions about p is the costly part
            return sympy.S.Zero
        if p.is_Integer and q.is_Integer:
            return sympy.Integer(int(p) // int(q))
        if not (q.is_Integer and q.is_positive):
            if isinstance(p, FloorDiv) and q.is_positive:
                return FloorDiv(p.args[0], p.args[1] * q)
            return None
        return _simplify_floordiv_by_int(p, int(q))

    def _eval_is_nonnegative(self):
        p, q = self.args
        if q.is_positive:
            return p.is_nonnegative

    def _sympystr(self, printer) -> str:
        # str()/repr() of any formula containing a division reads like lazyfx prints it.
        return _PRINTER._print_FloorDiv(self)

    def _eval_is_positive(self):
        p, q = self.args
        if q.is_positive:
            return (p - q).is_nonnegative


def _simplify_floordiv_by_int(p: sympy.Expr, q: int):
    terms = sympy.Add.make_args(p)
    coeffs = [term.as_coeff_Mul()[0] for term in terms]
    if all(c.is_Integer for c in coeffs):
        g = math.gcd(q, *(int(c) for c in coeffs))
        if g > 1:
            return FloorDiv(sympy.Add(*(t / g for t in terms)), q // g)
    whole, rest = [], []
    for term, coeff in zip(terms, coeffs):
        if coeff.is_Integer and int(coeff) % q == 0 and (term / q).is_integer:
            whole.append(term / q)
        else:
            rest.append(term)
    if whole:
        return sympy.Add(*whole) + FloorDiv(sympy.Add(*rest), q)
    inner = [t for t in rest if isinstance(t, FloorDiv)]
    if len(inner) == 1:
        a, b = inner[0].args
        c = sympy.Add(*(t for t in rest if t is not inner[0]))
        if c.is_Integer and b.is_positive:
            return FloorDiv(a + c * b, b * q)
    return None


# -- arithmetic that keeps concrete dims as plain ints -------------------------


def floordiv(a: DimExpr, b: DimExpr) -> DimExpr:
    if type(a) is int and type(b) is int or is_concrete(a) and is_concrete(b):  # (plain ints first: most sizes)
        return a // b
    if b == 1:  # a stride of 1: no sympy call (its cache and assumptions cost most of a conv's rule)
        return a
    return as_dim(FloorDiv(sympy.sympify(a), sympy.sympify(b)))


def ceildiv(a: DimExpr, b: DimExpr) -> DimExpr:
    return floordiv(a + b - 1, b)


def mod(a: DimExpr, b: DimExpr) -> DimExpr:
    if is_concrete(a) and is_concrete(b):
        return a % b
    return as_dim(sympy.Mod(a, b))


def product(dims: Iterable[DimExpr]) -> DimExpr:
    result: DimExpr = 1
    for d in dims:
        result = result * d
    return as_dim(result) if not is_concrete(result) else result


def sym_max(a: DimExpr, b: DimExpr) -> DimExpr:
    if is_concrete(a) and is_concrete(b):
        return max(a, b)
    return as_dim(sympy.Max(a, b))


def sym_min(a: DimExpr, b: DimExpr) -> DimExpr:
    if is_concrete(a) and is_concrete(b):
        return min(a, b)
    return as_dim(sympy.Min(a, b))


def substitute(value: DimExpr, values: dict) -> DimExpr:
    """Replace symbols (by sympy symbol or by name) with concrete values."""
    if is_concrete(value):
        return value
    mapping = {(symbol(k) if isinstance(k, str) else k): v for k, v in values.items()}
    result = value.xreplace({k: sympy.Integer(v) for k, v in mapping.items()})
    if result.is_Number and not result.is_Integer:  # a true division of sizes, as Python's /
        return float(result)
    return as_dim(result)


# -- printing -------------------------------------------------------------------


class _DimPrinter(StrPrinter):
    """Prints formulas the way a person writes them: ``(H - 3)//2 + 1``."""

    _relational_ops = {"==": "==", "!=": "!=", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}

    def _print_FloorDiv(self, expr):
        p, q = expr.args
        return f"{self._operand(p)}//{self._operand(q)}"

    def _print_Mod(self, expr):
        p, q = expr.args
        return f"{self._operand(p)} % {self._operand(q)}"

    def _operand(self, expr):
        text = self._print(expr)
        return text if (expr.is_Atom or expr.is_Function and not isinstance(expr, (FloorDiv, sympy.Mod))) else f"({text})"

    def _print_Mul(self, expr):
        # sympy prints the factors of a negative product unparenthesized when they bind as
        # tightly as '*', which misreads '//' and '%': -2*(H//2) is not -2*H//2 == (-2*H)//2.
        coeff, rest = expr.as_coeff_Mul()
        if coeff < 0:
            positive = _keep_coeff(-coeff, rest)
            text = self._print(positive)
            if positive.is_Add or isinstance(positive, (FloorDiv, sympy.Mod)):
                text = f"({text})"
            return "-" + text
        return super()._print_Mul(expr)

    def _print_Add(self, expr, order=None):
        # A negative term after the first is printed as " - " and its positive part, which
        # needs no parentheses: W - 2*(H//2), 3 - H//2.
        out = ""
        for i, term in enumerate(self._as_ordered_terms(expr, order=order)):
            coeff, rest = term.as_coeff_Mul()
            if i and coeff < 0:
                positive = _keep_coeff(-coeff, rest)
                text = self._print(positive)
                out += f" - ({text})" if positive.is_Add else f" - {text}"
            else:
                text = self._print(term)
                out += (" + " if i else "") + (f"({text})" if term.is_Add else text)
        return out

    def _print_Relational(self, expr):
        return f"{self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)}"

    def _print_And(self, expr):
        return " and ".join(self._print(a) for a in sorted(expr.args, key=str))

    def _print_Or(self, expr):
        return " or ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Max(self, expr):
        return "max(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Min(self, expr):
        return "min(" + ", ".join(self._print(a) for a in expr.args) + ")"


_PRINTER = _DimPrinter()


def fmt(value: object) -> str:
    """A dim, condition or shape as lazyfx prints it."""
    if isinstance(value, (tuple, list)):
        inner = ", ".join(fmt(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, sympy.Basic):
        # Formulas are kept expanded (canonical) for computing; for reading,
        # common factors come back out: 64*(H//4 - 1), not 64*(H//4) - 64.
        return _PRINTER.doprint(sympy.factor_terms(value))
    return str(value)
