"""Linear maps: nn.Linear, F.linear, nn.Identity and matrix products (matmul, @).

Shapes follow https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
and the ``torch.matmul`` broadcasting rules
(https://pytorch.org/docs/stable/generated/torch.matmul.html).
"""

from __future__ import annotations

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.checks import require_equal
from lazyfx.errors import ShapeError
from lazyfx.registry import Method, rule
from lazyfx.rules._util import broadcast_shapes, shape_str, tensor_arg
from lazyfx.symbolic import DimExpr, fmt
from lazyfx.values import TensorMeta


def linear_shape(x: TensorMeta, *, in_features: DimExpr, out_features: DimExpr, weight_dtype, op: str) -> TensorMeta:
    """``(*, in_features) -> (*, out_features)``."""
    if x.ndim == 0:
        raise ShapeError(f"{op}: input must have at least 1 dim, got a 0-dim tensor")
    if weight_dtype is not None and x.dtype != weight_dtype:
        raise ShapeError(
            f"{op}: input dtype {fmt(x.dtype)} and weight dtype {fmt(weight_dtype)} must be the same"
        )
    require_equal(
        x.shape[-1],
        in_features,
        lambda: f"{op} has in_features={fmt(in_features)} but the input's last dim is {fmt(x.shape[-1])} "
        f"(input of size {shape_str(x.shape)})",
    )
    return x.with_shape((*x.shape[:-1], out_features))


@rule(nn.Linear)
def linear_module(module: nn.Linear, x: TensorMeta) -> TensorMeta:
    return linear_shape(
        tensor_arg(x, "Linear input"),
        in_features=module.in_features,
        out_features=module.out_features,
        weight_dtype=getattr(module.weight, "dtype", None),
        op="Linear",
    )


@rule(F.linear)
def linear_function(input, weight, bias=None) -> TensorMeta:
    w = tensor_arg(weight, "linear weight")
    if w.ndim not in (1, 2):
        raise ShapeError(f"linear: weight must be 1D or 2D, got size {shape_str(w.shape)}")
    out_features = w.shape[0] if w.ndim == 2 else None
    x = tensor_arg(input, "linear input")
    y = linear_shape(x, in_features=w.shape[-1], out_features=out_features, weight_dtype=w.dtype, op="linear")
    return y if w.ndim == 2 else x.with_shape(x.shape[:-1])


@rule(nn.Identity)
def identity_module(module: nn.Module, x, *args, **kwargs):
    return x


@rule(torch.matmul, operator.matmul, Method("matmul"))
def matmul(input, other) -> TensorMeta:
    """``torch.matmul``: 1D@1D -> scalar, 2D@2D -> (n, m), 1D operands get a
    dim prepended/appended then removed, batch dims broadcast."""
    a, b = tensor_arg(input, "matmul input"), tensor_arg(other, "matmul other")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("both arguments to matmul need to be at least 1D, "
                         f"but they are {a.ndim}D and {b.ndim}D")
    if a.dtype != b.dtype:
        raise ShapeError(f"matmul: expected both operands to have the same dtype, "
                         f"got {fmt(a.dtype)} and {fmt(b.dtype)}")
    a_shape = (1, *a.shape) if a.ndim == 1 else a.shape
    b_shape = (*b.shape, 1) if b.ndim == 1 else b.shape
    require_equal(
        a_shape[-1],
        b_shape[-2],
        lambda: f"matmul: inner dims differ: {shape_str(a.shape)} @ {shape_str(b.shape)} "
        f"({fmt(a_shape[-1])} != {fmt(b_shape[-2])})",
    )
    batch = broadcast_shapes(a_shape[:-2], b_shape[:-2])
    out = (*batch, *((a_shape[-2],) if a.ndim > 1 else ()), *((b_shape[-1],) if b.ndim > 1 else ()))
    return TensorMeta(out, a.dtype)
