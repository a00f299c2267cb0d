"""Differential cases (see tests/cases.py for the conventions): recurrent layers and attention."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

from cases import FLOAT, build, case, example, mostly, sizes

F64 = torch.float64


class Apply(nn.Module):
    """``forward`` calls ``layer`` with its inputs arranged by ``arrange`` (``(x, (h, c))``,
    ``(q, q, q)``, masks as keywords...): masks and states are inputs of the model, so the
    differential harness draws their sizes too. Inputs not given stay None."""

    def __init__(self, layer: nn.Module, arrange, name: str = "") -> None:
        super().__init__()
        self.layer = layer
        self.arrange = arrange
        self.name = name

    def extra_repr(self) -> str:
        return self.name

    def forward(self, a, b=None, c=None, d=None, e=None, f=None, g=None, h=None):
        args, kwargs = self.arrange(a, b, c, d, e, f, g, h)
        return self.layer(*args, **kwargs)


def wrong_rank(draw, shape: tuple, lo: int = 0, hi: int = 4) -> tuple:
    """``shape`` nine times in ten, else a shape of another rank (to exercise dim checks)."""
    rank = mostly(draw, len(shape), st.integers(lo, hi))
    if rank == len(shape):
        return shape
    return sizes(draw, rank, 1, 4)


def near(draw, value: int) -> int:
    """``value`` nine times in ten, else a nearby positive size."""
    return mostly(draw, value, st.integers(1, max(4, value + 1)))


def dtype(draw, usual=FLOAT):
    return mostly(draw, usual, st.sampled_from([F64, torch.int64]))


# -- nn.RNN / nn.LSTM / nn.GRU ------------------------------------------------------------------


def recurrent_options(draw, cls) -> dict:
    hidden = draw(st.integers(1, 4))
    options = dict(
        input_size=draw(st.integers(1, 4)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 2)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
    )
    if cls is nn.LSTM and hidden > 1 and draw(st.booleans()):
        options["proj_size"] = draw(st.integers(1, hidden - 1))
    if cls is nn.RNN:
        options["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    return options


def sequence_shape(draw, options: dict, batched: bool) -> tuple:
    seq, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    features = near(draw, options["input_size"])
    if not batched:
        return (seq, features)
    return (batch, seq, features) if options["batch_first"] else (seq, batch, features)


def state_shape(draw, options: dict, x: tuple, size: int, batched: bool) -> tuple:
    """``(D*num_layers, N, size)`` (without ``N`` unbatched), sometimes off by a dim or a rank."""
    layers = (2 if options["bidirectional"] else 1) * options["num_layers"]
    batch = (x[0] if options["batch_first"] else x[1],) if batched and len(x) == 3 else ()
    return wrong_rank(draw, (near(draw, layers), *(near(draw, b) for b in batch), near(draw, size)), 1, 4)


@case("recurrent", over=[nn.RNN, nn.LSTM, nn.GRU])
def recurrent(draw, cls):
    options = recurrent_options(draw, cls)
    module = build(cls, **options).train(draw(st.booleans()))
    batched = draw(st.booleans())
    x = wrong_rank(draw, sequence_shape(draw, options, batched), 1, 4)
    x_dtype = dtype(draw)
    state = draw(st.sampled_from(["none", "given", "given"] + (["stacked", "triple"] if cls is nn.LSTM else [])))
    if state == "none":
        return example(draw, module, x, dtypes=[x_dtype])
    h = state_shape(draw, options, x, options.get("proj_size") or options["hidden_size"], batched)
    if cls is not nn.LSTM:
        return example(draw, Apply(module, lambda x, h, *_: ((x, h), {}), "x, h"), x, h,
                       dtypes=[x_dtype, dtype(draw)])
    c = state_shape(draw, options, x, options["hidden_size"], batched)
    if state == "stacked":  # LSTM.forward reads hx[0] and hx[1] of a tensor too
        stacked = (draw(st.integers(1, 3)), *h)
        return example(draw, Apply(module, lambda x, s, *_: ((x, s), {}), "x, stacked"), x, stacked,
                       dtypes=[x_dtype, dtype(draw)])
    arrange = (lambda x, h, c, *_: ((x, (h, c)), {})) if state == "given" else \
        (lambda x, h, c, *_: ((x, (h, c, c)), {}))
    return example(draw, Apply(module, arrange, state), x, h, c, dtypes=[x_dtype, dtype(draw), dtype(draw)])


# -- cells ------------------------------------------------------------------------------------


def cell_state(draw, cls, batch: tuple, hidden: int, x: tuple) -> tuple:
    shape = (*(near(draw, b) for b in batch), near(draw, hidden))
    if cls in (nn.LSTMCell, nn.GRUCell) and len(x) == 1:
        # An unbatched input with a 2-D state can crash LSTMCell and GRUCell (torch 2.13 segfaults
        # in lstm_cell and gru_cell on a (1, 1) state; larger ones raise), so only other ranks are
        # drawn for it. (lazyfx refuses every 2-D state there: "hidden must be 1-D".)
        return mostly(draw, (near(draw, hidden),), st.sampled_from([(1, 2, hidden), (hidden, hidden, hidden)]))
    return wrong_rank(draw, shape, 0, 3)


@case("recurrent cell", over=[nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def recurrent_cell(draw, cls):
    input_size, hidden = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    options = dict(bias=draw(st.booleans()))
    if cls is nn.RNNCell:
        options["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    module = build(cls, input_size, hidden, **options)
    batched = draw(st.booleans())
    batch = (draw(st.integers(1, 3)),) if batched else ()
    x = (*batch, near(draw, input_size))
    x = x if cls is nn.LSTMCell else wrong_rank(draw, x, 0, 3)
    if cls is nn.RNNCell and not batched and draw(st.integers(0, 4)) == 0:
        batch = (hidden,)  # a 2-D hx with an unbatched input broadcasts in RNNCell
    state = draw(st.sampled_from(["none", "given", "given"] + (["stacked", "triple"] if cls is nn.LSTMCell else [])))
    x_dtype = dtype(draw)
    if state == "none":
        return example(draw, module, x, dtypes=[x_dtype])
    h = cell_state(draw, cls, batch, hidden, x)
    if cls is not nn.LSTMCell:
        return example(draw, Apply(module, lambda x, h, *_: ((x, h), {}), "x, h"), x, h,
                       dtypes=[x_dtype, dtype(draw)])
    c_dtype = draw(st.sampled_from([FLOAT, FLOAT, F64, torch.float16, torch.int64, torch.bool]))
    if state == "stacked":  # LSTMCell.forward reads hx[0] and hx[1] of a tensor too
        rows = h if batched or len(h) == 1 else (hidden,)  # 2-D rows would crash unbatched, as above
        stacked = (draw(st.integers(1, 3)), *rows)
        return example(draw, Apply(module, lambda x, s, *_: ((x, s), {}), "x, stacked"), x, stacked,
                       dtypes=[x_dtype, dtype(draw)])
    c = cell_state(draw, cls, batch, hidden, x)
    arrange = (lambda x, h, c, *_: ((x, (h, c)), {})) if state == "given" else \
        (lambda x, h, c, *_: ((x, [h, c, c]), {}))
    return example(draw, Apply(module, arrange, state), x, h, c, dtypes=[x_dtype, dtype(draw), c_dtype])


# -- attention ----------------------------------------------------------------------------------


def mask_dtype(draw, allow_foreign: bool = True):
    """Mostly bool, often float32; sometimes float64 (checked against the input's dtype) or int64."""
    foreign = [F64, torch.int64] if allow_foreign else [torch.int64]
    return draw(st.sampled_from([torch.bool, torch.bool, FLOAT])) if draw(st.integers(0, 7)) else \
        draw(st.sampled_from(foreign))


def scrambled(draw, shape: tuple, force: bool = False) -> tuple:
    """``shape`` most of the time (never with ``force``); else a wrong size in one dim, the same
    elements in another shape (the fused kernels only ``view`` masks), or another rank."""
    kind = draw(st.integers(0, 2 if force else 11))
    if kind == 0 and shape:
        i = draw(st.integers(0, len(shape) - 1))
        return shape[:i] + (draw(st.integers(1, 4)),) + shape[i + 1 :]
    if kind == 1:
        numel = 1
        for d in shape:
            numel *= d
        return draw(st.sampled_from([(numel,), (1, numel), tuple(reversed(shape)), (1, *shape)]))
    if kind == 2:
        return sizes(draw, draw(st.integers(0, 4)), 1, 3)
    return shape


def broadcast_variant(draw, shape: tuple) -> tuple:
    """A shape that broadcasts to ``shape``: a suffix of it with some dims set to 1."""
    out = tuple(1 if draw(st.integers(0, 3)) == 0 else d for d in shape)
    return out[draw(st.integers(0, len(out))) :]


@case("F.scaled_dot_product_attention", over=["plain", "attn_mask", "is_causal", "enable_gqa"])
def sdpa_case(draw, variant):
    batch = sizes(draw, draw(st.integers(0, 2)), 1, 3)
    heads = (draw(st.sampled_from([1, 2, 4])),) if variant == "enable_gqa" else ()
    kv_heads = tuple(mostly(draw, draw(st.sampled_from([1, 2, h])), st.integers(1, 4)) for h in heads)
    L, S, E, Ev = sizes(draw, 4, 1, 4)
    q = (*batch, *heads, L, E)
    k = (*broadcast_variant(draw, batch), *kv_heads, S, near(draw, E))
    v = (*broadcast_variant(draw, batch), *kv_heads, near(draw, S), Ev)
    if variant != "enable_gqa" and draw(st.booleans()):  # the query broadcasts against the key instead
        q, k = (broadcast_variant(draw, batch) + q[len(batch):]), (*batch, *k[-2:])
    dtype_all = draw(st.sampled_from([FLOAT, FLOAT, F64, torch.float16]))
    dtypes = [dtype_all, mostly(draw, dtype_all, st.sampled_from([FLOAT, F64])), dtype_all]
    options = dict(is_causal=variant == "is_causal" or draw(st.integers(0, 9)) == 0,
                   scale=draw(st.sampled_from([None, 0.5])), enable_gqa=variant == "enable_gqa")
    if variant == "plain" and draw(st.booleans()):
        options["dropout_p"] = 0.5
    shapes = [q, k, v]
    if variant == "attn_mask" or draw(st.integers(0, 5)) == 0:
        scores = (*batch, *heads, L, S)
        shapes.append(broadcast_variant(draw, scores) if draw(st.integers(0, 9)) else scrambled(draw, scores))
        dtypes.append(mostly(draw, draw(st.sampled_from([torch.bool, FLOAT, dtype_all])),
                             st.sampled_from([F64, torch.int64])))
    sdpa = F.scaled_dot_product_attention

    def arrange(q, k, v, mask, *_):
        return (q, k, v), dict(options, attn_mask=mask)

    return example(draw, Apply(sdpa, arrange, str(options)), *shapes, dtypes=dtypes)


def attention_sizes(draw, even: bool = False) -> dict:
    heads = draw(st.sampled_from([2, 4] if even else [1, 2, 2, 3]))
    return dict(heads=heads, embed=heads * draw(st.integers(1, 2)), L=draw(st.integers(1, 3)),
                S=draw(st.integers(1, 3)), N=draw(st.integers(1, 3)))


def sequence(d: dict, length: int, features: int, batched: bool, batch_first: bool) -> tuple:
    if not batched:
        return (length, features)
    return (d["N"], length, features) if batch_first else (length, d["N"], features)


def attn_mask(draw, d: dict, L: int, S: int, batched: bool, exact: bool = False) -> tuple:
    """``(L, S)`` or ``(N*heads, L, S)``, sometimes ``scrambled`` unless ``exact``."""
    heads = d["heads"] * (d["N"] if batched else 1)
    shape = draw(st.sampled_from([(L, S), (heads, L, S)]))
    return shape if exact else scrambled(draw, shape)


def padding_mask(draw, d: dict, S: int, batched: bool, exact: bool = False) -> tuple:
    shape = (d["N"], S) if batched else (S,)
    return shape if exact else scrambled(draw, shape)


MHA_VARIANTS = ["self-attention", "key is value", "cross-attention", "kdim/vdim", "bias_kv/zero_attn"]


@case("nn.MultiheadAttention", over=MHA_VARIANTS)
def multihead_attention(draw, variant):
    d = attention_sizes(draw)
    # Self-attention leans towards what the fused kernel needs (eval, batch_first, a bias).
    likely = st.sampled_from([True, True, True, False]) if variant == "self-attention" else st.booleans()
    options = dict(bias=draw(likely), batch_first=draw(likely))
    if variant == "kdim/vdim":
        options.update(kdim=draw(st.integers(1, 3)), vdim=draw(st.integers(1, 3)))
    if variant == "bias_kv/zero_attn":
        options.update(add_bias_kv=draw(st.booleans()), add_zero_attn=draw(st.booleans()))
    module = nn.MultiheadAttention(d["embed"], d["heads"], **options).train(not draw(likely))
    batched = mostly(draw, True, st.booleans())
    bf = options["batch_first"]
    S = d["L"] if variant == "self-attention" else d["S"]
    q = wrong_rank(draw, sequence(d, d["L"], near(draw, d["embed"]), batched, bf), 1, 4)
    k = sequence(d, S, near(draw, options.get("kdim", d["embed"])), batched, bf)
    v = sequence(d, near(draw, S), near(draw, options.get("vdim", d["embed"])), batched, bf)
    if batched and draw(st.integers(0, 9)) == 0:
        k = tuple(near(draw, s) for s in k)
    keywords = dict(need_weights=draw(st.booleans()), average_attn_weights=draw(st.booleans()),
                    is_causal=draw(st.integers(0, 7)) == 0)
    mask, kpm = draw(st.booleans()), draw(st.booleans())
    shapes = [q] if variant == "self-attention" else [q, k] if variant == "key is value" else [q, k, v]
    dtypes = [mostly(draw, FLOAT, st.just(F64))] + [FLOAT] * (len(shapes) - 1)
    names = []
    if mask:
        shapes.append(attn_mask(draw, d, d["L"], S, batched))
        dtypes.append(mask_dtype(draw))
        names.append("attn_mask")
    if kpm:
        shapes.append(padding_mask(draw, d, S, batched))
        dtypes.append(mask_dtype(draw))
        names.append("key_padding_mask")
    n = {"self-attention": 1, "key is value": 2}.get(variant, 3)

    def arrange(*inputs):
        q, k, v = (inputs[0],) * 3 if n == 1 else (inputs[0], inputs[1], inputs[1]) if n == 2 else inputs[:3]
        masks = dict(zip(names, inputs[n:]))
        return (q, k, v), dict(keywords, **masks)

    return example(draw, Apply(module, arrange, f"{variant} {keywords} {names}"), *shapes, dtypes=dtypes)


class FunctionalAttention(nn.Module):
    """``F.multi_head_attention_forward`` with the parameters of ``mha``, inputs arranged as in
    :class:`Apply`."""

    def __init__(self, mha: nn.MultiheadAttention, arrange, name: str = "") -> None:
        super().__init__()
        self.mha = mha
        self.arrange = arrange
        self.name = name

    def extra_repr(self) -> str:
        return self.name

    def forward(self, a, b=None, c=None, d=None, e=None):
        (q, k, v), keywords = self.arrange(a, b, c, d, e)
        m = self.mha
        return F.multi_head_attention_forward(
            q, k, v, m.embed_dim, m.num_heads, m.in_proj_weight, m.in_proj_bias, m.bias_k, m.bias_v,
            m.add_zero_attn, m.dropout, m.out_proj.weight, m.out_proj.bias, training=m.training,
            use_separate_proj_weight=not m._qkv_same_embed_dim, q_proj_weight=m.q_proj_weight,
            k_proj_weight=m.k_proj_weight, v_proj_weight=m.v_proj_weight, **keywords)


@case("F.multi_head_attention_forward", over=["packed", "separate weights"])
def functional_multihead_attention(draw, variant):
    d = attention_sizes(draw)
    options = dict(bias=draw(st.booleans()), add_bias_kv=draw(st.booleans()), add_zero_attn=draw(st.booleans()))
    if variant == "separate weights":
        options.update(kdim=draw(st.integers(1, 3)), vdim=draw(st.integers(1, 3)))
    mha = nn.MultiheadAttention(d["embed"], d["heads"], **options)
    batched = mostly(draw, True, st.booleans())
    q = wrong_rank(draw, sequence(d, d["L"], near(draw, d["embed"]), batched, False), 1, 4)
    k = sequence(d, d["S"], near(draw, options.get("kdim", d["embed"])), batched, False)
    v = sequence(d, near(draw, d["S"]), near(draw, options.get("vdim", d["embed"])), batched, False)
    keywords = dict(need_weights=draw(st.booleans()), average_attn_weights=draw(st.booleans()),
                    is_causal=draw(st.integers(0, 7)) == 0)
    shapes, dtypes, names = [q, k, v], [mostly(draw, FLOAT, st.just(F64)), FLOAT, FLOAT], []
    for name, shape in (("attn_mask", attn_mask(draw, d, d["L"], d["S"], batched)),
                        ("key_padding_mask", padding_mask(draw, d, d["S"], batched))):
        if draw(st.booleans()):
            shapes.append(shape)
            dtypes.append(mask_dtype(draw))
            names.append(name)

    def arrange(q, k, v, *masks):
        return (q, k, v), dict(keywords, **dict(zip(names, masks)))

    return example(draw, FunctionalAttention(mha, arrange, f"{keywords} {names}"), *shapes, dtypes=dtypes)


# -- Transformer layers and stacks ----------------------------------------------------------------
#
# These take up to eight inputs; drawn independently, some input would almost always be wrong.
# Each example makes at most one deliberate fault instead (none half of the time).


def fault(draw, kinds: list):
    return draw(st.sampled_from([None] * len(kinds) + kinds))


def layer_options(draw, fused: bool = False) -> dict:
    """Transformer layer options; ``fused`` keeps to what the encoder layer's fused kernel (and
    the encoder's nested-tensor path) need."""
    likely = st.just(True) if fused else st.sampled_from([True, True, False])
    activations = ["relu", "gelu", nn.GELU()] + ([] if fused else [F.silu])
    return dict(dim_feedforward=draw(st.integers(1, 4)), dropout=draw(st.sampled_from([0.0, 0.1])),
                activation=draw(st.sampled_from(activations)), batch_first=draw(likely),
                norm_first=not draw(likely) if fused else draw(st.booleans()), bias=draw(likely))


def tweak_layer(draw, layer: nn.Module) -> nn.Module:
    """Sometimes block the fused kernel in other ways: unequal norm eps, a forward hook."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        layer.norm2.eps = 1e-6
    elif kind == 1:
        layer.linear1.register_forward_hook(lambda *args: None)
    return layer


def layer_input(draw, d: dict, length: int, batched: bool, batch_first: bool, broken: bool) -> tuple:
    """A sequence of ``d_model`` features; ``broken``: another feature size or rank."""
    shape = sequence(d, length, d["embed"], batched, batch_first)
    if not broken:
        return shape
    if draw(st.booleans()):
        return shape[:-1] + (draw(st.integers(1, 4)),)
    return sizes(draw, draw(st.sampled_from([1, 4])), 1, 3)


def masks(draw, items: list, broken: bool) -> tuple[list, list, list]:
    """Some of the masks ``(name, shape)``, about two per example, bool or float; ``broken``:
    one of them gets a wrong shape, a same-numel shape or a wrong dtype. (names, shapes, dtypes)"""
    chosen = [(n, s, draw(st.sampled_from([torch.bool, FLOAT]))) for n, s in items
              if draw(st.integers(1, max(len(items), 2))) <= 2]
    if broken and chosen:
        i = draw(st.integers(0, len(chosen) - 1))
        name, shape, dtype = chosen[i]
        if draw(st.booleans()):
            shape = scrambled(draw, shape, force=True)
        else:
            dtype = draw(st.sampled_from([F64, torch.int64]))
        chosen[i] = (name, shape, dtype)
    return [n for n, _, _ in chosen], [s for _, s, _ in chosen], [t for _, _, t in chosen]


def keyword_inputs(n: int, names: list, keywords: dict):
    """Arranges ``n`` positional inputs, then the masks named ``names``, plus ``keywords``."""
    def arrange(*inputs):
        return inputs[:n], dict(keywords, **dict(zip(names, inputs[n:])))
    return arrange


def causal_hints(draw, names: list, defaults: dict, broken: bool) -> dict:
    """``is_causal`` keywords at their defaults, or (``broken``) one set to True: without its
    mask that fails outside the fused kernels."""
    hints = dict(defaults)
    if broken:
        hints[draw(st.sampled_from(names))] = True
    elif draw(st.booleans()):
        hints = {k: (False if v is None else v) for k, v in hints.items()}
    return hints


def input_dtype(draw, broken: bool):
    return F64 if broken else FLOAT


ENCODER_FAULTS = ["src", "masks", "causal", "dtype"]


@case("nn.TransformerEncoderLayer", over=["train", "eval", "eval fused"])
def transformer_encoder_layer(draw, mode):
    d = attention_sizes(draw, even=mode == "eval fused")
    options = layer_options(draw, fused=mode == "eval fused")
    layer = nn.TransformerEncoderLayer(d["embed"], d["heads"], **options).train(mode == "train")
    layer = layer if mode == "eval fused" else tweak_layer(draw, layer)
    broken = fault(draw, ENCODER_FAULTS)
    batched = mostly(draw, True, st.booleans())
    src = layer_input(draw, d, d["L"], batched, options["batch_first"], broken == "src")
    names, shapes, dtypes = masks(draw, [("src_mask", attn_mask(draw, d, d["L"], d["L"], batched, exact=True)),
                                         ("src_key_padding_mask", padding_mask(draw, d, d["L"], batched, exact=True))],
                                  broken == "masks")
    keywords = causal_hints(draw, ["is_causal"], dict(is_causal=False), broken == "causal")
    return example(draw, Apply(layer, keyword_inputs(1, names, keywords), f"{options} {keywords} {names}"),
                   src, *shapes, dtypes=[input_dtype(draw, broken == "dtype"), *dtypes])


def stack_norm(draw, d: dict):
    return nn.LayerNorm(d["embed"]) if draw(st.booleans()) else None


@case("nn.TransformerEncoder", over=["train", "eval", "eval nested"])
def transformer_encoder(draw, mode):
    nested = mode == "eval nested"
    d = attention_sizes(draw, even=nested)
    options = layer_options(draw, fused=nested)
    layer = nn.TransformerEncoderLayer(d["embed"], d["heads"], **options)
    layer = layer if nested else tweak_layer(draw, layer)
    encoder = nn.TransformerEncoder(layer, draw(st.integers(1, 2)), norm=stack_norm(draw, d),
                                    enable_nested_tensor=nested or draw(st.booleans()),
                                    mask_check=draw(st.booleans()))
    encoder.train(mode == "train")
    broken = fault(draw, ENCODER_FAULTS)
    batched = mostly(draw, True, st.booleans())
    src = layer_input(draw, d, d["L"], batched, options["batch_first"], broken == "src")
    names, shapes, dtypes = masks(draw, [("mask", attn_mask(draw, d, d["L"], d["L"], batched, exact=True)),
                                         ("src_key_padding_mask", padding_mask(draw, d, d["L"], batched, exact=True))],
                                  broken == "masks")
    if nested and "src_key_padding_mask" in names and draw(st.booleans()):
        names, shapes, dtypes = names[-1:], shapes[-1:], dtypes[-1:]  # the padding mask alone packs the batch
    keywords = causal_hints(draw, ["is_causal"], dict(is_causal=None), broken == "causal")
    if "mask" in names and dtypes[0] == F64 and keywords["is_causal"] is None:
        # Whether a float64 mask is dropped as causal depends on its values.
        keywords["is_causal"] = False
    return example(draw, Apply(encoder, keyword_inputs(1, names, keywords), f"{options} {keywords} {names}"),
                   src, *shapes, dtypes=[input_dtype(draw, broken == "dtype"), *dtypes])


DECODER_FAULTS = ["tgt", "memory", "masks", "causal", "dtype"]


def decoder_masks(draw, d: dict, batched: bool, broken: bool):
    return masks(draw, [("tgt_mask", attn_mask(draw, d, d["L"], d["L"], batched, exact=True)),
                        ("memory_mask", attn_mask(draw, d, d["L"], d["S"], batched, exact=True)),
                        ("tgt_key_padding_mask", padding_mask(draw, d, d["L"], batched, exact=True)),
                        ("memory_key_padding_mask", padding_mask(draw, d, d["S"], batched, exact=True))], broken)


@case("nn.TransformerDecoderLayer", over=["train", "eval"])
def transformer_decoder_layer(draw, mode):
    d = attention_sizes(draw)
    options = layer_options(draw)
    layer = nn.TransformerDecoderLayer(d["embed"], d["heads"], **options).train(mode == "train")
    broken = fault(draw, DECODER_FAULTS)
    batched = mostly(draw, True, st.booleans())
    bf = options["batch_first"]
    tgt = layer_input(draw, d, d["L"], batched, bf, broken == "tgt")
    memory = layer_input(draw, d, d["S"], batched, bf, broken == "memory")
    names, shapes, dtypes = decoder_masks(draw, d, batched, broken == "masks")
    keywords = causal_hints(draw, ["tgt_is_causal", "memory_is_causal"],
                            dict(tgt_is_causal=False, memory_is_causal=False), broken == "causal")
    return example(draw, Apply(layer, keyword_inputs(2, names, keywords), f"{options} {keywords} {names}"),
                   tgt, memory, *shapes, dtypes=[input_dtype(draw, broken == "dtype"), FLOAT, *dtypes])


@case("nn.TransformerDecoder", over=["train", "eval"])
def transformer_decoder(draw, mode):
    d = attention_sizes(draw)
    options = layer_options(draw)
    layer = nn.TransformerDecoderLayer(d["embed"], d["heads"], **options)
    decoder = nn.TransformerDecoder(layer, draw(st.integers(1, 2)), norm=stack_norm(draw, d)).train(mode == "train")
    broken = fault(draw, DECODER_FAULTS)
    batched = mostly(draw, True, st.booleans())
    bf = options["batch_first"]
    tgt = layer_input(draw, d, d["L"], batched, bf, broken == "tgt")
    memory = layer_input(draw, d, d["S"], batched, bf, broken == "memory")
    names, shapes, dtypes = decoder_masks(draw, d, batched, broken == "masks")
    keywords = causal_hints(draw, ["tgt_is_causal", "memory_is_causal"],
                            dict(tgt_is_causal=None, memory_is_causal=False), broken == "causal")
    if "tgt_mask" in names and dtypes[0] == F64 and keywords["tgt_is_causal"] is None:
        keywords["tgt_is_causal"] = False  # as for the encoder
    return example(draw, Apply(decoder, keyword_inputs(2, names, keywords), f"{options} {keywords} {names}"),
                   tgt, memory, *shapes, dtypes=[input_dtype(draw, broken == "dtype"), FLOAT, *dtypes])


@case("nn.Transformer", over=["train", "eval"])
def transformer(draw, mode):
    d = attention_sizes(draw)
    options = layer_options(draw)
    model = nn.Transformer(d["embed"], d["heads"], num_encoder_layers=1, num_decoder_layers=1, **options)
    model.train(mode == "train")
    broken = fault(draw, ["src", "tgt", "batch", "masks", "causal", "dtype"])
    batched = mostly(draw, True, st.booleans())
    bf = options["batch_first"]
    src = layer_input(draw, d, d["S"], batched, bf, broken == "src")
    tgt = layer_input(draw, d, d["L"], batched, bf, broken == "tgt")
    if broken == "batch" and batched:
        tgt = sequence(dict(d, N=d["N"] + 1), d["L"], d["embed"], batched, bf)
    names, shapes, dtypes = masks(draw, [
        ("src_mask", attn_mask(draw, d, d["S"], d["S"], batched, exact=True)),
        ("tgt_mask", attn_mask(draw, d, d["L"], d["L"], batched, exact=True)),
        ("memory_mask", attn_mask(draw, d, d["L"], d["S"], batched, exact=True)),
        ("src_key_padding_mask", padding_mask(draw, d, d["S"], batched, exact=True)),
        ("tgt_key_padding_mask", padding_mask(draw, d, d["L"], batched, exact=True)),
        ("memory_key_padding_mask", padding_mask(draw, d, d["S"], batched, exact=True))], broken == "masks")
    keywords = causal_hints(draw, ["src_is_causal", "tgt_is_causal", "memory_is_causal"],
                            dict(src_is_causal=None, tgt_is_causal=None, memory_is_causal=False), broken == "causal")
    for name, dtype in zip(names, dtypes):
        hint = {"src_mask": "src_is_causal", "tgt_mask": "tgt_is_causal"}.get(name)
        if hint and dtype == F64 and keywords[hint] is None:
            keywords[hint] = False  # as for the encoder
    return example(draw, Apply(model, keyword_inputs(2, names, keywords), f"{options} {keywords} {names}"),
                   src, tgt, *shapes, dtypes=[input_dtype(draw, broken == "dtype"), FLOAT, *dtypes])
