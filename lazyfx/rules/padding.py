"""Padding: F.pad and the padding modules (constant, zero, reflection, replication, circular).

``pad = (left_last, right_last, left_second_last, right_second_last, ...)`` pads the
trailing ``len(pad)//2`` dims: ``out = size + left + right``; negative entries crop.
Checks follow ATen (aten/src/ATen/native/PadNd.cpp and the reflection/replication
kernels' shape checks, https://pytorch.org/docs/stable/generated/torch.nn.functional.pad.html):

* ``constant`` pads any trailing dims (at most all of them); it crops by the negative pads
  first, which must leave a size ``>= 0`` (so every output size is ``>= 0``).
* ``reflect``/``replicate``/``circular`` pad the last 1, 2 or 3 dims of an input with
  one or two more dims (unbatched or batched).
* ``reflect`` needs each pad ``< size``; ``circular`` each pad ``<= size`` (it wraps
  around at most once) and, next to a negative pad, no larger than what the crop leaves.
* ``reflect``/``replicate`` need their non-batch input dims non-empty and a non-empty
  output: 1-D padding needs ``out >= 1``; for 2-D and 3-D padding newer releases (replicate
  from torch 2.14, reflect from 2.15) check every output size ``>= 1``, older ones that *some*
  output size is ``>= 1`` (and none is negative) -- see ``lazyfx.core.compat.PAD_EVERY_OUTPUT_POSITIVE``.
"""

from __future__ import annotations

from typing import Any, Sequence

import sympy
import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core import compat
from lazyfx.core.checks import ge, le, lt, ne, require
from lazyfx.core.registry import lookup_by_class, rule
from lazyfx.core.symbolic import DimExpr, fmt, is_concrete, product, sym_min
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import shape_str, tensor_arg

_MODES = ("constant", "reflect", "replicate", "circular")


def _pairs(pads: Sequence[DimExpr], ndim: int) -> list[tuple[int, DimExpr, DimExpr]]:
    """``(dim, left, right)`` for each padded dim, innermost pair first in ``pads``."""
    return [(ndim - 1 - i, pads[2 * i], pads[2 * i + 1]) for i in range(len(pads) // 2)]


def _padded_shape(x: TensorMeta, pads: Sequence[DimExpr]) -> list[DimExpr]:
    shape = list(x.shape)
    for dim, left, right in _pairs(pads, x.ndim):
        shape[dim] = x.shape[dim] + left + right
    return shape


def _check_pad_arg(x: TensorMeta, pad: Any) -> tuple:
    if not isinstance(pad, (tuple, list)):
        raise ShapeError(f"pad must be a tuple of ints, got {type(pad).__name__}")
    pads = tuple(pad)
    for p in pads:
        if isinstance(p, bool) or not isinstance(p, (int, sympy.Expr)):
            raise ShapeError(f"pad must be a tuple of ints, got {pads!r}")
    if len(pads) % 2:
        raise ShapeError(f"Padding length must be divisible by 2, got pad={pads}")
    if len(pads) // 2 > x.ndim:
        raise ShapeError(f"Padding length should be less than or equal to two times the input dimension but got "
                         f"padding length {len(pads)} and input of dimension {x.ndim}")
    return pads


def constant_pad_shape(x: TensorMeta, pads: Sequence[DimExpr]) -> TensorMeta:
    """``out = size + left + right`` per padded dim; an empty dim is allowed, but ATen crops
    (``narrow``) by the negative pads before it pads, so ``size + min(left, 0) + min(right, 0) >= 0``."""
    for dim, left, right in _pairs(pads, x.ndim):
        cropped = x.shape[dim] + sym_min(left, 0) + sym_min(right, 0)
        require(
            ge(cropped, 0),
            lambda dim=dim, left=left, right=right: f"The input size {fmt(x.shape[dim])}, plus negative padding "
            f"{fmt(left)} and {fmt(right)} resulted in a negative output size, which is invalid. Check dimension "
            f"{dim} of your input (input of size {shape_str(x.shape)})",
        )
    return x.with_shape(_padded_shape(x, pads))


def _check_rank(x: TensorMeta, pads: Sequence[DimExpr]) -> int:
    n = len(pads) // 2
    if n not in (1, 2, 3) or x.ndim not in (n + 1, n + 2):
        raise ShapeError(f"Padding size {len(pads)} is not supported for {x.ndim}D input tensor "
                         f"(non-constant padding of the last n dims needs an (n+1)D or (n+2)D input, n <= 3)")
    return n


def _check_non_empty(x: TensorMeta, n: int, mode: str) -> None:
    """Reflection/replication accept an empty batch but no other empty dim."""
    first = 1 if x.ndim == n + 2 else 0
    for size in x.shape[first:]:
        require(
            ge(size, 1),
            lambda: f"{mode} padding: expected {n + 1}D or {n + 2}D (batch mode) tensor with possibly 0 batch size "
            f"and other non-zero dimensions for input, but got: {shape_str(x.shape)}",
        )


def _check_pad_below_size(x: TensorMeta, pads, *, strict: bool, mode: str) -> None:
    for dim, left, right in _pairs(pads, x.ndim):
        size = x.shape[dim]
        for pad in (left, right):
            if strict:
                require(lt(pad, size), lambda pad=pad, dim=dim, left=left, right=right: (
                    f"Argument #4: Padding size should be less than the corresponding input dimension, but got: "
                    f"padding ({fmt(left)}, {fmt(right)}) at dimension {dim} of input {shape_str(x.shape)}"))
            else:
                require(le(pad, size), lambda pad=pad, size=size: (
                    f"{mode} padding {fmt(pad)} wraps around more than once for input size {fmt(size)} "
                    f"(Padding value causes wrapping around more than once)"))


def _check_circular_copies(x: TensorMeta, shape: Sequence[DimExpr], pads) -> None:
    """ATen fills a positive pad by copying, inside the output, from the elements the
    other side's crop leaves (``_pad_circular_symint``). With fewer of them than the pad
    the two slices overlap partially, which ``copy_`` refuses -- but it detects overlap
    only when the slices are dense, i.e. when the output dims before the padded dim are
    all 1 (and the dims after it are not empty)."""
    for dim, left, right in _pairs(pads, x.ndim):
        for pad, other in ((left, right), (right, left)):
            if not (is_concrete(pad) and is_concrete(other)):
                raise UnsupportedOpError("circular padding with symbolic pad sizes is not supported")
            if not (pad > 0 and other < 0):
                continue
            kept = x.shape[dim] + other
            leading, inner = product(shape[:dim]), product(shape[dim + 1 :])
            if is_concrete(inner) and inner == 0:
                continue
            require(
                sympy.Or(ne(leading, 1), le(inner, 0), le(kept, 0), ge(kept, pad)),
                lambda kept=kept, pad=pad: f"circular padding: padding {pad} wraps around the {fmt(kept)} "
                f"elements left after cropping (input of size {shape_str(x.shape)}, pad={tuple(pads)}): some "
                f"elements of the input tensor and the written-to tensor refer to a single memory location",
            )


def _check_outputs(x: TensorMeta, shape: Sequence[DimExpr], pads, *, some_positive: bool, mode: str) -> None:
    """Every output size ``>= 0``; with ``some_positive`` (reflect/replicate) at least one ``>= 1``,
    or every one where the installed torch checks that for ``mode`` (``compat.PAD_EVERY_OUTPUT_POSITIVE``)."""
    padded = [shape[dim] for dim, _, _ in _pairs(pads, x.ndim)]

    def message() -> str:
        return f"{mode} padding: input {shape_str(x.shape)} is too small, calculated output {shape_str(shape)}"

    every_positive = some_positive and (len(padded) == 1 or compat.PAD_EVERY_OUTPUT_POSITIVE[mode])
    for size in padded:
        require(ge(size, 1 if every_positive else 0), message)
    if some_positive and not every_positive:
        conditions = [ge(size, 1) for size in padded]
        require(conditions[0] if len(conditions) == 1 else sympy.Or(*conditions), message)


@rule(F.pad)
def pad(input: Any, pad: Any, mode: str = "constant", value: Any = None) -> TensorMeta:
    """``F.pad``: ``out = size + left + right`` for each padded dim; see the module docstring
    for the checks of each mode."""
    x = tensor_arg(input, "pad input")
    pads = _check_pad_arg(x, pad)
    if mode not in _MODES:
        raise ShapeError(f"Unrecognised padding mode {mode}")
    if mode == "constant":
        return constant_pad_shape(x, pads)
    if value is not None and value != 0:
        raise ShapeError(f'Padding mode "{mode}" doesn\'t take in value argument')
    n = _check_rank(x, pads)
    if mode != "circular":
        if x.dtype == torch.bool:
            raise ShapeError(f'"{mode} padding" is not implemented for {dtype_name(x.dtype)} inputs')
        _check_non_empty(x, n, mode)
    if mode != "replicate":
        _check_pad_below_size(x, pads, strict=mode == "reflect", mode=mode)
    shape = _padded_shape(x, pads)
    if mode == "circular":
        _check_circular_copies(x, shape, pads)
    # 1-D reflection/replication checks out >= 1; 2-D/3-D every output or some output, by release.
    _check_outputs(x, shape, pads, some_positive=mode != "circular", mode=mode)
    return x.with_shape(shape)


_MODULE_MODES = {
    nn.modules.padding._ConstantPadNd: "constant",
    nn.modules.padding._ReflectionPadNd: "reflect",
    nn.modules.padding._ReplicationPadNd: "replicate",
    nn.modules.padding._CircularPadNd: "circular",
}

_CIRCULAR_RANKS = {nn.CircularPad1d: (2, 3), nn.CircularPad2d: (3, 4), nn.CircularPad3d: (4, 5)}


@rule(
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
    nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
    nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
    nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d,
)
def pad_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """``F.pad(x, module.padding, mode)``; CircularPadNd first checks for an (N+1)D or (N+2)D input
    (the constant pads accept any input with at least N dims)."""
    op = module.__class__.__name__
    x = tensor_arg(x, f"{op} input")
    mode = lookup_by_class(_MODULE_MODES, module.__class__)
    if mode == "circular":
        ranks = lookup_by_class(_CIRCULAR_RANKS, module.__class__)
        if x.ndim not in ranks:
            raise ShapeError(f"{op}: expected {ranks[0]}D or {ranks[1]}D input (got {x.ndim}D input)")
    value = getattr(module, "value", None) if mode == "constant" else None
    return pad(x, module.padding, mode, value)
