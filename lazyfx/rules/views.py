"""Shape manipulation: flatten, view/reshape, permute, transpose, squeeze/unsqueeze, cat,
expand/repeat/tile, movedim, flip/roll, diagonal, narrow.

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

from lazyfx.core.checks import assume, decide, equal, ge, le, require, require_divisible, require_equal
from lazyfx.core.registry import Method, rule
from lazyfx.core.symbolic import DimExpr, as_dim, floordiv, fmt, is_concrete, product
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import clamp_max, clamp_min, normalize_dim, shape_str, tensor_arg


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


def _sizes_given(op: str, name: str, positional: tuple, keywords: dict) -> tuple:
    """The sizes of a tensor method that takes them as ``*sizes`` or as the one keyword ``name``
    (``x.view(2, 3)``, ``x.view((2, 3))``, ``x.view(size=(2, 3))``), as PyTorch's argument
    parser takes them: the keyword alone, and a tuple or list."""
    if not keywords:
        return positional
    if positional or any(k != name for k in keywords):
        given = ", ".join([type(v).__name__ for v in positional] + [f"{k}={type(v).__name__}" for k, v in keywords.items()])
        raise ShapeError(f"{op}() received an invalid combination of arguments - got ({given})")
    value = keywords[name]
    if not isinstance(value, (tuple, list)):
        raise ShapeError(f"{op}(): argument '{name}' must be tuple of ints, not {type(value).__name__}")
    return (value,)


def _size_args(size: Sequence[Any]) -> tuple:
    """``view(2, 3)`` and ``view((2, 3))`` / ``view(torch.Size)`` are the same call."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def _cancel_common_factor(numel: DimExpr, known: DimExpr) -> tuple[DimExpr, DimExpr]:
    """``numel`` and ``known`` divided by their common factor, so that the inferred size and
    its divisibility condition read as a person would write them: ``x.view(B, 4, -1)`` on
    (B, N) infers ``N//4`` (with ``N % 4 == 0``), not ``(B*N)//(4*B)``. Exact: both are
    positive, so g*a is a multiple of g*b exactly when a is a multiple of b."""
    if is_concrete(numel) and is_concrete(known):
        return numel, known
    common = sympy.gcd(sympy.sympify(numel), sympy.sympify(known))
    if common in (0, 1) or not common.is_integer:
        return numel, known
    a, b = sympy.cancel(sympy.sympify(numel) / common), sympy.cancel(sympy.sympify(known) / common)
    if not (a.is_integer and b.is_integer):
        return numel, known
    return as_dim(a), as_dim(b)


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
    dividend, divisor = _cancel_common_factor(numel, known)
    require_divisible(
        dividend, divisor,
        lambda: f"{op}: shape {shape_str(sizes)} is invalid for input of size {fmt(numel)} "
        f"({fmt(known)} must divide {fmt(numel)})",
    )
    if is_concrete(dividend) and is_concrete(divisor):
        inferred = dividend // divisor
    else:
        quotient = sympy.cancel(sympy.sympify(dividend) / divisor)
        # Where the quotient is not visibly an integer (numel = 6*H, known = 4), the
        # divisibility condition recorded above makes the floor exact.
        inferred = as_dim(quotient) if quotient.is_integer else floordiv(dividend, divisor)
    return tuple(inferred if i == holes[0] else s for i, s in enumerate(sizes))


@rule(Method("view"))
def view(input, *size, dtype=None, **keywords) -> TensorMeta:
    """Same elements in a new shape (one entry may be -1); ``view(dtype)``: see :func:`view_dtype`."""
    x = tensor_arg(input, "view input")
    size = _sizes_given("view", "size", size, keywords)
    if len(size) == 1 and isinstance(size[0], torch.dtype):
        size, dtype = (), size[0]
    if dtype is not None and not size:
        return view_dtype(x, dtype)
    return x.with_shape(_infer_sizes(_size_args(size), product(x.shape), op="view"))


@rule(Method("reshape"))
def reshape_method(input, *shape, **keywords) -> TensorMeta:
    """Same elements in a new shape (one entry may be -1)."""
    x = tensor_arg(input, "reshape input")
    shape = _sizes_given("reshape", "shape", shape, keywords)
    return x.with_shape(_infer_sizes(_size_args(shape), product(x.shape), op="reshape"))


def view_dtype(x: TensorMeta, dtype: torch.dtype) -> TensorMeta:
    """The same bytes read as ``dtype``: the last dim is scaled by the ratio of the element sizes
    (and must be divisible by it when the new elements are larger). Strides are not tracked:
    the tensor is taken to be contiguous, as PyTorch requires here."""
    old, new = x.dtype.itemsize, dtype.itemsize
    if old == new:
        return TensorMeta(x.shape, dtype)
    what = f"to view {dtype_name(x.dtype)} as {dtype_name(dtype)} (different element sizes)"
    if x.ndim == 0:
        raise ShapeError(f"self.dim() cannot be 0 {what}")
    last = x.shape[-1]
    if new < old:
        return TensorMeta((*x.shape[:-1], last * (old // new)), dtype)
    ratio = new // old
    require_divisible(last, ratio, lambda: f"self.size(-1) must be divisible by {ratio} {what}, but got "
                                           f"{fmt(last)}")
    if is_concrete(last) and last == 0 and x.ndim > 1:  # the contiguous stride of dim -2 is then 1
        raise ShapeError(f"self.stride(-2) must be divisible by {ratio} {what}, but got 1")
    return TensorMeta((*x.shape[:-1], floordiv(last, ratio)), dtype)


@rule(torch.reshape)
def reshape(input, shape) -> TensorMeta:
    x = tensor_arg(input, "reshape input")
    return x.with_shape(_infer_sizes(tuple(shape), product(x.shape), op="reshape"))


@rule(Method("view_as"), Method("reshape_as"))
def view_as(input, other) -> TensorMeta:
    x, y = tensor_arg(input, "view_as input"), tensor_arg(other, "view_as other")
    return x.with_shape(_infer_sizes(tuple(y.shape), product(x.shape), op="view_as"))


@rule(torch.permute, Method("permute"))
def permute(input, *dims, **keywords) -> TensorMeta:
    """Reorders dims; ``dims`` must be a permutation of ``range(ndim)``."""
    x = tensor_arg(input, "permute input")
    dims = _sizes_given("permute", "dims", dims, keywords)
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
            is_one = equal(size, 1)
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


# -- expand, repeat, tile -----------------------------------------------------------------


def _nonnegative(size: DimExpr, message) -> None:
    require(ge(size, 0), message)


def expand_shape(x: TensorMeta, sizes: tuple) -> tuple:
    """Aligned from the right: ``-1`` keeps the input's size, a size-1 dim takes the target size,
    any other dim must equal it; new leading dims take their (non-negative) target size."""
    if len(sizes) < x.ndim:
        raise ShapeError(f"expand({shape_str(x.shape)}, size={shape_str(sizes)}): the number of sizes provided "
                         f"({len(sizes)}) must be greater or equal to the number of dimensions in the tensor "
                         f"({x.ndim})")
    lead = len(sizes) - x.ndim
    new = tuple(_new_leading_size(target, i, sizes) for i, target in enumerate(sizes[:lead]))
    return new + tuple(_expanded_size(x, i, target, lead, sizes) for i, target in enumerate(sizes[lead:]))


def _negative_size(sizes: tuple):
    return lambda: f"expand: Trying to create tensor with negative dimension: {shape_str(sizes)}"


def _new_leading_size(target: DimExpr, i: int, sizes: tuple) -> DimExpr:
    if is_concrete(target) and target == -1:
        raise ShapeError(f"The expanded size of the tensor (-1) isn't allowed in a leading, non-existing dimension {i}")
    _nonnegative(target, _negative_size(sizes))
    return target


def _expanded_size(x: TensorMeta, i: int, target: DimExpr, lead: int, sizes: tuple) -> DimExpr:
    size = x.shape[i]
    if (is_concrete(target) and target == -1) or equal(size, target):
        return size
    _nonnegative(target, _negative_size(sizes))
    # The result is the target size whether the input's dim matches it or is 1 (broadcast).
    require(
        sympy.Or(sympy.Eq(size, target), sympy.Eq(size, 1)),
        lambda: f"The expanded size of the tensor ({fmt(target)}) must match the existing size ({fmt(size)}) at "
        f"non-singleton dimension {lead + i}.  Target sizes: {shape_str(sizes)}.  Tensor sizes: {shape_str(x.shape)}",
    )
    return target


@rule(Method("expand"))
def expand(input, *sizes, **keywords) -> TensorMeta:
    """``x.expand(*sizes)`` / ``x.expand(sizes)`` / ``x.expand(size=sizes)``; see :func:`expand_shape`."""
    x = tensor_arg(input, "expand input")
    sizes = _sizes_given("expand", "size", sizes, keywords)
    if not sizes:
        raise ShapeError('expand() missing 1 required positional arguments: "size"')
    return x.with_shape(expand_shape(x, _size_args(sizes)))


@rule(Method("expand_as"))
def expand_as(input, other) -> TensorMeta:
    """``x.expand(other.shape)``."""
    x, y = tensor_arg(input, "expand_as input"), tensor_arg(other, "expand_as other")
    return x.with_shape(expand_shape(x, tuple(y.shape)))


def repeat_shape(x: TensorMeta, repeats: tuple) -> tuple:
    """The input's shape, padded with leading 1s to ``len(repeats)`` dims, times ``repeats`` elementwise."""
    if len(repeats) < x.ndim:
        raise ShapeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
    padded = (1,) * (len(repeats) - x.ndim) + tuple(x.shape)
    out = tuple(product((s, r)) for s, r in zip(padded, repeats))
    for r, size in zip(repeats, out):
        _nonnegative(r, lambda size=size: f"Trying to create tensor with negative dimension {fmt(size)}: "
                                          f"{shape_str(out)}")
    return out


@rule(Method("repeat"))
def repeat(input, *repeats, **keywords) -> TensorMeta:
    """``x.repeat(*repeats)`` / ``x.repeat(repeats=...)``; see :func:`repeat_shape`."""
    x = tensor_arg(input, "repeat input")
    repeats = _sizes_given("repeat", "repeats", repeats, keywords)
    if not repeats:
        raise ShapeError('repeat() missing 1 required positional arguments: "repeats"')
    return x.with_shape(repeat_shape(x, _size_args(repeats)))


def _tile(x: TensorMeta, dims: tuple) -> TensorMeta:
    """``repeat`` with ``dims`` padded with leading 1s to the input's rank."""
    dims = (1,) * (x.ndim - len(dims)) + tuple(dims)
    return x.with_shape(repeat_shape(x, dims))


@rule(torch.tile)
def tile(input, dims) -> TensorMeta:
    """``torch.tile(x, dims)``: ``dims`` is a tuple; see :func:`_tile`."""
    x = tensor_arg(input, "tile input")
    if not isinstance(dims, (tuple, list)):
        raise ShapeError(f"tile(): argument 'dims' (position 2) must be tuple of ints, not {type(dims).__name__}")
    return _tile(x, tuple(dims))


@rule(Method("tile"))
def tile_method(input, *dims, **keywords) -> TensorMeta:
    """``x.tile(*dims)`` / ``x.tile(dims)`` / ``x.tile(dims=dims)``; see :func:`_tile`."""
    dims = _sizes_given("tile", "dims", dims, keywords)
    if not dims:
        raise ShapeError('tile() missing 1 required positional arguments: "dims"')
    return _tile(tensor_arg(input, "tile input"), _size_args(dims))


# -- reordering: movedim, flip, roll (the shape is kept or permuted) ------------------------


def _dim_list(dims: Any) -> tuple:
    return tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)


@rule(torch.movedim, torch.moveaxis, Method("movedim"), Method("moveaxis"))
def movedim(input, source, destination) -> TensorMeta:
    """Dims ``source`` move to positions ``destination``; the others keep their order in the rest."""
    x = tensor_arg(input, "movedim input")
    src, dst = _dim_list(source), _dim_list(destination)
    if len(src) != len(dst):
        raise ShapeError(f"movedim: Invalid source or destination dims: source ({list(src)} dims) should contain "
                         f"the same number of dims as destination ({list(dst)} dims)")
    src_n = [normalize_dim(d, x.ndim) for d in src]
    dst_n = [normalize_dim(d, x.ndim) for d in dst]
    for name, given, normalized in (("source", src, src_n), ("destination", dst, dst_n)):
        if len(set(normalized)) != len(normalized):
            raise ShapeError(f"movedim: repeated dim in `{name}` ({list(given)})")
    if x.ndim == 0:
        return x
    order: list = [None] * x.ndim
    for s, d in zip(src_n, dst_n):
        order[d] = s
    rest = iter(d for d in range(x.ndim) if d not in src_n)
    order = [next(rest) if o is None else o for o in order]
    return x.with_shape(tuple(x.shape[o] for o in order))


def _check_flip_dims(x: TensorMeta, dims: Sequence[Any]) -> None:
    seen = set()
    for d in dims:
        n = normalize_dim(d, x.ndim)
        if n in seen:
            raise ShapeError(f"dim {n} appears multiple times in the list of dims")
        seen.add(n)


@rule(torch.flip)
def flip(input, dims) -> TensorMeta:
    """Same shape; ``dims`` (a tuple) must be valid and distinct."""
    x = tensor_arg(input, "flip input")
    if not isinstance(dims, (tuple, list)):
        raise ShapeError(f"flip(): argument 'dims' (position 2) must be tuple of ints, not {type(dims).__name__}")
    _check_flip_dims(x, dims)
    return x


@rule(Method("flip"))
def flip_method(input, *dims, **keywords) -> TensorMeta:
    """``x.flip(*dims)`` / ``x.flip(dims)`` / ``x.flip(dims=dims)``: as :func:`flip`."""
    x = tensor_arg(input, "flip input")
    dims = _sizes_given("flip", "dims", dims, keywords)
    if not dims:
        raise ShapeError('flip() missing 1 required positional arguments: "dims"')
    _check_flip_dims(x, _size_args(dims))
    return x


@rule(torch.fliplr, Method("fliplr"))
def fliplr(input) -> TensorMeta:
    """Same shape; at least 2 dims."""
    x = tensor_arg(input, "fliplr input")
    if x.ndim < 2:
        raise ShapeError("fliplr: Input must be >= 2-d.")
    return x


@rule(torch.flipud, Method("flipud"))
def flipud(input) -> TensorMeta:
    """Same shape; at least 1 dim."""
    x = tensor_arg(input, "flipud input")
    if x.ndim < 1:
        raise ShapeError("flipud: Input must be >= 1-d.")
    return x


@rule(torch.roll, Method("roll"))
def roll(input, shifts, dims=None) -> TensorMeta:
    """Same shape. One shift without dims rolls the flattened tensor; otherwise shifts and dims
    pair up (and each dim must exist, unless the tensor is empty)."""
    x = tensor_arg(input, "roll input")
    shifts, dims = _dim_list(shifts), () if dims is None else _dim_list(dims)
    if not shifts:
        raise ShapeError("roll: `shifts` required")
    if not dims and len(shifts) == 1:
        return x
    if len(shifts) != len(dims):
        raise ShapeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    if not any(is_concrete(s) and s == 0 for s in x.shape):  # an empty tensor is returned before dims are read
        for d in dims:
            normalize_dim(d, x.ndim, wrap_scalar=False)
    return x


@rule(torch.diagonal, Method("diagonal"))
def diagonal(input, offset=0, dim1=0, dim2=1) -> TensorMeta:
    """Dims ``dim1``, ``dim2`` are removed and the diagonal's length appended:
    ``max(min(n1, n2 - offset), 0)`` for ``offset >= 0``, ``max(min(n1 + offset, n2), 0)`` otherwise."""
    x = tensor_arg(input, "diagonal input")
    a, b = normalize_dim(dim1, x.ndim), normalize_dim(dim2, x.ndim)
    if a == b:
        raise ShapeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    if not is_concrete(offset):
        raise UnsupportedOpError(f"diagonal: the offset must be a concrete int, got {fmt(offset)}")
    n1, n2 = x.shape[a], x.shape[b]
    length = clamp_max(n1, n2 - offset) if offset >= 0 else clamp_max(n1 + offset, n2)
    rest = [s for i, s in enumerate(x.shape) if i not in (a, b)]
    return x.with_shape((*rest, clamp_min(length, 0)))


# -- narrow ---------------------------------------------------------------------------------


@rule(torch.narrow, Method("narrow"))
def narrow(input, dim, start, length) -> TensorMeta:
    """Dim ``dim`` becomes ``length``; needs ``-size <= start <= size`` and (after wrapping a
    negative start) ``start + length <= size``. A 0-dim tensor ``start`` is a value, so only
    the shape is known: checking it against the size is left to run time."""
    x = tensor_arg(input, "narrow input")
    if x.ndim == 0:
        raise ShapeError("narrow() cannot be applied to a 0-dim tensor.")
    _nonnegative(length, lambda: "narrow(): length must be non-negative.")
    d = normalize_dim(dim, x.ndim)
    size = x.shape[d]
    if isinstance(start, TensorMeta):
        if start.ndim != 0 or start.dtype.is_floating_point or start.dtype.is_complex:
            raise ShapeError("start must be an 0-dim integral Tensor.")
        # whatever the start, the slice ends past it
        require(le(length, size), lambda: f"start + length ({fmt(length)}) exceeds dimension size "
                                          f"({fmt(size)}) whatever the start")
    else:
        _check_narrow_start(start, length, size)
    return x.with_shape((*x.shape[:d], length, *x.shape[d + 1 :]))


def _check_narrow_start(start: DimExpr, length: DimExpr, size: DimExpr) -> None:
    # sympy relations of plain ints evaluate to true/false, so one form serves both cases.
    require(sympy.And(sympy.Le(-size, start), sympy.Le(start, size)),
            lambda: f"start out of range (expected to be in range of [{fmt(-size)}, {fmt(size)}], "
                    f"but got {fmt(start)})")
    nonnegative = decide(sympy.Ge(start, 0))
    if nonnegative is None:  # a formula that may be negative: PyTorch wraps it first
        fits = sympy.Or(sympy.And(sympy.Ge(start, 0), sympy.Le(start + length, size)),
                        sympy.And(sympy.Lt(start, 0), sympy.Le(start + length, 0)))
    else:
        fits = sympy.Le((start if nonnegative else start + size) + length, size)
    require(fits, lambda: f"start ({fmt(start)}) + length ({fmt(length)}) exceeds dimension size ({fmt(size)}).")


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
