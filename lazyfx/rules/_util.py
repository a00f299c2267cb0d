"""Helpers shared by the rule families: argument normalization and common checks."""

from __future__ import annotations

from itertools import zip_longest
from typing import Any, Iterable, Optional, Sequence

import sympy
import torch

from lazyfx.core.checks import assume, decide, equal, ge, le, require, require_equal
from lazyfx.core.symbolic import DimExpr, fmt, is_concrete, sym_max, sym_min
from lazyfx.core.values import TensorMeta
from lazyfx.errors import ShapeError, UnsupportedOpError


def ntuple(value: Any, n: int, what: str) -> tuple:
    """``3 -> (3, 3)``; a sequence must have length ``n``."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1 and n > 1:
            return tuple(value) * n
        if len(value) != n:
            raise ShapeError(f"{what} must have {n} elements, got {tuple(value)}")
        return tuple(value)
    return (value,) * n


def tensor_arg(value: Any, what: str) -> TensorMeta:
    if not isinstance(value, TensorMeta):
        raise ShapeError(f"{what} must be a tensor, got {type(value).__name__} {fmt(value)}")
    return value


def normalize_dim(dim: Any, ndim: int, *, wrap_scalar: bool = True) -> int:
    """A possibly negative dim index, checked like PyTorch's ``maybe_wrap_dim``."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        if isinstance(dim, sympy.Basic):
            raise UnsupportedOpError(f"a dim index must be a concrete int, got the formula {fmt(dim)}")
        raise ShapeError(f"a dim index must be an int, got {dim!r}")
    rank = max(ndim, 1) if wrap_scalar else ndim
    if not -rank <= dim < rank:
        raise ShapeError(
            f"Dimension out of range (expected to be in range of [{-rank}, {rank - 1}], but got {dim})"
        )
    return dim % rank


def shape_str(shape: Sequence[DimExpr]) -> str:
    return "[" + ", ".join(fmt(d) for d in shape) + "]"


def expect_ndim(x: TensorMeta, allowed: Iterable[int], what: str) -> None:
    allowed = tuple(allowed)
    if x.ndim not in allowed:
        names = " or ".join(f"{n}D" for n in allowed)
        raise ShapeError(f"{what} expects a {names} input, got {x.ndim}D input of size {shape_str(x.shape)}")


def broadcast_shapes(*shapes: Sequence[DimExpr]) -> tuple[DimExpr, ...]:
    """NumPy broadcasting: sizes are aligned from the right; each pair must be equal or 1
    (:func:`broadcast_size` per pair)."""
    ndim = max((len(s) for s in shapes), default=0)
    result: list[DimExpr] = []
    for position, dims in enumerate(zip_longest(*(tuple(reversed(s)) for s in shapes), fillvalue=1)):
        out: DimExpr = 1
        for d in dims:
            if _is_one(d):
                continue
            if _is_one(out):
                out = d
                continue
            if equal(out, d) is True:
                continue
            out = broadcast_size(out, d, lambda a=out, b=d, i=ndim - 1 - position: _broadcast_message(a, b, i))
        result.append(out)
    return tuple(reversed(result))


def _broadcast_message(a: DimExpr, b: DimExpr, i: int) -> str:
    return (f"The size of tensor a ({fmt(a)}) must match the size of tensor b ({fmt(b)}) at non-singleton "
            f"dimension {i}")


def broadcast_size(a: DimExpr, b: DimExpr, message) -> DimExpr:
    """One broadcast dim: a size of 1 stretches. A symbol against a concrete size ``c`` must be
    1 or ``c``, and the result is ``c`` either way: a condition, not an assumption (so an empty
    operand, ``c == 0``, is exact). Between two symbolic sizes, one the constraints fix to 1
    stretches; one that could be 1 is taken not to be (PyTorch would then broadcast, and the
    result would be the other size), and that choice is recorded as an assumption."""
    if _is_one(b):
        return a
    if _is_one(a):
        return b
    if equal(a, b) is True:
        return a
    if is_concrete(a) or is_concrete(b):
        known, other = (a, b) if is_concrete(a) else (b, a)
        require(one_of(other, (1, known)), message)
        return known
    if decide(sympy.Eq(b, 1)) is True:  # (fixed by a declared max=1, or by a requirement before)
        return a
    if decide(sympy.Eq(a, 1)) is True:
        return b
    for value in (a, b):
        assume(sympy.Ne(value, 1), lambda v=value: f"{fmt(v)} != 1 (broadcasting)")
    require_equal(a, b, message)
    return a


def broadcast_exactly(*shapes: Sequence[DimExpr], message=_broadcast_message) -> tuple:
    """NumPy broadcasting (aligned from the right) with :func:`broadcast_size` per dim;
    ``message(a, b, dim)`` explains a mismatch."""
    ndim = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for i, dims in enumerate(zip(*padded)):
        size: DimExpr = 1
        for d in dims:
            size = broadcast_size(size, d, lambda a=size, b=d, i=i: message(a, b, i))
        out.append(size)
    return tuple(out)


def broadcast_into(target: Sequence[DimExpr], shape: Sequence[DimExpr], message) -> None:
    """Require ``shape`` to broadcast to ``target`` itself without growing it (an in-place op's
    operand, an attention mask added to the scores): aligned from the right, each size is 1
    or the target's.

    Unlike :func:`broadcast_shapes` the result is known in advance, so nothing is assumed:
    the condition is exact (against a target size of 1 it requires 1; between two symbolic
    sizes it is ``d == 1 or d == t``)."""
    if len(shape) > len(target):
        raise ShapeError(message())
    for want, d in zip(reversed(tuple(target)), reversed(tuple(shape))):
        if _is_one(d) or equal(want, d) is True:
            continue
        require(one_of(d, (1, want)), message)


def one_of(value: DimExpr, options: Sequence[DimExpr]) -> Any:
    """``value`` equals one of ``options``: a bool where all are concrete, else the condition
    (only the options the constraints still allow; false where none is left)."""
    if is_concrete(value) and all(is_concrete(o) for o in options):
        return value in options
    possible = [sympy.Eq(value, o) for o in options if decide(sympy.Eq(value, o)) is not False]
    return sympy.Or(*possible) if possible else sympy.false


def _is_one(d: DimExpr) -> bool:
    return is_concrete(d) and d == 1


def clamp_min(value: DimExpr, low: DimExpr) -> DimExpr:
    """``max(value, low)`` that stays a plain formula when the comparison is decided."""
    return _clamped(value, low, decide(ge(value, low)), sym_max)


def clamp_max(value: DimExpr, high: DimExpr) -> DimExpr:
    """``min(value, high)`` that stays a plain formula when the comparison is decided."""
    return _clamped(value, high, decide(le(value, high)), sym_min)


def _clamped(value: DimExpr, bound: DimExpr, value_inside: Optional[bool], both) -> DimExpr:
    if value_inside is None:
        return both(value, bound)
    return value if value_inside else bound


_SCALAR_STANDINS = {}


def _standin(value: Any) -> Any:
    if isinstance(value, TensorMeta):
        key = (value.ndim > 0, value.dtype)
        if key not in _SCALAR_STANDINS:
            _SCALAR_STANDINS[key] = torch.empty((1,) if value.ndim else (), dtype=value.dtype, device="meta")
        return _SCALAR_STANDINS[key]
    if isinstance(value, sympy.Basic):
        return 1
    return value


def result_dtype(a: Any, b: Any) -> torch.dtype:
    """PyTorch's type promotion for a binary op (tensors beat 0-dim tensors beat scalars)."""
    return torch.result_type(_standin(a), _standin(b))
