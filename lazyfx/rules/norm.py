"""Normalization: BatchNorm/InstanceNorm 1-3d, LayerNorm, GroupNorm, RMSNorm,
LocalResponseNorm/CrossMapLRN2d, and the functional forms.

All keep the input's shape; what they check is the channel count against
``num_features`` (only when the module has per-channel parameters or running
statistics, as PyTorch does) and, when statistics come from the input, that
there is more than one value to normalize (``_verify_batch_size`` /
``_verify_spatial_size`` in torch/nn/functional.py). The functional forms check
their parameter tensors' element counts as ATen does (aten/src/ATen/native/Normalization.cpp,
group_norm.cpp, layer_norm.cpp) and, as the CPU kernels do, their dtypes: all parameters
one dtype, the input's or float32 for a float16/bfloat16 input (mixed precision). Which other
mixes the CPU kernels accept depends on which parameter comes first and on the op (instance_norm
ignores some); those are reported as unsupported rather than guessed.
"""

from __future__ import annotations

from typing import Sequence

import sympy
import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.checks import require, require_divisible, require_equal, require_positive
from lazyfx.core.registry import lookup_by_class, rule
from lazyfx.core.symbolic import DimExpr, floordiv, fmt, is_concrete, product
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import expect_ndim, shape_str, tensor_arg

_BATCHNORM_RANKS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}
_INSTANCENORM_SPATIAL = {nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3}


def _require_more_than_one(sizes: Sequence[DimExpr], message) -> None:
    """PyTorch refuses exactly one value (an empty batch is fine) in a tensor of ``sizes``.
    Sizes are never negative, so a product of them with a constant factor other than 1 (0, or
    2 and more) is never 1: decided without sympy, as for every batch norm in training. Else a
    product of positive symbols is not 1 exactly when it is > 1."""
    constant, symbolic = 1, []
    for size in sizes:
        if is_concrete(size):
            constant *= int(size)
        else:
            symbolic.append(size)
    if constant != 1:
        return
    if not symbolic:
        raise ShapeError(message())
    require(sympy.Gt(product(symbolic), 1, evaluate=False), message)  # decided by the constraints (cached)


@rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def batch_norm_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """Shape unchanged; channels at dim 1 must equal ``num_features`` when there are
    parameters or running stats; in training, ``N * prod(spatial) > 1``."""
    op = module.__class__.__name__
    x = tensor_arg(x, f"{op} input")
    expect_ndim(x, lookup_by_class(_BATCHNORM_RANKS, module.__class__), op)
    if module.affine or module.track_running_stats:
        require_equal(
            x.shape[1],
            module.num_features,
            lambda: f"{op} has num_features={fmt(module.num_features)} but the input has "
            f"{fmt(x.shape[1])} channels (input of size {shape_str(x.shape)})",
        )
    uses_batch_stats = module.training or not module.track_running_stats
    if uses_batch_stats:
        _require_more_than_one(
            (x.shape[0], *x.shape[2:]), lambda: f"{op}: expected more than 1 value per channel when training, "
            f"got input of size {shape_str(x.shape)}"
        )
    return x


@rule(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
def instance_norm_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """Shape unchanged; (N, C, *spatial) or unbatched (C, *spatial); channels must equal
    ``num_features`` when affine or tracking running stats; more than one spatial
    element when statistics come from the input."""
    op = module.__class__.__name__
    n = lookup_by_class(_INSTANCENORM_SPATIAL, module.__class__)
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
            x.shape[-n:],
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
    """Shape unchanged; the trailing dims must equal ``normalized_shape``."""
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
    _require_more_than_one(
        (floordiv(x.shape[0] * module.num_channels, module.num_groups), *x.shape[2:]), lambda: f"GroupNorm: expected more than 1 value per group, got input of size {shape_str(x.shape)}"
    )
    return x


# -- functional forms: parameters are tensors whose element counts must match ---------------


_REDUCED_FLOATS = (torch.float16, torch.bfloat16)


def _check_floating(x: TensorMeta, op: str) -> None:
    if not x.dtype.is_floating_point:
        raise ShapeError(f"{op} is not implemented for {dtype_name(x.dtype)} inputs")


def _check_param_dtypes(x: TensorMeta, params: dict, op: str) -> None:
    """The CPU kernels' mixed-dtype rule: parameters share one dtype, the input's, or float32
    for a float16/bfloat16 input. A float32/float64 input with any other parameter dtype is
    refused; for a float16/bfloat16 input some other mixes pass, depending on their order."""
    dtypes = {p.dtype for p in params.values() if p is not None}
    if not dtypes or dtypes == {x.dtype} or (x.dtype in _REDUCED_FLOATS and dtypes == {torch.float32}):
        return
    found = ", ".join(f"{name}: {dtype_name(p.dtype)}" for name, p in params.items() if p is not None)
    if x.dtype in _REDUCED_FLOATS:
        raise UnsupportedOpError(f"{op}: parameters of mixed dtypes ({found}) for a {dtype_name(x.dtype)} input: "
                                 f"which such mixes the CPU kernels accept is not modelled")
    raise ShapeError(f"{op}: mixed dtype: expected parameters of dtype {dtype_name(x.dtype)} (or float32 for a "
                     f"float16/bfloat16 input), got {found} for an input of dtype {dtype_name(x.dtype)}")


def _optional_tensor(value, what: str):
    return None if value is None else tensor_arg(value, what)


def _require_numel(param: TensorMeta, count: DimExpr, name: str, op: str) -> None:
    numel = product(param.shape)
    require_equal(numel, count, lambda: f"{op}: {name} should contain {fmt(count)} elements not {fmt(numel)} "
                                        f"({name} of size {shape_str(param.shape)})")


def _check_running_stats(params: dict, channels: DimExpr, op: str) -> None:
    for name in ("running_mean", "running_var"):
        stat = params[name]
        if stat is not None:
            if stat.ndim != 1:
                raise ShapeError(f"{op}: {name} must be 1D, got size {shape_str(stat.shape)}")
            _require_numel(stat, channels, name, op)


@rule(F.batch_norm)
def batch_norm_function(input, running_mean, running_var, weight=None, bias=None, training=False,
                        momentum=0.1, eps=1e-5) -> TensorMeta:
    """Shape unchanged; (N, C, *) with every parameter holding C elements (running stats 1D,
    required in evaluation); in training, ``N * prod(spatial) != 1`` and ``eps > 0``."""
    op = "batch_norm"
    x = tensor_arg(input, f"{op} input")
    params = {name: _optional_tensor(v, f"{op} {name}") for name, v in (
        ("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias))}
    if x.ndim < 2:
        raise ShapeError(f"{op} expects an input of at least 2 dims (N, C, *), got size {shape_str(x.shape)}")
    if training:
        _require_more_than_one((x.shape[0], *x.shape[2:]), lambda: f"{op}: Expected more than 1 value "
                               f"per channel when training, got input size {shape_str(x.shape)}")
    if eps <= 0 if training else eps < 0:
        raise ShapeError(f"{op} eps must be {'positive during training' if training else 'non-negative'}, "
                         f"but got {eps}")
    if not training and (params["running_mean"] is None or params["running_var"] is None):
        missing = "running_mean" if params["running_mean"] is None else "running_var"
        raise ShapeError(f"{op}: {missing} must be defined in evaluation mode")
    if (params["running_mean"] is None) != (params["running_var"] is None):
        raise ShapeError(f"{op}: running_mean and running_var must either both be None or neither be None")
    channels = x.shape[1]
    for name in ("weight", "bias"):
        if params[name] is not None:
            _require_numel(params[name], channels, name, op)
    _check_running_stats(params, channels, op)
    _check_floating(x, op)
    _check_param_dtypes(x, params, op)
    return x


def _repeated_numel(param: TensorMeta, times: DimExpr, name: str, op: str) -> DimExpr:
    """Elements of ``param.repeat(times)``; repeat needs at most as many dims as repeats."""
    if param.ndim > 1:
        raise ShapeError(f"{op}: {name} must be 0D or 1D (it is repeated per sample), got size "
                         f"{shape_str(param.shape)}")
    return product(param.shape) * times


@rule(F.instance_norm)
def instance_norm_function(input, running_mean=None, running_var=None, weight=None, bias=None,
                           use_input_stats=True, momentum=0.1, eps=1e-5) -> TensorMeta:
    """Shape unchanged; (N, C, *) normalized as a batch norm of (1, N*C, *): each parameter,
    repeated N times, must hold N*C elements; with input statistics, ``prod(spatial) != 1``."""
    op = "instance_norm"
    x = tensor_arg(input, f"{op} input")
    params = {name: _optional_tensor(v, f"{op} {name}") for name, v in (
        ("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias))}
    if use_input_stats:
        _require_more_than_one(x.shape[2:], lambda: f"{op}: Expected more than 1 spatial element when "
                               f"training, got input size {shape_str(x.shape)}")
    elif params["running_mean"] is None or params["running_var"] is None:
        raise ShapeError(f"{op}: Expected running_mean and running_var to be defined when use_input_stats is false")
    if x.ndim < 2:
        raise ShapeError(f"{op} expects an input of at least 2 dims (N, C, *), got size {shape_str(x.shape)}")
    batch, channels = x.shape[0], x.shape[1]
    for name, param in params.items():
        if param is None:
            continue
        if use_input_stats and name.startswith("running") and param.ndim != 1:
            # the updated statistics (C values) are copied back into the given tensor
            raise ShapeError(f"{op}: {name} must be 1D to be updated, got size {shape_str(param.shape)}")
        numel = _repeated_numel(param, batch, name, op)
        require_equal(numel, batch * channels, lambda name=name, param=param, numel=numel: (
            f"{op}: {name} should contain {fmt(batch * channels)} elements not {fmt(numel)} "
            f"({name} of size {shape_str(param.shape)}, repeated {fmt(batch)} times)"))
    _check_floating(x, op)
    _check_param_dtypes(x, {"weight": params["weight"], "bias": params["bias"]}, op)
    stats = [params[name] for name in ("running_mean", "running_var") if params[name] is not None]
    if any(s.dtype != x.dtype for s in stats) and not (x.dtype in _REDUCED_FLOATS and
                                                       all(s.dtype == torch.float32 for s in stats)):
        # Unlike batch_norm, the repeated statistics of another dtype pass or fail depending on their order.
        raise UnsupportedOpError(f"{op}: running statistics of dtypes "
                                 f"{', '.join(dtype_name(s.dtype) for s in stats)} for a {dtype_name(x.dtype)} input "
                                 f"are not supported (which mixes the CPU kernels accept is not modelled)")
    return x


@rule(F.group_norm)
def group_norm_function(input, num_groups, weight=None, bias=None, eps=1e-5) -> TensorMeta:
    """Shape unchanged; (N, C, *) with ``C % num_groups == 0``, weight and bias 1D of C elements,
    and ``(N*C//num_groups) * prod(spatial) != 1``."""
    op = "group_norm"
    x = tensor_arg(input, f"{op} input")
    params = {"weight": _optional_tensor(weight, f"{op} weight"), "bias": _optional_tensor(bias, f"{op} bias")}
    if x.ndim < 2:
        raise ShapeError(f"{op}: Expected at least 2 dimensions for input tensor but received {x.ndim}")
    if not is_concrete(num_groups):
        raise UnsupportedOpError(f"{op}: num_groups must be a concrete int, got {fmt(num_groups)}")
    if num_groups <= 0:
        raise ShapeError(f"{op}: Expected num groups to be greater than 0, got {num_groups}")
    channels = x.shape[1]
    _require_more_than_one((floordiv(x.shape[0] * channels, num_groups), *x.shape[2:]), lambda: f"{op}: Expected more than 1 value per channel when training, got input "
                           f"size {shape_str(x.shape)} with num_groups={num_groups}")
    require_divisible(channels, num_groups,
                      lambda: f"{op}: Expected number of channels in input to be divisible by num_groups, but got "
                              f"input of shape {shape_str(x.shape)} and num_groups={num_groups}")
    for name, param in params.items():
        if param is not None:
            if param.ndim != 1:
                raise ShapeError(f"{op}: Expected {name} to be a vector of size equal to the number of channels in "
                                 f"input, but got {name} of shape {shape_str(param.shape)} and input of shape "
                                 f"{shape_str(x.shape)}")
            require_equal(param.shape[0], channels, lambda name=name, param=param: (
                f"{op}: Expected {name} to be a vector of size equal to the number of channels in input, but got "
                f"{name} of shape {shape_str(param.shape)} and input of shape {shape_str(x.shape)}"))
    _check_floating(x, op)
    _check_param_dtypes(x, params, op)
    return x


@rule(F.rms_norm)
def rms_norm_function(input, normalized_shape, weight=None, eps=None) -> TensorMeta:
    """Shape unchanged; the trailing dims must equal ``normalized_shape`` (a non-empty
    sequence), and ``weight``, when given, must have exactly that shape."""
    op = "rms_norm"
    x = tensor_arg(input, f"{op} input")
    if not isinstance(normalized_shape, (tuple, list)):
        raise ShapeError(f"{op}: normalized_shape must be a tuple of ints, not {type(normalized_shape).__name__}")
    shape = tuple(normalized_shape)
    if not shape:
        raise ShapeError(f"{op}: Expected normalized_shape to be at least 1-dimensional, i.e., containing at least "
                         f"one element, but got normalized_shape = []")
    _trailing_shape_check(x, shape, op)
    if weight is not None:
        w = tensor_arg(weight, f"{op} weight")

        def mismatch() -> str:
            return (f"{op}: Expected weight to be of same shape as normalized_shape, but got weight of shape "
                    f"{shape_str(w.shape)} and normalized_shape = {shape_str(shape)}")

        if w.ndim != len(shape):
            raise ShapeError(mismatch())
        for have, want in zip(w.shape, shape):
            require_equal(have, want, mismatch)
    _check_floating(x, op)
    return x


# -- local response normalization: an average over neighbouring channels ------------------------


def local_response_norm_shape(x: TensorMeta, size, op: str) -> TensorMeta:
    """Shape unchanged; (N, C, *) with at least 3 dims and ``size >= 1`` (the pooling window
    over channels); an empty input is returned as it is. The result is ``input / div``,
    so floating point inputs keep their dtype."""
    if x.ndim < 3:
        raise ShapeError(f"{op}: Expected 3D or higher dimensionality input (got {x.ndim} dimensions)")
    if any(is_concrete(d) and d == 0 for d in x.shape):
        return x
    if not is_concrete(size):
        raise UnsupportedOpError(f"{op}: size must be a concrete int, got {fmt(size)}")
    if size < 1:
        raise ShapeError(f"{op}: kernel size should be greater than zero, but got size={size}")
    if not x.dtype.is_floating_point:
        # int64 works on the CPU (true division gives float32), other integer types do not.
        raise UnsupportedOpError(f"{op} of a {dtype_name(x.dtype)} input: which integer dtypes the averaging "
                                 f"kernels accept depends on the device")
    return x


@rule(F.local_response_norm)
def local_response_norm_function(input, size, alpha=1e-4, beta=0.75, k=1.0) -> TensorMeta:
    """Shape unchanged; see :func:`local_response_norm_shape`."""
    return local_response_norm_shape(tensor_arg(input, "local_response_norm input"), size, "local_response_norm")


@rule(nn.LocalResponseNorm)
def local_response_norm_module(module: nn.LocalResponseNorm, x: TensorMeta) -> TensorMeta:
    """Shape unchanged; see :func:`local_response_norm_shape`."""
    return local_response_norm_shape(tensor_arg(x, "LocalResponseNorm input"), module.size, "LocalResponseNorm")


@rule(nn.CrossMapLRN2d)
def cross_map_lrn2d_module(module: nn.CrossMapLRN2d, x: TensorMeta) -> TensorMeta:
    """Shape unchanged; a 4D floating point input and ``size != 0`` (it divides alpha by size)."""
    op = "CrossMapLRN2d"
    x = tensor_arg(x, f"{op} input")
    if x.ndim != 4:
        raise ShapeError(f"{op}: Expected input to be 4D, got {x.ndim}D instead.")
    if module.size == 0:
        raise ShapeError(f"{op}: size must not be 0 (alpha is divided by it)")
    _check_floating(x, op)
    require_positive(x.shape[1], lambda: f"{op}: expected at least one channel, got input of size "
                                         f"{shape_str(x.shape)}")
    return x
