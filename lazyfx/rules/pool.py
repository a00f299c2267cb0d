"""Pooling: nn.MaxPool/AvgPool/AdaptiveAvgPool/AdaptiveMaxPool/LPPool/MaxUnpool 1-3d,
nn.FractionalMaxPool2d/3d and their functional twins.

Output sizes follow ATen's ``pooling_output_shape`` (aten/src/ATen/native/Pool.h)::

    out = (size + 2*pad - dilation*(kernel - 1) - 1 + (stride - 1 if ceil_mode else 0))//stride + 1
    # ceil_mode: the last window must start inside the input or the left padding
    if ceil_mode and (out - 1)*stride >= size + pad: out -= 1

For integers the ceil-mode correction equals ``min(out, (size + pad - 1)//stride + 1)``
(PyTorch requires ``pad <= effective_kernel/2``, so ``out`` exceeds the second by at most 1);
:func:`pool_output_size` decides which of the two it is from the kernel, stride and padding.
"""

from __future__ import annotations

from typing import Any, Sequence

import sympy
import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.checks import ge, le, lt, require, require_equal, require_positive
from lazyfx.core.registry import lookup_by_class, rule
from lazyfx.core.symbolic import DimExpr, floordiv, fmt, is_concrete
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import expect_ndim, ntuple, shape_str, tensor_arg
from lazyfx.rules.scale import scaled_size


def pool_output_size(size: DimExpr, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> DimExpr:
    """One spatial output size of a max/avg pool (see the module docstring).

    With ``ceil_mode`` the size is the smaller of ``(x + c)//stride + 1`` (rounded up) and
    ``x//stride + 1`` (the last window starting inside), with ``x = size + pad - 1`` and the
    constant ``c = pad - dilation*(kernel - 1) + stride - 1``. Floor division is monotonic, so
    which one is smaller is decided by the sign of ``c`` alone, for every size: ``T//2 <= (T -
    1)//2 + 1`` for ``kernel=3, stride=2``. The formula stays one division deep however many
    ceil-mode pools are stacked (a ``min`` of both sides doubled at each pool)."""
    if not ceil_mode:
        return floordiv(size + 2 * pad - dilation * (kernel - 1) - 1, stride) + 1
    rounded_up = pad - dilation * (kernel - 1) + stride - 1
    return floordiv(size + pad - 1 + min(rounded_up, 0), stride) + 1


def _pool_shape(
    x: TensorMeta,
    *,
    n: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    op: str,
    max_pool: bool,
) -> TensorMeta:
    expect_ndim(x, (n + 1, n + 2), op)
    kernel = ntuple(kernel_size, n, "kernel_size")
    stride = kernel if stride is None or stride == [] or stride == () else ntuple(stride, n, "stride")
    pads = ntuple(padding, n, "padding")
    dilation = ntuple(dilation, n, "dilation")
    for name, values in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if any(v <= 0 for v in values):
            raise ShapeError(f"{op}: {name} must be greater than zero, got {values}")
    for k, p in zip(kernel, pads):
        if p < 0 or 2 * p > k:  # ATen's pool{2,3}d_shape_check: kW/2 >= padW (dilation not counted)
            raise ShapeError(f"{op}: pad should be at most half of kernel size, but got pad={p} and kernel_size={k}")
    leading = x.shape[: x.ndim - n]
    if n == 3 and not max_pool:  # avg_pool3d also wants the unpadded input to hold a kernel
        for size, k in zip(x.shape[x.ndim - n :], kernel):
            require(ge(size, k),
                    lambda size=size, k=k: f"{op}: input size {fmt(size)} is smaller than kernel size {k}")
    out = []
    for size, k, s, p, d in zip(x.shape[x.ndim - n :], kernel, stride, pads, dilation):
        o = pool_output_size(size, k, s, p, d, ceil_mode)
        require_positive(
            o,
            lambda size=size, o=o: f"{op}: input size {fmt(size)} gives output size {fmt(o)}, "
            f"which is too small (input of size {shape_str(x.shape)})",
        )
        out.append(o)
    return x.with_shape((*leading, *out))


def _indices(y: TensorMeta) -> TensorMeta:
    return TensorMeta(y.shape, torch.int64)


_SPATIAL_DIMS = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3,
    nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
    nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
}


@rule(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
def max_pool_module(module: nn.Module, x: TensorMeta):
    n = lookup_by_class(_SPATIAL_DIMS, module.__class__)
    y = _pool_shape(
        tensor_arg(x, "input"), n=n, kernel_size=module.kernel_size, stride=module.stride,
        padding=module.padding, dilation=module.dilation, ceil_mode=module.ceil_mode,
        op=module.__class__.__name__, max_pool=True,
    )
    return (y, _indices(y)) if module.return_indices else y


@rule(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def avg_pool_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    n = lookup_by_class(_SPATIAL_DIMS, module.__class__)
    return _pool_shape(
        tensor_arg(x, "input"), n=n, kernel_size=module.kernel_size, stride=module.stride,
        padding=module.padding, dilation=1, ceil_mode=module.ceil_mode,
        op=module.__class__.__name__, max_pool=False,
    )


def _functional_max_pool(n: int, with_indices: bool):
    def max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        y = _pool_shape(tensor_arg(input, "input"), n=n, kernel_size=kernel_size, stride=stride, padding=padding,
                        dilation=dilation, ceil_mode=ceil_mode, op=f"max_pool{n}d", max_pool=True)
        return (y, _indices(y)) if (return_indices or with_indices) else y

    max_pool.__name__ = f"max_pool{n}d" + ("_with_indices" if with_indices else "")
    return max_pool


def _functional_avg_pool(n: int):
    def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        return _pool_shape(tensor_arg(input, "input"), n=n, kernel_size=kernel_size, stride=stride,
                           padding=padding, dilation=1, ceil_mode=ceil_mode, op=f"avg_pool{n}d", max_pool=False)

    avg_pool.__name__ = f"avg_pool{n}d"
    return avg_pool


for _n in (1, 2, 3):
    rule(getattr(F, f"max_pool{_n}d"))(_functional_max_pool(_n, False))
    rule(getattr(F, f"max_pool{_n}d_with_indices"))(_functional_max_pool(_n, True))
    rule(getattr(F, f"avg_pool{_n}d"))(_functional_avg_pool(_n))


# -- adaptive pooling: the output size is given; None keeps the input size -------------


def adaptive_pool_shape(x: TensorMeta, output_size: Any, *, n: int, op: str) -> TensorMeta:
    """``(*leading, *output_size)``, an entry ``None`` keeping that input size."""
    expect_ndim(x, (n + 1, n + 2), op)
    sizes: Sequence = ntuple(output_size, n, "output_size")
    if n == 1 and None in sizes:  # only the 2d/3d variants fill None from the input (_list_with_default)
        raise ShapeError(f"{op}: output_size must be a tuple of ints, got {tuple(sizes)}")
    spatial = x.shape[x.ndim - n :]
    out = []
    for want, have in zip(sizes, spatial):
        if want is None:
            out.append(have)
        elif is_concrete(want) and want < 0:
            raise ShapeError(f"{op}: output_size must be non-negative, got {tuple(sizes)}")
        else:
            out.append(want)
    for size in x.shape[x.ndim - n - 1 :]:  # channels and spatial dims; the batch may be empty
        require_positive(size, lambda size=size: f"{op}: expected non-empty input, got size {fmt(size)}")
    return x.with_shape((*x.shape[: x.ndim - n], *out))


@rule(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
def adaptive_avg_pool_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    n = lookup_by_class(_SPATIAL_DIMS, module.__class__)
    return adaptive_pool_shape(tensor_arg(x, "input"), module.output_size, n=n, op=module.__class__.__name__)


@rule(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
def adaptive_max_pool_module(module: nn.Module, x: TensorMeta):
    n = lookup_by_class(_SPATIAL_DIMS, module.__class__)
    y = adaptive_pool_shape(tensor_arg(x, "input"), module.output_size, n=n, op=module.__class__.__name__)
    return (y, _indices(y)) if module.return_indices else y


def _functional_adaptive(n: int, kind: str, with_indices: bool = False):
    def adaptive_pool(input, output_size, return_indices=False):
        y = adaptive_pool_shape(tensor_arg(input, "input"), output_size, n=n, op=f"adaptive_{kind}_pool{n}d")
        return (y, _indices(y)) if (return_indices or with_indices) else y

    adaptive_pool.__name__ = f"adaptive_{kind}_pool{n}d" + ("_with_indices" if with_indices else "")
    return adaptive_pool


for _n in (1, 2, 3):
    rule(getattr(F, f"adaptive_avg_pool{_n}d"))(_functional_adaptive(_n, "avg"))
    rule(getattr(F, f"adaptive_max_pool{_n}d"))(_functional_adaptive(_n, "max"))
    rule(getattr(F, f"adaptive_max_pool{_n}d_with_indices"))(_functional_adaptive(_n, "max", True))


# -- power-average pooling: an avg pool of x**p (a max pool of |x| for p = +-inf) ---------------


def _lp_kernel(kernel_size: Any, n: int, infinite: bool, op: str) -> Any:
    """lp_pool1d multiplies by ``kernel_size`` (an int); lp_pool2d/3d unpack ``_pair``/``_triple``
    of it. Only the ``p = +-inf`` path of lp_pool1d never multiplies, so a sequence passes there."""
    if n == 1:
        if isinstance(kernel_size, (tuple, list)) and not infinite:
            raise ShapeError(f"{op}: kernel_size must be an int, got {tuple(kernel_size)}")
        return kernel_size
    if isinstance(kernel_size, (tuple, list)) and len(kernel_size) != n:
        raise ShapeError(f"{op}: kernel_size must be an int or {n} ints, got {tuple(kernel_size)}")
    return kernel_size


def lp_pool_shape(x: TensorMeta, norm_type: Any, kernel_size: Any, stride: Any, ceil_mode: bool, *, n: int,
                  op: str) -> TensorMeta:
    """The output of ``avg_pool{n}d(x**p, kernel_size, stride, 0, ceil_mode)``, or of the max pool
    for ``p = +-inf``; ``p`` must not be 0 (the result is raised to ``1/p``)."""
    infinite = isinstance(norm_type, (int, float)) and abs(norm_type) == float("inf")
    kernel = _lp_kernel(kernel_size, n, infinite, op)
    if not infinite and norm_type == 0:
        raise ShapeError(f"{op}: norm_type must not be 0 (the output is raised to the power 1/norm_type)")
    if not x.dtype.is_floating_point:
        raise UnsupportedOpError(f"{op} of a {dtype_name(x.dtype)} input: its result dtype and which integer "
                                 f"dtypes the pooling kernels accept depend on norm_type and the device")
    return _pool_shape(x, n=n, kernel_size=kernel, stride=stride, padding=0, dilation=1, ceil_mode=ceil_mode,
                       op=op, max_pool=infinite)


_LP_DIMS = {nn.LPPool1d: 1, nn.LPPool2d: 2, nn.LPPool3d: 3}


@rule(nn.LPPool1d, nn.LPPool2d, nn.LPPool3d)
def lp_pool_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """Pooled like an average pool without padding (a max pool for ``norm_type = inf``)."""
    return lp_pool_shape(tensor_arg(x, "input"), float(module.norm_type), module.kernel_size, module.stride,
                         module.ceil_mode, n=lookup_by_class(_LP_DIMS, module.__class__), op=module.__class__.__name__)


def _functional_lp_pool(n: int):
    def lp_pool(input, norm_type, kernel_size, stride=None, ceil_mode=False):
        return lp_pool_shape(tensor_arg(input, "input"), norm_type, kernel_size, stride, ceil_mode, n=n,
                             op=f"lp_pool{n}d")

    lp_pool.__name__ = f"lp_pool{n}d"
    lp_pool.__doc__ = f"``F.lp_pool{n}d``: pooled like ``avg_pool{n}d`` without padding (``max_pool{n}d`` for inf)."
    return lp_pool


for _n in (1, 2, 3):
    rule(getattr(F, f"lp_pool{_n}d"))(_functional_lp_pool(_n))


# -- max unpooling: the inverse of a max pool, sized by kernel/stride/padding or output_size -----


def _sequence(value: Any, n: int, what: str, op: str) -> tuple:
    """An int, or exactly ``n`` of them (``_single``/``_pair``/``_triple`` pass sequences through)."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ShapeError(f"{op}: {what} must be an int or {n} ints, got {tuple(value)}")
        return tuple(value)
    return (value,) * n


def _unpool_output(x: TensorMeta, kernel, stride, padding, output_size, n: int, op: str) -> tuple:
    """``(in - 1)*stride + kernel - 2*padding`` per dim (torch/nn/functional.py ``_unpool_output_size``),
    or ``output_size`` (n or n+2 entries), which must be within ``stride`` of it."""
    default = tuple((size - 1) * s + k - 2 * p for size, k, s, p in zip(x.shape[x.ndim - n :], kernel, stride, padding))
    if output_size is None:
        out = default
    else:
        out = tuple(output_size)
        if len(out) == n + 2:
            out = out[2:]
        if len(out) != n:
            raise ShapeError(f"{op}: output_size should be a sequence containing {n} or {n + 2} elements, but it "
                             f"has a length of '{len(out)}'")
        for want, base, s in zip(out, default, stride):
            require(sympy.And(sympy.Lt(base - s, want), sympy.Lt(want, base + s)),
                    lambda want=want, base=base, s=s: f"{op}: invalid output_size {shape_str(out)} (must be between "
                                                      f"{fmt(base - s)} and {fmt(base + s)}, exclusive)")
    for o in out:
        require(ge(o, 0),
                lambda o=o: f"{op}: output_size must contain non-negative spatial dimensions, but got {shape_str(out)}")
    return out


def max_unpool_shape(x: TensorMeta, indices: TensorMeta, kernel_size, stride, padding, output_size, *, n: int,
                     op: str) -> TensorMeta:
    """``(*, C, *in) -> (*, C, *out)``, ``out`` from :func:`_unpool_output`; ``indices`` (int64)
    has the input's shape, an (n+1)D or (n+2)D floating point input with non-empty non-batch dims."""
    kernel = _sequence(kernel_size, n, "kernel_size", op)
    steps = kernel if stride is None else _sequence(stride, n, "stride", op)
    pads = _sequence(padding, n, "padding", op)
    if x.ndim < n:
        raise ShapeError(f"{op}: Input should be a {n + 1}d or {n + 2}d Tensor, but got a tensor with {x.ndim} "
                         f"dimensions.")
    out = _unpool_output(x, kernel, steps, pads, output_size, n, op)
    if indices.dtype != torch.int64:
        raise ShapeError(f"{op}: elements in indices should be type int64 but got: {dtype_name(indices.dtype)}")
    expect_ndim(x, (n + 1, n + 2), op)
    if n == 3 and any(s <= 0 for s in steps):
        raise ShapeError(f"{op}: strides should be greater than zero, but got stride: {steps}")
    if indices.ndim != x.ndim:
        raise ShapeError(f"{op}: Expected shape of indices to be same as that of the input tensor "
                         f"({shape_str(x.shape)}) but got indices tensor with shape: {shape_str(indices.shape)}")
    for a, b in zip(x.shape, indices.shape):
        require_equal(a, b, lambda: f"{op}: Expected shape of indices to be same as that of the input tensor "
                                    f"({shape_str(x.shape)}) but got indices tensor with shape: "
                                    f"{shape_str(indices.shape)}")
    for size in x.shape[x.ndim - n - 1 :]:
        require_positive(size, lambda: f"{op}: Expected input to have non-zero size for non-batch dimensions, but got "
                                       f"{shape_str(x.shape)}")
    if not x.dtype.is_floating_point:  # the kernel never runs for an empty output
        require(sympy.Or(*(sympy.Eq(o, 0) for o in out)), lambda: f"{op} is not implemented for "
                                                                 f"{dtype_name(x.dtype)} inputs")
    return x.with_shape((*x.shape[: x.ndim - n], *out))


_UNPOOL_DIMS = {nn.MaxUnpool1d: 1, nn.MaxUnpool2d: 2, nn.MaxUnpool3d: 3}


@rule(nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d)
def max_unpool_module(module: nn.Module, input, indices, output_size=None) -> TensorMeta:
    """``(*, C, *in) -> (*, C, *out)`` with ``out = (in - 1)*stride + kernel - 2*padding`` or ``output_size``."""
    n = lookup_by_class(_UNPOOL_DIMS, module.__class__)
    return max_unpool_shape(tensor_arg(input, "input"), tensor_arg(indices, "indices"), module.kernel_size,
                            module.stride, module.padding, output_size, n=n, op=module.__class__.__name__)


def _functional_max_unpool(n: int):
    def max_unpool(input, indices, kernel_size, stride=None, padding=0, output_size=None):
        return max_unpool_shape(tensor_arg(input, "input"), tensor_arg(indices, "indices"), kernel_size, stride,
                                padding, output_size, n=n, op=f"max_unpool{n}d")

    max_unpool.__name__ = f"max_unpool{n}d"
    max_unpool.__doc__ = f"``F.max_unpool{n}d``: ``out = (in - 1)*stride + kernel - 2*padding`` or ``output_size``."
    return max_unpool


for _n in (1, 2, 3):
    rule(getattr(F, f"max_unpool{_n}d"))(_functional_max_unpool(_n))


# -- fractional max pooling: pseudo-random windows to a given output size ------------------------


def _fractional_output(x: TensorMeta, output_size, output_ratio, n: int, op: str) -> tuple:
    """``output_size`` (an int or n ints), else ``int(in * output_ratio)`` per dim, computed as
    F.interpolate computes ``int(in * scale)``; the 2d form needs ``output_ratio`` as 2 numbers."""
    if output_size is not None:
        return _sequence(output_size, n, "output_size", op)
    if output_ratio is None:
        raise ShapeError(f"{op} requires specifying either an output_size or an output_ratio")
    if n == 2 and not (isinstance(output_ratio, (tuple, list)) and len(output_ratio) == 2):
        raise ShapeError(f"{op}: output_ratio must be a tuple of 2 numbers, got {output_ratio!r}")
    ratios = tuple(output_ratio) if isinstance(output_ratio, (tuple, list)) else (output_ratio,) * n
    if len(ratios) < n:
        raise ShapeError(f"{op}: output_ratio must be a number or {n} numbers, got {output_ratio!r}")
    if x.ndim < n:
        raise ShapeError(f"{op}: Expected {n + 1}D or {n + 2}D tensor, but got: {shape_str(x.shape)}")
    return tuple(scaled_size(size, r, op) for size, r in zip(x.shape[x.ndim - n :], ratios[:n]))


def fractional_max_pool_shape(x: TensorMeta, kernel_size, output_size, output_ratio, random_samples, *, n: int,
                              op: str) -> TensorMeta:
    """``(*, C, *in) -> (*, C, *out)`` for an (n+1)D or (n+2)D floating point input; each
    window must fit: ``out + kernel - 1 <= in`` (``< in`` for 3d, as ATen checks)."""
    if random_samples is not None:
        raise UnsupportedOpError(f"{op} with _random_samples is not supported")
    out = _fractional_output(x, output_size, output_ratio, n, op)
    kernel = _sequence(kernel_size, n, "kernel_size", op)
    expect_ndim(x, (n + 1, n + 2), op)
    if not x.dtype.is_floating_point:
        raise ShapeError(f"{op} is not implemented for {dtype_name(x.dtype)} inputs (it draws random samples)")
    for size in x.shape[x.ndim - n - 1 :]:
        require_positive(size, lambda: f"{op}: Expected input to have non-zero size for non-batch dimensions, but got "
                                       f"{shape_str(x.shape)}")
    for size, o, k in zip(x.shape[x.ndim - n :], out, kernel):
        reach = o + k - 1
        fits = le(reach, size) if n == 2 else lt(reach, size)
        require(fits, lambda size=size, k=k, o=o: f"{op}: pool size {k} too large relative to input size {fmt(size)} "
                                                  f"for output size {fmt(o)}")
        require(ge(o, 0),
                lambda: f"{op}: output size must be non-negative, got {shape_str(out)}")
    return x.with_shape((*x.shape[: x.ndim - n], *out))


_FRACTIONAL_DIMS = {nn.FractionalMaxPool2d: 2, nn.FractionalMaxPool3d: 3}


@rule(nn.FractionalMaxPool2d, nn.FractionalMaxPool3d)
def fractional_max_pool_module(module: nn.Module, x: TensorMeta):
    """``(*, C, *in) -> (*, C, *out)`` (and int64 indices with ``return_indices``)."""
    n = lookup_by_class(_FRACTIONAL_DIMS, module.__class__)
    y = fractional_max_pool_shape(tensor_arg(x, "input"), module.kernel_size, module.output_size,
                                  module.output_ratio, module._random_samples, n=n, op=module.__class__.__name__)
    return (y, _indices(y)) if module.return_indices else y


def _functional_fractional(n: int, with_indices: bool):
    def fractional_max_pool(input, kernel_size, output_size=None, output_ratio=None, return_indices=False,
                            _random_samples=None):
        y = fractional_max_pool_shape(tensor_arg(input, "input"), kernel_size, output_size, output_ratio,
                                      _random_samples, n=n, op=f"fractional_max_pool{n}d")
        return (y, _indices(y)) if (return_indices or with_indices) else y

    fractional_max_pool.__name__ = f"fractional_max_pool{n}d" + ("_with_indices" if with_indices else "")
    fractional_max_pool.__doc__ = f"``F.fractional_max_pool{n}d``: ``(*, C, *in) -> (*, C, *output_size)``."
    return fractional_max_pool


for _n in (2, 3):
    rule(getattr(F, f"fractional_max_pool{_n}d"))(_functional_fractional(_n, False))
    rule(getattr(F, f"fractional_max_pool{_n}d_with_indices"))(_functional_fractional(_n, True))
