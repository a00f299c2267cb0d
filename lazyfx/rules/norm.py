"""Normalization: BatchNorm/InstanceNorm 1-3d, LayerNorm, GroupNorm, RMSNorm.

All keep the input's shape; what they check is the channel count against
``num_features`` (only when the module has per-channel parameters or running
statistics, as PyTorch does) and, when statistics come from the input, that
there is more than one value to normalize (``_verify_batch_size`` /
``_verify_spatial_size`` in torch/nn/functional.py).
"""

from __future__ import annotations

from typing import Sequence

import sympy
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.checks import require, require_equal
from lazyfx.errors import ShapeError
from lazyfx.registry import rule
from lazyfx.rules._util import expect_ndim, lookup_by_class, shape_str, tensor_arg
from lazyfx.symbolic import DimExpr, fmt, is_concrete, product
from lazyfx.values import TensorMeta

_BATCHNORM_RANKS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}
_INSTANCENORM_SPATIAL = {nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3}


def _require_more_than_one(count: DimExpr, message) -> None:
    if is_concrete(count):
        if count <= 1:
            raise ShapeError(message())
        return
    require(sympy.Gt(count, 1), message)


@rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def batch_norm_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """Shape unchanged; channels at dim 1 must equal ``num_features`` when there are
    parameters or running stats; in training, ``N * prod(spatial) > 1``."""
    op = module.__class__.__name__
    x = tensor_arg(x, f"{op} input")
    expect_ndim(x, lookup_by_class(module, _BATCHNORM_RANKS), op)
    if module.affine or module.track_running_stats:
        require_equal(
            x.shape[1],
            module.num_features,
            lambda: f"{op} has num_features={fmt(module.num_features)} but the input has "
            f"{fmt(x.shape[1])} channels (input of size {shape_str(x.shape)})",
        )
    uses_batch_stats = module.training or not module.track_running_stats
    if uses_batch_stats:
        values = product((x.shape[0], *x.shape[2:]))
        _require_more_than_one(
            values, lambda: f"{op}: expected more than 1 value per channel when training, "
            f"got input of size {shape_str(x.shape)}"
        )
    return x


@rule(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
def instance_norm_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """Shape unchanged; (N, C, *spatial) or unbatched (C, *spatial); channels must equal
    ``num_features`` when affine or tracking running stats; more than one spatial
    element when statistics come from the input."""
    op = module.__class__.__name__
    n = lookup_by_class(module, _INSTANCENORM_SPATIAL)
    x = tensor_arg(x, f"{op} input")
    expect_ndim(x, (n + 1, n + 2), op)
    channel_dim = x.ndim - n - 1
    if module.affine or module.track_running_stats:
        require_equal(
            x.shape[channel_dim],
            module.num_features,
            lambda: f"{op} has num_features={fmt(module.num_features)} but the input has "
            f"{fmt(x.shape[channel_dim])} channels at dim {channel_dim} (input of size {shape_str(x.shape)})",
        )
    if module.training or not module.track_running_stats:
        _require_more_than_one(
            product(x.shape[-n:]),
            lambda: f"{op}: expected more than 1 spatial element when training, got input of size "
            f"{shape_str(x.shape)}",
        )
    return x


def _trailing_shape_check(x: TensorMeta, normalized_shape: Sequence[DimExpr], op: str) -> None:
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if x.ndim < k:
        raise ShapeError(f"{op}: given normalized_shape={list(normalized_shape)}, expected input with shape "
                         f"[*, {', '.join(fmt(d) for d in normalized_shape)}], but got input of size "
                         f"{shape_str(x.shape)}")
    for have, want in zip(x.shape[x.ndim - k :], normalized_shape):
        require_equal(
            have,
            want,
            lambda: f"{op}: given normalized_shape={shape_str(normalized_shape)}, expected input with shape "
            f"[*, {', '.join(fmt(d) for d in normalized_shape)}], but got input of size {shape_str(x.shape)}",
        )


@rule(nn.LayerNorm, nn.RMSNorm)
def layer_norm_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """Shape unchanged; the trailing dims must equal ``normalized_shape``."""
    op = module.__class__.__name__
    x = tensor_arg(x, f"{op} input")
    _trailing_shape_check(x, module.normalized_shape, op)
    return x


@rule(F.layer_norm)
def layer_norm_function(input, normalized_shape, weight=None, bias=None, eps=1e-5) -> TensorMeta:
    x = tensor_arg(input, "layer_norm input")
    shape = (normalized_shape,) if not isinstance(normalized_shape, (tuple, list)) else normalized_shape
    _trailing_shape_check(x, shape, "layer_norm")
    return x


@rule(nn.GroupNorm)
def group_norm_module(module: nn.GroupNorm, x: TensorMeta) -> TensorMeta:
    """Shape unchanged; (N, C, *) with ``C == num_channels``."""
    x = tensor_arg(x, "GroupNorm input")
    if x.ndim < 2:
        raise ShapeError(f"GroupNorm expects an input of at least 2 dims (N, C, *), got size {shape_str(x.shape)}")
    require_equal(
        x.shape[1],
        module.num_channels,
        lambda: f"GroupNorm has num_channels={module.num_channels} but the input has {fmt(x.shape[1])} "
        f"channels (input of size {shape_str(x.shape)})",
    )
    # F.group_norm always runs _verify_batch_size on (N*C/G, G, *spatial).
    values = product((x.shape[0] * module.num_channels // module.num_groups, *x.shape[2:]))
    _require_more_than_one(
        values, lambda: f"GroupNorm: expected more than 1 value per group, got input of size {shape_str(x.shape)}"
    )
    return x
