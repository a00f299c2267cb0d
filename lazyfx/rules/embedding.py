"""Embeddings: nn.Embedding/F.embedding and nn.EmbeddingBag/F.embedding_bag
(https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html,
https://pytorch.org/docs/stable/generated/torch.nn.EmbeddingBag.html)."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.checks import ge, require, require_equal, require_positive
from lazyfx.core.registry import rule
from lazyfx.core.symbolic import DimExpr, fmt, is_concrete
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import shape_str, tensor_arg
from lazyfx.rules.index import require_known_indices

_INDEX_DTYPES = (torch.int64, torch.int32)


def embedding_shape(indices: TensorMeta, *, embedding_dim: DimExpr, weight_dtype,
                    num_embeddings: Optional[DimExpr] = None) -> TensorMeta:
    """``(*) -> (*, embedding_dim)``; indices must be int64 or int32, and where their values are
    known from shapes (``torch.arange(T)``), below ``num_embeddings``."""
    if indices.dtype not in _INDEX_DTYPES:
        raise ShapeError(
            f"embedding indices must be int64 or int32 (token ids), got {dtype_name(indices.dtype)}; "
            f"give the input a dtype, e.g. 'B,T:int64'"
        )
    if num_embeddings is not None:
        require_known_indices(indices, num_embeddings,
                              lambda: f"embedding: index out of range in self: the table has {fmt(num_embeddings)} rows")
    return TensorMeta((*indices.shape, embedding_dim), weight_dtype)


@rule(nn.Embedding)
def embedding_module(module: nn.Embedding, input: TensorMeta) -> TensorMeta:
    return embedding_shape(tensor_arg(input, "Embedding input"), embedding_dim=module.embedding_dim,
                           weight_dtype=module.weight.dtype, num_embeddings=module.num_embeddings)


@rule(F.embedding)
def embedding_function(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
                       scale_grad_by_freq=False, sparse=False) -> TensorMeta:
    w = tensor_arg(weight, "embedding weight")
    if w.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2D, got size {shape_str(w.shape)}")
    return embedding_shape(tensor_arg(input, "embedding input"), embedding_dim=w.shape[1], weight_dtype=w.dtype,
                           num_embeddings=w.shape[0])


# -- embedding bags: one reduced embedding per bag ------------------------------------------------

_BAG_MODES = ("sum", "mean", "max")


def _bag_count(indices: TensorMeta, offsets: Optional[TensorMeta], include_last_offset: bool) -> DimExpr:
    """Bags of a 2D input are its rows (``offsets`` must be None); a 1D input needs 1D ``offsets``,
    one per bag (plus a final one with ``include_last_offset``)."""
    if indices.ndim == 2:
        if offsets is not None:
            raise ShapeError("embedding_bag: if input is 2D, then offsets has to be None, as input is treated is a "
                             f"mini-batch of fixed length sequences. However, found offsets of size "
                             f"{shape_str(offsets.shape)}")
        require_positive(indices.shape[1], lambda: f"embedding_bag: a 2D input needs at least one index per "
                                                    f"bag, got input of size {shape_str(indices.shape)}")
        return indices.shape[0]
    if indices.ndim != 1:
        raise ShapeError(f"embedding_bag: input has to be 1D or 2D Tensor, but got Tensor of dimension {indices.ndim}")
    if offsets is None:
        raise ShapeError("embedding_bag: offsets has to be a 1D Tensor but got None")
    if offsets.ndim != 1:
        raise ShapeError(f"embedding_bag: offsets has to be a 1D Tensor, got size {shape_str(offsets.shape)}")
    if not include_last_offset:
        return offsets.shape[0]
    require_positive(offsets.shape[0], "embedding_bag: include_last_offset: number of offset should be at least 1")
    return offsets.shape[0] - 1


def _check_bag_options(mode: str, scale_grad_by_freq: bool, sparse: bool, per_sample_weights) -> None:
    if mode not in _BAG_MODES:
        raise ShapeError(f"embedding_bag: mode has to be one of sum, mean or max, got {mode!r}")
    if mode == "max" and scale_grad_by_freq:
        raise ShapeError("embedding_bag: max mode does not support scaling the gradient by the frequency")
    if mode == "max" and sparse:
        raise ShapeError("embedding_bag: max mode does not support sparse weights")
    if per_sample_weights is not None and mode != "sum":
        raise ShapeError(f"embedding_bag: per_sample_weights is only supported for mode='sum' (got mode='{mode}')")


def _check_padding_idx(padding_idx: Any, num_embeddings: DimExpr) -> None:
    if padding_idx is None:
        return
    if not is_concrete(padding_idx):
        raise UnsupportedOpError(f"embedding_bag: padding_idx must be a concrete int, got {fmt(padding_idx)}")
    require(
        ge(num_embeddings, padding_idx + 1) if padding_idx >= 0 else ge(num_embeddings, -padding_idx),
        lambda: f"embedding_bag: padding_idx must be within the number of embeddings, -{fmt(num_embeddings)} "
                f"through {fmt(num_embeddings - 1)}, but got {padding_idx}",
    )


def embedding_bag_shape(
    indices: TensorMeta,
    offsets: Optional[TensorMeta],
    per_sample_weights: Optional[TensorMeta],
    *,
    num_embeddings: DimExpr,
    embedding_dim: DimExpr,
    weight_dtype: torch.dtype,
    mode: str,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
    include_last_offset: bool = False,
    padding_idx: Any = None,
    max_norm: Any = None,
) -> TensorMeta:
    """``(bags, embedding_dim)`` in the weight's dtype; ``per_sample_weights`` (mode ``sum``
    only) has the input's shape and the weight's dtype; indices and offsets promote to
    int32 or int64."""
    if per_sample_weights is not None:
        if per_sample_weights.ndim != indices.ndim:
            raise ShapeError(f"embedding_bag: If per_sample_weights ({shape_str(per_sample_weights.shape)}) is not "
                             f"None, then it must have the same shape as the input ({shape_str(indices.shape)})")
        for a, b in zip(per_sample_weights.shape, indices.shape):
            require_equal(a, b, lambda: f"embedding_bag: per_sample_weights of size "
                                        f"{shape_str(per_sample_weights.shape)} must have the same shape as the "
                                        f"input ({shape_str(indices.shape)})")
    bags = _bag_count(indices, offsets, include_last_offset)
    _check_bag_options(mode, scale_grad_by_freq, sparse, per_sample_weights)
    index_dtype = indices.dtype if offsets is None else torch.promote_types(indices.dtype, offsets.dtype)
    if index_dtype not in _INDEX_DTYPES:
        given = dtype_name(indices.dtype) + ("" if offsets is None else f" and {dtype_name(offsets.dtype)}")
        raise ShapeError(f"embedding_bag: indices and offsets must be (promote to) int64 or int32, got {given}")
    if not weight_dtype.is_floating_point:
        raise ShapeError(f"embedding_bag: weight must be a floating point tensor, got {dtype_name(weight_dtype)}")
    if per_sample_weights is not None and per_sample_weights.dtype != weight_dtype:
        raise ShapeError(f"embedding_bag: per_sample_weights ({dtype_name(per_sample_weights.dtype)}) must have the "
                         f"weight's dtype ({dtype_name(weight_dtype)})")
    _check_padding_idx(padding_idx, num_embeddings)
    if max_norm is not None and indices.dtype not in _INDEX_DTYPES:  # renormalization reads the raw indices
        raise ShapeError(f"embedding_bag: with max_norm, indices must be int64 or int32, got "
                         f"{dtype_name(indices.dtype)}")
    return TensorMeta((bags, embedding_dim), weight_dtype)


def _optional(value, what: str) -> Optional[TensorMeta]:
    return None if value is None else tensor_arg(value, what)


@rule(F.embedding_bag)
def embedding_bag_function(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                           mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                           padding_idx=None) -> TensorMeta:
    """``F.embedding_bag``: ``(bags, weight.shape[1])``, see :func:`embedding_bag_shape`."""
    indices, w = tensor_arg(input, "embedding_bag input"), tensor_arg(weight, "embedding_bag weight")
    if w.dtype == torch.int64 and indices.dtype.is_floating_point:
        indices, w = w, indices  # the deprecated embedding_bag(weight, input) order, which PyTorch still accepts
    if w.ndim != 2:
        raise ShapeError(f"embedding_bag: weight has to be a 2D Tensor, but got Tensor of dimension {w.ndim}")
    return embedding_bag_shape(
        indices, _optional(offsets, "embedding_bag offsets"), _optional(per_sample_weights, "per_sample_weights"),
        num_embeddings=w.shape[0], embedding_dim=w.shape[1], weight_dtype=w.dtype, mode=mode,
        scale_grad_by_freq=scale_grad_by_freq, sparse=sparse,
        include_last_offset=include_last_offset and indices.ndim != 2, padding_idx=padding_idx, max_norm=max_norm,
    )


@rule(nn.EmbeddingBag)
def embedding_bag_module(module: nn.EmbeddingBag, input, offsets=None, per_sample_weights=None) -> TensorMeta:
    """``(bags, embedding_dim)``, see :func:`embedding_bag_shape`."""
    return embedding_bag_shape(
        tensor_arg(input, "EmbeddingBag input"), _optional(offsets, "EmbeddingBag offsets"),
        _optional(per_sample_weights, "per_sample_weights"),
        num_embeddings=module.num_embeddings, embedding_dim=module.embedding_dim, weight_dtype=module.weight.dtype,
        mode=module.mode, scale_grad_by_freq=module.scale_grad_by_freq, sparse=module.sparse,
        include_last_offset=module.include_last_offset and tensor_arg(input, "input").ndim != 2,
        padding_idx=module.padding_idx, max_norm=module.max_norm,
    )
