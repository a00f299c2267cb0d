"""Activations, dropout and softmax: the output has the input's shape.

Softmax-like ops take a ``dim`` that must be in range; ``dim=None`` picks
PyTorch's legacy implicit dim (0 for 0-, 1- and 3-D inputs, else 1).
PReLU's ``num_parameters`` must be 1 or the channel count (dim 1).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.checks import require_equal
from lazyfx.registry import Method, rule
from lazyfx.rules._util import normalize_dim, shape_str, tensor_arg
from lazyfx.symbolic import fmt
from lazyfx.values import TensorMeta

SAME_SHAPE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid, nn.Softshrink, nn.Hardshrink, nn.Threshold, nn.RReLU,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)

SAME_SHAPE_FUNCTIONS = (
    F.relu, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu,
    F.silu, F.mish, torch.sigmoid, torch.tanh, F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus,
    F.softsign, F.tanhshrink, F.logsigmoid, F.softshrink, F.hardshrink, F.threshold, F.rrelu,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
    torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.abs, torch.neg, torch.sin, torch.cos,
    torch.erf, torch.clone, torch.detach,
)

SAME_SHAPE_METHODS = tuple(
    Method(name)
    for name in (
        "relu relu_ sigmoid sigmoid_ tanh tanh_ exp log sqrt rsqrt abs neg sin cos erf "
        "clone detach detach_ contiguous requires_grad_"
    ).split()
)


@rule(*SAME_SHAPE_MODULES)
def same_shape_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """Elementwise module or dropout: ``(*) -> (*)``."""
    return tensor_arg(x, f"{module.__class__.__name__} input")


@rule(*SAME_SHAPE_FUNCTIONS, *SAME_SHAPE_METHODS)
def same_shape(input, *args, **kwargs) -> TensorMeta:
    """Elementwise function or method: ``(*) -> (*)``."""
    return tensor_arg(input, "input")


@rule(nn.PReLU)
def prelu_module(module: nn.PReLU, x: TensorMeta) -> TensorMeta:
    """``(*) -> (*)``; ``num_parameters`` is 1 or the size of dim 1 (inputs of fewer
    than 2 dims have one channel)."""
    x = tensor_arg(x, "PReLU input")
    if module.num_parameters != 1:
        channels = x.shape[1] if x.ndim >= 2 else 1
        require_equal(
            channels,
            module.num_parameters,
            lambda: f"PReLU has num_parameters={module.num_parameters} but the input has {fmt(channels)} "
            f"channels (input of size {shape_str(x.shape)})",
        )
    return x


def _softmax_dim(x: TensorMeta, dim) -> int:
    if dim is None:
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return normalize_dim(dim, x.ndim)


def _softmax_like(x, dim, dtype) -> TensorMeta:
    x = tensor_arg(x, "softmax input")
    _softmax_dim(x, dim)
    return TensorMeta(x.shape, dtype if dtype is not None else x.dtype)


@rule(nn.Softmax, nn.LogSoftmax, nn.Softmin)
def softmax_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """``(*) -> (*)``; ``dim`` must be in range."""
    return _softmax_like(x, module.dim, None)


@rule(F.softmax, F.log_softmax, F.softmin)
def softmax_function(input, dim=None, _stacklevel=3, dtype=None) -> TensorMeta:
    return _softmax_like(input, dim, dtype)


@rule(torch.softmax, torch.log_softmax, Method("softmax"), Method("log_softmax"))
def softmax_tensor(input, dim, dtype=None) -> TensorMeta:
    return _softmax_like(input, dim, dtype)
