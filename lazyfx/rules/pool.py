"""Pooling: nn.MaxPool/AvgPool/AdaptiveAvgPool/AdaptiveMaxPool 1-3d and their functional twins.

Output sizes follow ATen's ``pooling_output_shape`` (aten/src/ATen/native/Pool.h)::

    out = (size + 2*pad - dilation*(kernel - 1) - 1 + (stride - 1 if ceil_mode else 0))//stride + 1
    # ceil_mode: the last window must start inside the input or the left padding
    if ceil_mode and (out - 1)*stride >= size + pad: out -= 1

For integers the ceil-mode correction equals ``min(out, (size + pad - 1)//stride + 1)``
(PyTorch requires ``pad <= effective_kernel/2``), which is how it is kept symbolically.
"""

from __future__ import annotations

from typing import Any, Sequence

import sympy
import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.checks import decide, require, require_positive
from lazyfx.errors import ShapeError
from lazyfx.registry import rule
from lazyfx.rules._util import expect_ndim, lookup_by_class, ntuple, shape_str, tensor_arg
from lazyfx.symbolic import DimExpr, floordiv, fmt, is_concrete, sym_min
from lazyfx.values import TensorMeta


def pool_output_size(size: DimExpr, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> DimExpr:
    """One spatial output size of a max/avg pool (see the module docstring)."""
    numerator = size + 2 * pad - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return floordiv(numerator, stride) + 1
    out = floordiv(numerator + stride - 1, stride) + 1
    last_start_inside = floordiv(size + pad - 1, stride) + 1
    if is_concrete(out) and is_concrete(last_start_inside):
        return min(out, last_start_inside)
    if decide(sympy.Le(out, last_start_inside)) is True:
        return out
    return sym_min(out, last_start_inside)


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
            require(size >= k if is_concrete(size) else sympy.Ge(size, k),
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
    n = lookup_by_class(module, _SPATIAL_DIMS)
    y = _pool_shape(
        tensor_arg(x, "input"), n=n, kernel_size=module.kernel_size, stride=module.stride,
        padding=module.padding, dilation=module.dilation, ceil_mode=module.ceil_mode,
        op=module.__class__.__name__, max_pool=True,
    )
    return (y, _indices(y)) if module.return_indices else y


@rule(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def avg_pool_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    n = lookup_by_class(module, _SPATIAL_DIMS)
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
    n = lookup_by_class(module, _SPATIAL_DIMS)
    return adaptive_pool_shape(tensor_arg(x, "input"), module.output_size, n=n, op=module.__class__.__name__)


@rule(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
def adaptive_max_pool_module(module: nn.Module, x: TensorMeta):
    n = lookup_by_class(module, _SPATIAL_DIMS)
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
