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

from lazyfx.registry import Method, rule
from lazyfx.rules._util import broadcast_shapes, result_dtype
from lazyfx.symbolic import as_dim, floordiv, is_concrete, mod
from lazyfx.values import TensorMeta


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


_KEYS = {
    "add": (operator.add, operator.iadd, torch.add, Method("add"), Method("add_"), Method("__add__"), Method("__iadd__")),
    "sub": (operator.sub, operator.isub, torch.sub, torch.subtract, Method("sub"), Method("sub_"), Method("__sub__")),
    "mul": (operator.mul, operator.imul, torch.mul, torch.multiply, Method("mul"), Method("mul_"), Method("__mul__")),
    "truediv": (operator.truediv, operator.itruediv, torch.div, torch.divide, torch.true_divide, Method("div"),
                Method("div_"), Method("__truediv__")),
    "floordiv": (operator.floordiv, torch.floor_divide, Method("__floordiv__")),
    "mod": (operator.mod, torch.remainder, torch.fmod, Method("remainder"), Method("__mod__")),
    "pow": (operator.pow, torch.pow, Method("pow"), Method("__pow__")),
}

for _name, _keys in _KEYS.items():
    rule(*_keys)(_binary(_name))


@rule(operator.neg)
def neg(input):
    """``-x``: same shape; on sizes, the negated formula."""
    if isinstance(input, TensorMeta):
        return input
    return -input
