"""Differential cases: for every shape rule, modules and inputs drawn by hypothesis.

Each case draws an :class:`~differential.Example` (a module whose forward
exercises the rule, and concrete input shapes, sometimes invalid ones) plus
which dims to make symbolic. ``test_rules_differential.py`` runs every case
against PyTorch (real kernels on tiny CPU tensors, see ``differential.py``);
``test_registry.py`` checks that together
the cases reach every registered rule.
"""

from __future__ import annotations

import operator
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume
from hypothesis import strategies as st

from differential import Example, fn_module
from lazyfx.core.registry import Method, key_name
from lazyfx.rules import activation, elementwise

CASES: dict[str, Callable] = {}

FLOAT = torch.float32


def case(name: str, over=None):
    """Register a case; with ``over``, one case per item (``fn(draw, item)``), so that every
    key of a family is exercised deterministically."""

    def register(fn):
        items = [(name, None)] if over is None else [(f"{name}[{_label(i)}]", i) for i in over]
        for full_name, item in items:
            assert full_name not in CASES, full_name
            CASES[full_name] = fn if over is None else (lambda draw, fn=fn, item=item: fn(draw, item))
        return fn

    return register


def _label(item) -> str:
    if isinstance(item, tuple):
        item = item[0]
    if isinstance(item, (str, int)):
        return str(item)
    return key_name(item)


def sizes(draw, n: int, lo: int = 1, hi: int = 8) -> tuple:
    return tuple(draw(st.integers(lo, hi)) for _ in range(n))


def symbolic_mask(draw, *shapes) -> list:
    return [[draw(st.booleans()) for _ in shape] for shape in shapes]


def example(draw, module, *shapes, dtypes=None, note: str = "") -> Example:
    dtypes = dtypes or [FLOAT] * len(shapes)
    return Example(module, list(zip(shapes, dtypes)), symbolic_mask(draw, *shapes), note)


def build(factory, *args, **kwargs):
    """Construct a module; options PyTorch refuses at construction are not what we test."""
    try:
        return factory(*args, **kwargs)
    except (ValueError, RuntimeError, TypeError):
        assume(False)


def mostly(draw, value, alternative):
    """``value`` nine times in ten, else a drawn alternative (to exercise rejections)."""
    return value if draw(st.integers(0, 9)) else draw(alternative)


# -- convolutions ------------------------------------------------------------------------


def conv_options(draw, n: int, transposed: bool = False) -> dict:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    stride = sizes(draw, n, 1, 3)
    dilation = sizes(draw, n, 1, 2)
    options = dict(
        in_channels=groups * draw(st.integers(1, 3)),
        out_channels=groups * draw(st.integers(1, 3)),
        kernel_size=sizes(draw, n, 1, 4),
        stride=stride,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
    )
    if transposed:
        options["padding"] = sizes(draw, n, 0, 2)
        options["output_padding"] = tuple(
            mostly(draw, draw(st.integers(0, max(s, d) - 1)), st.integers(0, 3)) for s, d in zip(stride, dilation)
        )
    else:
        options["padding"] = draw(st.one_of(st.sampled_from(["same", "valid"]), st.tuples(*[st.integers(0, 3)] * n)))
        if options["padding"] == "same":
            options["stride"] = 1
        options["padding_mode"] = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    return options


def conv_input(draw, n: int, channels: int) -> tuple:
    batch = (draw(st.integers(1, 3)),) if draw(st.booleans()) else ()
    return (*batch, mostly(draw, channels, st.integers(1, 6)), *sizes(draw, n, 1, 10))


CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@case("ConvNd", over=[1, 2, 3])
def conv_module(draw, n):
    options = conv_options(draw, n)
    module = build(CONV[n], **options)
    return example(draw, module, conv_input(draw, n, options["in_channels"]), note=str(options))


@case("ConvTransposeNd", over=[1, 2, 3])
def conv_transpose_module(draw, n):
    options = conv_options(draw, n, transposed=True)
    module = build(CONV_T[n], **options)
    return example(draw, module, conv_input(draw, n, options["in_channels"]), note=str(options))


class WithOutputSize(nn.Module):
    def __init__(self, conv: nn.Module, output_size: list) -> None:
        super().__init__()
        self.conv = conv
        self.output_size = output_size

    def forward(self, x):
        return self.conv(x, output_size=self.output_size)


@case("ConvTransposeNd(output_size=)")
def conv_transpose_output_size(draw):
    n = draw(st.sampled_from([1, 2]))
    options = conv_options(draw, n, transposed=True)
    options["output_padding"] = 0
    conv = build(CONV_T[n], **options)
    shape = conv_input(draw, n, options["in_channels"])
    base = [
        (size - 1) * s - 2 * p + d * (k - 1) + 1
        for size, s, p, d, k in zip(shape[-n:], conv.stride, conv.padding, conv.dilation, conv.kernel_size)
    ]
    output_size = [b + draw(st.integers(0, 2)) for b in base]
    return Example(WithOutputSize(conv, output_size), [(shape, FLOAT)], [[False] * len(shape)], str(output_size))


@case("F.convNd", over=[1, 2, 3])
def conv_function(draw, n):
    o = conv_options(draw, n)
    padding = o["padding"]
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    weight = (o["out_channels"], o["in_channels"] // o["groups"], *o["kernel_size"])
    x = conv_input(draw, n, o["in_channels"])
    module = fn_module(
        lambda x, w, b: fn(x, w, b, stride=o["stride"], padding=padding, dilation=o["dilation"], groups=o["groups"]),
        3,
        f"conv{n}d",
    )
    bias = (mostly(draw, o["out_channels"], st.integers(1, 4)),)
    return example(draw, module, x, weight, bias, note=str(o))


@case("F.conv_transposeNd", over=[1, 2, 3])
def conv_transpose_function(draw, n):
    o = conv_options(draw, n, transposed=True)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    weight = (o["in_channels"], o["out_channels"] // o["groups"], *o["kernel_size"])
    x = conv_input(draw, n, o["in_channels"])
    module = fn_module(
        lambda x, w: fn(x, w, None, o["stride"], o["padding"], o["output_padding"], o["groups"], o["dilation"]),
        2,
        f"conv_transpose{n}d",
    )
    return example(draw, module, x, weight, note=str(o))


# -- pooling -------------------------------------------------------------------------------


def pool_options(draw, n: int, dilation: bool) -> dict:
    kernel = sizes(draw, n, 1, 4)
    options = dict(
        kernel_size=kernel,
        stride=draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * n))),
        padding=tuple(draw(st.integers(0, k // 2 + (1 if draw(st.integers(0, 9)) == 0 else 0))) for k in kernel),
        ceil_mode=draw(st.booleans()),
    )
    if dilation:
        options["dilation"] = sizes(draw, n, 1, 2)
    return options


def pool_input(draw, n: int) -> tuple:
    batch = (draw(st.integers(1, 2)),) if draw(st.booleans()) else ()
    return (*batch, draw(st.integers(1, 3)), *sizes(draw, n, 1, 10))


@case("MaxPoolNd", over=[1, 2, 3])
def max_pool_module(draw, n):
    options = pool_options(draw, n, dilation=True)
    options["return_indices"] = draw(st.booleans())
    module = build({1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[n], **options)
    return example(draw, module, pool_input(draw, n), note=str(options))


@case("AvgPoolNd", over=[1, 2, 3])
def avg_pool_module(draw, n):
    options = pool_options(draw, n, dilation=False)
    options["count_include_pad"] = draw(st.booleans())
    module = build({1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[n], **options)
    return example(draw, module, pool_input(draw, n), note=str(options))


@case("F.max_poolNd", over=[1, 2, 3])
def max_pool_function(draw, n):
    o = pool_options(draw, n, dilation=True)
    indices = draw(st.booleans())
    fn = getattr(F, f"max_pool{n}d")
    module = fn_module(
        lambda x: fn(x, o["kernel_size"], o["stride"], o["padding"], o["dilation"], o["ceil_mode"], indices),
        1,
        f"max_pool{n}d",
    )
    return example(draw, module, pool_input(draw, n), note=str(o))


@case("F.max_poolNd_with_indices", over=[1, 2, 3])
def max_pool_with_indices_function(draw, n):
    o = pool_options(draw, n, dilation=True)
    fn = getattr(F, f"max_pool{n}d_with_indices")
    module = fn_module(lambda x: fn(x, o["kernel_size"], o["stride"], o["padding"], o["dilation"], o["ceil_mode"]))
    return example(draw, module, pool_input(draw, n), note=str(o))


@case("F.avg_poolNd", over=[1, 2, 3])
def avg_pool_function(draw, n):
    o = pool_options(draw, n, dilation=False)
    fn = getattr(F, f"avg_pool{n}d")
    module = fn_module(lambda x: fn(x, o["kernel_size"], o["stride"], o["padding"], o["ceil_mode"]), 1, f"avg_pool{n}d")
    return example(draw, module, pool_input(draw, n), note=str(o))


def adaptive_output(draw, n: int):
    entry = st.one_of(st.integers(1, 5), st.none()) if draw(st.booleans()) else st.integers(1, 5)
    return draw(st.integers(1, 5)) if draw(st.booleans()) else tuple(draw(entry) for _ in range(n))


ADAPTIVE = {
    "avg": {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d},
    "max": {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d},
}


@case("AdaptivePoolNd", over=[(f"{kind}{n}d", kind, n) for kind in ("avg", "max") for n in (1, 2, 3)])
def adaptive_pool_module(draw, item):
    _, kind, n = item
    output = adaptive_output(draw, n)
    extra = {"return_indices": draw(st.booleans())} if kind == "max" else {}
    module = build(ADAPTIVE[kind][n], output, **extra)
    return example(draw, module, pool_input(draw, n))


@case("F.adaptive_poolNd", over=[(f"{name}{n}d", name, n) for name in ("avg_pool", "max_pool", "max_pool_with_indices")
                                 for n in (1, 2, 3)])
def adaptive_pool_function(draw, item):
    _, name, n = item
    output = adaptive_output(draw, n)
    fn = getattr(F, f"adaptive_{name.replace('_pool', '_pool' + str(n) + 'd', 1)}")
    module = fn_module(lambda x: fn(x, output), 1, fn.__name__)
    return example(draw, module, pool_input(draw, n))


# -- linear, embedding ---------------------------------------------------------------------


@case("Linear")
def linear_module(draw):
    in_features, out_features = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    module = nn.Linear(in_features, out_features, bias=draw(st.booleans()))
    shape = (*sizes(draw, draw(st.integers(0, 3)), 1, 4), mostly(draw, in_features, st.integers(1, 6)))
    if draw(st.integers(0, 19)) == 0:
        shape = ()
    dtype = mostly(draw, FLOAT, st.sampled_from([torch.float64, torch.int64]))
    return example(draw, module, shape, dtypes=[dtype])


@case("F.linear")
def linear_function(draw):
    in_features = draw(st.integers(1, 6))
    weight = (draw(st.integers(1, 6)), in_features) if draw(st.integers(0, 4)) else (in_features,)
    x = (*sizes(draw, draw(st.integers(0, 2)), 1, 4), mostly(draw, in_features, st.integers(1, 6)))
    return example(draw, fn_module(F.linear, 2), x, weight)


@case("Identity")
def identity_module(draw):
    return example(draw, nn.Identity(), sizes(draw, draw(st.integers(0, 3))))


@case("matmul", over=[("torch.matmul", torch.matmul), ("@", operator.matmul), ("Tensor.matmul", lambda a, b: a.matmul(b))])
def matmul_case(draw, item):
    op = item[1]
    inner = draw(st.integers(1, 4))
    a_rank, b_rank = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch = sizes(draw, max(a_rank, b_rank), 1, 3)
    a = (*[mostly(draw, d, st.sampled_from([1, 2])) for d in batch[: max(a_rank - 2, 0)]],
         *((draw(st.integers(1, 4)),) if a_rank > 1 else ()), inner)
    b = (*[mostly(draw, d, st.sampled_from([1, 2])) for d in batch[: max(b_rank - 2, 0)]],
         mostly(draw, inner, st.integers(1, 4)), *((draw(st.integers(1, 4)),) if b_rank > 1 else ()))
    b = b if b_rank > 1 else b[:1]
    return example(draw, fn_module(op, 2, "matmul"), a, b)


@case("Embedding")
def embedding_module(draw):
    module = nn.Embedding(draw(st.integers(1, 10)), draw(st.integers(1, 5)))
    dtype = mostly(draw, torch.int64, st.sampled_from([torch.int32, FLOAT]))
    return example(draw, module, sizes(draw, draw(st.integers(0, 3))), dtypes=[dtype])


@case("F.embedding")
def embedding_function(draw):
    weight = (draw(st.integers(1, 10)), draw(st.integers(1, 5)))
    dtype = mostly(draw, torch.int64, st.sampled_from([torch.int32, FLOAT]))
    x = sizes(draw, draw(st.integers(0, 3)))
    return example(draw, fn_module(F.embedding, 2), x, weight, dtypes=[dtype, FLOAT])


# -- normalization ---------------------------------------------------------------------------


def norm_input(draw, ranks, channels: int) -> tuple:
    rank = draw(st.sampled_from(ranks))
    shape = [draw(st.integers(1, 3)) for _ in range(rank)]
    channel_dim = 1 if rank >= 2 else 0
    if rank:
        shape[channel_dim] = mostly(draw, channels, st.integers(1, 5))
    return tuple(shape)


@case("BatchNormNd", over=[1, 2, 3])
def batch_norm_module(draw, n):
    channels = draw(st.integers(1, 4))
    module = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[n](
        channels, affine=draw(st.booleans()), track_running_stats=draw(st.booleans())
    )
    module.train(draw(st.booleans()))
    ranks = {1: [2, 3, 4], 2: [3, 4, 5], 3: [4, 5, 6]}[n]
    return example(draw, module, norm_input(draw, ranks, channels))


@case("InstanceNormNd", over=[1, 2, 3])
def instance_norm_module(draw, n):
    channels = draw(st.integers(1, 4))
    module = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[n](
        channels, affine=draw(st.booleans()), track_running_stats=draw(st.booleans())
    )
    module.train(draw(st.booleans()))
    rank = draw(st.sampled_from([n, n + 1, n + 2, n + 3]))
    shape = list(sizes(draw, rank, 1, 3))
    if rank in (n + 1, n + 2):
        shape[rank - n - 1] = mostly(draw, channels, st.integers(1, 5))
    return example(draw, module, tuple(shape))


def trailing(draw, normalized: tuple) -> tuple:
    lead = sizes(draw, draw(st.integers(0, 2)), 1, 3)
    tail = tuple(mostly(draw, d, st.integers(1, 4)) for d in normalized)
    if draw(st.integers(0, 9)) == 0:
        tail = tail[1:]
    return (*lead, *tail)


@case("LayerNorm/RMSNorm", over=[nn.LayerNorm, nn.RMSNorm])
def layer_norm_module(draw, cls):
    normalized = sizes(draw, draw(st.integers(1, 2)), 1, 4)
    module = cls(normalized)
    return example(draw, module, trailing(draw, normalized))


@case("F.layer_norm")
def layer_norm_function(draw):
    normalized = sizes(draw, draw(st.integers(1, 2)), 1, 4)
    return example(draw, fn_module(lambda x: F.layer_norm(x, normalized)), trailing(draw, normalized))


@case("GroupNorm")
def group_norm_module(draw):
    groups = draw(st.integers(1, 3))
    channels = groups * draw(st.integers(1, 2))
    module = nn.GroupNorm(groups, channels)
    shape = (draw(st.integers(1, 2)), mostly(draw, channels, st.integers(1, 6)), *sizes(draw, draw(st.integers(0, 2))))
    return example(draw, module, shape if draw(st.integers(0, 9)) else shape[:1])


# -- activations and softmax ---------------------------------------------------------------


@case("activation modules", over=activation.SAME_SHAPE_MODULES)
def activation_module(draw, cls):
    module = build(cls, 0.5, 0.1) if cls is nn.Threshold else cls()
    module.eval()
    rank = draw(st.integers(0, 4))
    if cls in (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d):
        rank = {nn.Dropout1d: 3, nn.Dropout2d: 4, nn.Dropout3d: 5}[cls] - draw(st.integers(0, 1))
    return example(draw, module, sizes(draw, rank, 1, 4))


@case("activation functions", over=activation.SAME_SHAPE_FUNCTIONS)
def activation_function(draw, fn):
    call = (lambda x: fn(x, 0.5, 0.1)) if fn is F.threshold else (lambda x: fn(x, training=False)) \
        if fn is F.rrelu else fn
    rank = draw(st.integers(0, 4))
    if fn in (F.dropout1d, F.dropout2d, F.dropout3d):
        rank = {F.dropout1d: 3, F.dropout2d: 4, F.dropout3d: 5}[fn] - draw(st.integers(0, 1))
    return example(draw, fn_module(call, 1, getattr(fn, "__name__", "fn")), sizes(draw, rank, 1, 4))


@case("activation methods", over=activation.SAME_SHAPE_METHODS)
def activation_method(draw, method):
    method = method.name
    return example(draw, fn_module(lambda x: getattr(x, method)(), 1, method), sizes(draw, draw(st.integers(0, 3))))


_MATH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.bool, torch.complex64,
                torch.complex128]
_COMPLEX_OPS = {
    **{f"{fn.__name__}": fn for fn in (torch.abs, torch.absolute, torch.angle, torch.real, torch.imag,
                                        torch.view_as_real)},
    ".abs()": lambda x: x.abs(), ".absolute()": lambda x: x.absolute(), ".angle()": lambda x: x.angle(),
    ".real": lambda x: x.real,
    ".imag": lambda x: x.imag,
}


@case("math dtypes", over=[*activation.FLOATING_FUNCTIONS, torch.erf, *activation.FLOATING_METHODS, Method("erf")])
def math_dtypes(draw, op):
    """Math that computes in floating point, over every kind of input dtype."""
    fn = (lambda x: getattr(x, op.name)()) if isinstance(op, Method) else op
    return example(draw, fn_module(fn, 1, getattr(op, "name", getattr(op, "__name__", "op"))),
                   sizes(draw, draw(st.integers(0, 3)), 1, 4), dtypes=[draw(st.sampled_from(_MATH_DTYPES))])


@case("complex to real", over=sorted(_COMPLEX_OPS))
def complex_to_real(draw, name):
    """abs/angle/real/imag/view_as_real: complex inputs give their real dtype."""
    return example(draw, fn_module(_COMPLEX_OPS[name], 1, name), sizes(draw, draw(st.integers(0, 3)), 1, 4),
                   dtypes=[draw(st.sampled_from(_MATH_DTYPES))])


@case("PReLU")
def prelu_module(draw):
    module = nn.PReLU(draw(st.sampled_from([1, 1, 2, 3])))
    return example(draw, module, sizes(draw, draw(st.integers(0, 4)), 1, 3))


def softmax_dim(draw, rank: int):
    return draw(st.one_of(st.integers(-rank - 1, rank), st.none())) if rank else draw(st.sampled_from([0, -1, 1]))


@case("Softmax modules", over=[nn.Softmax, nn.LogSoftmax, nn.Softmin])
def softmax_module(draw, cls):
    rank = draw(st.integers(0, 3))
    module = cls(dim=softmax_dim(draw, rank))
    return example(draw, module, sizes(draw, rank, 1, 4))


@case("softmax functions", over=[F.softmax, F.log_softmax, F.softmin])
def softmax_function(draw, fn):
    rank = draw(st.integers(0, 3))
    dim = softmax_dim(draw, rank)
    dtype = draw(st.sampled_from([None, torch.float64]))
    return example(draw, fn_module(lambda x: fn(x, dim, dtype=dtype), 1, fn.__name__), sizes(draw, rank, 1, 4))


@case("softmax tensor ops", over=[(f"{via}.{name}", via, name) for name in ("softmax", "log_softmax")
                                  for via in ("torch", "Tensor")])
def softmax_tensor(draw, item):
    _, via, name = item
    rank = draw(st.integers(0, 3))
    dim = draw(st.integers(-rank - 1, rank))
    call = (lambda x: getattr(torch, name)(x, dim)) if via == "torch" else (lambda x: getattr(x, name)(dim))
    return example(draw, fn_module(call, 1, name), sizes(draw, rank, 1, 4))


# -- elementwise ---------------------------------------------------------------------------


def broadcastable(draw, shape: tuple) -> tuple:
    out = [mostly(draw, d, st.sampled_from([1, 2, 3])) if draw(st.booleans()) else 1 for d in shape]
    return tuple(out[draw(st.integers(0, len(out))) :])


BINARY_KEYS = [k for keys in elementwise._KEYS.values() for k in keys] + [
    k for keys in elementwise._INPLACE_KEYS.values() for k in keys
]


def _binary_call(key, keyword: bool = False):
    """The call of ``key`` on two operands; ``keyword``: the second one by its name
    (``torch.pow(a, exponent=b)``, ``a.add(other=b)``), where PyTorch's own function takes it so."""
    from lazyfx.core.registry import Method

    name = "exponent" if key in elementwise._KEYS["pow"] else "other"
    if isinstance(key, Method):
        return (lambda a, b: getattr(a, key.name)(**{name: b})) if keyword else (lambda a, b: getattr(a, key.name)(b))
    if keyword and _takes_keywords(key):
        return lambda a, b: key(a, **{name: b})
    return key


def _takes_keywords(key) -> bool:
    return isinstance(key, Method) or key.__module__ not in ("_operator", "operator")


def _divides_by_data(key) -> bool:
    """Integer division by the zero-filled test tensors fails on data, not on shapes."""
    return any(key in elementwise._KEYS[name] or key in elementwise._INPLACE_KEYS.get(name, ())
               for name in ("truediv", "floordiv", "mod", "pow"))


@case("binary tensor ops", over=BINARY_KEYS)
def binary_tensor(draw, key):
    a = sizes(draw, draw(st.integers(0, 3)), 1, 4)
    b = broadcastable(draw, a) if draw(st.booleans()) else sizes(draw, draw(st.integers(0, 3)), 1, 4)
    if draw(st.booleans()):
        a, b = b, a
    dtypes = [draw(st.sampled_from([FLOAT, FLOAT, torch.int64, torch.float64])) for _ in range(2)]
    if _divides_by_data(key):
        dtypes = [FLOAT, draw(st.sampled_from([FLOAT, torch.float64]))]
    keyword = _takes_keywords(key) and draw(st.booleans())
    return example(draw, fn_module(_binary_call(key, keyword), 2, f"{key}{' by keyword' if keyword else ''}"),
                   a, b, dtypes=dtypes)


@case("binary tensor-scalar ops", over=BINARY_KEYS)
def binary_scalar(draw, key):
    scalar = draw(st.sampled_from([2, 3, 0.5]))
    call = _binary_call(key)
    reflected = callable(key) and key.__module__ in ("_operator", "operator") and draw(st.booleans())
    fn = (lambda x: call(scalar, x)) if reflected else (lambda x: call(x, scalar))
    dtype = FLOAT if reflected and _divides_by_data(key) else draw(st.sampled_from([FLOAT, torch.int64]))
    return example(draw, fn_module(fn, 1, f"{key}({scalar})"), sizes(draw, draw(st.integers(0, 3))), dtypes=[dtype])


@case("size arithmetic", over=[operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod,
                               operator.pow, operator.truediv, operator.neg])
def size_arithmetic(draw, op):
    k = draw(st.integers(1, 3))
    fn = (lambda x: operator.neg(x.size(0))) if op is operator.neg else (lambda x: op(x.size(0), k)) \
        if draw(st.booleans()) else (lambda x: op(x.size(-1), x.size(0)))
    return example(draw, fn_module(fn, 1, f"size {op.__name__}"), sizes(draw, 2, 1, 9))


@case("neg")
def neg_tensor(draw):
    return example(draw, fn_module(operator.neg, 1, "neg"), sizes(draw, draw(st.integers(0, 3))))


# -- views -------------------------------------------------------------------------------------


@case("flatten", over=["torch", "method", "module"])
def flatten_case(draw, kind):
    rank = draw(st.integers(0, 4))
    start, end = draw(st.integers(-rank - 1, rank)), draw(st.integers(-rank - 1, rank))
    if kind == "module":
        module = nn.Flatten(start, end)
    else:
        call = (lambda x: torch.flatten(x, start, end)) if kind == "torch" else (lambda x: x.flatten(start, end))
        module = fn_module(call, 1, f"flatten({start}, {end})")
    return example(draw, module, sizes(draw, rank, 1, 4))


@case("unflatten", over=["torch", "method", "module"])
def unflatten_case(draw, kind):
    rank = draw(st.integers(1, 3))
    shape = sizes(draw, rank, 1, 6)
    dim = draw(st.integers(-rank, rank - 1))
    size = shape[dim]
    parts = draw(st.sampled_from([(size, 1), (1, size), (-1, 1), (size, -1), (2, -1), (2, 3), (-1, -1)]))
    if kind == "module":
        module = build(nn.Unflatten, dim, parts)
    else:
        call = (lambda x: torch.unflatten(x, dim, parts)) if kind == "torch" else (lambda x: x.unflatten(dim, parts))
        module = fn_module(call, 1, f"unflatten({dim}, {parts})")
    return example(draw, module, shape)


@case("view/reshape", over=["view", "reshape", "view tuple", "view(size=)", "reshape(shape=)", "torch.reshape", "sizes"])
def view_case(draw, kind):
    shape = sizes(draw, draw(st.integers(0, 4)), 1, 4)
    numel = 1
    for d in shape:
        numel *= d
    target = draw(st.sampled_from([(numel,), (-1,), (1, -1), (-1, 1), (numel, 1), (2, -1), (-1, 3), (2, 3, -1),
                                   (numel + 1,), (-1, -1), (shape[0] if shape else 1, -1)]))
    calls = {
        "view": lambda x: x.view(*target),
        "reshape": lambda x: x.reshape(*target),
        "view tuple": lambda x: x.view(target),
        "view(size=)": lambda x: x.view(size=target),
        "reshape(shape=)": lambda x: x.reshape(shape=target),
        "torch.reshape": lambda x: torch.reshape(x, target),
        "sizes": (lambda x: x.view(x.size(0), -1)) if shape else (lambda x: x.view(-1)),
    }
    return example(draw, fn_module(calls[kind], 1, f"{kind}{target}"), shape)


@case("view_as/reshape_as", over=["view_as", "reshape_as"])
def view_as_case(draw, name):
    a, b = sizes(draw, draw(st.integers(1, 3)), 1, 4), sizes(draw, draw(st.integers(1, 3)), 1, 4)
    return example(draw, fn_module(lambda x, y: getattr(x, name)(y), 2, name), a, b)


@case("permute", over=["Tensor.permute(*dims)", "Tensor.permute(dims)", "Tensor.permute(dims=dims)", "torch.permute",
                        "torch.permute(dims=dims)"])
def permute_case(draw, kind):
    rank = draw(st.integers(0, 4))
    dims = list(draw(st.permutations(range(rank))))
    if rank and draw(st.integers(0, 4)) == 0:
        dims[0] = draw(st.integers(-rank, rank))
    dims = [d - rank if draw(st.booleans()) and 0 <= d < rank else d for d in dims]
    call = {"Tensor.permute(*dims)": lambda x: x.permute(*dims), "Tensor.permute(dims)": lambda x: x.permute(dims),
            "Tensor.permute(dims=dims)": lambda x: x.permute(dims=dims), "torch.permute": lambda x: torch.permute(x, dims),
            "torch.permute(dims=dims)": lambda x: torch.permute(x, dims=dims)}[kind]
    return example(draw, fn_module(call, 1, f"permute{dims}"), sizes(draw, rank, 1, 4))


@case("transpose", over=[(f"{via}.{name}", via, name) for name in ("transpose", "swapaxes", "swapdims")
                         for via in ("torch", "Tensor")])
def transpose_case(draw, item):
    _, via, name = item
    rank = draw(st.integers(0, 4))
    a, b = draw(st.integers(-rank - 1, rank)), draw(st.integers(-rank - 1, rank))
    call = (lambda x: getattr(torch, name)(x, a, b)) if via == "torch" else (lambda x: getattr(x, name)(a, b))
    return example(draw, fn_module(call, 1, f"{name}({a}, {b})"), sizes(draw, rank, 1, 4))


@case("t", over=["torch.t", "Tensor.t"])
def t_case(draw, kind):
    call = torch.t if kind == "torch.t" else (lambda x: x.t())
    return example(draw, fn_module(call, 1, "t"), sizes(draw, draw(st.integers(0, 3)), 1, 4))


@case("squeeze/unsqueeze", over=[(f"{via}.{name}", via == "torch", name) for name in ("squeeze", "unsqueeze")
                                 for via in ("torch", "Tensor")])
def squeeze_case(draw, item):
    _, via_torch, name = item
    rank = draw(st.integers(0, 4))
    shape = tuple(draw(st.sampled_from([1, 1, 2, 3])) for _ in range(rank))
    dim = draw(st.one_of(st.none(), st.integers(-rank - 1, rank), st.tuples(st.integers(-rank, max(rank - 1, 0)))))
    if name == "unsqueeze":
        dim = draw(st.integers(-rank - 2, rank + 1))

    def call(x):
        fn = getattr(torch, name) if via_torch else getattr(x, name)
        args = () if dim is None else (dim,)
        return fn(x, *args) if via_torch else fn(*args)

    return example(draw, fn_module(call, 1, f"{name}({dim})"), shape)


@case("cat", over=[torch.cat, torch.concat, torch.concatenate])
def cat_case(draw, fn):
    rank = draw(st.integers(1, 3))
    dim = draw(st.integers(-rank - 1, rank))
    base = sizes(draw, rank, 1, 4)
    others = [tuple(mostly(draw, d, st.integers(1, 4)) for d in base) for _ in range(2)]
    if dim in range(-rank, rank):
        others = [tuple(draw(st.integers(1, 4)) if i == dim % rank else d for i, d in enumerate(o)) for o in others]
    if draw(st.integers(0, 9)) == 0:
        others[1] = (0,)
    dtypes = [FLOAT, draw(st.sampled_from([FLOAT, torch.float64, torch.int64])), FLOAT]
    module = fn_module(lambda x, y, z: fn([x, y, z], dim), 3, f"cat(dim={dim})")
    return example(draw, module, base, *others, dtypes=dtypes)


@case("conversions", over=["float", "double", "half", "bfloat16", "int", "long", "short", "bool", "char",
                            "byte", "to dtype", "to other", "type_as", "cpu", "to kw"])
def conversion_case(draw, name):
    calls = {
        "to dtype": lambda x, y: x.to(torch.float64),
        "to other": lambda x, y: x.to(y),
        "to kw": lambda x, y: x.to(dtype=torch.int32),
        "type_as": lambda x, y: x.type_as(y),
        "cpu": lambda x, y: x.cpu(),
    }
    call = calls.get(name) or (lambda x, y: getattr(x, name)())
    shape = sizes(draw, draw(st.integers(0, 3)))
    return example(draw, fn_module(call, 2, name), shape, (1,), dtypes=[FLOAT, torch.int64])


# -- shape queries and indexing -------------------------------------------------------------


SIZE_QUERIES = {
    "size()": lambda x, d: x.size(),
    "size(d)": lambda x, d: x.size(d),
    "dim()": lambda x, d: x.dim(),
    "ndimension()": lambda x, d: x.ndimension(),
    "numel()": lambda x, d: x.numel(),
    "nelement()": lambda x, d: x.nelement(),
    "torch.numel": lambda x, d: torch.numel(x),
    "shape": lambda x, d: x.shape,
    "ndim": lambda x, d: x.ndim,
    "size()[d:]": lambda x, d: x.size()[d:],
    "shape[d]": lambda x, d: x.shape[d],
    "shape.numel()": lambda x, d: x.shape.numel(),
    "size()[d:].numel()": lambda x, d: x.size()[d:].numel(),
}


@case("size queries", over=list(SIZE_QUERIES))
def size_queries(draw, name):
    rank = draw(st.integers(1 if name == "shape[d]" else 0, 3))
    d = draw(st.integers(-rank - 1, rank))
    query = SIZE_QUERIES[name]
    return example(draw, fn_module(lambda x: query(x, d), 1, name), sizes(draw, rank, 1, 5))


@case("tensor attributes", over=["dtype", "T", "mT", "mH", "data", "device"])
def tensor_attributes(draw, name):
    rank = draw(st.integers(0, 3))
    if name == "T" and rank not in (0, 2):
        rank = 2
    fn = (lambda x: (x.dtype == torch.float32, x)[1]) if name == "dtype" else (lambda x: getattr(x, name))
    if name == "dtype":
        fn = lambda x: x.to(x.dtype)  # noqa: E731
    if name == "device":
        fn = lambda x: x.to(x.device)  # noqa: E731
    return example(draw, fn_module(fn, 1, name), sizes(draw, rank, 1, 4))


def index_item(draw, size: int):
    return draw(
        st.one_of(
            st.integers(-size - 1, size),
            st.builds(slice, st.one_of(st.none(), st.integers(-6, 6)), st.one_of(st.none(), st.integers(-6, 6)),
                      st.one_of(st.none(), st.integers(1, 3))),
            st.none(),
        )
    )


@case("indexing")
def indexing_case(draw):
    rank = draw(st.integers(0, 4))
    shape = sizes(draw, rank, 1, 5)
    items = [index_item(draw, shape[i] if i < rank else 2) for i in range(draw(st.integers(0, rank + 1)))]
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), Ellipsis)
    index = tuple(items) if len(items) != 1 or draw(st.booleans()) else items[0]
    return example(draw, fn_module(lambda x: x[index], 1, f"x[{index}]"), shape)


def _size_bound(draw):
    """A slice bound: None, or ``a * n + b`` of a size ``n`` read from the second input, of either sign."""
    if draw(st.integers(0, 4)) == 0:
        return None
    return draw(st.integers(-1, 1)), draw(st.integers(-6, 6))


def _at(bound, n):
    return None if bound is None else bound[0] * n + bound[1]


@case("slice bounds from sizes", over=["x[...]", "tensor_split"])
def size_bound_slicing(draw, kind):
    """Slice bounds computed from a (symbolic) size, negative or not: Python's clamping exactly."""
    rank = draw(st.integers(1, 3))
    shape = sizes(draw, rank, 1, 7)
    start, stop = _size_bound(draw), _size_bound(draw)
    if kind == "x[...]":
        step = draw(st.one_of(st.none(), st.integers(1, 3)))
        fn = lambda x, y: x[_at(start, y.size(0)):_at(stop, y.size(0)):step]  # noqa: E731
        name = f"x[{start}:{stop}:{step}] of n=y.size(0)"
    else:
        fn = lambda x, y: torch.tensor_split(x, [b for b in (_at(start, y.size(0)),  # noqa: E731
                                                            _at(stop, y.size(0))) if b is not None])
        name = f"tensor_split(x, [{start}, {stop}]) of n=y.size(0)"
    return example(draw, fn_module(fn, 2, name), shape, sizes(draw, 1, 1, 8))


_ARANGE_LOOKUPS = {
    "embedding": lambda table, idx: F.embedding(idx.unsqueeze(0), table),
    "index_select": lambda table, idx: table.index_select(0, idx),
    "gather": lambda table, idx: table.gather(0, idx.unsqueeze(1).expand(-1, table.size(1))),
}


@case("lookups of arange indices", over=sorted(_ARANGE_LOOKUPS))
def arange_lookups(draw, kind):
    """Indices ``arange(start, start + n, step)`` of a size ``n``: their values are known, so a
    table of ``R`` rows must have more rows than the largest (PyTorch: index out of range)."""
    start, step = draw(st.integers(0, 3)), draw(st.integers(1, 2))
    lookup = _ARANGE_LOOKUPS[kind]
    fn = lambda table, y: lookup(table, torch.arange(start, start + y.size(0), step))  # noqa: E731
    return example(draw, fn_module(fn, 2, f"{kind} of arange({start}, {start} + n, {step})"),
                   (draw(st.integers(1, 8)), 3), sizes(draw, 1, 1, 9))


@case("tuple outputs")
def tuple_outputs(draw):
    n = draw(st.integers(0, 1))
    module = nn.MaxPool1d(2, return_indices=True)

    class TakeOne(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = module

        def forward(self, x):
            return self.pool(x)[n]

    return example(draw, TakeOne(), (1, 2, draw(st.integers(1, 6))))


# Case families kept in their own files register into CASES on import.
import cases_control  # noqa: E402,F401
import cases_nn  # noqa: E402,F401
import cases_reduce  # noqa: E402,F401
import cases_rnn  # noqa: E402,F401
import cases_shape  # noqa: E402,F401
