"""Resampling: Upsample/F.interpolate, PixelShuffle/PixelUnshuffle, Fold/Unfold.

Interpolation (https://pytorch.org/docs/stable/generated/torch.nn.functional.interpolate.html)
keeps ``(N, C)`` and sets each spatial size to ``size`` or, from a scale factor,
``int(float(in) * scale)``, kept exact with a symbolic size (:mod:`lazyfx.rules.scale`).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import sympy
import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.checks import ge, require, require_divisible, require_equal
from lazyfx.core.registry import rule
from lazyfx.core.symbolic import DimExpr, floordiv, fmt, is_concrete, product
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import expect_ndim, ntuple, shape_str, tensor_arg
from lazyfx.rules.pool import adaptive_pool_shape
from lazyfx.rules.scale import scaled_size

_MODE_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5, "lanczos": 4}
_ANY_RANK = ("nearest", "nearest-exact", "area")
_ANTIALIAS_MODES = ("bilinear", "bicubic", "lanczos")
# Besides floating point types, the CPU kernels of these modes take uint8 images.
_UINT8_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "lanczos")


def _is_int(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, sympy.Expr) and value.is_integer is True
    )


def _check_size_entry(value: Any) -> None:
    if not _is_int(value):
        raise ShapeError(
            f"interpolate: expected size to be one of int or Tuple[int] or Tuple[int, int] or Tuple[int, int, int], "
            f"but got size {value!r}"
        )


def output_spatial(x: TensorMeta, size: Any, scale_factor: Any, recompute_scale_factor: Optional[bool]) -> tuple:
    """The output's spatial sizes from ``size`` or ``scale_factor`` (exactly one is given)."""
    n = x.ndim - 2
    spatial = list(x.shape[2:])
    if size is not None and scale_factor is not None:
        raise ShapeError("interpolate: only one of size or scale_factor should be defined")
    if size is None and scale_factor is None:
        raise ShapeError("interpolate: either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise ShapeError("interpolate: recompute_scale_factor is not meaningful with an explicit size.")
    if size is not None:
        sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,) * max(n, 0)
        if len(sizes) != n:
            raise ShapeError(f"interpolate: Input and output must have the same number of spatial dimensions, but "
                             f"got input with spatial dimensions of {shape_str(spatial)} and output size of {size}")
        for s in sizes:
            _check_size_entry(s)
        return sizes
    scales = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * max(n, 0)
    if len(scales) != n:
        raise ShapeError(f"interpolate: Input and scale_factor must have the same number of spatial dimensions, but "
                         f"got input with spatial dimensions of {shape_str(spatial)} and scale_factor {scale_factor}")
    return tuple(scaled_size(d, s) for d, s in zip(spatial, scales))


def _check_mode(x: TensorMeta, mode: str, align_corners: Optional[bool], antialias: bool) -> None:
    if mode in _ANY_RANK and align_corners is not None:
        raise ShapeError("interpolate: align_corners option can only be set with the interpolating modes: "
                         "linear | bilinear | bicubic | trilinear")
    if antialias and not (mode in _ANTIALIAS_MODES and x.ndim == 4):
        raise ShapeError("interpolate: Anti-alias option is restricted to bilinear, bicubic, and lanczos modes and "
                         f"requires a 4-D tensor as input (got mode={mode!r} and a {x.ndim}D input)")
    if mode in _ANY_RANK:
        if x.ndim not in (3, 4, 5):
            raise ShapeError(f"interpolate: Only 3D, 4D and 5D input Tensors supported (got {x.ndim}D) for the "
                             f"mode {mode!r}")
    elif mode in _MODE_RANK:
        if x.ndim != _MODE_RANK[mode]:
            raise ShapeError(f"interpolate: Got {x.ndim}D input, but {mode} mode needs {_MODE_RANK[mode]}D input")
        if mode == "lanczos" and align_corners:
            raise ShapeError("interpolate: Lanczos mode does not support align_corners=True")
        if mode == "lanczos" and not antialias:
            raise ShapeError("interpolate: Lanczos mode requires antialias=True")
    else:
        raise ShapeError(f"interpolate: unknown mode {mode!r}; expected one of nearest | linear | bilinear | "
                         f"bicubic | trilinear | lanczos | area | nearest-exact")


def _check_dtype(x: TensorMeta, mode: str, antialias: bool, out: Sequence[DimExpr]) -> None:
    """Floating point inputs, and uint8 images in some modes; other dtypes only where the
    kernel never computes: the antialiased kernels copy when no size changes, and 1-D/2-D
    adaptive pooling (``area``) returns an empty output without dispatching on the dtype."""
    if x.dtype.is_floating_point or (x.dtype == torch.uint8 and mode in _UINT8_MODES):
        return
    message = f"interpolate: mode {mode!r} is not implemented for {dtype_name(x.dtype)} inputs"
    if antialias:
        unchanged = sympy.And(*(sympy.Eq(o, i) for o, i in zip(out, x.shape[2:])))
        require(unchanged, lambda: f"{message} (unless no size changes: {shape_str(x.shape[2:])} -> {shape_str(out)})")
    elif mode == "area" and x.ndim in (3, 4):
        empty = sympy.Or(*(sympy.Eq(o, 0) for o in out))
        require(empty, lambda: f"{message} (unless the output is empty: {shape_str(out)})")
    else:
        raise ShapeError(message)


def interpolate_shape(
    x: TensorMeta,
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: Optional[bool] = None,
    recompute_scale_factor: Optional[bool] = None,
    antialias: bool = False,
) -> TensorMeta:
    """``(N, C, *in) -> (N, C, *out)``, ``out`` as in the module docstring; ``area`` mode is
    an adaptive average pool to ``out`` (which may be 0), the others need ``in, out >= 1``."""
    x = tensor_arg(x, "interpolate input")
    out = output_spatial(x, size, scale_factor, recompute_scale_factor)
    _check_mode(x, mode, align_corners, antialias)
    _check_dtype(x, mode, antialias, out)
    if mode == "area":
        for o in out:
            require(ge(o, 0), lambda: f"interpolate (area): elements of output_size must be greater than or equal "
                                       f"to 0 but received {shape_str(out)}")
        return adaptive_pool_shape(x, out, n=x.ndim - 2, op="interpolate (area)")
    for d in x.shape[1:]:
        require(ge(d, 1), lambda: f"interpolate: Non-empty {x.ndim}D data tensor expected but got a tensor with "
                                   f"sizes {shape_str(x.shape)}")
    for o in out:
        require(ge(o, 1), lambda: f"interpolate: Input and output sizes should be greater than 0, but got input "
                                   f"{shape_str(x.shape[2:])} and output {shape_str(out)}")
    return x.with_shape((*x.shape[:2], *out))


@rule(F.interpolate)
def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False) -> TensorMeta:
    """``F.interpolate`` (``F.upsample``, ``F.upsample_nearest`` and ``F.upsample_bilinear`` call it)."""
    return interpolate_shape(input, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias)


@rule(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
def upsample_module(module: nn.Upsample, x: TensorMeta) -> TensorMeta:
    """``F.interpolate(x, module.size, module.scale_factor, module.mode, module.align_corners)``."""
    return interpolate_shape(x, module.size, module.scale_factor, module.mode, module.align_corners,
                             module.recompute_scale_factor)


# -- pixel shuffle: channels trade places with the two trailing dims ----------------------------


def _check_factor(factor: Any, op: str, what: str) -> None:
    if not is_concrete(factor):
        raise UnsupportedOpError(f"{op}: {what} must be a concrete int, got {fmt(factor)}")
    if factor <= 0:
        raise ShapeError(f"{op} expects a positive {what}, but got {factor}")


def pixel_shuffle_shape(x: TensorMeta, upscale_factor: int) -> TensorMeta:
    """``(*, C*r**2, H, W) -> (*, C, H*r, W*r)``."""
    op = "pixel_shuffle"
    if x.ndim < 3:
        raise ShapeError(f"{op} expects input to have at least 3 dimensions, but got input with {x.ndim} dimension(s)")
    _check_factor(upscale_factor, op, "upscale_factor")
    c, h, w = x.shape[-3:]
    r2 = upscale_factor * upscale_factor
    require_divisible(c, r2, lambda: f"{op} expects its input's 'channel' dimension to be divisible by the square "
                                     f"of upscale_factor, but input.size(-3)={fmt(c)} is not divisible by {r2}")
    return x.with_shape((*x.shape[:-3], floordiv(c, r2), h * upscale_factor, w * upscale_factor))


def pixel_unshuffle_shape(x: TensorMeta, downscale_factor: int) -> TensorMeta:
    """``(*, C, H*r, W*r) -> (*, C*r**2, H, W)``."""
    op = "pixel_unshuffle"
    if x.ndim < 3:
        raise ShapeError(f"{op} expects input to have at least 3 dimensions, but got input with {x.ndim} dimension(s)")
    _check_factor(downscale_factor, op, "downscale_factor")
    c, h, w = x.shape[-3:]
    r = downscale_factor
    for name, size, index in (("height", h, -2), ("width", w, -1)):
        require_divisible(size, r, lambda name=name, size=size, index=index: (
            f"{op} expects {name} to be divisible by downscale_factor, but input.size({index})={fmt(size)} is not "
            f"divisible by {r}"))
    return x.with_shape((*x.shape[:-3], c * r * r, floordiv(h, r), floordiv(w, r)))


@rule(torch.pixel_shuffle)
def pixel_shuffle(input, upscale_factor) -> TensorMeta:
    """``F.pixel_shuffle``: ``(*, C*r**2, H, W) -> (*, C, H*r, W*r)``."""
    return pixel_shuffle_shape(tensor_arg(input, "pixel_shuffle input"), upscale_factor)


@rule(torch.pixel_unshuffle)
def pixel_unshuffle(input, downscale_factor) -> TensorMeta:
    """``F.pixel_unshuffle``: ``(*, C, H*r, W*r) -> (*, C*r**2, H, W)``."""
    return pixel_unshuffle_shape(tensor_arg(input, "pixel_unshuffle input"), downscale_factor)


@rule(nn.PixelShuffle)
def pixel_shuffle_module(module: nn.PixelShuffle, x: TensorMeta) -> TensorMeta:
    """``(*, C*r**2, H, W) -> (*, C, H*r, W*r)`` with ``r = upscale_factor``."""
    return pixel_shuffle_shape(tensor_arg(x, "PixelShuffle input"), module.upscale_factor)


@rule(nn.PixelUnshuffle)
def pixel_unshuffle_module(module: nn.PixelUnshuffle, x: TensorMeta) -> TensorMeta:
    """``(*, C, H*r, W*r) -> (*, C*r**2, H, W)`` with ``r = downscale_factor``."""
    return pixel_unshuffle_shape(tensor_arg(x, "PixelUnshuffle input"), module.downscale_factor)


# -- unfold (im2col) and fold (col2im), aten/src/ATen/native/im2col_shape_check.h ---------------


def _block_options(kernel_size, dilation, padding, stride, op: str) -> tuple:
    kernel, dil, pad, step = (ntuple(v, 2, name) for v, name in (
        (kernel_size, "kernel_size"), (dilation, "dilation"), (padding, "padding"), (stride, "stride")))
    for name, values, low in (("kernel size", kernel, 1), ("dilation", dil, 1), ("padding", pad, 0),
                              ("stride", step, 1)):
        for v in values:
            if not is_concrete(v):
                raise UnsupportedOpError(f"{op}: {name} must be concrete ints, got {fmt(values)}")
        if any(v < low for v in values):
            bound = "greater than zero" if low else "non-negative"
            raise ShapeError(f"{op}: {name} should be {bound}, but got {tuple(values)}")
    return kernel, dil, pad, step


def _check_block_dtype(x: TensorMeta, op: str) -> None:
    """im2col/col2im are implemented for floating point, complex and bool tensors."""
    if not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool):
        raise ShapeError(f"{op} is not implemented for {dtype_name(x.dtype)} inputs")


def _blocks(size: DimExpr, kernel: int, dilation: int, padding: int, stride: int) -> DimExpr:
    """Sliding blocks along one dim: ``(size + 2*padding - dilation*(kernel - 1) - 1)//stride + 1``."""
    return floordiv(size + 2 * padding - dilation * (kernel - 1) - 1, stride) + 1


def unfold_shape(x: TensorMeta, kernel_size, dilation=1, padding=0, stride=1) -> TensorMeta:
    """``(N, C, H, W) -> (N, C*kh*kw, L)`` (unbatched ``(C, H, W)`` too), ``L`` = blocks along H times along W."""
    op = "unfold"
    kernel, dil, pad, step = _block_options(kernel_size, dilation, padding, stride, op)
    expect_ndim(x, (3, 4), op)
    _check_block_dtype(x, op)
    for d in x.shape[x.ndim - 3 :]:
        require(ge(d, 1), lambda: f"{op}: Expected 3D or 4D (batch mode) tensor with possibly 0 batch size and other "
                                   f"non-zero dimensions for input, but got: {shape_str(x.shape)}")
    blocks = [_blocks(s, k, d, p, t) for s, k, d, p, t in zip(x.shape[-2:], kernel, dil, pad, step)]
    for b in blocks:
        require(ge(b, 1), lambda: f"{op}: Given input with spatial size {shape_str(x.shape[-2:])}, kernel_size="
                                   f"{kernel}, dilation={dil}, padding={pad}, calculated shape of the array of "
                                   f"sliding blocks as {shape_str(blocks)}, but its components must be at least one.")
    return x.with_shape((*x.shape[:-3], x.shape[-3] * kernel[0] * kernel[1], product(blocks)))


def fold_shape(x: TensorMeta, output_size, kernel_size, dilation=1, padding=0, stride=1) -> TensorMeta:
    """``(N, C*kh*kw, L) -> (N, C, *output_size)`` (unbatched ``(C*kh*kw, L)`` too), where ``L``
    must be the number of sliding blocks in ``output_size``."""
    op = "fold"
    out = ntuple(output_size, 2, "output_size")
    kernel, dil, pad, step = _block_options(kernel_size, dilation, padding, stride, op)
    for o in out:
        require(ge(o, 1), lambda: f"{op}: output_size should be greater than zero, but got {shape_str(out)}")
    expect_ndim(x, (2, 3), op)
    _check_block_dtype(x, op)
    channels, length = x.shape[-2:]
    for d in x.shape[-2:]:
        require(ge(d, 1), lambda: f"{op}: Expected 2D or 3D (batch mode) tensor for input with possibly 0 batch "
                                   f"size and non-zero dimensions for input, but got: {shape_str(x.shape)}")
    k = kernel[0] * kernel[1]
    require_divisible(channels, k, lambda: f"{op}: Expected size of input's dimension {x.ndim - 2} to be divisible "
                                           f"by the product of kernel_size, but got input.size({x.ndim - 2})="
                                           f"{fmt(channels)} and kernel_size={kernel}")
    blocks = [_blocks(s, kk, d, p, t) for s, kk, d, p, t in zip(out, kernel, dil, pad, step)]
    expected = product(blocks)
    require_equal(length, expected,
                  lambda: f"{op}: Given output_size={shape_str(out)}, kernel_size={kernel}, dilation={dil}, "
                          f"padding={pad}, stride={step}, expected size of input's dimension {x.ndim - 1} to match "
                          f"the calculated number of sliding blocks {fmt(blocks[0])} * {fmt(blocks[1])} = "
                          f"{fmt(expected)}, but got input.size({x.ndim - 1})={fmt(length)}.")
    for b in blocks:
        require(ge(b, 1), lambda: f"{op}: Given output_size={shape_str(out)}, calculated shape of the array of "
                                   f"sliding blocks as {shape_str(blocks)}, which is too small (non-positive)")
    return x.with_shape((*x.shape[:-2], floordiv(channels, k), *out))


@rule(F.unfold)
def unfold(input, kernel_size, dilation=1, padding=0, stride=1) -> TensorMeta:
    """``F.unfold``: ``(N, C, H, W) -> (N, C*kh*kw, L)``, see :func:`unfold_shape`."""
    return unfold_shape(tensor_arg(input, "unfold input"), kernel_size, dilation, padding, stride)


@rule(F.fold)
def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1) -> TensorMeta:
    """``F.fold``: ``(N, C*kh*kw, L) -> (N, C, *output_size)``, see :func:`fold_shape`."""
    return fold_shape(tensor_arg(input, "fold input"), output_size, kernel_size, dilation, padding, stride)


@rule(nn.Unfold)
def unfold_module(module: nn.Unfold, x: TensorMeta) -> TensorMeta:
    """``(N, C, H, W) -> (N, C*kh*kw, L)``, see :func:`unfold_shape`."""
    return unfold_shape(tensor_arg(x, "Unfold input"), module.kernel_size, module.dilation, module.padding,
                        module.stride)


@rule(nn.Fold)
def fold_module(module: nn.Fold, x: TensorMeta) -> TensorMeta:
    """``(N, C*kh*kw, L) -> (N, C, *output_size)``, see :func:`fold_shape`."""
    return fold_shape(tensor_arg(x, "Fold input"), module.output_size, module.kernel_size, module.dilation,
                      module.padding, module.stride)
