"""Shape queries and indexing: ``size()``, ``.shape``, ``dim()``, ``numel()``, ``x[...]``.

Queries return size formulas (ints or sympy expressions), so ``x.view(x.size(0), -1)``
stays exact. Indexing a tensor with ints, slices (steps and negative bounds),
``None`` and ``...`` follows Python/PyTorch semantics: bounds are clamped to
the dim, an int index must be in ``[-size, size)``. Indexing with tensors is
not supported yet (operator coverage).
"""

from __future__ import annotations

import builtins
import operator
from typing import Any

import sympy
import torch

from lazyfx.checks import require
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.registry import Method, rule
from lazyfx.rules._util import clamp_max, clamp_min, normalize_dim, tensor_arg
from lazyfx.symbolic import DimExpr, ceildiv, fmt, is_concrete, product
from lazyfx.values import TensorMeta


@rule(Method("size"))
def size(input, dim=None):
    """``x.size()`` is the shape tuple; ``x.size(d)`` one size."""
    x = tensor_arg(input, "size() input")
    if dim is None:
        return tuple(x.shape)
    return x.shape[normalize_dim(dim, x.ndim, wrap_scalar=False)] if x.ndim else _no_dims("size")


def _no_dims(op: str):
    raise ShapeError(f"{op}(dim) on a 0-dim tensor: dimension specified as 0 but tensor has no dimensions")


@rule(Method("dim"), Method("ndimension"))
def dim(input) -> int:
    return tensor_arg(input, "dim() input").ndim


@rule(Method("numel"), Method("nelement"), torch.numel)
def numel(input) -> DimExpr:
    return product(tensor_arg(input, "numel() input").shape)


_TENSOR_ATTRIBUTES = {
    "shape": lambda x: tuple(x.shape),
    "ndim": lambda x: x.ndim,
    "dtype": lambda x: x.dtype,
    # Devices do not change shapes; the abstract value stands in for "wherever the input is".
    "device": lambda x: torch.device("meta"),
    "data": lambda x: x,
    "T": lambda x: x.with_shape(tuple(reversed(x.shape))),
    "mT": lambda x: _swap_last_two(x, "mT"),
    "mH": lambda x: _swap_last_two(x, "mH"),
}


def _swap_last_two(x: TensorMeta, what: str) -> TensorMeta:
    if x.ndim == 0:  # deprecated identity on 0-dim tensors
        return x
    if x.ndim < 2:
        raise ShapeError(f"tensor.{what} is only supported on matrices or batches of matrices. Got {x.ndim}-D tensor.")
    return x.with_shape((*x.shape[:-2], x.shape[-1], x.shape[-2]))


@rule(builtins.getattr)
def getattr_(obj, name: str, *default):
    """``x.shape``, ``x.ndim``, ``x.dtype``, ``x.T``, ``x.mT``..."""
    if isinstance(obj, TensorMeta) and name in _TENSOR_ATTRIBUTES:
        return _TENSOR_ATTRIBUTES[name](obj)
    raise UnsupportedOpError(f"attribute {name!r} of {type(obj).__name__} is not supported")


@rule(operator.getitem)
def getitem(obj, index):
    """Indexing a tensor, a shape tuple, a tuple of outputs or a dict."""
    if isinstance(obj, TensorMeta):
        return index_tensor(obj, index)
    if isinstance(obj, (tuple, list)):
        if isinstance(index, sympy.Basic):
            raise UnsupportedOpError(f"indexing a tuple with the formula {fmt(index)}")
        try:
            return obj[index]
        except IndexError:
            raise ShapeError(f"tuple index {index} out of range for a tuple of {len(obj)} elements") from None
    if isinstance(obj, dict):
        if index not in obj:
            raise ShapeError(f"key {index!r} not in the dict (keys: {list(obj)})")
        return obj[index]
    raise UnsupportedOpError(f"indexing a {type(obj).__name__}")


def index_tensor(x: TensorMeta, index: Any) -> TensorMeta:
    """Basic indexing: ints remove a dim, slices shrink one, None inserts a 1, ``...`` spans the rest."""
    items = index if isinstance(index, tuple) else (index,)
    for item in items:
        if isinstance(item, (TensorMeta, list)):
            raise UnsupportedOpError("indexing a tensor with a tensor or list (advanced indexing) is not supported yet")
        if not (item is None or item is Ellipsis or isinstance(item, (int, slice, sympy.Basic))):
            raise UnsupportedOpError(f"indexing a tensor with {type(item).__name__} {item!r}")
    consuming = [i for i in items if i is not None and i is not Ellipsis and not isinstance(i, bool)]
    if sum(1 for i in items if i is Ellipsis) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')")
    if len(consuming) > x.ndim:
        raise ShapeError(f"too many indices for tensor of dimension {x.ndim}")
    fill = (slice(None),) * (x.ndim - len(consuming))
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items = items[:at] + fill + items[at + 1 :]
    else:
        items = items + fill
    out: list[DimExpr] = []
    d = 0
    for item in items:
        if item is None or item is True:
            out.append(1)
        elif item is False:
            out.append(0)
        elif isinstance(item, slice):
            out.append(slice_length(x.shape[d], item))
            d += 1
        else:
            _check_index(item, x.shape[d], d)
            d += 1
    return x.with_shape(tuple(out))


def _check_index(i: DimExpr, size: DimExpr, d: int) -> None:
    if not is_concrete(i):
        raise UnsupportedOpError(f"indexing with the formula {fmt(i)} (only concrete ints are supported)")
    inside = (-size <= i < size) if is_concrete(size) else (sympy.Gt(size, i) if i >= 0 else sympy.Ge(size, -i))
    require(inside, lambda: f"index {i} is out of bounds for dimension {d} with size {fmt(size)}")


def slice_length(size: DimExpr, s: slice) -> DimExpr:
    """``len(range(size)[s])`` with Python's clamping of out-of-range bounds."""
    step = 1 if s.step is None else s.step
    if not is_concrete(step):
        raise UnsupportedOpError(f"a slice step must be a concrete int, got {fmt(step)}")
    if step <= 0:
        raise ShapeError("slice step must be positive")
    start = 0 if s.start is None else _bound(s.start, size)
    stop = size if s.stop is None else _bound(s.stop, size)
    return clamp_min(ceildiv(stop - start, step), 0)


def _bound(value: DimExpr, size: DimExpr) -> DimExpr:
    """A slice bound clamped into ``[0, size]`` (negative ints count from the end)."""
    if is_concrete(value) and value < 0:
        return clamp_min(size + value, 0)
    return clamp_max(value, size)
