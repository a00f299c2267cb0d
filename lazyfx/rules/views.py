"""Shape manipulation: flatten, view/reshape, permute, transpose, squeeze/unsqueeze, cat.

``view``/``reshape`` keep the number of elements; one ``-1`` entry is inferred
as ``numel // known`` and needs ``known`` to divide ``numel`` (recorded as a
condition when that depends on the input). Limitation: strides are not
tracked, so ``view`` on a non-contiguous tensor is not rejected as PyTorch
would.
"""

from __future__ import annotations

from typing import Any, Sequence

import sympy
import torch
import torch.nn as nn

from lazyfx.checks import assume, decide, require, require_equal
from lazyfx.errors import ShapeError
from lazyfx.registry import Method, rule
from lazyfx.rules._util import normalize_dim, shape_str, tensor_arg
from lazyfx.symbolic import DimExpr, as_dim, floordiv, fmt, is_concrete, mod, product
from lazyfx.values import TensorMeta


def flatten_shape(x: TensorMeta, start_dim: int = 0, end_dim: int = -1) -> TensorMeta:
    """Dims ``start_dim..end_dim`` merge into their product; a 0-dim input becomes ``(1,)``."""
    if x.ndim == 0:
        return x.with_shape((1,))
    start, end = normalize_dim(start_dim, x.ndim), normalize_dim(end_dim, x.ndim)
    if start > end:
        raise ShapeError("flatten() has invalid args: start_dim cannot come after end_dim")
    return x.with_shape((*x.shape[:start], product(x.shape[start : end + 1]), *x.shape[end + 1 :]))


@rule(torch.flatten, Method("flatten"))
def flatten(input, start_dim=0, end_dim=-1) -> TensorMeta:
    return flatten_shape(tensor_arg(input, "flatten input"), start_dim, end_dim)


@rule(nn.Flatten)
def flatten_module(module: nn.Flatten, x: TensorMeta) -> TensorMeta:
    return flatten_shape(tensor_arg(x, "Flatten input"), module.start_dim, module.end_dim)


@rule(nn.Unflatten)
def unflatten_module(module: nn.Unflatten, x: TensorMeta) -> TensorMeta:
    """Dim ``dim`` splits into ``unflattened_size`` (one entry may be -1)."""
    return unflatten(x, module.dim, module.unflattened_size)


@rule(torch.unflatten, Method("unflatten"))
def unflatten(input, dim, sizes) -> TensorMeta:
    x = tensor_arg(input, "unflatten input")
    d = normalize_dim(dim, x.ndim)
    new = _infer_sizes(tuple(sizes), x.shape[d], op="unflatten")
    return x.with_shape((*x.shape[:d], *new, *x.shape[d + 1 :]))


def _size_args(size: Sequence[Any]) -> tuple:
    """``view(2, 3)`` and ``view((2, 3))`` / ``view(torch.Size)`` are the same call."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def _infer_sizes(sizes: tuple, numel: DimExpr, *, op: str) -> tuple:
    """PyTorch's ``infer_size``: at most one -1, inferred so the element count is kept."""
    holes = [i for i, s in enumerate(sizes) if is_concrete(s) and s == -1]
    if len(holes) > 1:
        raise ShapeError(f"{op}: only one dimension can be inferred")
    for s in sizes:
        if not (isinstance(s, (int, sympy.Expr)) and not isinstance(s, bool)):
            raise ShapeError(f"{op}: sizes must be ints, got {s!r}")
        if is_concrete(s) and s < -1:
            raise ShapeError(f"{op}: invalid shape dimension {s}")
    known = product(s for s in sizes if not (is_concrete(s) and s == -1))
    if not holes:
        require_equal(known, numel, lambda: f"{op}: shape {shape_str(sizes)} is invalid for input of size "
                                            f"{fmt(numel)}")
        return sizes
    if is_concrete(known) and known == 0:
        raise ShapeError(f"{op}: shape {shape_str(sizes)} is ambiguous: -1 next to a 0-size dim")
    divides = mod(numel, known)
    require(
        sympy.Eq(divides, 0) if not is_concrete(divides) else divides == 0,
        lambda: f"{op}: shape {shape_str(sizes)} is invalid for input of size {fmt(numel)} "
        f"({fmt(known)} must divide {fmt(numel)})",
    )
    if is_concrete(numel) and is_concrete(known):
        inferred = numel // known
    else:
        quotient = sympy.cancel(sympy.sympify(numel) / known)
        # Where the quotient is not visibly an integer (numel = 6*H, known = 4), the
        # divisibility condition recorded above makes the floor exact.
        inferred = as_dim(quotient) if quotient.is_integer else floordiv(numel, known)
    return tuple(inferred if i == holes[0] else s for i, s in enumerate(sizes))


@rule(Method("view"), Method("reshape"))
def view(input, *size) -> TensorMeta:
    """Same elements in a new shape (one entry may be -1)."""
    x = tensor_arg(input, "view input")
    if len(size) == 1 and isinstance(size[0], torch.dtype):
        raise ShapeError("view(dtype) is not supported yet")
    return x.with_shape(_infer_sizes(_size_args(size), product(x.shape), op="view"))


@rule(torch.reshape)
def reshape(input, shape) -> TensorMeta:
    x = tensor_arg(input, "reshape input")
    return x.with_shape(_infer_sizes(tuple(shape), product(x.shape), op="reshape"))


@rule(Method("view_as"), Method("reshape_as"))
def view_as(input, other) -> TensorMeta:
    x, y = tensor_arg(input, "view_as input"), tensor_arg(other, "view_as other")
    return x.with_shape(_infer_sizes(tuple(y.shape), product(x.shape), op="view_as"))


@rule(torch.permute, Method("permute"))
def permute(input, *dims) -> TensorMeta:
    """Reorders dims; ``dims`` must be a permutation of ``range(ndim)``."""
    x = tensor_arg(input, "permute input")
    if not dims:
        raise ShapeError('permute() missing 1 required positional argument: "dims"')
    order = tuple(normalize_dim(d, x.ndim, wrap_scalar=False) for d in _size_args(dims)) if x.ndim else ()
    if len(order) != x.ndim or sorted(order) != list(range(x.ndim)):
        raise ShapeError(f"permute: dims {tuple(_size_args(dims))} are not a permutation of the "
                         f"{x.ndim} dims of the input")
    return x.with_shape(tuple(x.shape[d] for d in order))


@rule(torch.transpose, torch.swapaxes, torch.swapdims, Method("transpose"), Method("swapaxes"), Method("swapdims"))
def transpose(input, dim0, dim1) -> TensorMeta:
    """Swaps two dims."""
    x = tensor_arg(input, "transpose input")
    if x.ndim == 0:
        normalize_dim(dim0, 0)
        normalize_dim(dim1, 0)
        return x
    a, b = normalize_dim(dim0, x.ndim), normalize_dim(dim1, x.ndim)
    shape = list(x.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return x.with_shape(tuple(shape))


@rule(torch.t, Method("t"))
def t(input) -> TensorMeta:
    """Transpose of a tensor with at most 2 dims."""
    x = tensor_arg(input, "t input")
    if x.ndim > 2:
        raise ShapeError(f"t() expects a tensor with <= 2 dimensions, but self is {x.ndim}D")
    return x.with_shape(tuple(reversed(x.shape)))


@rule(torch.squeeze, Method("squeeze"))
def squeeze(input, dim=None) -> TensorMeta:
    """Removes size-1 dims (all, or those in ``dim``); a symbolic size is taken to be != 1."""
    x = tensor_arg(input, "squeeze input")
    if dim is None:
        dims = set(range(x.ndim))
    else:
        dims = {normalize_dim(d, x.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
    keep = []
    for i, size in enumerate(x.shape):
        if i in dims:
            is_one = size == 1 if is_concrete(size) else decide(sympy.Eq(size, 1))
            if is_one is None:
                assume(sympy.Ne(size, 1), lambda size=size: f"{fmt(size)} != 1 (squeeze keeps that dim)")
            if is_one:
                continue
        keep.append(size)
    return x.with_shape(tuple(keep))


@rule(torch.unsqueeze, Method("unsqueeze"))
def unsqueeze(input, dim) -> TensorMeta:
    """Inserts a size-1 dim at ``dim`` (in ``[-ndim-1, ndim]``)."""
    x = tensor_arg(input, "unsqueeze input")
    d = normalize_dim(dim, x.ndim + 1)
    return x.with_shape((*x.shape[:d], 1, *x.shape[d:]))


@rule(torch.cat, torch.concat, torch.concatenate)
def cat(tensors, dim=0) -> TensorMeta:
    """Concatenation along ``dim``: other dims equal, ``dim`` sums; 1-D empty tensors are skipped."""
    if not isinstance(tensors, (tuple, list)) or not tensors:
        raise ShapeError("cat expects a non-empty list of tensors")
    metas = [tensor_arg(t, "cat input") for t in tensors]
    parts = [m for m in metas if not (m.ndim == 1 and is_concrete(m.shape[0]) and m.shape[0] == 0)] or metas[:1]
    first = parts[0]
    if first.ndim == 0:
        raise ShapeError("zero-dimensional tensor cannot be concatenated")
    d = normalize_dim(dim, first.ndim)
    total: DimExpr = 0
    for i, m in enumerate(parts):
        if m.ndim != first.ndim:
            raise ShapeError(f"Tensors must have same number of dimensions: got {first.ndim} and {m.ndim}")
        for axis, (a, b) in enumerate(zip(first.shape, m.shape)):
            if axis != d:
                require_equal(a, b, lambda a=a, b=b, axis=axis, i=i: f"cat: sizes of tensors must match except "
                              f"in dimension {d}. Expected size {fmt(a)} but got size {fmt(b)} for tensor "
                              f"number {i} in the list")
        total = total + m.shape[d]
    dtype = first.dtype
    for m in parts[1:]:
        dtype = torch.promote_types(dtype, m.dtype)
    return TensorMeta((*first.shape[:d], total, *first.shape[d + 1 :]), dtype)


# -- conversions keep the shape ------------------------------------------------------

_DTYPE_METHODS = {
    "float": torch.float32, "double": torch.float64, "half": torch.float16, "bfloat16": torch.bfloat16,
    "int": torch.int32, "long": torch.int64, "short": torch.int16, "bool": torch.bool, "char": torch.int8,
    "byte": torch.uint8,
}


def _dtype_method(dtype: torch.dtype):
    def convert(input, *args, **kwargs) -> TensorMeta:
        return TensorMeta(tensor_arg(input, "input").shape, dtype)

    convert.__name__ = f"to_{str(dtype).removeprefix('torch.')}"
    return convert


for _name, _dtype in _DTYPE_METHODS.items():
    rule(Method(_name))(_dtype_method(_dtype))


@rule(Method("to"))
def to(input, *args, **kwargs) -> TensorMeta:
    """``x.to(dtype)``, ``x.to(device, dtype)``, ``x.to(other)``: same shape, maybe a new dtype."""
    x = tensor_arg(input, "to input")
    dtype = kwargs.get("dtype")
    for arg in args:
        if isinstance(arg, torch.dtype):
            dtype = arg
        elif isinstance(arg, TensorMeta):
            dtype = arg.dtype
    return TensorMeta(x.shape, dtype or x.dtype)


@rule(Method("type_as"))
def type_as(input, other) -> TensorMeta:
    return TensorMeta(tensor_arg(input, "type_as input").shape, tensor_arg(other, "type_as other").dtype)


@rule(Method("cpu"), Method("cuda"))
def move(input, *args, **kwargs) -> TensorMeta:
    return tensor_arg(input, "input")
