"""Convolutions: nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d and their functional twins.

Shapes follow the PyTorch docs (https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html,
.../torch.nn.ConvTranspose2d.html); checks follow ATen's ``ConvUtils.h``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.checks import ge, gt, require, require_equal, require_positive
from lazyfx.core.registry import rule
from lazyfx.core.symbolic import DimExpr, floordiv, fmt, is_concrete
from lazyfx.core.values import TensorMeta
from lazyfx.errors import ShapeError
from lazyfx.rules._util import expect_ndim, ntuple, shape_str, tensor_arg
from lazyfx.rules.lazy import weight_dtype_of


def conv_output_size(size: DimExpr, kernel: int, stride: int, padding: int, dilation: int) -> DimExpr:
    """``out = (size + 2*padding - dilation*(kernel - 1) - 1)//stride + 1``."""
    return floordiv(size + 2 * padding - dilation * (kernel - 1) - 1, stride) + 1


def conv_transpose_output_size(
    size: DimExpr, kernel: int, stride: int, padding: int, dilation: int, output_padding: int
) -> DimExpr:
    """``out = (size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _split_batch(x: TensorMeta, n: int, op: str) -> tuple[tuple[DimExpr, ...], DimExpr, tuple[DimExpr, ...]]:
    """(batch dims, channels, spatial dims) of an unbatched (C, *spatial) or batched (N, C, *spatial) input."""
    expect_ndim(x, (n + 1, n + 2), op)
    batch = x.shape[:1] if x.ndim == n + 2 else ()
    return batch, x.shape[len(batch)], x.shape[len(batch) + 1 :]


def _check_hyper(kernel, stride, dilation, op: str) -> None:
    for name, values in (("kernel size", kernel), ("stride", stride), ("dilation", dilation)):
        for v in values:  # (a plain loop, plain ints first: asked for every convolution and pool)
            if (type(v) is int or is_concrete(v)) and v <= 0:
                raise ShapeError(f"{op}: {name} must be positive, got {tuple(values)}")


def _check_dtype(x: TensorMeta, weight_dtype, op: str) -> None:
    if weight_dtype is not None and x.dtype != weight_dtype:
        raise ShapeError(
            f"{op}: input type ({_dtype(x.dtype)}) and weight type ({_dtype(weight_dtype)}) should be the same"
        )


def _dtype(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def conv_shape(
    x: TensorMeta,
    *,
    n: int,
    in_channels: DimExpr,
    out_channels: DimExpr,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Any,
    dilation: Sequence[int],
    groups: int,
    weight_dtype=None,
    op: str,
) -> TensorMeta:
    """Output of an N-d convolution: ``(N, out_channels, *out)`` with ``out`` per spatial dim
    from :func:`conv_output_size`; ``padding="same"`` keeps the size, ``"valid"`` is 0."""
    batch, channels, spatial = _split_batch(x, n, op)
    _check_hyper(kernel_size, stride, dilation, op)
    _check_dtype(x, weight_dtype, op)
    require_equal(
        channels,
        in_channels,
        lambda: f"{op} with groups={groups} expects input with {fmt(in_channels)} channels, "
        f"got {fmt(channels)} channels (input of size {shape_str(x.shape)})",
    )
    if padding == "same":
        out = tuple(spatial)
    else:
        pads = (0,) * n if padding == "valid" else ntuple(padding, n, "padding")
        out = []
        for size, k, s, p, d in zip(spatial, kernel_size, stride, pads, dilation):
            o = conv_output_size(size, k, s, p, d)
            if type(o) is not int or o < 1:  # (a size of 1 or more needs no check, nor its message)
                require_positive(
                    o,
                    lambda size=size, p=p, k=k, d=d: f"{op}: padded input size {fmt(size + 2 * p)} is smaller "
                    f"than the kernel size {d * (k - 1) + 1} (input of size {shape_str(x.shape)})",
                )
            out.append(o)
    return x.with_shape((*batch, out_channels, *out))


def conv_transpose_shape(
    x: TensorMeta,
    *,
    n: int,
    in_channels: DimExpr,
    out_channels: DimExpr,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    output_padding: Sequence[DimExpr],
    groups: int,
    weight_dtype=None,
    op: str,
) -> TensorMeta:
    """Output of an N-d transposed convolution, per spatial dim
    :func:`conv_transpose_output_size`; ``output_padding`` must be smaller than stride or dilation."""
    batch, channels, spatial = _split_batch(x, n, op)
    _check_hyper(kernel_size, stride, dilation, op)
    _check_dtype(x, weight_dtype, op)
    require_equal(
        channels,
        in_channels,
        lambda: f"{op} expects input with {fmt(in_channels)} channels, got {fmt(channels)} channels "
        f"(input of size {shape_str(x.shape)})",
    )
    out = []
    for size, k, s, p, d, op_ in zip(spatial, kernel_size, stride, padding, dilation, output_padding):
        if is_concrete(op_) and not (op_ < s or op_ < d):
            raise ShapeError(f"{op}: output padding must be smaller than either stride or dilation, "
                             f"got output_padding={op_}, stride={s}, dilation={d}")
        o = conv_transpose_output_size(size, k, s, p, d, op_)
        require_positive(o, lambda o=o: f"{op}: calculated output size {fmt(o)} is too small "
                                        f"(input of size {shape_str(x.shape)})")
        out.append(o)
    return x.with_shape((*batch, out_channels, *out))


# -- padding modes other than zeros pad the input with F.pad first ----------------


def _check_padding_mode(module: nn.Module, x: TensorMeta, n: int, op: str) -> None:
    mode = module.padding_mode
    if mode == "zeros":
        return
    spatial = x.shape[-n:] if x.ndim >= n else ()
    pads = module._reversed_padding_repeated_twice  # (last_left, last_right, ...)
    for i, size in enumerate(reversed(spatial)):
        left, right = pads[2 * i], pads[2 * i + 1]
        for pad in (left, right):
            if mode == "reflect":
                require(gt(size, pad),
                        lambda size=size, pad=pad: f"{op}: padding_mode='reflect' needs padding ({pad}) "
                        f"smaller than the input size ({fmt(size)})")
            elif mode == "circular":
                require(ge(size, pad),
                        lambda size=size, pad=pad: f"{op}: padding_mode='circular' with padding {pad} wraps "
                        f"around more than once for input size {fmt(size)}")


@rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    n = len(module.kernel_size)
    op = module.__class__.__name__
    if type(x) is not TensorMeta:  # (the message is made only where it may be needed)
        x = tensor_arg(x, f"{op} input")
    if module.padding_mode != "zeros":
        expect_ndim(x, (n + 1, n + 2), op)
        _check_padding_mode(module, x, n, op)
    return conv_shape(
        x,
        n=n,
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        kernel_size=module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=module.groups,
        weight_dtype=weight_dtype_of(module),
        op=op,
    )


def transpose_output_padding(
    x: TensorMeta,
    output_size: Optional[Sequence[DimExpr]],
    *,
    n: int,
    kernel_size,
    stride,
    padding,
    dilation,
    output_padding,
    op: str,
) -> tuple:
    """``output_padding`` as ``ConvTranspose._output_padding`` derives it from ``output_size``."""
    if output_size is None:
        return tuple(output_padding)
    output_size = tuple(output_size)
    if len(output_size) == n + 2 or (len(output_size) == n + 1 and x.ndim == n + 1):
        output_size = output_size[-n:]
    if len(output_size) != n:
        raise ShapeError(f"{op}: output_size must have {n} or {n + 2} elements, got {len(output_size)}")
    spatial = x.shape[-n:]
    result = []
    for size, want, k, s, p, d in zip(spatial, output_size, kernel_size, stride, padding, dilation):
        smallest = conv_transpose_output_size(size, k, s, p, d, 0)
        extra = want - smallest
        if is_concrete(extra) and not 0 <= extra < s:
            raise ShapeError(
                f"{op}: requested output size {fmt(want)} is not in the valid range "
                f"[{fmt(smallest)}, {fmt(smallest + s - 1)}]"
            )
        result.append(extra)
    return tuple(result)


@rule(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose_module(module: nn.Module, x: TensorMeta, output_size=None) -> TensorMeta:
    n = len(module.kernel_size)
    op = module.__class__.__name__
    x = tensor_arg(x, f"{op} input")
    expect_ndim(x, (n + 1, n + 2), op)
    hyper = dict(kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
                 dilation=module.dilation)
    output_padding = transpose_output_padding(x, output_size, n=n, output_padding=module.output_padding,
                                              op=op, **hyper)
    return conv_transpose_shape(
        x,
        n=n,
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        output_padding=output_padding,
        groups=module.groups,
        weight_dtype=weight_dtype_of(module),
        op=op,
        **hyper,
    )


# -- functional twins: the weight tensor carries channels and kernel size -----------


def _functional_conv(n: int, op: str):
    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        x = tensor_arg(input, f"{op} input")
        w = tensor_arg(weight, f"{op} weight")
        if w.ndim != n + 2:
            raise ShapeError(f"{op}: weight must be {n + 2}D, got size {shape_str(w.shape)}")
        _check_bias(bias, w.shape[0], op)
        return conv_shape(
            x,
            n=n,
            in_channels=w.shape[1] * groups,
            out_channels=w.shape[0],
            kernel_size=w.shape[2:],
            stride=ntuple(stride, n, "stride"),
            padding=padding if isinstance(padding, str) else ntuple(padding, n, "padding"),
            dilation=ntuple(dilation, n, "dilation"),
            groups=groups,
            weight_dtype=w.dtype,
            op=op,
        )

    conv.__name__ = op
    return conv


def _functional_conv_transpose(n: int, op: str):
    def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        x = tensor_arg(input, f"{op} input")
        w = tensor_arg(weight, f"{op} weight")
        if w.ndim != n + 2:
            raise ShapeError(f"{op}: weight must be {n + 2}D, got size {shape_str(w.shape)}")
        _check_bias(bias, w.shape[1] * groups, op)
        return conv_transpose_shape(
            x,
            n=n,
            in_channels=w.shape[0],
            out_channels=w.shape[1] * groups,
            kernel_size=w.shape[2:],
            stride=ntuple(stride, n, "stride"),
            padding=ntuple(padding, n, "padding"),
            dilation=ntuple(dilation, n, "dilation"),
            output_padding=ntuple(output_padding, n, "output_padding"),
            groups=groups,
            weight_dtype=w.dtype,
            op=op,
        )

    conv_transpose.__name__ = op
    return conv_transpose


def _check_bias(bias, channels, op: str) -> None:
    if isinstance(bias, TensorMeta):
        if bias.ndim != 1:
            raise ShapeError(f"{op}: bias must be 1D, got size {shape_str(bias.shape)}")
        require_equal(bias.shape[0], channels,
                      lambda: f"{op}: bias has {fmt(bias.shape[0])} elements, expected {fmt(channels)}")


# F.convNd is torch.convNd (one builtin), likewise for the transposed ones.
rule(F.conv1d)(_functional_conv(1, "conv1d"))
rule(F.conv2d)(_functional_conv(2, "conv2d"))
rule(F.conv3d)(_functional_conv(3, "conv3d"))
rule(F.conv_transpose1d)(_functional_conv_transpose(1, "conv_transpose1d"))
rule(F.conv_transpose2d)(_functional_conv_transpose(2, "conv_transpose2d"))
rule(F.conv_transpose3d)(_functional_conv_transpose(3, "conv_transpose3d"))
