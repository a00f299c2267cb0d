"""Broadcasting arithmetic on tensors, and arithmetic on sizes.

With a tensor operand the output shape is the broadcast of the operands'
shapes (https://pytorch.org/docs/stable/notes/broadcasting.html) and the
dtype follows PyTorch's type promotion; true division of integers gives the
default float dtype. With only sizes (``x.size(0) * 2``, ``h // 2``) the
result is the size formula itself.

The type-promotion helpers at the end (:func:`promote` over any number of
tensors and numbers, :func:`scalar_dtype`, :func:`check_number_fits`) serve
the comparison, selection and factory rules too.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Optional

import sympy
import torch
from sympy.logic.boolalg import Boolean

from lazyfx.core.checks import require, require_equal
from lazyfx.core.registry import Method, rule
from lazyfx.core.symbolic import as_dim, floordiv, fmt, is_concrete, mod
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import broadcast_shapes, result_dtype, shape_str


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


# The second operand's keyword where it is not ``other`` (``torch.pow(x, exponent=2)``)
_SECOND_OPERAND = {"pow": "exponent"}


def _binary(name: str):
    size_op = _SIZE_OPS[name]
    second = _SECOND_OPERAND.get(name, "other")

    def binary(input, *args, **kwargs):
        if args:
            other, args = args[0], args[1:]
        elif second in kwargs:
            other = kwargs.pop(second)
        else:
            raise ShapeError(f"{name}() missing 1 required argument: '{second}'")
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


# -- type promotion over any number of operands, numbers as operands ------------------------------

_TO_COMPLEX = {torch.float16: torch.complex32, torch.float32: torch.complex64, torch.float64: torch.complex128}


def is_condition(value: Any) -> bool:
    """A condition on sizes (``Eq(B, 3)``), not a size (sympy symbols are both Expr and Boolean)."""
    return isinstance(value, Boolean) and not isinstance(value, sympy.Expr)


def scalar_dtype(value: Any) -> torch.dtype:
    """The dtype PyTorch gives a Python number (or a size formula, or a condition on sizes)."""
    if isinstance(value, bool) or is_condition(value):
        return torch.bool
    if isinstance(value, int) or (isinstance(value, sympy.Expr) and value.is_integer):
        return torch.int64
    if isinstance(value, complex):
        return _TO_COMPLEX.get(torch.get_default_dtype(), torch.complex64)
    if isinstance(value, (float, sympy.Expr)):
        return torch.get_default_dtype()
    raise ShapeError(f"expected a tensor or a number, got {type(value).__name__} {value!r}")


def as_number(value: Any) -> Any:
    """A 0-dim tensor where PyTorch takes a Python number: a number of the same kind."""
    if not isinstance(value, TensorMeta):
        return value
    dtype = value.dtype
    return True if dtype == torch.bool else 1j if dtype.is_complex else 1.0 if dtype.is_floating_point else 1


def check_number_fits(value: Any, dtype: torch.dtype, op: str) -> None:
    """A Python number converts to ``dtype`` only without overflow (``c10::overflows``): a real
    dtype takes no imaginary part, an unsigned one wraps negatives, bool takes anything."""
    if isinstance(value, TensorMeta) or dtype == torch.bool:
        return  # a tensor's value is data; bool takes any number
    if isinstance(value, sympy.Basic):
        # A size formula always fits int64 (PyTorch's own size type); a condition is a bool.
        narrow = not (dtype.is_floating_point or dtype.is_complex or dtype == torch.int64)
        if isinstance(value, sympy.Expr) and narrow:
            info = torch.iinfo(dtype)
            low = -info.max if info.min == 0 else info.min
            require(sympy.And(sympy.Ge(value, low), sympy.Le(value, info.max)),
                    lambda: f"{op}: value {fmt(value)} must fit in {dtype_name(dtype)}")
        return
    parts = [value.real, value.imag] if isinstance(value, complex) else [value]
    if not dtype.is_complex and len(parts) == 2 and parts[1] != 0:
        ok = False
    else:
        ok = all(_fits(part, dtype) for part in parts[: 2 if dtype.is_complex else 1])
    if not ok:
        raise ShapeError(f"{op}: value cannot be converted to type {dtype_name(dtype)} without overflow "
                         f"(value {value!r})")


def _fits(value: Any, dtype: torch.dtype) -> bool:
    if dtype.is_complex or dtype.is_floating_point:
        limit = torch.finfo({torch.complex32: torch.float16, torch.complex64: torch.float32,
                             torch.complex128: torch.float64}.get(dtype, dtype)).max
        return not math.isfinite(value) or -limit <= value <= limit
    info = torch.iinfo(dtype)
    if info.min == 0:  # unsigned: negative numbers wrap around
        return value <= info.max and -value <= info.max
    return info.min <= value <= info.max


def _join(a: Optional[torch.dtype], b: torch.dtype) -> torch.dtype:
    return b if a is None else torch.promote_types(a, b)


def _combine(higher: Optional[torch.dtype], lower: Optional[torch.dtype]) -> Optional[torch.dtype]:
    """c10's ``combine_categories``: a lower-priority operand only matters when it is of a
    higher category (bool < integer < floating < complex)."""
    if higher is None:
        return lower
    if lower is None or higher.is_complex:
        return higher
    if lower.is_complex:
        return _TO_COMPLEX.get(higher, lower) if higher.is_floating_point else lower
    if higher.is_floating_point:
        return higher
    if higher == torch.bool or lower.is_floating_point:
        return torch.promote_types(higher, lower)
    return higher


def promote(*operands: Any) -> torch.dtype:
    """PyTorch's result type of an op on ``operands``: tensors with dims beat 0-dim tensors,
    which beat Python numbers, except where those are of a higher category
    (``ATen/native/TypeProperties.cpp``)."""
    dims = zero_dim = numbers = None
    for value in operands:
        if isinstance(value, TensorMeta):
            if value.ndim:
                dims = _join(dims, value.dtype)
            else:
                zero_dim = _join(zero_dim, value.dtype)
        else:
            numbers = _join(numbers, scalar_dtype(value))
    return _combine(dims, _combine(zero_dim, numbers))


def broadcast_all(*operands: Any) -> tuple:
    """The broadcast shape of the tensors among ``operands``."""
    return broadcast_shapes(*(v.shape for v in operands if isinstance(v, TensorMeta)))


def no_out(op: str, out: Any) -> None:
    """``out=`` buffers are not modelled (a rule returns its result)."""
    if out is not None:
        raise UnsupportedOpError(f"{op}(out=...) is not supported: lazyfx models results, not buffers")
