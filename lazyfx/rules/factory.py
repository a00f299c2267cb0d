"""Tensor factories: zeros/ones/empty/full/rand/randn/randint, arange/linspace/logspace/eye,
the ``*_like`` functions and ``Tensor.new_*``.

Sizes may be formulas (``torch.zeros(3, x.size(0))``, ``x.new_zeros(x.shape)``)
and must not be negative (0 makes an empty tensor). The dtype is ``dtype=``
when given, else the default float dtype, except that ``full`` follows its
fill value's kind, ``arange`` is int64 when its bounds are all integers,
``randint`` is int64 and ``*_like``/``new_*`` keep the source tensor's dtype.
Devices, layouts and ``requires_grad`` do not change shapes.
https://pytorch.org/docs/stable/torch.html#creation-ops

Note: torch.fx cannot record ``torch.zeros(x.size(0), 3)`` (the C++ argument
parser refuses a traced first size before fx sees the call); ``torch.zeros((x.size(0), 3))``
and ``torch.zeros(3, x.size(0))`` trace.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import sympy
import torch

from lazyfx.core.checks import decide, eq, ge, gt, require, require_equal
from lazyfx.core.registry import Method, rule
from lazyfx.core.symbolic import DimExpr, as_dim, ceildiv, fmt, is_concrete, product
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import DataDependentError, ShapeError, UnsupportedOpError
from lazyfx.rules._util import shape_str, tensor_arg
from lazyfx.rules.compare import expect_inplace
from lazyfx.rules.elementwise import check_number_fits, no_out, scalar_dtype
from lazyfx.rules.reduce import is_inexact, require_no_elements

_NO_SHAPE_EFFECT = {"device", "layout", "pin_memory", "requires_grad", "memory_format", "generator", "names"}


# -- arguments -----------------------------------------------------------------------------------


def factory_dtype(op: str, options: dict, default: Optional[torch.dtype] = None) -> torch.dtype:
    """``dtype=`` (else ``default``, else the default float dtype); other options must be ones
    that do not change shapes."""
    options = dict(options)
    dtype = options.pop("dtype", None)
    no_out(op, options.pop("out", None))
    unknown = sorted(set(options) - _NO_SHAPE_EFFECT)
    if unknown:
        raise ShapeError(f"{op}() got an unexpected keyword argument '{unknown[0]}'")
    return dtype or default or torch.get_default_dtype()


def is_integral(value: Any) -> bool:
    """An int (or bool) or an integer-valued size formula."""
    return isinstance(value, int) or (isinstance(value, sympy.Expr) and bool(value.is_integer))


def checked_sizes(sizes: Sequence[Any], op: str) -> tuple[DimExpr, ...]:
    """Each size an integer, not negative."""
    for s in sizes:
        if isinstance(s, bool) or not is_integral(s):
            raise ShapeError(f"{op}(): argument 'size' must be a tuple of ints, but found element of type "
                             f"{type(s).__name__}")
        require(ge(s, 0), lambda s=s: f"{op}: Trying to create tensor with negative dimension {fmt(s)}: "
                                            f"{shape_str(sizes)}")
    return tuple(as_dim(s) for s in sizes)


def size_arg(size: tuple, options: dict, op: str) -> tuple[DimExpr, ...]:
    """The sizes of ``f(2, 3)``, ``f((2, 3))``, ``f([2, 3])``, ``f(x.shape)`` or ``f(size=...)``."""
    if "size" in options:
        if size:
            raise ShapeError(f"{op}() got multiple values for argument 'size'")
        size = (options.pop("size"),)
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return checked_sizes(tuple(size[0]), op)
    if any(isinstance(s, (tuple, list)) for s in size):
        raise ShapeError(f"{op}() takes 1 positional argument but {len(size)} were given")
    if not size:
        raise ShapeError(f'{op}() missing 1 required positional arguments: "size"')
    return checked_sizes(size, op)


def sequence_size(size: Any, op: str) -> tuple[DimExpr, ...]:
    """A ``size`` that must be a tuple or list (``full``, ``randint``, ``new_full``)."""
    if not isinstance(size, (tuple, list)):
        raise ShapeError(f"{op}(): argument 'size' must be tuple of ints, not {type(size).__name__}")
    return checked_sizes(tuple(size), op)


def fill_dtype(value: Any, op: str) -> torch.dtype:
    """The dtype of a fill value's kind: bool, int64, the default float or complex dtype."""
    if isinstance(value, TensorMeta):
        if value.ndim:
            raise ShapeError(f"{op}(): argument 'fill_value' must be Number, not a {value.ndim}-dim Tensor")
        kind = value.dtype
        if kind == torch.bool:
            return torch.bool
        return scalar_dtype(1j if kind.is_complex else 1.0 if kind.is_floating_point else 1)
    return scalar_dtype(value)


def random_dtype(dtype: torch.dtype, shape: Sequence[DimExpr], op: str) -> torch.dtype:
    """Random floats need a floating or complex dtype; ``randn`` only checks when it has
    elements to fill, ``rand`` always."""
    if is_inexact(dtype):
        return dtype
    message = f"{op}: not implemented for '{dtype_name(dtype)}' (random floats need a floating or complex dtype)"
    if op.startswith("randn"):
        require_no_elements(shape, message)
        return dtype
    raise ShapeError(message)


# -- size-given factories --------------------------------------------------------------------------


@rule(torch.zeros, torch.ones, torch.empty)
def zeros(*size, **options) -> TensorMeta:
    """``zeros(*size)``/``ones``/``empty``: shape ``size``; ``dtype`` or the default float dtype."""
    shape = size_arg(size, options, "zeros")
    return TensorMeta(shape, factory_dtype("zeros", options))


@rule(torch.rand)
def rand(*size, **options) -> TensorMeta:
    """``rand(*size)``: as ``zeros``; the dtype must be floating or complex."""
    shape = size_arg(size, options, "rand")
    return TensorMeta(shape, random_dtype(factory_dtype("rand", options), shape, "rand"))


@rule(torch.randn)
def randn(*size, **options) -> TensorMeta:
    """``randn(*size)``: as ``rand``, but an integral dtype passes when there is nothing to fill."""
    shape = size_arg(size, options, "randn")
    return TensorMeta(shape, random_dtype(factory_dtype("randn", options), shape, "randn"))


@rule(torch.full)
def full(size, fill_value, **options) -> TensorMeta:
    """``full(size, value)``: shape ``size`` (a sequence); the dtype of the value's kind."""
    dtype = factory_dtype("full", options, fill_dtype(fill_value, "full"))
    check_number_fits(fill_value, dtype, "full")
    return TensorMeta(sequence_size(size, "full"), dtype)


@rule(torch.eye)
def eye(n, m=None, **options) -> TensorMeta:
    """``eye(n, m=n)``: shape ``(n, m)``."""
    if "m" in options:
        m = options.pop("m")
    cols = n if m is None else m
    for name, value in (("n", n), ("m", cols)):
        if isinstance(value, bool) or not is_integral(value):
            raise ShapeError(f"eye(): argument '{name}' must be int, not {type(value).__name__}")
        require(ge(value, 0), lambda name=name, value=value: f"{name} must be greater or equal to 0, got "
                                                                   f"{fmt(value)}")
    return TensorMeta((as_dim(n), as_dim(cols)), factory_dtype("eye", options))


# -- random integers ------------------------------------------------------------------------------


def _integer_bound(value: Any, name: str, op: str) -> Any:
    if isinstance(value, TensorMeta):
        raise DataDependentError(f"{op}: a tensor as '{name}' (its value is data)")
    if isinstance(value, bool) or not is_integral(value):
        raise ShapeError(f"{op}(): argument '{name}' must be int, not {type(value).__name__}")
    return value


def check_random_range(low: Any, high: Any, dtype: torch.dtype, op: str) -> None:
    """``low < high``, and ``[low, high - 1]`` representable in an integral ``dtype``."""
    require(gt(high, low),
            lambda: f"{op}: random_ expects 'from' to be less than 'to', but got from={fmt(low)} >= to={fmt(high)}")
    if dtype.is_floating_point or dtype.is_complex:
        return
    if dtype == torch.int64 and not (is_concrete(low) and is_concrete(high)):
        return  # size formulas always fit int64 (PyTorch's own size type)
    lowest, highest = (0, 1) if dtype == torch.bool else (torch.iinfo(dtype).min, torch.iinfo(dtype).max)
    require(ge(low, lowest), lambda: f"{op}: from is out of bounds for {dtype_name(dtype)}")
    require(ge(highest - high + 1, 0), lambda: f"{op}: to - 1 is out of bounds for {dtype_name(dtype)}")


def _bounds(args: list, options: dict, op: str) -> tuple[Any, Any]:
    """``(low, high)`` from ``(high,)`` or ``(low, high)`` and the keywords ``low=``/``high=``."""
    if len(args) > 2:
        raise ShapeError(f"{op}() takes at most 3 positional arguments")
    if len(args) == 2:
        low, high = args
    elif len(args) == 1 and "high" in options:
        low, high = args[0], options.pop("high")
    elif len(args) == 1:
        low, high = options.pop("low", 0), args[0]
    elif "high" in options:
        low, high = options.pop("low", 0), options.pop("high")
    else:
        raise ShapeError(f"{op}() missing the required argument 'high'")
    return _integer_bound(low, "low", op), _integer_bound(high, "high", op)


@rule(torch.randint)
def randint(*args, **options) -> TensorMeta:
    """``randint(high, size)``/``randint(low, high, size)``: shape ``size``; int64 by default."""
    args = list(args)
    if "size" in options:
        size = options.pop("size")
    elif args:
        size = args.pop()
    else:
        raise ShapeError("randint() missing the required argument 'size'")
    low, high = _bounds(args, options, "randint")
    dtype = factory_dtype("randint", options, torch.int64)
    check_random_range(low, high, dtype, "randint")
    return TensorMeta(sequence_size(size, "randint"), dtype)


# -- ranges ---------------------------------------------------------------------------------------


def _range_args(args: tuple, options: dict) -> tuple[Any, Any, Any]:
    """``(start, end, step)`` of ``arange(end)``, ``arange(start, end[, step])`` and keywords."""
    if len(args) > 3:
        raise ShapeError("arange() takes at most 3 positional arguments")
    if len(args) == 1 and "end" not in options:
        named = {"end": args[0]}
    else:
        named = dict(zip(("start", "end", "step"), args))
    for name in ("start", "end", "step"):
        if name in options:
            if name in named:
                raise ShapeError(f"arange() got multiple values for argument '{name}'")
            named[name] = options.pop(name)
    if "end" not in named:
        raise ShapeError("arange() missing the required argument 'end'")
    for name, value in named.items():
        if isinstance(value, TensorMeta):
            raise DataDependentError(f"arange: a tensor as '{name}' (the length would depend on its value)")
        scalar_dtype(value)
    return named.get("start", 0), named["end"], named.get("step", 1)


def _concrete_range_length(start, end, step, dtype: torch.dtype) -> int:
    """ATen's ``RangeFactories.cpp``: int64 ranges truncate the bounds to integers first;
    every other dtype computes ``ceil((end - start)/step)`` in double."""
    if dtype == torch.int64:
        start, end, step = int(start), int(end), int(step)
    else:
        start, end, step = float(start), float(end), float(step)
    if step == 0:
        raise ShapeError("arange: step must be nonzero")
    if (step > 0 and end < start) or (step < 0 and end > start):
        raise ShapeError(f"arange: upper bound and lower bound inconsistent with step sign "
                         f"(start={start}, end={end}, step={step})")
    if dtype == torch.int64:
        return -((start - end) // step)
    return math.ceil((end - start) / step)


def _symbolic_range_length(start, end, step) -> DimExpr:
    """``ceil((end - start)/step)`` for integer bounds, with ``step``'s sign decided."""
    if not all(is_integral(v) for v in (start, end, step)):
        raise UnsupportedOpError(f"arange({fmt(start)}, {fmt(end)}, {fmt(step)}): a symbolic range needs "
                                 f"integer start, end and step")
    positive = decide(gt(step, 0))
    if positive is None:
        raise UnsupportedOpError(f"arange: the sign of the step {fmt(step)} depends on the input")
    if not positive and is_concrete(step) and step == 0:
        raise ShapeError("arange: step must be nonzero")
    first, last = (start, end) if positive else (end, start)
    require(ge(last - first, 0),
            lambda: f"arange: upper bound and lower bound inconsistent with step sign "
                    f"(start={fmt(start)}, end={fmt(end)}, step={fmt(step)})")
    return ceildiv(last - first, step if positive else -step)


@rule(torch.arange)
def arange(*args, **options) -> TensorMeta:
    """``arange(end)``, ``arange(start, end, step=1)``: length ``ceil((end - start)/step)``;
    int64 when every bound is an integer, else the default float dtype.
    https://pytorch.org/docs/stable/generated/torch.arange.html"""
    start, end, step = _range_args(args, options)
    integral = all(is_integral(v) for v in (start, end, step))
    dtype = factory_dtype("arange", options, torch.int64 if integral else None)
    if dtype == torch.bool or dtype.is_complex:
        raise ShapeError(f"\"arange_cpu\" not implemented for '{dtype_name(dtype)}'")
    if all(not isinstance(v, sympy.Basic) for v in (start, end, step)):
        length = _concrete_range_length(start, end, step, dtype)
    else:
        length = _symbolic_range_length(start, end, step)
    return TensorMeta((length,), dtype, _range_values(start, step, length, dtype))


def _range_values(start, step, length: DimExpr, dtype: torch.dtype) -> Optional[tuple[DimExpr, DimExpr]]:
    """The first and last values of an integer ``arange``, known from its bounds (None for a
    float range, or bounds that are not integers)."""
    if dtype.is_floating_point or dtype == torch.bool or not all(
            is_integral(v) and not isinstance(v, bool) for v in (start, step)) or not is_concrete(step):
        return None
    first, last = start, start + step * (length - 1)
    return (first, last) if step > 0 else (last, first)


def _steps_dtype(start, end, options: dict, op: str) -> torch.dtype:
    for value in (start, end):
        if isinstance(value, TensorMeta) and value.ndim:
            raise ShapeError(f"{op} only supports 0-dimensional start and end tensors, but got tensor with "
                             f"{value.ndim} dimension(s).")
    complex_bounds = any(fill_dtype(v, op).is_complex for v in (start, end))
    inferred = scalar_dtype(1j) if complex_bounds else torch.get_default_dtype()
    dtype = factory_dtype(op, options, inferred)
    if complex_bounds and not dtype.is_complex:
        raise ShapeError(f"torch.{op}(): inferred dtype {dtype_name(inferred)} can't be safely cast to passed "
                         f"dtype {dtype_name(dtype)}")
    return dtype


def _steps(steps: Any, op: str) -> DimExpr:
    if isinstance(steps, bool) or not is_integral(steps):
        raise ShapeError(f"{op}(): argument 'steps' must be int, not {type(steps).__name__}")
    require(ge(steps, 0), lambda: f"{op}: number of steps must be non-negative, got {fmt(steps)}")
    return as_dim(steps)


@rule(torch.linspace)
def linspace(start, end, steps, **options) -> TensorMeta:
    """``linspace(start, end, steps)``: shape ``(steps,)``; the default float (or complex) dtype."""
    return TensorMeta((_steps(steps, "linspace"),), _steps_dtype(start, end, options, "linspace"))


@rule(torch.logspace)
def logspace(start, end, steps, base=10.0, **options) -> TensorMeta:
    """``logspace(start, end, steps, base)``: as ``linspace``."""
    return TensorMeta((_steps(steps, "logspace"),), _steps_dtype(start, end, options, "logspace"))


# -- *_like -----------------------------------------------------------------------------------------


@rule(torch.zeros_like, torch.ones_like, torch.empty_like)
def zeros_like(input, **options) -> TensorMeta:
    """``zeros_like(x)``/``ones_like``/``empty_like``: ``x``'s shape; ``dtype`` or ``x``'s."""
    x = tensor_arg(input, "zeros_like input")
    return TensorMeta(x.shape, factory_dtype("zeros_like", options, x.dtype))


@rule(torch.rand_like)
def rand_like(input, **options) -> TensorMeta:
    """``rand_like(x)``: as ``zeros_like``; the dtype must be floating or complex."""
    x = tensor_arg(input, "rand_like input")
    return TensorMeta(x.shape, random_dtype(factory_dtype("rand_like", options, x.dtype), x.shape, "rand_like"))


@rule(torch.randn_like)
def randn_like(input, **options) -> TensorMeta:
    """``randn_like(x)``: as ``rand_like``, but an integral dtype passes when ``x`` is empty."""
    x = tensor_arg(input, "randn_like input")
    return TensorMeta(x.shape, random_dtype(factory_dtype("randn_like", options, x.dtype), x.shape, "randn_like"))


@rule(Method("bernoulli_"))
def bernoulli_(input, p=0.5, *, generator=None) -> TensorMeta:
    """``x.bernoulli_(p)`` fills ``x`` in place (the noise of stochastic depth: torchvision's
    ``stochastic_depth``, timm's ``drop_path``): ``x``'s shape and dtype. A number ``p`` must
    lie in [0, 1]; a tensor ``p`` must expand to ``x``'s shape and be floating. A complex
    ``x``, or an integral ``p``, passes only when ``x`` has no elements (as on the CPU)."""
    x = tensor_arg(input, "bernoulli_ input")
    if isinstance(p, TensorMeta):
        empty = decide(eq(product(x.shape), 0))
        if empty is None:
            raise UnsupportedOpError(f"bernoulli_: PyTorch checks p's shape {shape_str(p.shape)} only where the tensor "
                                     f"{shape_str(x.shape)} has elements, and lazyfx cannot tell whether it has")
        if not empty:
            expect_inplace(x, [p.shape], "bernoulli_")
        if not p.dtype.is_floating_point:
            require_no_elements(x.shape, f"bernoulli_: not implemented for '{dtype_name(p.dtype)}' (p must be floating)")
    elif isinstance(p, (int, float)):
        if not 0 <= p <= 1:
            raise ShapeError(f"bernoulli_ expects p to be in [0, 1], but got p={p}")
    elif not isinstance(p, sympy.Expr):
        raise ShapeError(f"bernoulli_(): argument 'p' must be a number or a tensor, not {type(p).__name__}")
    if x.dtype.is_complex:
        require_no_elements(x.shape, f"bernoulli_: not implemented for '{dtype_name(x.dtype)}'")
    return TensorMeta(x.shape, x.dtype)


@rule(torch.full_like)
def full_like(input, fill_value, **options) -> TensorMeta:
    """``full_like(x, value)``: ``x``'s shape and dtype (not the value's)."""
    x = tensor_arg(input, "full_like input")
    fill_dtype(fill_value, "full_like")
    dtype = factory_dtype("full_like", options, x.dtype)
    check_number_fits(fill_value, dtype, "full_like")
    return TensorMeta(x.shape, dtype)


@rule(torch.randint_like)
def randint_like(input, *args, **options) -> TensorMeta:
    """``randint_like(x, high)``/``randint_like(x, low, high)``: ``x``'s shape and dtype."""
    x = tensor_arg(input, "randint_like input")
    low, high = _bounds(list(args), options, "randint_like")
    dtype = factory_dtype("randint_like", options, x.dtype)
    check_random_range(low, high, dtype, "randint_like")
    return TensorMeta(x.shape, dtype)


# -- Tensor.new_* ------------------------------------------------------------------------------------


@rule(Method("new_zeros"), Method("new_ones"), Method("new_empty"))
def new_zeros(input, *size, **options) -> TensorMeta:
    """``x.new_zeros(*size)``/``new_ones``/``new_empty``: shape ``size``; ``x``'s dtype unless given."""
    x = tensor_arg(input, "new_zeros self")
    shape = size_arg(size, options, "new_zeros")
    return TensorMeta(shape, factory_dtype("new_zeros", options, x.dtype))


@rule(Method("new_full"))
def new_full(input, size, fill_value, **options) -> TensorMeta:
    """``x.new_full(size, value)``: shape ``size`` (a sequence); ``x``'s dtype unless given."""
    x = tensor_arg(input, "new_full self")
    fill_dtype(fill_value, "new_full")
    dtype = factory_dtype("new_full", options, x.dtype)
    check_number_fits(fill_value, dtype, "new_full")
    return TensorMeta(sequence_size(size, "new_full"), dtype)


def data_shape(data: Any, dtype: torch.dtype, op: str, depth: int = 0) -> tuple[DimExpr, ...]:
    """The shape of nested sequences of numbers (all rows of a level equally long) that
    become a tensor of ``dtype``."""
    if isinstance(data, TensorMeta):
        return data.shape
    if not isinstance(data, (tuple, list)):
        scalar_dtype(data)
        return ()
    if not data:
        return (0,)
    inner = [_element_shape(item, dtype, op, depth + 1) for item in data]
    for shape in inner[1:]:
        if len(shape) != len(inner[0]) or any(a != b for a, b in zip(shape, inner[0])):
            raise ShapeError(f"{op}: expected sequence of length {fmt(inner[0][0]) if inner[0] else 'none'} at "
                             f"dim {depth + 1} (got {fmt(shape[0]) if shape else 'a number'})")
    return (len(data), *inner[0])


def _element_shape(item: Any, dtype: torch.dtype, op: str, depth: int) -> tuple:
    """A tensor inside a sequence stands for one number: it must hold exactly one element, and
    an integral result takes it as an index (so it must be integral too)."""
    if isinstance(item, TensorMeta):
        if not is_inexact(dtype) and is_inexact(item.dtype):
            raise ShapeError(f"{op}: only integer tensors of a single element can be converted to an index "
                             f"(a {dtype_name(item.dtype)} tensor in data for a {dtype_name(dtype)} result)")
        numel = product(item.shape)
        require_equal(numel, 1,
                      lambda: f"{op}: only one element tensors can be converted to Python scalars (got a tensor of "
                              f"size {shape_str(item.shape)})")
        return ()
    return data_shape(item, dtype, op, depth)


@rule(Method("new_tensor"))
def new_tensor(input, data, **options) -> TensorMeta:
    """``x.new_tensor(data)``: the shape of ``data`` (nested sequences or a tensor); ``x``'s dtype
    unless given."""
    x = tensor_arg(input, "new_tensor self")
    dtype = factory_dtype("new_tensor", options, x.dtype)
    return TensorMeta(data_shape(data, dtype, "new_tensor"), dtype)
