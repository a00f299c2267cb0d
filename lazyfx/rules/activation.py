"""Activations, dropout and softmax: the output has the input's shape (GLU halves one dim).

Softmax-like ops take a ``dim`` that must be in range; ``dim=None`` picks
PyTorch's legacy implicit dim (0 for 0-, 1- and 3-D inputs, else 1); they compute in
a floating point dtype. PReLU's ``num_parameters`` must be 1 or the channel count (dim 1).
Every module in ``torch.nn.modules.activation`` has a rule here except
``MultiheadAttention`` (see ``attention.py``).
"""

from __future__ import annotations

import sympy
import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.checks import require, require_divisible, require_equal
from lazyfx.core.registry import Method, rule
from lazyfx.core.symbolic import floordiv, fmt, product
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError
from lazyfx.rules._util import normalize_dim, shape_str, tensor_arg
from lazyfx.rules.reduce import real_dtype

SAME_SHAPE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid, nn.Softshrink, nn.Hardshrink, nn.Threshold, nn.RReLU,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)

SAME_SHAPE_FUNCTIONS = (
    F.relu, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu,
    F.silu, F.mish, F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus,
    F.softsign, F.tanhshrink, F.logsigmoid, F.softshrink, F.hardshrink, F.threshold, F.rrelu,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
    torch.neg, torch.clone, torch.detach,
)

# Functional twins fx records under other names than SAME_SHAPE_FUNCTIONS: the in-place
# F.elu_/F.leaky_relu_/F.hardtanh_ and the torch.* forms F.selu/F.celu/F.rrelu/F.threshold call.
SAME_SHAPE_TWINS = (
    F.elu_, F.leaky_relu_, F.hardtanh_, torch.rrelu_, torch.threshold_, torch.celu_, torch.selu_,
    torch.selu, torch.celu, torch.rrelu, torch.threshold,
)

SAME_SHAPE_METHODS = tuple(
    Method(name)
    for name in (
        "relu relu_ sigmoid_ tanh_ neg "
        "clone detach detach_ contiguous requires_grad_"
    ).split()
)


@rule(*SAME_SHAPE_MODULES)
def same_shape_module(module: nn.Module, x: TensorMeta) -> TensorMeta:
    """Elementwise module or dropout: ``(*) -> (*)``."""
    return tensor_arg(x, f"{module.__class__.__name__} input")


@rule(*SAME_SHAPE_FUNCTIONS, *SAME_SHAPE_TWINS, *SAME_SHAPE_METHODS)
def same_shape(input, *args, **kwargs) -> TensorMeta:
    """Elementwise function or method: ``(*) -> (*)``."""
    return tensor_arg(input, "input")


# Math that computes in floating point: an integer or bool input gives the default float dtype.
FLOATING_FUNCTIONS = (torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.sin, torch.cos, torch.sigmoid, torch.tanh)
FLOATING_METHODS = tuple(Method(name) for name in "exp log sqrt rsqrt sin cos sigmoid tanh".split())


@rule(*FLOATING_FUNCTIONS, *FLOATING_METHODS)
def floating_math(input, *args, **kwargs) -> TensorMeta:
    """``(*) -> (*)``; an integer or bool input gives the default float dtype."""
    return _in_floating_point(tensor_arg(input, "input"))


@rule(torch.erf, Method("erf"))
def erf(input, *args, **kwargs) -> TensorMeta:
    """``(*) -> (*)`` as :func:`floating_math`; no complex input."""
    x = tensor_arg(input, "erf input")
    if x.dtype.is_complex:
        raise ShapeError(f"\"erf_vml_cpu\" not implemented for '{dtype_name(x.dtype)}'")
    return _in_floating_point(x)


def _in_floating_point(x: TensorMeta) -> TensorMeta:
    if x.dtype.is_complex or x.dtype.is_floating_point:
        return x
    return TensorMeta(x.shape, torch.get_default_dtype())


# complex -> real (complex64 -> float32)
COMPLEX_TO_REAL = {"abs": (torch.abs, torch.absolute, Method("abs"), Method("absolute")),
                   "angle": (torch.angle, Method("angle")), "real": (torch.real,), "imag": (torch.imag,),
                   "view_as_real": (torch.view_as_real,)}


def complex_to_real(x: TensorMeta, op: str) -> TensorMeta:
    """The dtype rules of ``abs``, ``angle``, ``real``, ``imag`` and ``view_as_real``: a complex
    input gives its real dtype (complex64 -> float32); a real one stays itself for ``abs`` and
    ``real``, becomes floating point for ``angle``, and is refused by ``imag`` and ``view_as_real``."""
    real = real_dtype(x.dtype)
    if op == "view_as_real":
        if not x.dtype.is_complex:
            raise ShapeError("view_as_real is only supported for complex tensors")
        return TensorMeta((*x.shape, 2), real)
    if x.dtype.is_complex:
        return TensorMeta(x.shape, real)
    if op == "imag":
        raise ShapeError("imag is not implemented for tensors with non-complex dtypes.")
    if op == "angle" and not x.dtype.is_floating_point:
        return TensorMeta(x.shape, torch.get_default_dtype())
    if op == "abs" and x.dtype == torch.bool:
        raise ShapeError("\"abs_cpu\" not implemented for 'Bool'")
    return x


@rule(*COMPLEX_TO_REAL["abs"])
def abs_(input) -> TensorMeta:
    """``|x|``: the real dtype of a complex input; no bool input."""
    return complex_to_real(tensor_arg(input, "abs input"), "abs")


@rule(*COMPLEX_TO_REAL["angle"])
def angle(input) -> TensorMeta:
    """The argument of each element: real, floating point."""
    return complex_to_real(tensor_arg(input, "angle input"), "angle")


@rule(*COMPLEX_TO_REAL["real"])
def real(input) -> TensorMeta:
    """The real part (a real tensor itself)."""
    return complex_to_real(tensor_arg(input, "real input"), "real")


@rule(*COMPLEX_TO_REAL["imag"])
def imag(input) -> TensorMeta:
    """The imaginary part; complex inputs only."""
    return complex_to_real(tensor_arg(input, "imag input"), "imag")


@rule(*COMPLEX_TO_REAL["view_as_real"])
def view_as_real(input) -> TensorMeta:
    """``(*) -> (*, 2)`` in the real dtype; complex inputs only."""
    return complex_to_real(tensor_arg(input, "view_as_real input"), "view_as_real")


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
    out = dtype if dtype is not None else x.dtype
    if not out.is_floating_point:
        raise ShapeError(f"softmax is not implemented for {dtype_name(out)}; pass dtype= a floating point type")
    return TensorMeta(x.shape, out)


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


@rule(nn.Softmax2d)
def softmax2d_module(module: nn.Softmax2d, x: TensorMeta) -> TensorMeta:
    """``(N, C, H, W)`` or ``(C, H, W)`` unchanged: a softmax over the channels (dim -3)."""
    x = tensor_arg(x, "Softmax2d input")
    if x.ndim not in (3, 4):
        raise ShapeError(f"Softmax2d: expected input to be 3D or 4D, got {x.ndim}D instead")
    return _softmax_like(x, -3, None)


@rule(torch.prelu)
def prelu_function(input, weight) -> TensorMeta:
    """``F.prelu``: ``(*) -> (*)``; ``weight`` is 0D or 1D of one element or as many as the input
    has channels (dim 1; 1 for a 1D input) and has the input's floating point dtype."""
    x, w = tensor_arg(input, "prelu input"), tensor_arg(weight, "prelu weight")
    if x.dtype != w.dtype:
        raise ShapeError(f"prelu: Type promoting not supported. Got {dtype_name(x.dtype)} and {dtype_name(w.dtype)}")
    numel = product(w.shape)
    # One weight applies to every channel; any other count must be the channel count.
    if x.ndim == 0:
        require_equal(numel, 1, lambda: f"prelu: Not allow zero-dim input tensor with {fmt(numel)} weights.")
    else:
        channels = x.shape[1] if x.ndim > 1 else 1
        require(sympy.Or(sympy.Eq(numel, 1), sympy.Eq(channels, numel)), lambda: (
            f"prelu: Mismatch of parameter numbers and input channel size. Found parameter numbers = {fmt(numel)} "
            f"and channel size = {fmt(channels)}."))
    if w.ndim > 1:
        raise ShapeError(f"prelu: Expected `weight` to be a scalar or 1D tensor, but got: ndim = {w.ndim}")
    if not x.dtype.is_floating_point:
        raise ShapeError(f"prelu is not implemented for {dtype_name(x.dtype)}")
    return x


def glu_shape(x: TensorMeta, dim: int) -> TensorMeta:
    """The size at ``dim`` halves; it must be even (a 0-dim input has none to halve)."""
    if x.ndim == 0:
        raise ShapeError("glu does not support scalars because halving size must be even")
    d = normalize_dim(dim, x.ndim)
    size = x.shape[d]
    require_divisible(size, 2, lambda: f"glu: Halving dimension must be even, but dimension {d} is size {fmt(size)}")
    if not x.dtype.is_floating_point:
        raise ShapeError(f"glu is not implemented for {dtype_name(x.dtype)}")
    return x.with_shape((*x.shape[:d], floordiv(size, 2), *x.shape[d + 1 :]))


@rule(F.glu)
def glu(input, dim=-1) -> TensorMeta:
    """``F.glu``: ``(*, 2n, *) -> (*, n, *)`` at ``dim``."""
    return glu_shape(tensor_arg(input, "glu input"), dim)


@rule(nn.GLU)
def glu_module(module: nn.GLU, x: TensorMeta) -> TensorMeta:
    """``(*, 2n, *) -> (*, n, *)`` at ``module.dim``."""
    return glu_shape(tensor_arg(x, "GLU input"), module.dim)
