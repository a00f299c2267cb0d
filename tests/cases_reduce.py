"""Differential cases for reductions, comparisons/selection and factories (see tests/cases.py
for the conventions). Every key of lazyfx/rules/{reduce,compare,factory}.py is reached by
the case named after it."""

from __future__ import annotations

import math
import operator

import torch
from hypothesis import strategies as st

from cases import FLOAT, case, example, mostly, sizes
from differential import Example, fn_module
from lazyfx.core.registry import Method

F64, I64, I32, U8, BOOL, HALF, C64 = (torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool,
                                      torch.float16, torch.complex64)
ANY_DTYPE = [FLOAT, FLOAT, F64, HALF, I64, I32, U8, BOOL, C64]


def invoke(key, x, *args, **kwargs):
    """``key(x, ...)`` for a function key, ``x.name(...)`` for a method key."""
    if isinstance(key, Method):
        return getattr(x, key.name)(*args, **kwargs)
    return key(x, *args, **kwargs)


def traced(key) -> bool:
    """Whether torch.fx records a call whose arguments PyTorch refuses: for a method it does (and
    the rule must refuse them); a torch function's argument parser raises while tracing, before
    any rule runs, so such forms are not drawn for function keys."""
    return isinstance(key, Method)


def unary(key, *args, **kwargs):
    return fn_module(lambda x: invoke(key, x, *args, **kwargs), 1, f"{key}{args}{kwargs}")


def concrete(example_: Example) -> Example:
    """The example without symbolic dims (for forms lazyfx only answers for concrete sizes)."""
    example_.symbolic = None
    return example_


def a_shape(draw, lo_rank: int = 0, hi_rank: int = 4, lo: int = 1, hi: int = 4) -> tuple:
    return sizes(draw, draw(st.integers(lo_rank, hi_rank)), lo, hi)


def maybe_empty(draw, shape: tuple) -> tuple:
    """Sometimes one size is 0 (reductions without an identity reject reducing it)."""
    if shape and draw(st.integers(0, 7)) == 0:
        i = draw(st.integers(0, len(shape) - 1))
        shape = shape[:i] + (0,) + shape[i + 1:]
    return shape


def a_dim(draw, rank: int):
    """A single dim, sometimes out of range."""
    r = max(rank, 1)
    return mostly(draw, draw(st.integers(-r, r - 1)), st.integers(-r - 1, r))


def some_dims(draw, rank: int, *, none: bool = True):
    """None, an int, or a tuple/list of dims (sometimes empty, repeated or out of range)."""
    r = max(rank, 1)
    items = st.lists(st.integers(-r, r - 1), max_size=min(rank, 3) + 1)
    kinds = [st.integers(-r, r - 1), items.map(tuple), items]
    if none:
        kinds.append(st.none())
    dims = draw(st.one_of(*kinds))
    if isinstance(dims, int):
        return mostly(draw, dims, st.integers(-r - 1, r))
    return dims


def broadcastable(draw, shape: tuple) -> tuple:
    """A shape that broadcasts with ``shape`` (sometimes one that does not)."""
    out = [mostly(draw, d, st.sampled_from([1, 2, 3])) if draw(st.booleans()) else 1 for d in shape]
    out = tuple(out[draw(st.integers(0, len(out))):])
    if draw(st.booleans()):
        out = (draw(st.integers(1, 2)),) + out
    return out


# -- reductions ------------------------------------------------------------------------------------

SUM_KEYS = [torch.sum, Method("sum"), torch.nansum, Method("nansum"), torch.mean, Method("mean"),
            torch.nanmean, Method("nanmean")]


@case("sum/mean", over=SUM_KEYS)
def sum_case(draw, key):
    shape = maybe_empty(draw, a_shape(draw))
    dim, keepdim = some_dims(draw, len(shape)), draw(st.booleans())
    dtype = draw(st.sampled_from([None, None, F64, I64, HALF, C64]))
    form = draw(st.sampled_from(["none", "dim", "dim keepdim", "kw", "axis", "dtype only"]))
    args, kwargs = {
        "none": ((), {}),
        "dim": ((dim,), {}),
        "dim keepdim": ((dim, keepdim), {}),
        "kw": ((), {"dim": dim, "keepdim": keepdim, "dtype": dtype}),
        "axis": ((), {"axis": dim, "keepdims": keepdim}),
        "dtype only": ((), {"dtype": dtype}),
    }[form]
    return example(draw, unary(key, *args, **kwargs), shape, dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("prod", over=[torch.prod, Method("prod")])
def prod_case(draw, key):
    shape = a_shape(draw)
    dim = a_dim(draw, len(shape))
    invalid = ["keepdim only"] if traced(key) else []
    if traced(key):
        dim = mostly(draw, dim, st.sampled_from([(0,), None]))
    dtype = draw(st.sampled_from([None, None, F64, I32]))
    form = draw(st.sampled_from(["none", "dim", "dim keepdim", "kw"] + invalid))
    args, kwargs = {
        "none": ((), {"dtype": dtype} if dtype else {}),
        "dim": ((dim,), {}),
        "dim keepdim": ((dim, draw(st.booleans())), {"dtype": dtype}),
        "kw": ((), {"dim": dim, "keepdim": draw(st.booleans())}),
        "keepdim only": ((), {"keepdim": True}),
    }[form]
    return example(draw, unary(key, *args, **kwargs), shape, dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("amax/amin", over=[torch.amax, torch.amin, Method("amax"), Method("amin")])
def amax_case(draw, key):
    shape = maybe_empty(draw, a_shape(draw))
    dim, keepdim = some_dims(draw, len(shape)), draw(st.booleans())
    form = draw(st.sampled_from(["none", "dim", "dim keepdim", "kw"]))
    args, kwargs = {"none": ((), {}), "dim": ((dim,), {}), "dim keepdim": ((dim, keepdim), {}),
                    "kw": ((), {"dim": dim, "keepdim": keepdim})}[form]
    return example(draw, unary(key, *args, **kwargs), shape, dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("max/min", over=[torch.max, torch.min, Method("max"), Method("min")])
def max_case(draw, key):
    invalid = ["keepdim only"] if traced(key) else []
    form = draw(st.sampled_from(["all", "dim", "dim keepdim", "kw", "binary", "other kw"] + invalid))
    shape = a_shape(draw)
    if form not in ("binary", "other kw"):  # (a 0 broadcasting with a symbolic size is another story)
        shape = maybe_empty(draw, shape)
    dim, keepdim = a_dim(draw, len(shape)), draw(st.booleans())
    if traced(key):
        dim = mostly(draw, dim, st.sampled_from([(0,), None]))
    pick = draw(st.sampled_from([None, 0, 1]))

    def forward(x, y):
        if form == "binary":
            return invoke(key, x, y)
        if form == "other kw":
            return invoke(key, x, other=y)
        args, kwargs = {"all": ((), {}), "dim": ((dim,), {}), "dim keepdim": ((dim, keepdim), {}),
                        "kw": ((), {"dim": dim, "keepdim": keepdim}), "keepdim only": ((), {"keepdim": True})}[form]
        out = invoke(key, x, *args, **kwargs)
        return out if pick is None or form in ("all", "keepdim only") else out[pick]

    dtypes = [draw(st.sampled_from(ANY_DTYPE)), draw(st.sampled_from([FLOAT, F64, I64, BOOL]))]
    module = fn_module(forward, 2, f"{key} {form} dim={dim} keepdim={keepdim} [{pick}]")
    return example(draw, module, shape, broadcastable(draw, shape), dtypes=dtypes)


@case("argmax/argmin", over=[torch.argmax, torch.argmin, Method("argmax"), Method("argmin")])
def argmax_case(draw, key):
    shape = maybe_empty(draw, a_shape(draw))
    dim = draw(st.one_of(st.none(), st.just(a_dim(draw, len(shape)))))
    if traced(key):
        dim = mostly(draw, dim, st.just((0,)))
    keepdim = draw(st.booleans())
    form = draw(st.sampled_from(["none", "dim", "dim keepdim", "kw"]))
    args, kwargs = {"none": ((), {}), "dim": ((dim,), {}), "dim keepdim": ((dim, keepdim), {}),
                    "kw": ((), {"dim": dim, "keepdim": keepdim})}[form]
    return example(draw, unary(key, *args, **kwargs), shape, dtypes=[draw(st.sampled_from(ANY_DTYPE))])


MOMENT_KEYS = [torch.std, torch.var, Method("std"), Method("var"), torch.std_mean, torch.var_mean]


@case("std/var", over=MOMENT_KEYS)
def std_case(draw, key):
    shape = a_shape(draw)
    dim, keepdim, unbiased = some_dims(draw, len(shape)), draw(st.booleans()), draw(st.booleans())
    invalid = ["both", "unbiased and dim kw"] if traced(key) else []
    form = draw(st.sampled_from(["none", "unbiased", "dim", "dim unbiased", "dim unbiased keepdim",
                                 "correction", "unbiased kw"] + invalid))
    args, kwargs = {
        "none": ((), {}),
        "unbiased": ((unbiased,), {}),
        "dim": ((dim,), {}),
        "dim unbiased": ((dim, unbiased), {}),
        "dim unbiased keepdim": ((dim, unbiased, keepdim), {}),
        "correction": ((dim,), {"correction": draw(st.integers(0, 2)), "keepdim": keepdim}),
        "unbiased kw": ((), {"dim": dim, "unbiased": unbiased, "keepdim": keepdim}),
        "both": ((dim, unbiased), {"correction": 1}),
        "unbiased and dim kw": ((unbiased,), {"dim": dim}),
    }[form]
    dtype = draw(st.sampled_from([FLOAT, FLOAT, F64, HALF, C64, I64, BOOL]))
    return example(draw, unary(key, *args, **kwargs), shape, dtypes=[dtype])


NORM_ORDERS = [None, "fro", "nuc", 1, 2, 0, 3.5, math.inf, -math.inf, -1, "abc"]


@case("norm", over=[torch.norm, Method("norm"), torch.linalg.vector_norm])
def norm_case(draw, key):
    shape = maybe_empty(draw, a_shape(draw))
    rank = len(shape)
    dim = draw(st.one_of(st.none(), st.just(a_dim(draw, rank)),
                         st.lists(st.integers(-max(rank, 1), max(rank, 1) - 1), max_size=3).map(tuple)))
    p = draw(st.sampled_from(NORM_ORDERS))
    if key is torch.linalg.vector_norm:
        p = p if not isinstance(p, str) and p is not None else 2
    keepdim = draw(st.booleans())
    dtype = draw(st.sampled_from([None, None, F64, HALF, I64, torch.complex128]))
    form = draw(st.sampled_from(["none", "p", "p dim", "p dim keepdim", "kw"]))
    args, kwargs = {"none": ((), {}), "p": ((p,), {}), "p dim": ((p, dim), {}),
                    "p dim keepdim": ((p, dim, keepdim), {}), "kw": ((p,), {"dim": dim, "keepdim": keepdim,
                                                                             "dtype": dtype})}[form]
    input_dtype = draw(st.sampled_from([FLOAT, FLOAT, F64, HALF, C64, I64]))
    return example(draw, unary(key, *args, **kwargs), shape, dtypes=[input_dtype])


@case("logsumexp", over=[torch.logsumexp, Method("logsumexp")])
def logsumexp_case(draw, key):
    shape = a_shape(draw)
    dim = some_dims(draw, len(shape), none=traced(key))
    keepdim = draw(st.booleans())
    form = draw(st.sampled_from(["dim", "dim keepdim", "kw"]))
    args, kwargs = {"dim": ((dim,), {}), "dim keepdim": ((dim, keepdim), {}),
                    "kw": ((), {"dim": dim, "keepdim": keepdim})}[form]
    return example(draw, unary(key, *args, **kwargs), shape, dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("all/any", over=[torch.all, torch.any, Method("all"), Method("any")])
def all_case(draw, key):
    shape = a_shape(draw)
    dim, keepdim = some_dims(draw, len(shape)), draw(st.booleans())
    form = draw(st.sampled_from(["none", "dim", "dim keepdim", "kw"]))
    args, kwargs = {"none": ((), {}), "dim": ((dim,), {}), "dim keepdim": ((dim, keepdim), {}),
                    "kw": ((), {"dim": dim, "keepdim": keepdim})}[form]
    if form == "dim keepdim" and dim is None:
        args, kwargs = (), {"dim": None, "keepdim": keepdim}
    return example(draw, unary(key, *args, **kwargs), shape, dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("count_nonzero", over=[torch.count_nonzero, Method("count_nonzero")])
def count_nonzero_case(draw, key):
    shape = a_shape(draw)
    dim = some_dims(draw, len(shape))
    module = unary(key) if draw(st.booleans()) else unary(key, dim)
    return example(draw, module, shape, dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("cumsum/cumprod", over=[torch.cumsum, torch.cumprod, Method("cumsum"), Method("cumprod")])
def cumsum_case(draw, key):
    shape = maybe_empty(draw, a_shape(draw))
    dim = a_dim(draw, len(shape))
    dtype = draw(st.sampled_from([None, None, I32, F64, BOOL]))
    module = unary(key, dim, dtype=dtype) if dtype else unary(key, dim)
    return example(draw, module, shape, dtypes=[draw(st.sampled_from(ANY_DTYPE))])


# -- comparisons and logical ops --------------------------------------------------------------------

OPERATOR_COMPARISONS = [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]
COMPARISON_KEYS = OPERATOR_COMPARISONS + [
    torch.eq, torch.ne, torch.not_equal, torch.lt, torch.less, torch.le, torch.less_equal, torch.gt,
    torch.greater, torch.ge, torch.greater_equal,
    Method("eq"), Method("ne"), Method("lt"), Method("le"), Method("gt"), Method("ge"),
]
BINARY_DTYPES = [FLOAT, FLOAT, F64, I64, I32, BOOL, U8, C64]


def binary(key):
    return lambda x, y: invoke(key, x, y)


@case("comparisons", over=COMPARISON_KEYS)
def comparison_case(draw, key):
    shape = a_shape(draw, hi_rank=3)
    other = broadcastable(draw, shape)
    if draw(st.booleans()):
        shape, other = other, shape
    dtypes = [draw(st.sampled_from(BINARY_DTYPES)) for _ in range(2)]
    if draw(st.integers(0, 3)) == 0:  # against a number
        scalar = draw(st.sampled_from([0, 1.5, True, -2]))
        return example(draw, fn_module(lambda x: invoke(key, x, scalar), 1, f"{key}({scalar})"), shape,
                       dtypes=dtypes[:1])
    return example(draw, fn_module(binary(key), 2, str(key)), shape, other, dtypes=dtypes)


@case("size comparisons", over=OPERATOR_COMPARISONS)
def size_comparison_case(draw, op):
    """Sizes compare to Python bools: decided under symbols for some forms, concretely for all."""
    decided = draw(st.booleans())
    k = draw(st.integers(-1, 1))
    if decided:
        form = draw(st.sampled_from(["size+k vs size", "size vs 0", "shape vs own shape", "shape vs list"]))
    else:
        form = draw(st.sampled_from(["size vs k", "size vs size", "shape vs shape", "shape vs tuple",
                                     "shape vs float"]))
    value = draw(st.integers(1, 4))
    forms = {
        "size+k vs size": lambda x, y: op(x.size(0) + k, x.size(0)),
        "size vs 0": lambda x, y: op(x.size(-1), 0),
        "shape vs own shape": lambda x, y: op(x.shape, x.size()),
        "shape vs list": lambda x, y: op(x.shape, [value]) if op in (operator.eq, operator.ne) else op(0, 1),
        "size vs k": lambda x, y: op(x.size(0), value),
        "size vs size": lambda x, y: op(x.size(0), y.size(-1)),
        "shape vs shape": lambda x, y: op(x.shape, y.shape),
        "shape vs tuple": lambda x, y: op(x.shape, (value, 2)),
        "shape vs float": lambda x, y: op(x.size(0), value - 0.5),
    }
    shapes = (sizes(draw, draw(st.integers(1, 2)), 1, 4), sizes(draw, draw(st.integers(1, 2)), 1, 4))
    ex = example(draw, fn_module(forms[form], 2, f"{op.__name__}: {form} ({k}, {value})"), *shapes)
    return ex if decided else concrete(ex)


LOGICAL_BINARY = [torch.logical_and, torch.logical_or, torch.logical_xor,
                  Method("logical_and"), Method("logical_or"), Method("logical_xor")]


@case("logical and/or/xor", over=LOGICAL_BINARY)
def logical_binary_case(draw, key):
    shape = a_shape(draw, hi_rank=3)
    dtypes = [draw(st.sampled_from(BINARY_DTYPES)) for _ in range(2)]
    if traced(key) and draw(st.integers(0, 9)) == 0:  # a number is not accepted
        return example(draw, fn_module(lambda x: invoke(key, x, 1), 1, f"{key}(1)"), shape, dtypes=dtypes[:1])
    return example(draw, fn_module(binary(key), 2, str(key)), shape, broadcastable(draw, shape), dtypes=dtypes)


PREDICATES = [torch.logical_not, Method("logical_not"), torch.isnan, torch.isinf, torch.isfinite,
              Method("isnan"), Method("isinf"), Method("isfinite")]


@case("predicates", over=PREDICATES)
def predicate_case(draw, key):
    return example(draw, unary(key), a_shape(draw), dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("bitwise operators", over=[operator.and_, operator.or_, operator.xor])
def bitwise_case(draw, op):
    shape = a_shape(draw, hi_rank=3)
    dtypes = [draw(st.sampled_from([BOOL, BOOL, I64, U8, I32, FLOAT])) for _ in range(2)]
    form = draw(st.sampled_from(["tensors", "tensor number", "number tensor", "conditions", "ints"]))
    number = draw(st.sampled_from([True, False, 1, 3, 1.5]))
    k = draw(st.integers(1, 4))
    forms = {
        "tensors": lambda x, y: op(x, y),
        "tensor number": lambda x, y: op(x, number),
        "number tensor": lambda x, y: op(number, y),
        "conditions": lambda x, y: op(x.size(0) >= 1, y.size(-1) > 0),
        "ints": lambda x, y: op(x.size(0), k),
    }
    ex = example(draw, fn_module(forms[form], 2, f"{op.__name__}: {form} ({number}, {k})"), shape,
                 broadcastable(draw, shape), dtypes=dtypes)
    return concrete(ex) if form == "ints" else ex


@case("invert", over=[operator.invert])
def invert_case(draw, op):
    if draw(st.booleans()):
        return concrete(example(draw, fn_module(lambda x: ~x.size(0), 1, "~size"), a_shape(draw, 1)))
    return example(draw, fn_module(operator.invert, 1, "~"), a_shape(draw), dtypes=[draw(st.sampled_from(ANY_DTYPE))])


# -- selection -----------------------------------------------------------------------------------------


@case("where", over=[torch.where, Method("where")])
def where_case(draw, key):
    shape = a_shape(draw, hi_rank=3)
    a, b = broadcastable(draw, shape), broadcastable(draw, shape)
    cond_dtype = mostly(draw, BOOL, st.sampled_from([U8, FLOAT]))
    dtypes = [cond_dtype, draw(st.sampled_from(BINARY_DTYPES)), draw(st.sampled_from(BINARY_DTYPES))]
    numbers = [draw(st.sampled_from([0, 1.5, True])) for _ in range(2)]
    form = draw(st.sampled_from(["tensors", "number other", "number input", "numbers"]))
    if key is not torch.where and form in ("number input", "numbers"):
        form = "tensors"

    def forward(c, x, y):
        x_ = numbers[0] if form in ("number input", "numbers") else x
        y_ = numbers[1] if form in ("number other", "numbers") else y
        return torch.where(c, x_, y_) if key is torch.where else x_.where(c, y_)

    return example(draw, fn_module(forward, 3, f"{key} {form} {numbers}"), shape, a, b, dtypes=dtypes)


CLAMP_KEYS = [torch.clamp, torch.clip, Method("clamp"), Method("clip"), torch.clamp_min, torch.clamp_max,
              Method("clamp_min"), Method("clamp_max"), Method("clamp_"), Method("clip_")]


@case("clamp", over=CLAMP_KEYS)
def clamp_case(draw, key):
    shape = a_shape(draw, hi_rank=3)
    dtypes = [draw(st.sampled_from([FLOAT, FLOAT, F64, I64, I32, BOOL, C64])) for _ in range(3)]
    numbers = [draw(st.sampled_from([None, 0, 1, 0.5, -1.5, 1j])) for _ in range(2)]
    form = draw(st.sampled_from(["numbers", "tensors", "min tensor", "max tensor", "mixed"]))
    if form == "mixed" and dtypes[1] == C64:  # (a complex 0-dim bound is accepted or not by its value)
        dtypes[1] = F64
    one_bound = key in (torch.clamp_min, torch.clamp_max, Method("clamp_min"), Method("clamp_max"))

    def forward(x, lo, hi):
        if form == "numbers":
            bounds = numbers
        else:
            bounds = {"tensors": [lo, hi], "min tensor": [lo, None], "max tensor": [None, hi],
                      "mixed": [lo, 1]}[form]
        if one_bound:
            return invoke(key, x, bounds[0] if bounds[0] is not None else hi)
        if draw_kw:
            return invoke(key, x, min=bounds[0], max=bounds[1])
        return invoke(key, x, *bounds)

    draw_kw = draw(st.booleans())
    module = fn_module(forward, 3, f"{key} {form} {numbers}")
    lo, hi = broadcastable(draw, shape), broadcastable(draw, shape)
    if key in (Method("clamp_"), Method("clip_")) and draw(st.booleans()):  # bounds that fit in place
        lo, hi = shape[draw(st.integers(0, len(shape))):], shape[draw(st.integers(0, len(shape))):]
        dtypes[0] = F64
    return example(draw, module, shape, lo, hi, dtypes=dtypes)


MAXIMUM_KEYS = [torch.maximum, torch.minimum, torch.fmax, torch.fmin,
                Method("maximum"), Method("minimum"), Method("fmax"), Method("fmin")]


@case("maximum/minimum", over=MAXIMUM_KEYS)
def maximum_case(draw, key):
    shape = a_shape(draw, hi_rank=3)
    dtypes = [draw(st.sampled_from(BINARY_DTYPES)) for _ in range(2)]
    if traced(key) and draw(st.integers(0, 9)) == 0:  # a number is not accepted
        return example(draw, fn_module(lambda x: invoke(key, x, 1), 1, f"{key}(1)"), shape, dtypes=dtypes[:1])
    return example(draw, fn_module(binary(key), 2, str(key)), shape, broadcastable(draw, shape), dtypes=dtypes)


@case("masked_fill", over=[torch.masked_fill, Method("masked_fill"), Method("masked_fill_")])
def masked_fill_case(draw, key):
    shape = a_shape(draw, hi_rank=3)
    mask = broadcastable(draw, shape)
    if draw(st.booleans()):
        shape, mask = mask, shape
    dtypes = [draw(st.sampled_from([FLOAT, I64, BOOL, F64, U8])), mostly(draw, BOOL, st.sampled_from([U8, FLOAT])),
              draw(st.sampled_from([FLOAT, I64]))]
    value_shape = mostly(draw, (), st.sampled_from([(1,), (2,)]))
    number = draw(st.sampled_from([1, 0.5, True, None, 300, 1j]))

    def forward(x, m, v):
        value = v if number is None else number
        return torch.masked_fill(x, m, value) if key is torch.masked_fill else getattr(x, key.name)(m, value)

    return example(draw, fn_module(forward, 3, f"{key}({number})"), shape, mask, value_shape, dtypes=dtypes)


# -- factories ----------------------------------------------------------------------------------------

SIZE_FACTORIES = [torch.zeros, torch.ones, torch.empty, torch.rand, torch.randn]
FACTORY_DTYPES = [None, None, I64, F64, HALF, BOOL]


def size_forms(draw) -> dict:
    """The ways a traced forward passes sizes: a traced size first (a tuple), later (varargs),
    a shape, and arithmetic that may go negative."""
    k = draw(st.integers(0, 3))
    return {
        "(n, 3)": lambda x: ((x.size(0), 3),),
        "[n]": lambda x: ([x.size(0)],),
        "3, n": lambda x: (3, x.size(-1)),
        "n": lambda x: (x.size(0),),
        "shape": lambda x: (x.shape,),
        "size()": lambda x: (x.size(),),
        "n - k": lambda x: (2, x.size(0) - k),
        "(n // 2, n * 2)": lambda x: ((x.size(0) // 2, x.size(-1) * 2),),
    }


@case("zeros/ones/empty/rand/randn", over=SIZE_FACTORIES)
def size_factory_case(draw, fn):
    forms = size_forms(draw)
    form = draw(st.sampled_from(sorted(forms)))
    dtype = draw(st.sampled_from(FACTORY_DTYPES))
    kwargs = {"dtype": dtype} if dtype else {}
    make = forms[form]
    on_device = draw(st.booleans())  # device=x.device, as models write it

    def forward(x):
        return fn(*make(x), **kwargs, **({"device": x.device} if on_device else {}))

    module = fn_module(forward, 1, f"{fn.__name__} {form} {kwargs} device={on_device}")
    return example(draw, module, a_shape(draw, 1, 3, 1, 5))


@case("size= keyword", over=[torch.zeros])
def size_keyword_case(draw, fn):
    module = fn_module(lambda x: fn(size=(x.size(0), 2)), 1, "zeros(size=)")
    return example(draw, module, a_shape(draw, 1, 3))


@case("full", over=[torch.full])
def full_case(draw, fn):
    value = draw(st.sampled_from([1, 1.5, True, 1j, 0j, 300, -1, 1e40, "size", "0-dim", "1-dim"]))
    dtype = draw(st.sampled_from([None, None, I32, F64, U8, HALF]))
    varargs = draw(st.integers(0, 9)) == 0
    k = draw(st.integers(0, 3))

    def forward(x, v):
        fill = {"size": x.size(-1), "0-dim": v.sum(), "1-dim": v}.get(value, value)
        size = x.size(0) - k if varargs else (x.size(0) - k, 2)
        return fn(size, fill, dtype=dtype) if dtype else fn(size, fill)

    module = fn_module(forward, 2, f"full({value}, dtype={dtype}, k={k})")
    return example(draw, module, a_shape(draw, 1, 3, 1, 5), (2,))


@case("arange", over=[torch.arange])
def arange_case(draw, fn):
    k, step = draw(st.integers(-3, 4)), draw(st.sampled_from([1, 2, 3, -1, -2, 0]))
    dtype = draw(st.sampled_from([None, None, FLOAT, I32, BOOL]))
    kwargs = {"dtype": dtype} if dtype else {}
    forms = {
        "end": lambda x: fn(x.size(0), **kwargs),
        "start, end": lambda x: fn(k, x.size(0), **kwargs),
        "start, end, step": lambda x: fn(x.size(0), k, step, **kwargs),
        "sizes": lambda x: fn(x.size(0), x.size(-1), step, **kwargs),
        "keywords": lambda x: fn(start=k, end=x.size(0), step=abs(step) or 1, **kwargs),
        "end - k": lambda x: fn(x.size(0) - k, **kwargs),
    }
    floats = {
        "float step": lambda x: fn(0, x.size(0), 0.5 * (step or 1), **kwargs),
        "float start": lambda x: fn(k - 0.5, x.size(0), step, **kwargs),
    }
    form = draw(st.sampled_from(sorted(forms) + sorted(floats)))
    module = fn_module({**forms, **floats}[form], 1, f"arange {form} (k={k}, step={step}, {kwargs})")
    ex = example(draw, module, a_shape(draw, 1, 2, 1, 6))
    return concrete(ex) if form in floats else ex


@case("linspace/logspace", over=[torch.linspace, torch.logspace])
def linspace_case(draw, fn):
    k = draw(st.integers(0, 3))
    start, end = draw(st.sampled_from([(0, 1), (0.5, 2), (0, 1j)]))
    dtype = draw(st.sampled_from([None, None, I64, F64]))
    kwargs = {"dtype": dtype} if dtype else {}
    keyword = draw(st.booleans())
    module = fn_module(
        lambda x: fn(start, end, steps=x.size(0) - k, **kwargs) if keyword else fn(start, end, x.size(0) - k, **kwargs),
        1, f"{fn.__name__}({start}, {end}, n - {k}, {kwargs})")
    return example(draw, module, a_shape(draw, 1, 2, 1, 6))


@case("eye", over=[torch.eye])
def eye_case(draw, fn):
    k = draw(st.integers(0, 3))
    dtype = draw(st.sampled_from([None, None, BOOL, I64]))
    kwargs = {"dtype": dtype} if dtype else {}
    forms = {
        "n": lambda x: fn(x.size(0), **kwargs),
        "n, m": lambda x: fn(x.size(0), x.size(-1) - k, **kwargs),
        "m=": lambda x: fn(x.size(0) - k, m=x.size(-1), **kwargs),
        # (with concrete sizes and nothing else traced, the call runs while tracing: a constant)
        "device=x.device": lambda x: fn(x.size(0), x.size(-1) - k, device=x.device, **kwargs),
        "dtype=x.dtype": lambda x: fn(x.size(0) - k, dtype=x.dtype),
    }
    form = draw(st.sampled_from(sorted(forms)))
    return example(draw, fn_module(forms[form], 1, f"eye {form} k={k} {kwargs}"), a_shape(draw, 1, 2, 1, 5))


@case("randint", over=[torch.randint])
def randint_case(draw, fn):
    k = draw(st.integers(-1, 3))
    dtype = draw(st.sampled_from([None, None, BOOL, U8, torch.int8, FLOAT]))
    kwargs = {"dtype": dtype} if dtype else {}
    forms = {
        "high, size": lambda x: fn(x.size(0), (2, x.size(-1)), **kwargs),
        "low, high, size": lambda x: fn(k, x.size(0), (x.size(-1),), **kwargs),
        "size=": lambda x: fn(x.size(0) + 254, size=(x.size(-1),), **kwargs),
        "keywords": lambda x: fn(low=k, high=x.size(0), size=x.shape, **kwargs),
        "size not a tuple": lambda x: fn(3, x.size(0), **kwargs),
    }
    form = draw(st.sampled_from(sorted(forms)))
    return example(draw, fn_module(forms[form], 1, f"randint {form} k={k} {kwargs}"), a_shape(draw, 1, 2, 1, 5))


LIKE_FACTORIES = [torch.zeros_like, torch.ones_like, torch.empty_like, torch.rand_like, torch.randn_like]


@case("*_like", over=LIKE_FACTORIES)
def like_case(draw, fn):
    dtype = draw(st.sampled_from(FACTORY_DTYPES))
    kwargs = {"dtype": dtype} if dtype else {}
    module = fn_module(lambda x: fn(x, **kwargs), 1, f"{fn.__name__}({kwargs})")
    return example(draw, module, maybe_empty(draw, a_shape(draw)), dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("bernoulli_", over=[Method("bernoulli_")])
def bernoulli_case(draw, key):
    p = draw(st.sampled_from([0.0, 0.3, 1, True, 1.5, "tensor", "string"]))
    dtypes = [draw(st.sampled_from(ANY_DTYPE)), FLOAT]
    if p == "tensor":  # of any shape: PyTorch's meta kernel does not check it
        module = fn_module(lambda x, q: x.bernoulli_(q), 2, "bernoulli_(tensor)")
        shape = a_shape(draw)
        q_shape = draw(st.sampled_from([shape, shape[1:], (1,) * len(shape), a_shape(draw)]))
        dtypes[1] = draw(st.sampled_from([FLOAT, FLOAT, F64, HALF, I64, BOOL]))
        return example(draw, module, maybe_empty(draw, shape), q_shape, dtypes=dtypes)
    return example(draw, fn_module(lambda x: x.bernoulli_(p), 1, f"bernoulli_({p!r})"), maybe_empty(draw, a_shape(draw)),
                   dtypes=dtypes[:1])


@case("full_like", over=[torch.full_like])
def full_like_case(draw, fn):
    value = draw(st.sampled_from([2, 2.5, True, 300, 1j, "size"]))
    dtype = draw(st.sampled_from([None, None, F64]))
    kwargs = {"dtype": dtype} if dtype else {}
    module = fn_module(lambda x: fn(x, x.size(-1) if value == "size" else value, **kwargs), 1,
                       f"full_like({value}, {kwargs})")
    return example(draw, module, a_shape(draw, 1), dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("randint_like", over=[torch.randint_like])
def randint_like_case(draw, fn):
    k = draw(st.integers(-1, 3))
    dtype = draw(st.sampled_from([None, None, BOOL, U8, I64]))
    kwargs = {"dtype": dtype} if dtype else {}
    forms = {
        "high": lambda x: fn(x, x.size(0), **kwargs),
        "low, high": lambda x: fn(x, k, x.size(-1), **kwargs),
        "high=": lambda x: fn(x, high=x.size(0) + 255, **kwargs),
    }
    form = draw(st.sampled_from(sorted(forms)))
    return example(draw, fn_module(forms[form], 1, f"randint_like {form} k={k} {kwargs}"), a_shape(draw, 1),
                   dtypes=[draw(st.sampled_from([FLOAT, I64, BOOL, U8]))])


@case("new_zeros/new_ones/new_empty", over=[Method("new_zeros"), Method("new_ones"), Method("new_empty")])
def new_zeros_case(draw, key):
    forms = size_forms(draw)
    form = draw(st.sampled_from(sorted(forms)))
    dtype = draw(st.sampled_from(FACTORY_DTYPES))
    kwargs = {"dtype": dtype} if dtype else {}
    make = forms[form]
    module = fn_module(lambda x: getattr(x, key.name)(*make(x), **kwargs), 1, f"{key} {form} {kwargs}")
    return example(draw, module, a_shape(draw, 1, 3, 1, 5), dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("new_full", over=[Method("new_full")])
def new_full_case(draw, key):
    k = draw(st.integers(0, 3))
    value = draw(st.sampled_from([1, 2.5, True, 300, 1j]))
    dtype = draw(st.sampled_from([None, None, F64, U8]))
    kwargs = {"dtype": dtype} if dtype else {}
    as_tuple = mostly(draw, True, st.just(False))
    module = fn_module(lambda x: x.new_full((x.size(0) - k, 2) if as_tuple else x.size(0), value, **kwargs), 1,
                       f"new_full(n - {k}, {value}, {kwargs})")
    return example(draw, module, a_shape(draw, 1, 3, 1, 5), dtypes=[draw(st.sampled_from(ANY_DTYPE))])


@case("new_tensor", over=[Method("new_tensor")])
def new_tensor_case(draw, key):
    forms = {
        "list": lambda x, y: x.new_tensor([1, 2, 3]),
        "nested": lambda x, y: x.new_tensor([[1, 2], [3, 4]]),
        "ragged": lambda x, y: x.new_tensor([[1, 2], [3]]),
        "empty": lambda x, y: x.new_tensor([]),
        "number": lambda x, y: x.new_tensor(3.5),
        "shape": lambda x, y: x.new_tensor(x.shape),
        "sizes": lambda x, y: x.new_tensor([[x.size(0), 1], [2, x.size(-1)]]),
        "tensor": lambda x, y: x.new_tensor(y),
        "tensors": lambda x, y: x.new_tensor([y, y]),
    }
    form = draw(st.sampled_from(sorted(forms)))
    dtype = draw(st.sampled_from([None, None, I64, BOOL]))
    module = fn_module((lambda x, y: forms[form](x, y).to(dtype)) if dtype else forms[form], 2, f"new_tensor {form}")
    if dtype and draw(st.booleans()):
        module = fn_module(lambda x, y: x.new_tensor([x.size(0), 2], dtype=dtype), 2, f"new_tensor(dtype={dtype})")
    other = mostly(draw, (1,), st.sampled_from([(), (2,), (1, 1)]))
    return example(draw, module, a_shape(draw, 1, 3), other, dtypes=[draw(st.sampled_from(ANY_DTYPE)), FLOAT])
