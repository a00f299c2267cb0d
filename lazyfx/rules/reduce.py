"""Reductions: sum/mean/prod, amax/amin, max/min, argmax/argmin, std/var, norms,
logsumexp, all/any, count_nonzero, cumsum/cumprod.

A reduction over ``dim`` removes those dims, or keeps each as a 1 with
``keepdim=True``. ``dim`` is an int, a tuple/list of ints (negative ones count
from the end, none repeated) or None for every dim; an empty tuple means every
dim for most ops but no dim for ``all``/``any``. ``axis=``/``keepdims=`` are
the NumPy spellings PyTorch also accepts. A 0-dim input takes dim 0 or -1 and
stays 0-dim. Reductions without an identity (max, argmax, amax, inf-norms)
reject an empty reduced dim.

Dtypes follow ATen's ``ReduceOps.cpp``: ``sum``/``prod``/``cumsum`` of bool or
integers give int64 unless ``dtype=`` says otherwise; ``mean``, ``std``/``var``
and norms need a floating or complex input (std/var/norms of complex are real);
indices are int64; ``all``/``any`` give bool (uint8 stays uint8).
https://pytorch.org/docs/stable/torch.html#reduction-ops
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch

from lazyfx.core.checks import require_equal, require_positive
from lazyfx.core.registry import Method, rule
from lazyfx.core.symbolic import DimExpr, product
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError
from lazyfx.rules._util import normalize_dim, shape_str, tensor_arg
from lazyfx.rules.compare import elementwise_extremum
from lazyfx.rules.elementwise import no_out

_UNSET: Any = type("Unset", (), {"__repr__": lambda self: "<unset>"})()
"""Default of an argument whose absence selects another overload (``x.max()`` vs ``x.max(dim)``)."""

_REAL = {torch.complex32: torch.float16, torch.complex64: torch.float32, torch.complex128: torch.float64}


# -- dims and dtypes -------------------------------------------------------------------------


def reduction_dims(x: TensorMeta, dim: Any, *, empty_means_all: bool = True) -> tuple[int, ...]:
    """The (non-negative) dims reduced by ``dim``: an int, a sequence of ints, or None for all."""
    if dim is None:
        return tuple(range(x.ndim))
    if isinstance(dim, (tuple, list)):
        if not dim:
            return tuple(range(x.ndim)) if empty_means_all else ()
        dims = tuple(normalize_dim(d, x.ndim) for d in dim)
        repeated = [d for i, d in enumerate(dims) if d in dims[:i]]
        if repeated:
            raise ShapeError(f"dim {repeated[0]} appears multiple times in the list of dims")
        return dims
    return (normalize_dim(dim, x.ndim),)


def reduced(x: TensorMeta, dims: Sequence[int], keepdim: bool, dtype: torch.dtype) -> TensorMeta:
    """``x`` with ``dims`` removed (or kept as 1s); a 0-dim input stays 0-dim."""
    shape = tuple(1 if i in dims else size for i, size in enumerate(x.shape) if keepdim or i not in dims)
    return TensorMeta(shape, dtype)


def numpy_options(op: str, dim: Any, keepdim: Any, options: dict) -> tuple[Any, Any]:
    """``dim``/``keepdim`` with their NumPy spellings ``axis``/``keepdims`` folded in."""
    options = dict(options)
    if "axis" in options:
        dim = options.pop("axis")
    if "keepdims" in options:
        keepdim = options.pop("keepdims")
    no_out(op, options.pop("out", None))
    if options:
        raise ShapeError(f"{op}() got an unexpected keyword argument '{next(iter(options))}'")
    return dim, keepdim


def is_inexact(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of ``abs()`` of a tensor of ``dtype`` (complex64 -> float32)."""
    return _REAL.get(dtype, dtype)


def accumulate_dtype(x: TensorMeta, dtype: Optional[torch.dtype]) -> torch.dtype:
    """``sum``/``prod``/``cumsum``: bool and integer inputs accumulate in int64."""
    if dtype is not None:
        return dtype
    return x.dtype if is_inexact(x.dtype) else torch.int64


def require_no_elements(shape: Sequence[DimExpr], message: str) -> None:
    """For a dtype PyTorch has no kernel for: only an input with no elements (which never
    reaches the kernel) gets through."""
    require_equal(product(shape), 0, message)


def require_nonempty(x: TensorMeta, dims: Sequence[int], op: str) -> None:
    """A reduction without an identity needs every reduced dim to have elements."""
    if x.ndim == 0:
        return
    for d in dims:
        require_positive(x.shape[d], lambda d=d: f"{op}(): Expected reduction dim {d} to have non-zero size "
                                                  f"(input of size {shape_str(x.shape)})")


# -- sum, mean, prod ---------------------------------------------------------------------------


@rule(torch.sum, Method("sum"))
def sum_(input, dim=None, keepdim=False, *, dtype=None, **options) -> TensorMeta:
    """``sum``: ``dim`` reduced (all by default); bool and integers sum to int64."""
    x = tensor_arg(input, "sum input")
    dim, keepdim = numpy_options("sum", dim, keepdim, options)
    return reduced(x, reduction_dims(x, dim), keepdim, accumulate_dtype(x, dtype))


@rule(torch.nansum, Method("nansum"))
def nansum(input, dim=None, keepdim=False, *, dtype=None, **options) -> TensorMeta:
    """``nansum``: as ``sum``; complex inputs are rejected."""
    x = tensor_arg(input, "nansum input")
    if x.dtype.is_complex:
        raise ShapeError("nansum on CPU does not support complex inputs")
    if dtype is not None and dtype.is_complex and x.dtype.is_floating_point:  # (integers just sum)
        require_no_elements(x.shape, f"\"nansum_cpu\" not implemented for '{dtype_name(dtype)}'")
    return sum_(x, dim, keepdim, dtype=dtype, **options)


@rule(torch.mean, Method("mean"))
def mean(input, dim=None, keepdim=False, *, dtype=None, **options) -> TensorMeta:
    """``mean``: as ``sum``, but the input (or ``dtype=``) must be floating or complex."""
    x = tensor_arg(input, "mean input")
    dim, keepdim = numpy_options("mean", dim, keepdim, options)
    if dtype is None and not is_inexact(x.dtype):
        raise ShapeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point or "
                         f"complex dtype. Got: {dtype_name(x.dtype)}")
    if dtype is not None and not is_inexact(dtype):
        raise ShapeError(f"mean(): could not infer output dtype. Optional dtype must be either a floating point "
                         f"or complex dtype. Got: {dtype_name(dtype)}")
    return reduced(x, reduction_dims(x, dim), keepdim, dtype or x.dtype)


@rule(torch.nanmean, Method("nanmean"))
def nanmean(input, dim=None, keepdim=False, *, dtype=None, **options) -> TensorMeta:
    """``nanmean``: as ``mean``, and the input itself must be floating (not complex) on CPU."""
    x = tensor_arg(input, "nanmean input")
    if not is_inexact(x.dtype):
        raise ShapeError(f"nanmean(): expected input to have floating point or complex dtype but got "
                         f"{dtype_name(x.dtype)}")
    if x.dtype.is_complex:  # it divides a nansum, which has no complex CPU kernel
        raise ShapeError("nanmean: nansum on CPU does not support complex inputs")
    nansum(x, dim, keepdim, dtype=dtype, **options)
    return mean(x, dim, keepdim, dtype=dtype, **options)


@rule(torch.prod, Method("prod"))
def prod(input, dim=_UNSET, keepdim=_UNSET, *, dtype=None, **options) -> TensorMeta:
    """``prod()`` is 0-dim; ``prod(dim, keepdim)`` reduces one int dim. Integers give int64."""
    x = tensor_arg(input, "prod input")
    dim, keepdim = numpy_options("prod", dim, keepdim, options)
    if dim is _UNSET:
        if keepdim is not _UNSET:
            raise ShapeError("prod() received an invalid combination of arguments: keepdim needs a dim")
        return reduced(x, reduction_dims(x, None), False, accumulate_dtype(x, dtype))
    if dim is None or isinstance(dim, (tuple, list)):
        raise ShapeError(f"prod(): argument 'dim' must be int, not {type(dim).__name__}")
    return reduced(x, reduction_dims(x, dim), keepdim is True, accumulate_dtype(x, dtype))


# -- extrema ------------------------------------------------------------------------------------


def _no_complex(x: TensorMeta, op: str) -> None:
    if x.dtype.is_complex:
        raise ShapeError(f"{op}(): does not support complex input")


@rule(torch.amax, torch.amin, Method("amax"), Method("amin"))
def amax(input, dim=(), keepdim=False, **options) -> TensorMeta:
    """``amax``/``amin``: ``dim`` reduced (all by default, ``()`` too); same dtype."""
    x = tensor_arg(input, "amax input")
    dim, keepdim = numpy_options("amax", dim, keepdim, options)
    if x.dtype.is_complex:  # no complex kernel, which an input without elements never reaches
        require_no_elements(x.shape, f"\"max_values_cpu\" not implemented for '{dtype_name(x.dtype)}'")
    dims = reduction_dims(x, dim)
    require_nonempty(x, dims, "amax")
    return reduced(x, dims, keepdim, x.dtype)


def _extremum(op: str, input, dim, keepdim, other, options):
    """``max(x)`` is 0-dim; ``max(x, dim, keepdim)`` a ``(values, indices)`` pair over one int dim;
    ``max(x, other)`` the elementwise maximum."""
    x = tensor_arg(input, f"{op} input")
    dim, keepdim = numpy_options(op, dim, keepdim, options)
    if isinstance(dim, TensorMeta) or other is not None:  # the binary overload: torch.maximum/minimum
        return elementwise_extremum(x, dim if other is None else other, op=op)
    _no_complex(x, op)
    if dim is _UNSET:
        if keepdim is not _UNSET:
            raise ShapeError(f"{op}() received an invalid combination of arguments: keepdim needs a dim")
        require_nonempty(x, range(x.ndim), op)
        return TensorMeta((), x.dtype)
    if dim is None or isinstance(dim, (tuple, list)):
        raise ShapeError(f"{op}() received an invalid combination of arguments: dim must be an int, got {dim!r}")
    dims = reduction_dims(x, dim)
    require_nonempty(x, dims, op)
    values = reduced(x, dims, keepdim is True, x.dtype)
    pair = (values, TensorMeta(values.shape, torch.int64))
    return getattr(torch.return_types, op)(pair)


@rule(torch.max, Method("max"))
def max_(input, dim=_UNSET, keepdim=_UNSET, *, other=None, **options):
    """``max(x) -> ()``; ``max(x, dim) -> (values, int64 indices)`` with ``dim`` reduced;
    ``max(x, y)`` is ``torch.maximum``."""
    return _extremum("max", input, dim, keepdim, other, options)


@rule(torch.min, Method("min"))
def min_(input, dim=_UNSET, keepdim=_UNSET, *, other=None, **options):
    """As ``max``."""
    return _extremum("min", input, dim, keepdim, other, options)


@rule(torch.argmax, torch.argmin, Method("argmax"), Method("argmin"))
def argmax(input, dim=None, keepdim=False, **options) -> TensorMeta:
    """``argmax``/``argmin``: int64 indices over ``dim``; ``dim=None`` indexes the flattened
    input (0-dim, or all 1s with ``keepdim``)."""
    x = tensor_arg(input, "argmax input")
    dim, keepdim = numpy_options("argmax", dim, keepdim, options)
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise ShapeError(f"argmax(): does not support {'bool' if x.dtype == torch.bool else 'complex'} input")
    if isinstance(dim, (tuple, list)):
        raise ShapeError(f"argmax(): argument 'dim' must be int, not {type(dim).__name__}")
    dims = reduction_dims(x, dim)
    require_nonempty(x, dims, "argmax")
    return reduced(x, dims, keepdim, torch.int64)


# -- moments ------------------------------------------------------------------------------------


def _moment_args(op: str, args: tuple, dim, unbiased, keepdim, correction) -> tuple[Any, bool]:
    """``(dim, keepdim)`` from the overloads ``std(x, unbiased)``, ``std(x, dim, unbiased, keepdim)``
    and ``std(x, dim=None, *, correction=None, keepdim=False)``."""
    args = list(args)
    if args and isinstance(args[0], bool):
        if len(args) > 1 or dim is not _UNSET or correction is not None:
            raise ShapeError(f"{op}() received an invalid combination of arguments: std(input, unbiased) "
                             f"takes no other arguments")
        return None, False
    given_unbiased = unbiased is not None or len(args) > 1
    if len(args) > 3:
        raise ShapeError(f"{op}() takes at most 4 positional arguments")
    if args:
        if dim is not _UNSET:
            raise ShapeError(f"{op}() got multiple values for argument 'dim'")
        dim = args[0]
    dim = None if dim is _UNSET else dim
    if len(args) > 2:
        keepdim = args[2]
    if given_unbiased and correction is not None:
        raise ShapeError(f"{op}() received an invalid combination of arguments: unbiased and correction")
    return dim, bool(keepdim)


def _moment(op: str, input, args, dim, unbiased, keepdim, correction, options) -> TensorMeta:
    x = tensor_arg(input, f"{op} input")
    dim, keepdim = numpy_options(op, dim, keepdim, options)
    dim, keepdim = _moment_args(op, args, dim, unbiased, keepdim, correction)
    if not is_inexact(x.dtype):
        raise ShapeError(f"{op} only supports floating point and complex dtypes, got {dtype_name(x.dtype)}")
    return reduced(x, reduction_dims(x, dim), keepdim, real_dtype(x.dtype))


@rule(torch.std, Method("std"))
def std(input, *args, dim=_UNSET, unbiased=None, keepdim=False, correction=None, **options) -> TensorMeta:
    """``std``: ``dim`` reduced (all by default); floating or complex input, real result."""
    return _moment("std", input, args, dim, unbiased, keepdim, correction, options)


@rule(torch.var, Method("var"))
def var(input, *args, dim=_UNSET, unbiased=None, keepdim=False, correction=None, **options) -> TensorMeta:
    """``var``: as ``std``."""
    return _moment("var", input, args, dim, unbiased, keepdim, correction, options)


@rule(torch.std_mean)
def std_mean(input, *args, dim=_UNSET, unbiased=None, keepdim=False, correction=None, **options):
    """``(std, mean)``: both reduced alike; the mean keeps a complex dtype."""
    spread = _moment("std_mean", input, args, dim, unbiased, keepdim, correction, options)
    return spread, TensorMeta(spread.shape, input.dtype)


@rule(torch.var_mean)
def var_mean(input, *args, dim=_UNSET, unbiased=None, keepdim=False, correction=None, **options):
    """``(var, mean)``: both reduced alike; the mean keeps a complex dtype."""
    spread = _moment("var_mean", input, args, dim, unbiased, keepdim, correction, options)
    return spread, TensorMeta(spread.shape, input.dtype)


@rule(torch.logsumexp, Method("logsumexp"))
def logsumexp(input, dim, keepdim=False, **options) -> TensorMeta:
    """``logsumexp``: ``dim`` (required, int or sequence) reduced; integers give the default float."""
    x = tensor_arg(input, "logsumexp input")
    dim, keepdim = numpy_options("logsumexp", dim, keepdim, options)
    if dim is None:
        raise ShapeError("logsumexp(): argument 'dim' must be tuple of ints, not NoneType")
    dims = reduction_dims(x, dim)
    if isinstance(dim, (tuple, list)) and not dim and not keepdim and x.ndim:
        # ATen subtracts amax(dim=(), keepdim=True), which reduces every dim, from a
        # sum(dim=()) that does too but drops them: the shapes clash.
        raise ShapeError(f"logsumexp: output with shape [] doesn't match the broadcast shape {[1] * x.ndim}")
    return reduced(x, dims, keepdim, x.dtype if is_inexact(x.dtype) else torch.get_default_dtype())


# -- logical reductions and counts ----------------------------------------------------------------


@rule(torch.all, torch.any, Method("all"), Method("any"))
def all_(input, dim=None, keepdim=False, **options) -> TensorMeta:
    """``all``/``any``: ``dim`` reduced (all for None; none for ``()``); bool, uint8 stays uint8."""
    x = tensor_arg(input, "all input")
    dim, keepdim = numpy_options("all", dim, keepdim, options)
    dims = reduction_dims(x, dim, empty_means_all=False)
    return reduced(x, dims, keepdim, torch.uint8 if x.dtype == torch.uint8 else torch.bool)


@rule(torch.count_nonzero, Method("count_nonzero"))
def count_nonzero(input, dim=None) -> TensorMeta:
    """``count_nonzero``: ``dim`` reduced (all for None or ``()``), no keepdim; int64."""
    x = tensor_arg(input, "count_nonzero input")
    return reduced(x, reduction_dims(x, dim), False, torch.int64)


@rule(torch.cumsum, torch.cumprod, Method("cumsum"), Method("cumprod"))
def cumsum(input, dim, *, dtype=None, out=None) -> TensorMeta:
    """``cumsum``/``cumprod`` along ``dim`` (required): same shape; integers accumulate in int64."""
    x = tensor_arg(input, "cumsum input")
    no_out("cumsum", out)
    if isinstance(dim, (tuple, list)) or dim is None:
        raise ShapeError(f"cumsum(): argument 'dim' must be int, not {type(dim).__name__}")
    normalize_dim(dim, x.ndim)
    if dtype == torch.bool and x.ndim:  # a 0-dim input is copied, not accumulated
        require_no_elements(x.shape, "\"cumsum_out_cpu\" not implemented for 'Bool' (dtype=torch.bool)")
    return TensorMeta(x.shape, accumulate_dtype(x, dtype))


# -- norms -----------------------------------------------------------------------------------------


def norm_dtype(x: TensorMeta, dtype: Optional[torch.dtype], op: str) -> torch.dtype:
    """A norm's (real) result dtype; ``dtype=`` must widen the input's dtype without changing kind."""
    if not is_inexact(x.dtype):
        raise ShapeError(f"{op}: Expected a floating point or complex tensor as input. Got {dtype_name(x.dtype)}")
    if dtype is None:
        return real_dtype(x.dtype)
    if not is_inexact(dtype):
        raise ShapeError(f"{op}: dtype should be floating point or complex, but got {dtype_name(dtype)}")
    if dtype.is_complex != x.dtype.is_complex:
        kind = "complex" if x.dtype.is_complex else "real"
        raise ShapeError(f"{op}: dtype should be {kind} for {kind} inputs, but got {dtype_name(dtype)}")
    if torch.promote_types(x.dtype, dtype) != dtype:
        raise ShapeError(f"{op}: the dtype of the input ({dtype_name(x.dtype)}) should be convertible without "
                         f"narrowing to the specified dtype ({dtype_name(dtype)})")
    return real_dtype(dtype)


@rule(torch.linalg.vector_norm)
def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None) -> TensorMeta:
    """``linalg.vector_norm``: ``dim`` reduced (all for None or ``()``); a real floating result.
    https://pytorch.org/docs/stable/generated/torch.linalg.vector_norm.html"""
    x = tensor_arg(x, "vector_norm input")
    no_out("linalg.vector_norm", out)
    if isinstance(ord, (str, TensorMeta)) or ord is None:
        raise ShapeError(f"linalg_vector_norm(): argument 'ord' must be Number, not {type(ord).__name__}")
    result = norm_dtype(x, dtype, "linalg.vector_norm")
    dims = reduction_dims(x, dim)
    if ord < 0 or ord == math.inf:  # min/max-like norms have no identity on an empty dim
        require_nonempty(x, dims, f"linalg.vector_norm (ord={ord})")
    return reduced(x, dims, keepdim, result)


def matrix_norm(x: TensorMeta, ord: str, dim: Sequence[Any], keepdim: bool, dtype) -> TensorMeta:
    """``linalg.matrix_norm`` with ``ord`` 'fro' or 'nuc': the two dims in ``dim`` reduced."""
    op = "linalg.matrix_norm"
    if ord not in ("fro", "nuc"):
        raise ShapeError(f"{op}: Order {ord} not supported.")
    if x.ndim < 2:
        raise ShapeError(f"{op}: The input tensor A must have at least 2 dimensions.")
    result = norm_dtype(x, dtype, op)
    if len(dim) != 2:
        raise ShapeError(f"{op}: dim must be a 2-tuple. Got {' '.join(str(d) for d in dim)}")
    dims = tuple(normalize_dim(d, x.ndim) for d in dim)
    if dims[0] == dims[1]:
        raise ShapeError(f"{op}: dims must be different. Got {tuple(dim)}")
    if ord == "nuc" and (dtype or x.dtype) in (torch.float16, torch.bfloat16):
        raise ShapeError(f"{op}: Low precision dtypes not supported. Got {dtype_name(dtype or x.dtype)}")
    return reduced(x, dims, keepdim, result)


@rule(torch.norm)
def norm(input, p="fro", dim=None, keepdim=False, out=None, dtype=None) -> TensorMeta:
    """``torch.norm`` as ``torch/functional.py`` dispatches it: 'fro' over at most two dims and
    numeric ``p`` are vector norms; 'nuc' (and 'fro' over more dims) a matrix norm."""
    x = tensor_arg(input, "norm input")
    no_out("norm", out)
    dims = [dim] if isinstance(dim, int) else dim
    if isinstance(p, str):
        if p == "fro" and (dims is None or len(dims) <= 2):
            return vector_norm(x, 2, dims, keepdim, dtype=dtype)
        return matrix_norm(x, p, list(range(x.ndim)) if dims is None else dims, keepdim, dtype)
    return vector_norm(x, 2.0 if p is None else p, dims, keepdim, dtype=dtype)


@rule(Method("norm"))
def norm_method(input, p="fro", dim=None, keepdim=False, dtype=None) -> TensorMeta:
    """``Tensor.norm`` is ``torch.norm``."""
    return norm(input, p, dim, keepdim, dtype=dtype)
