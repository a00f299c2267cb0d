"""Joining and splitting: stack/hstack/vstack/dstack/column_stack, split/chunk/unbind/tensor_split.

The ``*stack`` family brings every input to a common rank (``atleast_1d/2d/3d``)
and concatenates them with ``torch.cat``'s checks (:func:`lazyfx.rules.views.cat`).
Splits return a tuple whose *length* must be known statically: where the number
of pieces depends on a symbolic size the rule says so (``UnsupportedOpError``),
except ``chunk``, which assumes the common case (the size divides evenly) and
records that assumption. ATen source: ``aten/src/ATen/native/TensorShape.cpp``.
"""

from __future__ import annotations

from typing import Any, Sequence

import sympy
import torch

from lazyfx.core.checks import assume, decide, ge, le, require, require_equal
from lazyfx.core.registry import Method, rule
from lazyfx.core.symbolic import DimExpr, ceildiv, floordiv, fmt, is_concrete, mod
from lazyfx.core.values import TensorMeta
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import normalize_dim, shape_str, tensor_arg
from lazyfx.rules.index import slice_length, value_dependent
from lazyfx.rules.views import cat


def _tensor_list(tensors: Any, op: str) -> list[TensorMeta]:
    if not isinstance(tensors, (tuple, list)) or not tensors:
        raise ShapeError(f"{op} expects a non-empty TensorList")
    return [tensor_arg(t, f"{op} input") for t in tensors]


def _promoted(metas: Sequence[TensorMeta]) -> torch.dtype:
    dtype = metas[0].dtype
    for m in metas[1:]:
        dtype = torch.promote_types(dtype, m.dtype)
    return dtype


# -- joining ----------------------------------------------------------------------------


@rule(torch.stack)
def stack(tensors, dim=0) -> TensorMeta:
    """``n`` tensors of one shape ``S`` -> ``S`` with ``n`` inserted at ``dim`` (in ``[-ndim-1, ndim]``);
    dtypes promote as in ``cat``."""
    metas = _tensor_list(tensors, "stack")
    first = metas[0]
    d = normalize_dim(dim, first.ndim + 1)
    for i, m in enumerate(metas[1:], 1):
        mismatch = _stack_mismatch(first, m, i)
        if m.ndim != first.ndim:
            raise ShapeError(mismatch())
        for a, b in zip(first.shape, m.shape):
            require_equal(a, b, mismatch)
    return TensorMeta((*first.shape[:d], len(metas), *first.shape[d:]), _promoted(metas))


def _stack_mismatch(first: TensorMeta, other: TensorMeta, i: int):
    return lambda: (f"stack expects each tensor to be equal size, but got {shape_str(first.shape)} at entry 0 and "
                    f"{shape_str(other.shape)} at entry {i}")


def atleast(x: TensorMeta, rank: int) -> TensorMeta:
    """``torch.atleast_{1,2,3}d``: ``() -> (1,)*rank``, ``(n,) -> (1, n)`` / ``(1, n, 1)``, ``(m, n) -> (m, n, 1)``."""
    if x.ndim >= rank:
        return x
    if x.ndim == 0:
        return x.with_shape((1,) * rank)
    if x.ndim == 1:
        return x.with_shape((1, *x.shape, 1)[:rank])
    return x.with_shape((*x.shape, 1))


@rule(torch.hstack)
def hstack(tensors) -> TensorMeta:
    """``atleast_1d`` each, then ``cat`` along dim 0 for 1-D inputs, else along dim 1."""
    metas = [atleast(m, 1) for m in _tensor_list(tensors, "hstack")]
    return cat(metas, 0 if metas[0].ndim == 1 else 1)


@rule(torch.vstack)
def vstack(tensors) -> TensorMeta:
    """``atleast_2d`` each, then ``cat`` along dim 0."""
    return cat([atleast(m, 2) for m in _tensor_list(tensors, "vstack")], 0)


@rule(torch.dstack)
def dstack(tensors) -> TensorMeta:
    """``atleast_3d`` each, then ``cat`` along dim 2."""
    return cat([atleast(m, 3) for m in _tensor_list(tensors, "dstack")], 2)


@rule(torch.column_stack)
def column_stack(tensors) -> TensorMeta:
    """Inputs with at most 1 dim become columns ``(numel, 1)``; then ``cat`` along dim 1."""
    metas = _tensor_list(tensors, "column_stack")
    columns = [m.with_shape((m.shape[0] if m.ndim else 1, 1)) if m.ndim <= 1 else m for m in metas]
    return cat(columns, 1)


# -- splitting ----------------------------------------------------------------------------


def _split_dim(x: TensorMeta, dim: Any, op: str) -> int:
    if x.ndim == 0:
        raise ShapeError(f"{op} expects at least a 1-dimensional tensor")
    return normalize_dim(dim, x.ndim)


def _pieces(x: TensorMeta, d: int, sizes: Sequence[DimExpr]) -> tuple[TensorMeta, ...]:
    return tuple(x.with_shape((*x.shape[:d], s, *x.shape[d + 1 :])) for s in sizes)


def _count_of(count: DimExpr, what: str) -> int:
    """A number of output tensors, which must be a plain int."""
    if is_concrete(count):
        return count
    raise UnsupportedOpError(
        f"{what}: the number of pieces, {fmt(count)}, depends on the input's symbolic size, so the "
        f"output tuple's length is not known statically (pin that dim to a concrete size)"
    )


def split_by_size(x: TensorMeta, split_size: DimExpr, d: int) -> tuple[TensorMeta, ...]:
    """Pieces of ``split_size`` along ``d``, the last one smaller: ``max(ceil(size/split_size), 1)`` of them."""
    size = x.shape[d]
    if is_concrete(split_size) and split_size < 0:
        raise ShapeError(f"split expects split_size be non-negative, but got split_size={split_size}")
    if is_concrete(split_size) and split_size == 0:
        require_equal(size, 0, lambda: f"split_size can only be 0 if dimension size is 0, but got dimension "
                                       f"size of {fmt(size)}")
        return _pieces(x, d, (size,))
    if not (is_concrete(size) and is_concrete(split_size)) and decide(le(size, split_size)):
        return _pieces(x, d, (size,))
    count = max(_count_of(ceildiv(size, split_size), f"split({fmt(split_size)}) of a dim of size {fmt(size)}"), 1)
    return _pieces(x, d, (*[split_size] * (count - 1), size - split_size * (count - 1)))


def split_by_sizes(x: TensorMeta, sizes: Sequence[DimExpr], d: int) -> tuple[TensorMeta, ...]:
    """One piece per entry of ``sizes``, which must be non-negative and sum to the dim's size."""
    sizes = tuple(sizes)
    size = x.shape[d]
    listed = lambda: shape_str(sizes)  # noqa: E731
    for s in sizes:
        require(ge(s, 0), lambda: f"split_with_sizes expects split_sizes have only non-negative entries, but got "
                                  f"split_sizes={listed()}")
    require_equal(sum(sizes), size, lambda: f"split_with_sizes expects split_sizes to sum exactly to {fmt(size)} "
                                            f"(input tensor's size at dimension {d}), but got split_sizes={listed()}")
    return _pieces(x, d, sizes)


def _split(tensor, split_size, dim, op: str) -> tuple[TensorMeta, ...]:
    x = tensor_arg(tensor, f"{op} input")
    d = _split_dim(x, dim, op)
    if isinstance(split_size, (tuple, list)):
        return split_by_sizes(x, split_size, d)
    if isinstance(split_size, TensorMeta):
        raise value_dependent(f"{op} with a tensor of split sizes: the pieces depend on the tensor's values")
    return split_by_size(x, split_size, d)


@rule(torch.split)
def split(tensor, split_size_or_sections, dim=0) -> tuple[TensorMeta, ...]:
    """``torch.split``: an int size (see :func:`split_by_size`) or a list of sizes (:func:`split_by_sizes`)."""
    return _split(tensor, split_size_or_sections, dim, "split")


@rule(Method("split"))
def split_method(input, split_size, dim=0) -> tuple[TensorMeta, ...]:
    """``Tensor.split``: as :func:`split`."""
    return _split(input, split_size, dim, "split")


@rule(torch.split_with_sizes, Method("split_with_sizes"))
def split_with_sizes(input, split_sizes, dim=0) -> tuple[TensorMeta, ...]:
    """One piece per listed size; see :func:`split_by_sizes`."""
    x = tensor_arg(input, "split_with_sizes input")
    return split_by_sizes(x, split_sizes, _split_dim(x, dim, "split_with_sizes"))


@rule(torch.chunk, Method("chunk"))
def chunk(input, chunks, dim=0) -> tuple[TensorMeta, ...]:
    """``split(ceil(size/chunks))``, so possibly fewer than ``chunks`` pieces; a size of 0 gives
    ``chunks`` empty pieces. With a symbolic size it is assumed that ``chunks`` divides it
    (then there are exactly ``chunks`` pieces of ``size//chunks``)."""
    x = tensor_arg(input, "chunk input")
    d = _split_dim(x, dim, "chunk")
    if not is_concrete(chunks):
        raise UnsupportedOpError(f"chunk: the number of chunks must be a concrete int, got {fmt(chunks)}")
    if chunks <= 0:
        raise ShapeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    size = x.shape[d]
    if is_concrete(size):
        if size == 0:
            return _pieces(x, d, (0,) * chunks)
        return split_by_size(x, ceildiv(size, chunks), d)
    if chunks == 1:
        return (x,)
    divides = sympy.Eq(mod(size, chunks), 0)
    if decide(divides) is False:
        raise UnsupportedOpError(
            f"chunk({chunks}) of a dim of size {fmt(size)}: the number of pieces depends on the input "
            f"({fmt(size)} is never a multiple of {chunks})"
        )
    # PyTorch gives fewer pieces when chunks does not divide the size; models chunk into equal
    # parts (q, k, v = x.chunk(3, -1)), so that is the case analysed, and it is said so.
    assume(divides, lambda: f"{fmt(size)} % {chunks} == 0 (chunk({chunks}) splits dim {d} evenly)")
    return _pieces(x, d, (floordiv(size, chunks),) * chunks)


@rule(torch.unbind, Method("unbind"))
def unbind(input, dim=0) -> tuple[TensorMeta, ...]:
    """``size[dim]`` tensors with ``dim`` removed."""
    x = tensor_arg(input, "unbind input")
    if x.ndim == 0:
        raise ShapeError("Dimension specified as 0 but tensor has no dimensions")
    d = normalize_dim(dim, x.ndim)
    count = _count_of(x.shape[d], f"unbind along dim {d}")
    return (x.with_shape((*x.shape[:d], *x.shape[d + 1 :])),) * count


@rule(torch.tensor_split, Method("tensor_split"))
def tensor_split(input, indices_or_sections=None, dim=0, *, sections=None, indices=None,
                 tensor_indices_or_sections=None) -> tuple[TensorMeta, ...]:
    """``n`` sections: piece ``i`` has ``(size + n - 1 - i)//n`` elements (the first ``size % n``
    get one more); a list of indices: the slices ``[:i0], [i0:i1], ..., [ik:]`` (Python slicing)."""
    x = tensor_arg(input, "tensor_split input")
    if x.ndim == 0:
        raise ShapeError("tensor_split expected at least a 1-dimensional tensor, but got a tensor with 0 dims")
    spec = next((v for v in (indices_or_sections, sections, indices, tensor_indices_or_sections) if v is not None),
                None)
    d = normalize_dim(dim, x.ndim)
    if isinstance(spec, TensorMeta):
        raise value_dependent("tensor_split with a tensor of sections or indices: the pieces depend on the "
                                 "tensor's values")
    if isinstance(spec, (tuple, list)):
        bounds = (0, *spec, None)
        return _pieces(x, d, [slice_length(x.shape[d], slice(a, b)) for a, b in zip(bounds, bounds[1:])])
    if not is_concrete(spec):
        raise UnsupportedOpError(f"tensor_split: the number of sections must be a concrete int, got {fmt(spec)}")
    if spec <= 0:
        raise ShapeError(f"number of sections must be larger than 0, got {spec}")
    size = x.shape[d]
    return _pieces(x, d, [floordiv(size + spec - 1 - i, spec) for i in range(spec)])
