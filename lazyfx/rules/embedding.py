"""Embeddings: nn.Embedding and F.embedding (https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.errors import ShapeError
from lazyfx.registry import rule
from lazyfx.rules._util import shape_str, tensor_arg
from lazyfx.symbolic import DimExpr
from lazyfx.values import TensorMeta, dtype_name

_INDEX_DTYPES = (torch.int64, torch.int32)


def embedding_shape(indices: TensorMeta, *, embedding_dim: DimExpr, weight_dtype) -> TensorMeta:
    """``(*) -> (*, embedding_dim)``; indices must be int64 or int32."""
    if indices.dtype not in _INDEX_DTYPES:
        raise ShapeError(
            f"embedding indices must be int64 or int32 (token ids), got {dtype_name(indices.dtype)}; "
            f"give the input a dtype, e.g. 'B,T:int64'"
        )
    return TensorMeta((*indices.shape, embedding_dim), weight_dtype)


@rule(nn.Embedding)
def embedding_module(module: nn.Embedding, input: TensorMeta) -> TensorMeta:
    return embedding_shape(tensor_arg(input, "Embedding input"), embedding_dim=module.embedding_dim,
                           weight_dtype=module.weight.dtype)


@rule(F.embedding)
def embedding_function(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
                       scale_grad_by_freq=False, sparse=False) -> TensorMeta:
    w = tensor_arg(weight, "embedding weight")
    if w.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2D, got size {shape_str(w.shape)}")
    return embedding_shape(tensor_arg(input, "embedding input"), embedding_dim=w.shape[1], weight_dtype=w.dtype)
