"""Comparison, logical and selection ops: eq/ne/lt/le/gt/ge, logical_*, ``&``/``|``/``^``/``~``,
isnan/isinf/isfinite, where, clamp/clip, maximum/minimum/fmax/fmin, masked_fill.

With a tensor operand the result broadcasts the tensors' shapes
(https://pytorch.org/docs/stable/notes/broadcasting.html); comparisons and
logical ops give bool, the others PyTorch's type promotion over all operands
(:func:`~lazyfx.rules.elementwise.promote`). With only sizes (``x.size(0) == 3``, ``x.shape == y.shape``)
a comparison is a Python bool where the constraints decide it and otherwise
the condition itself (``Eq(B, 3)``), which is what a guard on it depends on.
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

import sympy
import torch

from lazyfx.core import checks
from lazyfx.core.checks import decide
from lazyfx.core.registry import Method, rule
from lazyfx.core.symbolic import fmt, is_concrete
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import DataDependentError, ShapeError, UnsupportedOpError
from lazyfx.rules._util import broadcast_into, broadcast_shapes, shape_str, tensor_arg
from lazyfx.rules.elementwise import (
    as_number,
    broadcast_all,
    check_number_fits,
    is_condition,
    no_out,
    promote,
    scalar_dtype,
)


def expect_inplace(x: TensorMeta, shapes: Sequence[tuple], op: str) -> None:
    """An in-place op's output is ``x`` itself: every other operand's shape must broadcast to
    ``x``'s (PyTorch: the broadcast shape of all operands must be ``x``'s own)."""
    for shape in shapes:
        def message(shape=shape) -> str:
            padded = (1,) * (len(shape) - x.ndim) + tuple(x.shape)  # (the operand may have more dims)
            operand = (1,) * (len(padded) - len(shape)) + tuple(shape)
            both = [d if is_concrete(t) and t == 1 else t for t, d in zip(padded, operand)]
            return f"{op}: output with shape {shape_str(x.shape)} doesn't match the broadcast shape {shape_str(both)}"

        broadcast_into(x.shape, shape, message)


# -- comparisons ---------------------------------------------------------------------------------

# name -> (Python's operator for other values, the size relation: a bool on two ints, else a condition)
_RELATIONS = {
    "eq": (operator.eq, checks.eq),
    "ne": (operator.ne, checks.ne),
    "lt": (operator.lt, checks.lt),
    "le": (operator.le, checks.le),
    "gt": (operator.gt, checks.gt),
    "ge": (operator.ge, checks.ge),
}

_COMPARISON_KEYS = {
    "eq": (torch.eq, Method("eq")),
    "ne": (torch.ne, torch.not_equal, Method("ne")),
    "lt": (torch.lt, torch.less, Method("lt")),
    "le": (torch.le, torch.less_equal, Method("le")),
    "gt": (torch.gt, torch.greater, Method("gt")),
    "ge": (torch.ge, torch.greater_equal, Method("ge")),
}


def compare_tensors(name: str, a: Any, b: Any) -> TensorMeta:
    """A broadcast bool tensor; complex numbers have no order."""
    if name not in ("eq", "ne"):
        for v in (a, b):
            if isinstance(v, TensorMeta) and v.dtype.is_complex:
                raise ShapeError(f'"{name}_cpu" not implemented for \'{dtype_name(v.dtype)}\'')
    return TensorMeta(broadcast_all(a, b), torch.bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, sympy.Expr)) and not isinstance(value, bool)


def compare_values(name: str, a: Any, b: Any) -> Any:
    """``a <op> b`` on sizes: a bool when decided for every admitted input, else the condition."""
    py, relation = _RELATIONS[name]
    if _is_number(a) and _is_number(b):
        condition = relation(a, b)
        decided = decide(condition)
        return condition if decided is None else decided
    if all(isinstance(v, tuple) for v in (a, b)) or all(isinstance(v, list) for v in (a, b)):
        return _compare_sequences(name, a, b)  # (a tuple never equals a list, as in Python)
    return py(a, b)


def _compare_sequences(name: str, a, b) -> Any:
    """Shapes compare element by element (``x.shape == y.shape``), or in lexicographic order."""
    if name not in ("eq", "ne"):
        return _order_sequences(name, a, b)
    equal: Any = False
    if len(a) == len(b):
        parts = [compare_values("eq", x, y) for x, y in zip(a, b)]
        undecided = [p for p in parts if p is not True]
        if not any(p is False for p in parts):
            equal = sympy.And(*undecided) if undecided else True
    if name == "eq":
        return equal
    return (not equal) if isinstance(equal, bool) else sympy.Not(equal)


def _order_sequences(name: str, a, b) -> Any:
    """Lexicographic order: decided by the first pair of sizes that differ, else by the lengths."""
    for x, y in zip(a, b):
        same = compare_values("eq", x, y)
        if same is True:
            continue
        if same is False:  # the first difference decides; "<=" is "<" there
            return compare_values("lt" if name in ("lt", "le") else "gt", x, y)
        raise UnsupportedOpError(f"ordering the shapes {fmt(tuple(a))} and {fmt(tuple(b))}: whether "
                                 f"{fmt(x)} == {fmt(y)} depends on the input")
    return _RELATIONS[name][0](len(a), len(b))


def _operator_comparison(name: str):
    def compare(a, b):
        if isinstance(a, TensorMeta) or isinstance(b, TensorMeta):
            return compare_tensors(name, a, b)
        return compare_values(name, a, b)

    compare.__name__ = f"operator_{name}"
    compare.__doc__ = f"``a {name} b``: a broadcast bool tensor, or on sizes a bool (or the undecided condition)."
    return compare


def _tensor_comparison(name: str):
    def compare(input, other, *, out=None):
        no_out(name, out)
        return compare_tensors(name, tensor_arg(input, f"{name} input"), other)

    compare.__name__ = name
    compare.__doc__ = f"``torch.{name}``: the broadcast shape of both operands, bool."
    return compare


for _name, (_py, _) in _RELATIONS.items():
    rule(_py)(_operator_comparison(_name))
for _name, _keys in _COMPARISON_KEYS.items():
    rule(*_keys)(_tensor_comparison(_name))


# -- logical and bitwise ops -----------------------------------------------------------------------


@rule(torch.logical_and, torch.logical_or, torch.logical_xor,
      Method("logical_and"), Method("logical_or"), Method("logical_xor"))
def logical_binary(input, other, *, out=None) -> TensorMeta:
    """``logical_and/or/xor``: two tensors broadcast; bool."""
    no_out("logical_and", out)
    a, b = tensor_arg(input, "logical op input"), tensor_arg(other, "logical op other")
    return TensorMeta(broadcast_shapes(a.shape, b.shape), torch.bool)


@rule(torch.logical_not, Method("logical_not"),
      torch.isnan, torch.isinf, torch.isfinite, Method("isnan"), Method("isinf"), Method("isfinite"))
def elementwise_predicate(input, *, out=None) -> TensorMeta:
    """``logical_not``, ``isnan``, ``isinf``, ``isfinite``: ``(*) -> (*)``, bool."""
    no_out("logical_not", out)
    return TensorMeta(tensor_arg(input, "input").shape, torch.bool)


_BITWISE = {"and": (operator.and_, sympy.And), "or": (operator.or_, sympy.Or), "xor": (operator.xor, sympy.Xor)}


def _integral_operand(value: Any, op: str) -> None:
    dtype = value.dtype if isinstance(value, TensorMeta) else scalar_dtype(value)
    if dtype.is_floating_point or dtype.is_complex:
        raise ShapeError(f'"{op}_cpu" not implemented for \'{dtype_name(dtype)}\' (bitwise ops need integer or '
                         f"bool operands)")


def _bitwise(name: str):
    py, logic = _BITWISE[name]

    def bitwise(a, b):
        if isinstance(a, TensorMeta) or isinstance(b, TensorMeta):
            for value in (a, b):
                _integral_operand(value, f"bitwise_{name}")
            return TensorMeta(broadcast_all(a, b), promote(a, b))
        if is_condition(a) or is_condition(b):  # conditions on sizes: (x.size(0) > 1) & ...
            if not all(isinstance(v, bool) or is_condition(v) for v in (a, b)):
                raise UnsupportedOpError(f"{name} of the condition {fmt(a)} with {fmt(b)}")
            condition = logic(a, b)
            decided = decide(condition)
            return condition if decided is None else decided
        if isinstance(a, sympy.Basic) or isinstance(b, sympy.Basic):
            raise UnsupportedOpError(f"bitwise {name} of the size formulas {fmt(a)} and {fmt(b)}")
        return py(a, b)

    bitwise.__name__ = f"bitwise_{name}"
    bitwise.__doc__ = f"``a {name} b``: integer/bool tensors broadcast and promote; on sizes, the value."
    return bitwise


for _name, (_py, _) in _BITWISE.items():
    rule(_py)(_bitwise(_name))


@rule(operator.invert)
def invert(input):
    """``~x``: same shape, integer or bool tensors only; on an int size, its bitwise complement."""
    if isinstance(input, TensorMeta):
        if input.dtype.is_floating_point or input.dtype.is_complex:
            raise ShapeError("~ (operator.invert) is only implemented on integer and Boolean-type tensors")
        return input
    if isinstance(input, sympy.Basic):
        raise UnsupportedOpError(f"~ of the size formula {fmt(input)}")
    return ~input


# -- selection -------------------------------------------------------------------------------------

_MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()


@rule(torch.where)
def where(condition, input=_MISSING, other=_MISSING, *, out=None) -> TensorMeta:
    """``where(cond, a, b)``: cond, a and b broadcast (a/b may be numbers); a and b promote.
    ``where(cond)`` alone lists indices, a value-dependent shape."""
    no_out("where", out)
    cond = tensor_arg(condition, "where condition")
    if input is _MISSING and other is _MISSING:
        raise DataDependentError("torch.where(condition) returns the indices where condition holds; how many "
                                 "depends on its values")
    if input is _MISSING or other is _MISSING:
        raise ShapeError("where() takes a condition and two values (or only a condition)")
    if cond.dtype not in (torch.bool, torch.uint8):
        raise ShapeError(f"where expected condition to be a boolean tensor, but got a tensor with dtype "
                         f"{dtype_name(cond.dtype)}")
    return TensorMeta(broadcast_all(cond, input, other), promote(input, other))


@rule(Method("where"))
def where_method(input, condition, other) -> TensorMeta:
    """``x.where(cond, y)`` is ``torch.where(cond, x, y)``."""
    return where(condition, tensor_arg(input, "where input"), other)


def _clamp(input, min, max, op: str, *, in_place: bool = False) -> tuple[TensorMeta, bool]:
    """``(result, bounds are numbers)``: bounds are both numbers or both tensors. With numbers a
    floating input keeps its dtype and others promote (``clamp`` meta in ATen's
    ``TensorCompare.cpp``); tensors broadcast and promote. ``in_place``: tensor bounds must
    broadcast to the input's own shape, which the result keeps."""
    x = tensor_arg(input, f"{op} input")
    bounds = [b for b in (min, max) if b is not None]
    if not bounds:
        raise ShapeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    tensors = [isinstance(b, TensorMeta) for b in bounds]
    if all(tensors):
        dtype = promote(x, *bounds)
        # One tensor bound runs maximum/minimum; two run the clamp kernel, which has no bool.
        if dtype.is_complex or (dtype == torch.bool and len(bounds) == 2):
            raise ShapeError(f'"clamp_cpu" not implemented for \'{dtype_name(dtype)}\'')
        if in_place:
            expect_inplace(x, [b.shape for b in bounds], op)
            return TensorMeta(x.shape, dtype), False
        return TensorMeta(broadcast_all(x, *bounds), dtype), False
    if any(isinstance(b, TensorMeta) and b.ndim for b in bounds):
        raise ShapeError(f"{op}() received an invalid combination of arguments: min and max must both be "
                         f"tensors or both be numbers")
    if any(isinstance(b, TensorMeta) and b.dtype.is_complex for b in bounds):
        # A 0-dim tensor passes for a number here; a complex one is refused unless its value is real.
        raise DataDependentError(f"{op} with a complex 0-dim tensor as a bound: whether PyTorch accepts it "
                                 f"depends on its value")
    numbers = [as_number(b) for b in bounds]
    if x.dtype.is_complex or any(isinstance(b, complex) for b in numbers):
        raise ShapeError("clamp is not supported for complex types")
    dtype = x.dtype if x.dtype.is_floating_point else promote(x, *numbers)
    if dtype == torch.bool:
        raise ShapeError("\"clamp_scalar_cpu\" not implemented for 'Bool'")
    return TensorMeta(x.shape, dtype), True


@rule(torch.clamp, torch.clip, Method("clamp"), Method("clip"))
def clamp(input, min=None, max=None, *, out=None) -> TensorMeta:
    """``clamp(x, min, max)``: with number bounds ``x``'s shape; with tensor bounds the
    broadcast shape. The result type promotes over input and bounds."""
    no_out("clamp", out)
    return _clamp(input, min, max, "clamp")[0]


@rule(torch.clamp_min, Method("clamp_min"))
def clamp_min(input, min) -> TensorMeta:
    """``clamp_min(x, min)`` is ``clamp(x, min=min)``."""
    return _clamp(input, min, None, "clamp_min")[0]


@rule(torch.clamp_max, Method("clamp_max"))
def clamp_max(input, max) -> TensorMeta:
    """``clamp_max(x, max)`` is ``clamp(x, max=max)``."""
    return _clamp(input, None, max, "clamp_max")[0]


@rule(Method("clamp_"), Method("clip_"))
def clamp_(input, min=None, max=None) -> TensorMeta:
    """In place: the broadcast result must have the input's shape, and its type must be the
    input's (number bounds) or cast to it (tensor bounds)."""
    x = tensor_arg(input, "clamp_ input")
    result, numbers = _clamp(x, min, max, "clamp_", in_place=True)
    if result.dtype != x.dtype if numbers else not torch.can_cast(result.dtype, x.dtype):
        raise ShapeError(f"clamp_: result type {dtype_name(result.dtype)} can't be cast to the desired output "
                         f"type {dtype_name(x.dtype)}")
    return x


def elementwise_extremum(input, other, *, op: str = "maximum") -> TensorMeta:
    """Two tensors broadcast and promote; complex numbers have no order."""
    a, b = tensor_arg(input, f"{op} input"), tensor_arg(other, f"{op} other")
    for v in (a, b):
        if v.dtype.is_complex:
            raise ShapeError(f"{op} not implemented for complex tensors.")
    return TensorMeta(broadcast_shapes(a.shape, b.shape), promote(a, b))


@rule(torch.maximum, torch.minimum, torch.fmax, torch.fmin,
      Method("maximum"), Method("minimum"), Method("fmax"), Method("fmin"))
def maximum(input, other, *, out=None) -> TensorMeta:
    """``maximum``/``minimum``/``fmax``/``fmin``: two tensors broadcast and promote."""
    no_out("maximum", out)
    return elementwise_extremum(input, other)


def _fill_arguments(x: TensorMeta, mask: Any, value: Any, op: str) -> TensorMeta:
    m = tensor_arg(mask, f"{op} mask")
    if m.dtype != torch.bool:
        raise ShapeError(f"{op} only supports boolean masks, but got mask with dtype {dtype_name(m.dtype)}")
    if isinstance(value, TensorMeta) and value.ndim:
        raise ShapeError(f"{op} only supports a 0-dimensional value tensor, but got tensor with {value.ndim} "
                         f"dimension(s).")
    if not isinstance(value, TensorMeta):
        scalar_dtype(value)  # a number (or size) is required
        check_number_fits(value, x.dtype, op)
    return m


@rule(torch.masked_fill, Method("masked_fill"))
def masked_fill(input, mask, value) -> TensorMeta:
    """``masked_fill``: input and (bool) mask broadcast; the input's dtype; a number or 0-dim value."""
    x = tensor_arg(input, "masked_fill input")
    m = _fill_arguments(x, mask, value, "masked_fill")
    return TensorMeta(broadcast_shapes(x.shape, m.shape), x.dtype)


@rule(Method("masked_fill_"))
def masked_fill_(input, mask, value) -> TensorMeta:
    """In place: the mask must broadcast to the input's own shape."""
    x = tensor_arg(input, "masked_fill_ input")
    m = _fill_arguments(x, mask, value, "masked_fill_")
    expect_inplace(x, [m.shape], "masked_fill_")
    return x
