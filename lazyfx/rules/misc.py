"""Distances and other small modules: Bilinear, CosineSimilarity, PairwiseDistance,
F.normalize, ChannelShuffle, and their functional twins.

Shapes and checks follow ATen (aten/src/ATen/native/Linear.cpp ``bilinear``,
Distance.cpp ``cosine_similarity``/``pairwise_distance``, ChanelShuffle.cpp).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.checks import require_divisible, require_equal
from lazyfx.core.registry import rule
from lazyfx.core.symbolic import DimExpr, fmt, is_concrete
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import broadcast_shapes, normalize_dim, result_dtype, shape_str, tensor_arg

# -- bilinear: y = x1^T A x2 + b over the last dims --------------------------------------------


def bilinear_shape(
    x1: TensorMeta,
    x2: TensorMeta,
    *,
    out_features: DimExpr,
    in1_features: DimExpr,
    in2_features: DimExpr,
    weight_dtype: torch.dtype,
    bias: Optional[TensorMeta],
) -> TensorMeta:
    """``(*, in1), (*, in2) -> (*, out)``: both inputs have the same rank and the same leading
    dims (no broadcasting); a bias of ``out`` entries is added (broadcasting). All tensors
    share one dtype."""
    dtypes = {x1.dtype, x2.dtype, weight_dtype} | ({bias.dtype} if bias is not None else set())
    if len(dtypes) != 1:
        found = f"input1: {dtype_name(x1.dtype)}, input2: {dtype_name(x2.dtype)}, weight: {dtype_name(weight_dtype)}"
        raise ShapeError(f"bilinear(): All tensors must have the same dtype, got {found}"
                         + (f", bias: {dtype_name(bias.dtype)}" if bias is not None else ""))
    if x1.ndim != x2.ndim:
        raise ShapeError(f"bilinear(): input dimensions do not match: got {x1.ndim} and {x2.ndim}")
    if x1.ndim == 0:
        raise ShapeError("bilinear(): inputs must have at least one dimension, got 0-dim tensors")
    for i, (a, b) in enumerate(zip(x1.shape[:-1], x2.shape[:-1])):
        require_equal(a, b, lambda a=a, b=b, i=i: f"bilinear(): input batch dimensions do not match at dim {i}: "
                                                  f"got {fmt(a)} and {fmt(b)}")
    for name, have, want in (("input1", x1.shape[-1], in1_features), ("input2", x2.shape[-1], in2_features)):
        require_equal(have, want, lambda name=name, have=have, want=want: (
            f"bilinear(): {name} size does not match weight size: got {fmt(have)} but expected {fmt(want)}"))
    out = (*x1.shape[:-1], out_features)
    if bias is not None:
        if bias.ndim == 0:
            raise ShapeError("bilinear(): bias must have at least one dimension, got a 0-dim tensor")
        require_equal(bias.shape[0], out_features, lambda: f"bilinear(): bias size does not match weight size: got "
                                                           f"{fmt(bias.shape[0])} but expected {fmt(out_features)}")
        out = broadcast_shapes(out, bias.shape)
    return TensorMeta(tuple(out), x1.dtype)


@rule(torch.bilinear)
def bilinear(input1, input2, weight, bias=None) -> TensorMeta:
    """``F.bilinear``: ``weight`` is ``(out, in1, in2)``."""
    x1, x2 = tensor_arg(input1, "bilinear input1"), tensor_arg(input2, "bilinear input2")
    w = tensor_arg(weight, "bilinear weight")
    if w.ndim != 3:
        raise ShapeError(f"bilinear(): weight must be 3D (out, in1, in2), got size {shape_str(w.shape)}")
    return bilinear_shape(x1, x2, out_features=w.shape[0], in1_features=w.shape[1], in2_features=w.shape[2],
                          weight_dtype=w.dtype, bias=None if bias is None else tensor_arg(bias, "bilinear bias"))


@rule(nn.Bilinear)
def bilinear_module(module: nn.Bilinear, input1, input2) -> TensorMeta:
    """``(*, in1_features), (*, in2_features) -> (*, out_features)``."""
    bias = None if module.bias is None else TensorMeta((module.out_features,), module.bias.dtype)
    return bilinear_shape(
        tensor_arg(input1, "Bilinear input1"), tensor_arg(input2, "Bilinear input2"),
        out_features=module.out_features, in1_features=module.in1_features, in2_features=module.in2_features,
        weight_dtype=module.weight.dtype, bias=bias,
    )


# -- distances: reduce one dim of the broadcast inputs ------------------------------------------


def _without(shape: tuple, dim: int, keepdim: bool) -> tuple:
    if not shape:
        return shape
    return (*shape[:dim], *((1,) if keepdim else ()), *shape[dim + 1 :])


def cosine_similarity_shape(x1: TensorMeta, x2: TensorMeta, dim: int) -> TensorMeta:
    """The broadcast shape without ``dim``. The promoted dtype must be floating point; integer
    inputs are converted to it, then the (broadcast) inputs combine with plain dtype
    promotion, so a 0-dim float64 input makes a float64 result."""
    common = result_dtype(x1, x2)
    if not common.is_floating_point:
        raise ShapeError(f"cosine_similarity: expected common dtype to be floating point, yet common dtype is "
                         f"{dtype_name(common)}")
    converted = [common if x.dtype == torch.bool or not (x.dtype.is_floating_point or x.dtype.is_complex)
                 else x.dtype for x in (x1, x2)]
    shape = broadcast_shapes(x1.shape, x2.shape)
    d = normalize_dim(dim, len(shape))
    return TensorMeta(_without(shape, d, keepdim=False), torch.promote_types(*converted))


@rule(torch.cosine_similarity)
def cosine_similarity(x1, x2, dim=1, eps=1e-8) -> TensorMeta:
    """``F.cosine_similarity``."""
    return cosine_similarity_shape(tensor_arg(x1, "cosine_similarity x1"), tensor_arg(x2, "cosine_similarity x2"), dim)


@rule(nn.CosineSimilarity)
def cosine_similarity_module(module: nn.CosineSimilarity, x1, x2) -> TensorMeta:
    """The broadcast shape without ``module.dim``."""
    return cosine_similarity_shape(tensor_arg(x1, "CosineSimilarity x1"), tensor_arg(x2, "CosineSimilarity x2"),
                                   module.dim)


def pairwise_distance_shape(x1: TensorMeta, x2: TensorMeta, keepdim: bool) -> TensorMeta:
    """``norm(x1 - x2 + eps, dim=-1)`` over the broadcast shape (a 0-dim result stays 0-dim);
    integer inputs give the default float dtype."""
    if torch.bool in (x1.dtype, x2.dtype):
        raise ShapeError("pairwise_distance: Subtraction, the `-` operator, with a bool tensor is not supported")
    shape = broadcast_shapes(x1.shape, x2.shape)
    dtype = result_dtype(TensorMeta(shape, result_dtype(x1, x2)), 1e-6)  # the dtype of x1 - x2 + eps
    return TensorMeta(_without(shape, len(shape) - 1, keepdim), dtype)


@rule(torch.pairwise_distance)
def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False) -> TensorMeta:
    """``F.pairwise_distance``."""
    return pairwise_distance_shape(tensor_arg(x1, "pairwise_distance x1"), tensor_arg(x2, "pairwise_distance x2"),
                                   keepdim)


@rule(nn.PairwiseDistance)
def pairwise_distance_module(module: nn.PairwiseDistance, x1, x2) -> TensorMeta:
    """The broadcast shape without (or, with ``keepdim``, with size 1 at) its last dim."""
    return pairwise_distance_shape(tensor_arg(x1, "PairwiseDistance x1"), tensor_arg(x2, "PairwiseDistance x2"),
                                   module.keepdim)


@rule(F.normalize)
def normalize(input, p=2.0, dim=1, eps=1e-12, out=None) -> TensorMeta:
    """Shape unchanged: ``input / input.norm(p, dim, keepdim=True)``; ``dim`` (an int or a
    tuple) must be in range and the input floating point or complex."""
    x = tensor_arg(input, "normalize input")
    if out is not None:
        raise UnsupportedOpError("normalize(out=...) is not supported")
    dims = dim if isinstance(dim, (tuple, list)) else () if dim is None else (dim,)
    wrapped = [normalize_dim(d, x.ndim) for d in dims]
    if len(set(wrapped)) != len(wrapped):
        raise ShapeError(f"normalize: dim {tuple(dims)} appears multiple times in the list of dims")
    if not (x.dtype.is_floating_point or x.dtype.is_complex):
        raise ShapeError(f"normalize: linalg.vector_norm: Expected a floating point or complex tensor as input. "
                         f"Got {dtype_name(x.dtype)}")
    return x


# -- channel shuffle ----------------------------------------------------------------------------


def channel_shuffle_shape(x: TensorMeta, groups: Any, op: str) -> TensorMeta:
    """Shape unchanged; ``(N, C, *)`` with at least 3 dims, ``groups > 0`` dividing ``C``."""
    if x.ndim <= 2:
        raise ShapeError(f"{op} expects input with > 2 dims, but got input with sizes {shape_str(x.shape)}")
    if not is_concrete(groups):
        raise UnsupportedOpError(f"{op}: groups must be a concrete int, got {fmt(groups)}")
    if groups <= 0:
        raise ShapeError(f"{op}: Number of groups to divide channels in must be positive. Value of groups:{groups}")
    require_divisible(x.shape[1], groups, lambda: f"{op}: Number of channels must be divisible by groups. Got "
                                                  f"{fmt(x.shape[1])} channels and {groups} groups.")
    return x


@rule(torch.channel_shuffle, torch.native_channel_shuffle)
def channel_shuffle(input, groups) -> TensorMeta:
    """``F.channel_shuffle`` and ``F.native_channel_shuffle``."""
    return channel_shuffle_shape(tensor_arg(input, "channel_shuffle input"), groups, "channel_shuffle")


@rule(nn.ChannelShuffle)
def channel_shuffle_module(module: nn.ChannelShuffle, x: TensorMeta) -> TensorMeta:
    """Shape unchanged; see :func:`channel_shuffle_shape`."""
    return channel_shuffle_shape(tensor_arg(x, "ChannelShuffle input"), module.groups, "ChannelShuffle")
