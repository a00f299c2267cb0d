"""Differential cases (see tests/cases.py for the conventions): resampling, padding, the
remaining normalization, embedding, distance and activation modules and their functional twins."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

from cases import FLOAT, build, case, example, mostly, sizes
from differential import Example, fn_module
from lazyfx.rules import scale

F64 = torch.float64
LONG = torch.int64


def floats(draw) -> torch.dtype:
    return draw(st.sampled_from([FLOAT, FLOAT, F64]))


class _Fn4(nn.Module):
    """A module whose forward applies ``fn`` to four inputs (fn_module stops at three)."""

    def __init__(self, fn, name: str) -> None:
        super().__init__()
        self.fn = fn
        self.name = name

    def extra_repr(self) -> str:
        return self.name

    def forward(self, a, b, c, d):
        return self.fn(a, b, c, d)


class _Fn5(_Fn4):
    def forward(self, a, b, c, d, e):
        return self.fn(a, b, c, d, e)


def fn_module_n(fn, arity: int, name: str) -> nn.Module:
    return fn_module(fn, arity, name) if arity <= 3 else {4: _Fn4, 5: _Fn5}[arity](fn, name)


# -- padding ---------------------------------------------------------------------------------


def pad_rank(draw, n: int, constant: bool) -> int:
    """Mostly an input PyTorch can pad (n+1 or n+2 dims), sometimes any rank."""
    low = n if constant else n + 1
    return mostly(draw, draw(st.integers(low, n + 2)), st.integers(0, 5))


@case("F.pad", over=["constant", "reflect", "replicate", "circular"])
def pad_function(draw, mode):
    n = draw(st.integers(0 if mode == "constant" else 1, 3))
    pads = tuple(draw(st.integers(-3, 4)) for _ in range(2 * n))
    if draw(st.integers(0, 19)) == 0:
        pads = pads + (1,)
    shape = sizes(draw, pad_rank(draw, n, mode == "constant"), 1, 5)
    value = mostly(draw, None, st.sampled_from([0.0, 1.5]))
    dtype = mostly(draw, FLOAT, st.sampled_from([F64, torch.bool, LONG]))
    call = lambda x: F.pad(x, pads, mode, value)  # noqa: E731
    return example(draw, fn_module(call, 1, f"pad({pads}, {mode}, {value})"), shape, dtypes=[dtype])


PAD_MODULES = [
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
    nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
    nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
    nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d,
]


@case("padding modules", over=PAD_MODULES)
def pad_module(draw, cls):
    n = int(cls.__name__[-2])
    padding = draw(st.one_of(st.integers(-2, 3), st.tuples(*[st.integers(-3, 4)] * (2 * n))))
    args = (padding, draw(st.sampled_from([0.0, -1.0]))) if cls.__name__.startswith("Constant") else (padding,)
    module = build(cls, *args)
    shape = sizes(draw, pad_rank(draw, n, cls.__name__.startswith(("Constant", "Zero"))), 1, 5)
    return example(draw, module, shape, note=str(padding))


# -- resampling --------------------------------------------------------------------------------

INTERPOLATE_MODES = ["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area", "lanczos"]
MODE_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5, "lanczos": 4}
SCALES = (2, 3, 0.5, 1.5, 2.0, 0.25, 1.75, 2.5, 0.1, 1.1, 0.01, 0.3, 0.7, 1 / 3, 0.35)


def resize_spec(draw, n: int) -> dict:
    """``size`` or ``scale_factor`` for ``n`` spatial dims (int, float or tuple), rarely both or neither."""
    entry_size = st.integers(mostly(draw, 1, st.just(0)), 8)
    entry_scale = st.sampled_from(SCALES)
    kind = draw(st.sampled_from(["size", "size tuple", "scale", "scale tuple", "scale tuple", "both", "neither"]
                                if draw(st.integers(0, 9)) == 0 else ["size", "size tuple", "scale", "scale tuple"]))
    length = mostly(draw, n, st.integers(0, 4))
    spec = {}
    if kind in ("size", "both"):
        spec["size"] = draw(entry_size)
    if kind == "size tuple":
        spec["size"] = tuple(draw(entry_size) for _ in range(length))
    if kind in ("scale", "both"):
        spec["scale_factor"] = mostly(draw, draw(entry_scale), st.sampled_from([0, -0.5, -2, 0.01]))
    if kind == "scale tuple":
        spec["scale_factor"] = tuple(draw(entry_scale) for _ in range(length))
    return spec


def spatial_mask(draw, shape: tuple, spec: dict, first_spatial: int = 2) -> list:
    """Symbolic dims for the example; spatial ones stay concrete under an inexact scale."""
    scales = spec.get("scale_factor")
    scales = scales if isinstance(scales, tuple) else (scales,)
    # int(size*scale) of some floats has no exact formula in a symbolic size (int(90*0.7) is 62).
    inexact = any(isinstance(s, float) and not float(s).is_integer() and scale.exact_fraction(abs(s)) is None
                  for s in scales)
    return [[draw(st.booleans()) and not (inexact and i >= first_spatial) for i in range(len(shape))]]


def interpolate_input(draw, mode: str) -> tuple:
    rank = MODE_RANK.get(mode) or draw(st.integers(3, 5))
    rank = mostly(draw, rank, st.integers(1, 6))
    return sizes(draw, rank, 1, 6)


@case("F.interpolate", over=INTERPOLATE_MODES)
def interpolate_function(draw, mode):
    shape = interpolate_input(draw, mode)
    spec = resize_spec(draw, len(shape) - 2)
    interpolating = mode in MODE_RANK
    spec["align_corners"] = draw(st.sampled_from([None, False, True])) if interpolating else \
        mostly(draw, None, st.booleans())
    spec["recompute_scale_factor"] = draw(st.sampled_from([None, None, False, True]))
    antialias_ok = mode in ("bilinear", "bicubic", "lanczos")
    spec["antialias"] = mostly(draw, mode == "lanczos" or (antialias_ok and draw(st.booleans())), st.booleans())
    dtype = mostly(draw, draw(st.sampled_from([FLOAT, F64])), st.sampled_from([torch.uint8, LONG]))
    module = fn_module(lambda x: F.interpolate(x, mode=mode, **spec), 1, f"interpolate({mode}, {spec})")
    return Example(module, [(shape, dtype)], spatial_mask(draw, shape, spec), str(spec))


UPSAMPLE_FUNCTIONS = {
    "F.upsample": lambda x, spec: F.upsample(x, mode=spec.pop("mode"), **spec),
    "F.upsample_nearest": lambda x, spec: F.upsample_nearest(x, **spec),
    "F.upsample_bilinear": lambda x, spec: F.upsample_bilinear(x, **spec),
}


@case("F.upsample wrappers", over=list(UPSAMPLE_FUNCTIONS))
def upsample_function(draw, name):
    mode = draw(st.sampled_from(["nearest", "bilinear", "area"])) if name == "F.upsample" else None
    shape = interpolate_input(draw, "bilinear" if name == "F.upsample_bilinear" else "nearest")
    spec = resize_spec(draw, len(shape) - 2)
    call = UPSAMPLE_FUNCTIONS[name]
    module = fn_module(lambda x: call(x, dict(spec, mode=mode) if mode else dict(spec)), 1, f"{name}({spec})")
    return Example(module, [(shape, FLOAT)], spatial_mask(draw, shape, spec), str(spec))


@case("Upsample modules", over=[nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d])
def upsample_module(draw, cls):
    mode = draw(st.sampled_from(INTERPOLATE_MODES[:-1])) if cls is nn.Upsample else \
        {nn.UpsamplingNearest2d: "nearest", nn.UpsamplingBilinear2d: "bilinear"}[cls]
    shape = interpolate_input(draw, mode)
    spec = resize_spec(draw, len(shape) - 2)
    if cls is nn.Upsample:
        spec["mode"] = mode
        if mode in MODE_RANK:
            spec["align_corners"] = draw(st.sampled_from([None, False, True]))
        spec["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
    module = build(cls, **spec)
    return Example(module, [(shape, floats(draw))], spatial_mask(draw, shape, spec), str(spec))


@case("pixel shuffle", over=[torch.pixel_shuffle, torch.pixel_unshuffle, nn.PixelShuffle, nn.PixelUnshuffle])
def pixel_shuffle_case(draw, op):
    factor = mostly(draw, draw(st.integers(1, 3)), st.integers(-1, 0))
    shuffle = op in (torch.pixel_shuffle, nn.PixelShuffle)
    r = max(factor, 1)
    channels = draw(st.integers(1, 2)) * (r * r if shuffle else 1)
    h, w = (draw(st.integers(1, 3)) * (1 if shuffle else r) for _ in range(2))
    tail = tuple(mostly(draw, d, st.integers(1, 6)) for d in (channels, h, w))
    shape = (*sizes(draw, draw(st.integers(0, 2)), 1, 2), *tail)[mostly(draw, 0, st.integers(0, 3)) :]
    module = build(op, factor) if isinstance(op, type) else fn_module(lambda x: op(x, factor), 1, op.__name__)
    return example(draw, module, shape, dtypes=[mostly(draw, FLOAT, st.sampled_from([LONG, torch.bool]))])


def block_options(draw) -> dict:
    return dict(
        kernel_size=draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))),
        dilation=draw(st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2)))),
        padding=draw(st.one_of(st.integers(mostly(draw, 0, st.just(-1)), 2), st.tuples(st.integers(0, 2),
                                                                                       st.integers(0, 2)))),
        stride=draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))),
    )


def _pair(v) -> tuple:
    return v if isinstance(v, tuple) else (v, v)


@case("unfold", over=[F.unfold, nn.Unfold])
def unfold_case(draw, op):
    options = block_options(draw)
    rank = mostly(draw, draw(st.integers(3, 4)), st.integers(2, 5))
    shape = sizes(draw, rank, 1, 8)
    module = build(op, **options) if isinstance(op, type) else fn_module(lambda x: F.unfold(x, **options), 1, "unfold")
    dtype = mostly(draw, floats(draw), st.sampled_from([LONG, torch.bool]))
    return example(draw, module, shape, dtypes=[dtype], note=str(options))


@case("fold", over=[F.fold, nn.Fold])
def fold_case(draw, op):
    options = block_options(draw)
    output_size = draw(st.one_of(st.integers(1, 8), st.tuples(st.integers(mostly(draw, 1, st.just(0)), 8),
                                                             st.integers(1, 8))))
    k, d, p, s = (_pair(options[name]) for name in ("kernel_size", "dilation", "padding", "stride"))
    blocks = [max((o + 2 * pp - dd * (kk - 1) - 1) // ss + 1, 1)
              for o, kk, dd, pp, ss in zip(_pair(output_size), k, d, p, s)]
    channels = mostly(draw, draw(st.integers(1, 2)) * k[0] * k[1], st.integers(1, 9))
    length = mostly(draw, blocks[0] * blocks[1], st.integers(1, 12))
    shape = (*sizes(draw, draw(st.integers(0, 1)), 1, 2), channels, length)
    shape = shape[mostly(draw, 0, st.integers(0, 2)) :] if draw(st.integers(0, 9)) else (1, *shape)
    if isinstance(op, type):
        module = build(op, output_size, **options)
    else:
        module = fn_module(lambda x: F.fold(x, output_size, **options), 1, "fold")
    dtype = mostly(draw, floats(draw), st.sampled_from([torch.bool, LONG]))
    return example(draw, module, shape, dtypes=[dtype], note=f"output_size={output_size}, {options}")


# -- normalization: functional forms take their parameters as tensors --------------------------


def tensor_call(draw, fn, tensors: dict, options: dict, name: str, dtypes: dict | None = None) -> Example:
    """An example calling ``fn(**tensors, **options)``: the entries of ``tensors`` that are shapes
    become the module's inputs (in order); None entries and ``options`` are passed as they are."""
    names = [k for k, v in tensors.items() if v is not None]
    fixed = {**{k: None for k, v in tensors.items() if v is None}, **options}

    def call(*args):
        return fn(**fixed, **dict(zip(names, args)))

    shapes = [tensors[k] for k in names]
    dtypes = [(dtypes or {}).get(k, FLOAT) for k in names]
    return example(draw, fn_module_n(call, len(names), name), *shapes, dtypes=dtypes, note=str(fixed))


def param_shape(draw, count: int):
    """A parameter of ``count`` elements (1D mostly), sometimes absent or the wrong size."""
    return mostly(draw, draw(st.sampled_from([None, (count,)])), st.sampled_from([(count + 1,), (1, count), ()]))


def norm_dtypes(draw, names, odd_ones=("weight", "bias", "running_mean", "running_var")) -> dict:
    """One floating dtype for the input and its parameters, sometimes float32 parameters for a
    float16 input (mixed precision) or one of ``odd_ones`` off for a float32/float64 input. (Other
    mixes pass or fail depending on their order in the CPU kernels; the rules call them unsupported.)"""
    x = draw(st.sampled_from([FLOAT, FLOAT, F64, torch.float16]))
    params = FLOAT if x == torch.float16 and draw(st.booleans()) else x
    dtypes = {name: params for name in names}
    dtypes["input"] = mostly(draw, x, st.just(LONG))
    if x != torch.float16 and draw(st.integers(0, 9)) == 0:
        dtypes[draw(st.sampled_from(odd_ones))] = draw(st.sampled_from([FLOAT, F64, torch.float16]))
    return dtypes


def channel_input(draw, ranks, channels: int) -> tuple:
    shape = list(sizes(draw, draw(st.sampled_from(ranks)), 1, 3))
    if len(shape) >= 2:
        shape[1] = channels
    return tuple(shape)


@case("F.batch_norm")
def batch_norm_function(draw):
    c = draw(st.integers(1, 3))
    training = draw(st.booleans())
    running = param_shape(draw, c) if training else mostly(draw, (c,), st.sampled_from([None, (c, 1), (c + 1,)]))
    tensors = {"input": channel_input(draw, [3, 2, 4, 2, 5, 1], c), "running_mean": running,
               "running_var": mostly(draw, running, st.just(param_shape(draw, c))),
               "weight": param_shape(draw, c), "bias": param_shape(draw, c)}
    options = {"training": training, "eps": mostly(draw, 1e-5, st.sampled_from([0.0, -1.0]))}
    return tensor_call(draw, F.batch_norm, tensors, options, "batch_norm", norm_dtypes(draw, tensors))


@case("F.instance_norm")
def instance_norm_function(draw):
    c = draw(st.integers(1, 3))
    rank = mostly(draw, draw(st.integers(3, 5)), st.integers(1, 2))
    x = (draw(st.integers(1, 3)), c, *(mostly(draw, draw(st.integers(2, 4)), st.just(1)) for _ in range(rank - 2)))
    x = x[:rank]
    use_input_stats = mostly(draw, True, st.just(False))
    running = mostly(draw, draw(st.sampled_from([None, (c,)])), st.sampled_from([(c + 1,), (), (c, 1)]))
    weight = mostly(draw, draw(st.sampled_from([None, (c,)])), st.sampled_from([(c + 1,), (), (c, 1), (2 * c,)]))
    tensors = {"input": x, "running_mean": running, "running_var": running, "weight": weight,
               "bias": mostly(draw, weight, st.just(param_shape(draw, c)))}
    return tensor_call(draw, F.instance_norm, tensors, {"use_input_stats": use_input_stats}, "instance_norm",
                       norm_dtypes(draw, tensors, odd_ones=("weight", "bias")))


@case("F.group_norm")
def group_norm_function(draw):
    groups = mostly(draw, draw(st.integers(1, 3)), st.integers(-1, 0))
    c = mostly(draw, max(groups, 1) * draw(st.integers(1, 2)), st.integers(1, 5))
    tensors = {"input": channel_input(draw, [3, 2, 4, 3, 1], c), "weight": param_shape(draw, c),
               "bias": param_shape(draw, c)}
    return tensor_call(draw, F.group_norm, tensors, {"num_groups": groups}, f"group_norm({groups})",
                       norm_dtypes(draw, tensors, odd_ones=("weight", "bias")))


@case("F.rms_norm")
def rms_norm_function(draw):
    normalized = sizes(draw, draw(st.integers(mostly(draw, 1, st.just(0)), 2)), 1, 4)
    lead = sizes(draw, draw(st.integers(0, 2)), 1, 3)
    tail = tuple(mostly(draw, d, st.integers(1, 4)) for d in normalized)
    weight = mostly(draw, draw(st.sampled_from([None, normalized])),
                    st.sampled_from([normalized[1:], (1, *normalized)]))
    tensors = {"input": (*lead, *tail)[mostly(draw, 0, st.integers(0, 2)) :], "weight": weight}
    dtypes = {"input": floats(draw), "weight": floats(draw)}
    return tensor_call(draw, F.rms_norm, tensors, {"normalized_shape": normalized}, f"rms_norm({normalized})",
                       dtypes)


@case("local response norm", over=[F.local_response_norm, nn.LocalResponseNorm, nn.CrossMapLRN2d])
def local_response_norm_case(draw, op):
    size = mostly(draw, draw(st.integers(1, 5)), st.integers(-1, 0))
    rank = mostly(draw, 4 if op is nn.CrossMapLRN2d else draw(st.integers(3, 5)), st.integers(1, 5))
    module = build(op, size) if isinstance(op, type) else fn_module(lambda x: op(x, size), 1, f"lrn({size})")
    return example(draw, module, sizes(draw, rank, 1, 5), dtypes=[floats(draw)])


# -- embedding bags ------------------------------------------------------------------------------


def bag_inputs(draw, options: dict) -> dict:
    """Indices (2D bags, or 1D with offsets), sometimes per-sample weights; sometimes invalid."""
    if draw(st.booleans()):
        indices = sizes(draw, 2, 1, 4)
        offsets = mostly(draw, None, st.just((2,)))
    else:
        indices = (draw(st.integers(0, 6)),)
        # PyTorch 2.13's CPU kernel crashes (SIGSEGV) or corrupts memory when a non-empty input has no
        # bags (a single offset with include_last_offset, or no offsets at all), so that is never drawn;
        # no offsets with include_last_offset is refused before the kernel runs.
        last = options["include_last_offset"]
        invalid = [None, (1, 2), (0,)] if last else [None, (1, 2)]
        offsets = mostly(draw, (draw(st.integers(2 if last else 1, 4)),), st.sampled_from(invalid))
    if draw(st.integers(0, 19)) == 0:
        indices = sizes(draw, draw(st.sampled_from([0, 3])), 1, 3)
    psw = draw(st.sampled_from([None, None, indices, (7,)]))
    return {"input": indices, "offsets": offsets, "per_sample_weights": psw}


def bag_options(draw) -> dict:
    return dict(
        mode=mostly(draw, draw(st.sampled_from(["sum", "mean", "max"])), st.just("median")),
        include_last_offset=draw(st.booleans()),
        scale_grad_by_freq=mostly(draw, False, st.just(True)),
        sparse=mostly(draw, False, st.just(True)),
        padding_idx=mostly(draw, None, st.integers(-12, 12)),
    )


def bag_dtypes(draw) -> dict:
    index = mostly(draw, draw(st.sampled_from([LONG, torch.int32])), st.sampled_from([torch.uint8, FLOAT, torch.bool]))
    weight = mostly(draw, draw(st.sampled_from([FLOAT, F64])), st.sampled_from([LONG, torch.float16]))
    return {"input": index, "offsets": mostly(draw, index, st.sampled_from([LONG, torch.int32, torch.uint8])),
            "weight": weight, "per_sample_weights": mostly(draw, weight, st.sampled_from([FLOAT, F64]))}


@case("F.embedding_bag")
def embedding_bag_function(draw):
    options = bag_options(draw)
    tensors = {**bag_inputs(draw, options), "weight": (draw(st.integers(1, 10)), draw(st.integers(1, 4)))}
    options["max_norm"] = mostly(draw, None, st.just(1.0))
    return tensor_call(draw, F.embedding_bag, tensors, options, "embedding_bag", bag_dtypes(draw))


class BagCall(nn.Module):
    """Calls an EmbeddingBag with ``offsets`` and ``per_sample_weights`` passed as keywords."""

    def __init__(self, bag: nn.EmbeddingBag) -> None:
        super().__init__()
        self.bag = bag

    def forward(self, input):
        return self.bag(input)


class BagWithOffsets(BagCall):
    def forward(self, input, offsets):
        return self.bag(input, offsets=offsets)


class BagWithWeights(BagCall):
    def forward(self, input, per_sample_weights):
        return self.bag(input, per_sample_weights=per_sample_weights)


class BagWithBoth(BagCall):
    def forward(self, input, offsets, per_sample_weights):
        return self.bag(input, offsets, per_sample_weights)


@case("EmbeddingBag")
def embedding_bag_module(draw):
    options = bag_options(draw)
    num_embeddings = draw(st.integers(1, 10))
    if options["padding_idx"] is not None:  # the constructor asserts it is in range
        options["padding_idx"] = draw(st.integers(-num_embeddings, num_embeddings - 1))
    dtypes = bag_dtypes(draw)
    bag = build(nn.EmbeddingBag, num_embeddings, draw(st.integers(1, 4)), dtype=dtypes["weight"],
                max_norm=mostly(draw, None, st.just(1.0)), **options)
    tensors = bag_inputs(draw, options)
    names = tuple(k for k in ("offsets", "per_sample_weights") if tensors[k] is not None)
    wrapper = {(): BagCall, ("offsets",): BagWithOffsets, ("per_sample_weights",): BagWithWeights,
               ("offsets", "per_sample_weights"): BagWithBoth}[names]
    shapes = [tensors["input"], *(tensors[k] for k in names)]
    return example(draw, wrapper(bag), *shapes, dtypes=[dtypes[k] for k in ("input", *names)], note=str(options))


# -- distances and small modules ------------------------------------------------------------------


@case("bilinear", over=[torch.bilinear, nn.Bilinear])
def bilinear_case(draw, op):
    in1, in2, out = (draw(st.integers(1, 4)) for _ in range(3))
    lead = sizes(draw, draw(st.integers(0, 2)), 1, 3)
    x1 = (*lead, mostly(draw, in1, st.integers(1, 4)))
    x2 = (*(mostly(draw, d, st.integers(1, 3)) for d in lead), mostly(draw, in2, st.integers(1, 4)))
    if draw(st.integers(0, 9)) == 0:
        x2 = x2[draw(st.integers(0, len(x2))) :]
    dtype = floats(draw)
    dtypes = [dtype, mostly(draw, dtype, st.sampled_from([FLOAT, F64]))]
    if op is nn.Bilinear:
        module = nn.Bilinear(in1, in2, out, bias=draw(st.booleans()), dtype=mostly(draw, dtype, st.just(F64)))
        return example(draw, module, x1, x2, dtypes=dtypes)
    weight = mostly(draw, (out, in1, in2), st.sampled_from([(out, in1), (out, in1, in2, 1)]))
    bias = draw(st.sampled_from([None, (out,), (out,), (out + 1,), (out, 1), ()]))
    dtypes += [mostly(draw, dtype, st.sampled_from([FLOAT, F64]))] * 2
    return tensor_call(draw, torch.bilinear, {"input1": x1, "input2": x2, "weight": weight, "bias": bias}, {},
                       "bilinear", dict(zip(["input1", "input2", "weight", "bias"], dtypes)))


def broadcast_pair(draw) -> tuple:
    a = sizes(draw, draw(st.integers(0, 3)), 1, 4)
    b = tuple(mostly(draw, d, st.sampled_from([1, 2])) for d in a)[draw(st.integers(0, len(a))) :]
    return (a, b) if draw(st.booleans()) else (b, a)


def distance_dtypes(draw) -> list:
    return [mostly(draw, floats(draw), st.sampled_from([LONG, torch.bool, torch.float16])) for _ in range(2)]


@case("cosine similarity", over=[torch.cosine_similarity, nn.CosineSimilarity])
def cosine_similarity_case(draw, op):
    a, b = broadcast_pair(draw)
    rank = max(len(a), len(b))
    dim = draw(st.integers(-rank - 1, rank))
    module = build(op, dim) if isinstance(op, type) else fn_module(lambda x, y: op(x, y, dim), 2, f"cos(dim={dim})")
    return example(draw, module, a, b, dtypes=distance_dtypes(draw))


@case("pairwise distance", over=[torch.pairwise_distance, nn.PairwiseDistance])
def pairwise_distance_case(draw, op):
    a, b = broadcast_pair(draw)
    keepdim = draw(st.booleans())
    if isinstance(op, type):
        module = op(keepdim=keepdim)
    else:
        module = fn_module(lambda x, y: op(x, y, keepdim=keepdim), 2, f"pairwise_distance(keepdim={keepdim})")
    return example(draw, module, a, b, dtypes=distance_dtypes(draw))


@case("F.normalize")
def normalize_case(draw):
    rank = draw(st.integers(0, 3))
    dim = draw(st.one_of(st.integers(-rank - 1, rank), st.none(),
                         st.tuples(st.integers(-rank, max(rank - 1, 0)), st.integers(-rank, max(rank - 1, 0)))))
    p = draw(st.sampled_from([2.0, 1, float("inf")]))
    module = fn_module(lambda x: F.normalize(x, p, dim), 1, f"normalize(p={p}, dim={dim})")
    dtype = mostly(draw, floats(draw), st.sampled_from([LONG, torch.float16]))
    return example(draw, module, sizes(draw, rank, 1, 4), dtypes=[dtype])


@case("channel shuffle", over=[torch.channel_shuffle, torch.native_channel_shuffle, nn.ChannelShuffle])
def channel_shuffle_case(draw, op):
    groups = mostly(draw, draw(st.integers(1, 3)), st.integers(-1, 0))
    shape = list(sizes(draw, mostly(draw, draw(st.integers(3, 5)), st.integers(1, 2)), 1, 3))
    if len(shape) >= 2:
        shape[1] = mostly(draw, max(groups, 1) * draw(st.integers(1, 2)), st.integers(1, 5))
    module = build(op, groups) if isinstance(op, type) else fn_module(lambda x: op(x, groups), 1, op.__name__)
    return example(draw, module, tuple(shape), dtypes=[mostly(draw, FLOAT, st.sampled_from([LONG, torch.bool]))])


# -- activations ----------------------------------------------------------------------------------

TWIN_CALLS = {
    F.elu_: lambda x: F.elu_(x, 0.5), F.leaky_relu_: lambda x: F.leaky_relu_(x, 0.2),
    F.hardtanh_: lambda x: F.hardtanh_(x, -0.5, 0.5), torch.rrelu_: lambda x: torch.rrelu_(x, 0.1, 0.3),
    torch.threshold_: lambda x: torch.threshold_(x, 0.1, 2.0), torch.celu_: lambda x: torch.celu_(x, 0.5),
    torch.selu_: torch.selu_, torch.selu: torch.selu, torch.celu: lambda x: torch.celu(x, 2.0),
    torch.rrelu: lambda x: torch.rrelu(x, 0.1, 0.3), torch.threshold: lambda x: torch.threshold(x, 0.1, 2.0),
}


@case("activation twins", over=list(TWIN_CALLS))
def activation_twin(draw, fn):
    return example(draw, fn_module(TWIN_CALLS[fn], 1, fn.__name__), sizes(draw, draw(st.integers(0, 4)), 1, 4),
                   dtypes=[floats(draw)])


@case("glu", over=[F.glu, nn.GLU])
def glu_case(draw, op):
    rank = draw(st.integers(0, 4))
    dim = draw(st.integers(-rank - 1, rank)) if rank else draw(st.sampled_from([0, -1]))
    shape = tuple(draw(st.integers(1, 3)) * mostly(draw, 2, st.just(1)) for _ in range(rank))
    module = op(dim) if isinstance(op, type) else fn_module(lambda x: F.glu(x, dim), 1, f"glu({dim})")
    return example(draw, module, shape, dtypes=[mostly(draw, floats(draw), st.just(LONG))])


@case("Softmax2d")
def softmax2d_case(draw):
    rank = mostly(draw, draw(st.integers(3, 4)), st.integers(0, 5))
    return example(draw, nn.Softmax2d(), sizes(draw, rank, 1, 4), dtypes=[mostly(draw, floats(draw), st.just(LONG))])


@case("F.prelu")
def prelu_function(draw):
    rank = draw(st.integers(0, 4))
    shape = sizes(draw, rank, 1, 3)
    channels = shape[1] if rank > 1 else 1
    weight = draw(st.sampled_from([(1,), (), (channels,), (channels,), (channels + 1,), (channels, 1), (1, 1)]))
    dtype = floats(draw)
    dtypes = [mostly(draw, dtype, st.just(LONG)), mostly(draw, dtype, st.sampled_from([FLOAT, F64]))]
    return example(draw, fn_module(F.prelu, 2, "prelu"), shape, weight, dtypes=dtypes)


# -- power-average pooling -----------------------------------------------------------------------


@case("LPPoolNd", over=[1, 2, 3])
def lp_pool_module(draw, n):
    kernel = draw(st.one_of(st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * n)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * n)))
    norm = mostly(draw, draw(st.sampled_from([1, 2, 3.0, 1.5, float("inf")])), st.sampled_from([0, -float("inf")]))
    module = build({1: nn.LPPool1d, 2: nn.LPPool2d, 3: nn.LPPool3d}[n], norm, kernel, stride,
                   ceil_mode=draw(st.booleans()))
    rank = mostly(draw, n + draw(st.integers(1, 2)), st.integers(1, 5))
    return example(draw, module, sizes(draw, rank, 1, 6), dtypes=[floats(draw)], note=f"p={norm}")


@case("F.lp_poolNd", over=[1, 2, 3])
def lp_pool_function(draw, n):
    kernel = draw(st.one_of(st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * draw(st.sampled_from([n, n, 1])))))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * n)))
    norm = mostly(draw, draw(st.sampled_from([1, 2, 3.0, 1.5, float("inf")])), st.sampled_from([0, -float("inf")]))
    ceil_mode = draw(st.booleans())
    fn = getattr(F, f"lp_pool{n}d")
    module = fn_module(lambda x: fn(x, norm, kernel, stride, ceil_mode), 1, f"lp_pool{n}d(p={norm})")
    rank = mostly(draw, n + draw(st.integers(1, 2)), st.integers(1, 5))
    return example(draw, module, sizes(draw, rank, 1, 6), dtypes=[floats(draw)], note=f"{kernel}, {stride}")



# -- max unpooling and fractional max pooling --------------------------------------------------------


def int_or_tuple(draw, n: int, low: int, high: int):
    return draw(st.one_of(st.integers(low, high), st.tuples(*[st.integers(low, high)] * n)))


def _ntuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, tuple) else (value,) * n


def unpool_input(draw, n: int) -> tuple:
    rank = mostly(draw, n + draw(st.integers(1, 2)), st.integers(n, n + 3))
    return sizes(draw, rank, 1, 4)


def unpool_output_size(draw, shape: tuple, n: int, kernel, stride, padding):
    """None, or sizes near the default ``(in - 1)*stride + kernel - 2*padding`` (n or n+2 of them)."""
    if draw(st.booleans()) or len(shape) < n:
        return None
    k, s, p = _ntuple(kernel, n), _ntuple(kernel if stride is None else stride, n), _ntuple(padding, n)
    default = [(i - 1) * ss + kk - 2 * pp for i, kk, ss, pp in zip(shape[-n:], k, s, p)]
    out = [d + draw(st.integers(-max(ss - 1, 0), max(ss - 1, 0))) for d, ss in zip(default, s)]
    out = [mostly(draw, o, st.integers(0, 9)) for o in out]
    return list(shape[-n - 2 : -n]) + out if draw(st.integers(0, 3)) == 0 and len(shape) >= n + 2 else out


class UnpoolCall(nn.Module):
    """Calls a MaxUnpool module with ``output_size``."""

    def __init__(self, unpool: nn.Module, output_size) -> None:
        super().__init__()
        self.unpool = unpool
        self.output_size = output_size

    def forward(self, x, indices):
        return self.unpool(x, indices, output_size=self.output_size)


@case("max unpool", over=[(f"{kind}{n}d", kind, n) for kind in ("F.max_unpool", "nn.MaxUnpool") for n in (1, 2, 3)])
def max_unpool_case(draw, item):
    _, kind, n = item
    kernel = int_or_tuple(draw, n, 1, 3)
    stride = draw(st.one_of(st.none(), st.just(int_or_tuple(draw, n, mostly(draw, 1, st.just(0)), 3))))
    padding = int_or_tuple(draw, n, mostly(draw, 0, st.just(-1)), 1)
    shape = unpool_input(draw, n)
    indices = mostly(draw, shape, st.just(shape[:-1] + (shape[-1] + 1,) if shape else (1,)))
    output_size = unpool_output_size(draw, shape, n, kernel, stride, padding)
    dtypes = [mostly(draw, floats(draw), st.just(LONG)), mostly(draw, LONG, st.just(torch.int32))]
    if kind == "nn.MaxUnpool":
        module = UnpoolCall(build(getattr(nn, f"MaxUnpool{n}d"), kernel, stride, padding), output_size)
    else:
        fn = getattr(F, f"max_unpool{n}d")
        module = fn_module(lambda x, i: fn(x, i, kernel, stride, padding, output_size), 2,
                           f"max_unpool{n}d({kernel}, {stride}, {padding}, {output_size})")
    return example(draw, module, shape, indices, dtypes=dtypes)


def fractional_options(draw, n: int, shape: tuple) -> dict:
    """A kernel and an output size that mostly fit (``out + kernel - 1 <= in``), or an output ratio."""
    kernel = int_or_tuple(draw, n, 1, 3)
    if draw(st.booleans()):
        spatial = shape[-n:] if len(shape) >= n else (4,) * n
        fits = [max(size - k + (0 if n == 2 else -1), 0) for size, k in zip(spatial, _ntuple(kernel, n))]
        output_size = tuple(mostly(draw, draw(st.integers(0, f)), st.integers(0, 6)) for f in fits)
        return {"kernel_size": kernel, "output_size": output_size if draw(st.booleans()) else output_size[0]}
    ratio = tuple(draw(st.sampled_from([0.5, 0.25, 0.75, 0.3])) for _ in range(n))
    return {"kernel_size": kernel, "output_ratio": ratio if n == 2 or draw(st.booleans()) else ratio[0]}


@case("fractional max pool", over=[(f"{kind}{n}d", kind, n) for kind in ("F", "F_with_indices", "nn")
                                   for n in (2, 3)])
def fractional_max_pool_case(draw, item):
    _, kind, n = item
    shape = sizes(draw, mostly(draw, n + draw(st.integers(1, 2)), st.integers(n, n + 3)), 1, 7)
    options = fractional_options(draw, n, shape)
    if kind == "nn":
        module = build(getattr(nn, f"FractionalMaxPool{n}d"), return_indices=draw(st.booleans()), **options)
    else:
        fn = getattr(F, f"fractional_max_pool{n}d" + ("_with_indices" if kind == "F_with_indices" else ""))
        extra = {"return_indices": draw(st.booleans())} if kind == "F" else {}
        module = fn_module(lambda x: fn(x, **options, **extra), 1, f"{fn.__name__}({options}, {extra})")
    # int(size*ratio) of a float ratio without an exact formula cannot be symbolic (see F.interpolate)
    mask = spatial_mask(draw, shape, {"scale_factor": options.get("output_ratio")}, first_spatial=len(shape) - n)
    return Example(module, [(shape, mostly(draw, floats(draw), st.just(LONG)))], mask, str(options))

