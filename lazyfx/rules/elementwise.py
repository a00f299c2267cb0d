"""Broadcasting arithmetic on tensors, and arithmetic on sizes.

With a tensor operand the output shape is the broadcast of the operands'
shapes (https://pytorch.org/docs/stable/notes/broadcasting.html) and the
dtype follows PyTorch's type promotion; true division of integers gives the
default float dtype. With only sizes (``x.size(0) * 2``, ``h // 2``) the
result is the size formula itself.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import sympy
import torch

from lazyfx.checks import require_equal
from lazyfx.errors import ShapeError
from lazyfx.registry import Method, rule
from lazyfx.rules._util import broadcast_shapes, result_dtype, shape_str
from lazyfx.symbolic import as_dim, floordiv, is_concrete, mod
from lazyfx.values import TensorMeta, dtype_name


def broadcast(a: Any, b: Any, *, true_division: bool = False) -> TensorMeta:
    """The tensor produced by a broadcasting binary op on ``a`` and ``b`` (one of them a tensor)."""
    shapes = [v.shape for v in (a, b) if isinstance(v, TensorMeta)]
    dtype = result_dtype(a, b)
    if true_division and not (dtype.is_floating_point or dtype.is_complex):
        dtype = torch.get_default_dtype()
    return TensorMeta(broadcast_shapes(*shapes), dtype)


def _sizes(fn: Callable[[Any, Any], Any]):
    def apply(a, b):
        result = fn(a, b)
        return as_dim(result) if isinstance(result, sympy.Expr) else result

    return apply


def _true_div(a, b):
    if is_concrete(a) and is_concrete(b):
        return a / b
    return sympy.sympify(a) / b


_SIZE_OPS = {
    "add": _sizes(operator.add),
    "sub": _sizes(operator.sub),
    "mul": _sizes(operator.mul),
    "truediv": _sizes(_true_div),
    "floordiv": floordiv,
    "mod": mod,
    "pow": _sizes(operator.pow),
}


def _binary(name: str):
    size_op = _SIZE_OPS[name]

    def binary(input, other, *args, **kwargs):
        if isinstance(input, TensorMeta) or isinstance(other, TensorMeta):
            return broadcast(input, other, true_division=name == "truediv" and kwargs.get("rounding_mode") is None)
        return size_op(input, other)

    binary.__name__ = name
    binary.__doc__ = f"``{name}``: broadcast shapes of tensor operands; on sizes, the size formula."
    return binary


def _inplace(name: str):
    forward = _binary(name)

    def inplace(input, other, *args, **kwargs):
        """In place: the broadcast shape must be ``input``'s own, and the result type must
        cast to ``input``'s dtype."""
        result = forward(input, other, *args, **kwargs)
        if not isinstance(input, TensorMeta):
            return result
        if tuple(result.shape) != tuple(input.shape) and len(result.shape) != len(input.shape):
            raise ShapeError(f"output with shape {shape_str(input.shape)} doesn't match the broadcast shape "
                             f"{shape_str(result.shape)}")
        for have, want in zip(input.shape, result.shape):
            require_equal(have, want, lambda: f"output with shape {shape_str(input.shape)} doesn't match the "
                                              f"broadcast shape {shape_str(result.shape)}")
        if not torch.can_cast(result.dtype, input.dtype):
            raise ShapeError(f"result type {dtype_name(result.dtype)} can't be cast to the desired output type "
                             f"{dtype_name(input.dtype)}")
        return input

    inplace.__name__ = f"{name}_"
    return inplace


# ``x += y`` on a traced value is recorded by torch.fx as ``x + y`` (proxies have no
# ``__iadd__``), so only the explicit in-place methods reach these rules.
_INPLACE_KEYS = {
    "add": (Method("add_"),),
    "sub": (Method("sub_"),),
    "mul": (Method("mul_"),),
    "truediv": (Method("div_"),),
}

for _name, _keys in _INPLACE_KEYS.items():
    rule(*_keys)(_inplace(_name))


_KEYS = {
    "add": (operator.add, torch.add, Method("add")),
    "sub": (operator.sub, torch.sub, torch.subtract, Method("sub")),
    "mul": (operator.mul, torch.mul, torch.multiply, Method("mul")),
    "truediv": (operator.truediv, torch.div, torch.divide, torch.true_divide, Method("div")),
    "floordiv": (operator.floordiv, torch.floor_divide),
    "mod": (operator.mod, torch.remainder, torch.fmod, Method("remainder")),
    "pow": (operator.pow, torch.pow, Method("pow")),
}

for _name, _keys in _KEYS.items():
    rule(*_keys)(_binary(_name))


@rule(operator.neg)
def neg(input):
    """``-x``: same shape; on sizes, the negated formula."""
    if isinstance(input, TensorMeta):
        return input
    return -input
