"""Attention: F.scaled_dot_product_attention, nn.MultiheadAttention (and
F.multi_head_attention_forward), and the Transformer modules built on them.

Shapes follow the PyTorch docs
(https://pytorch.org/docs/stable/generated/torch.nn.functional.scaled_dot_product_attention.html,
.../torch.nn.MultiheadAttention.html, .../torch.nn.Transformer.html); the checks are those of
``F.multi_head_attention_forward`` (torch/nn/functional.py), of the modules' ``forward`` in
torch/nn/modules/activation.py and transformer.py, and of ATen's SDPA math kernel.

Fast paths. In eval mode, ``MultiheadAttention`` (self-attention on one tensor, batch_first,
an even number of heads, no float masks...) and ``TransformerEncoderLayer`` run fused kernels
whose mask checks differ from the Python path: masks are only ``view``-ed to
``(N, heads, L, L)`` (so any mask with the right number of elements passes), float masks of any
dtype pass, and the ``is_causal`` hint is ignored. PyTorch takes them only when autograd does not
record (``torch.no_grad()``/``inference_mode`` or frozen parameters); these rules assume it does
not, as in inference and in a dry run, and otherwise follow the Python path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import sympy
import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.checks import eq, equal, require, require_divisible, require_equal
from lazyfx.core.registry import RULES, lookup_by_class, rule
from lazyfx.core.symbolic import DimExpr, fmt, is_concrete, mod, product
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import DataDependentError, ShapeError, UnsupportedOpError
from lazyfx.rules._util import broadcast_into, broadcast_shapes, one_of, result_dtype, shape_str, tensor_arg
from lazyfx.rules.lazy import ModuleView

# -- helpers ------------------------------------------------------------------------------------


def _view(module: nn.Module) -> Any:
    """A submodule as rules see modules: a read-only view that reads attributes as nn.Module
    defines them (rules run while torch.fx traces, which patches nn.Module's attribute lookup
    so that reading a parameter would add a node to the user's graph)."""
    return module if isinstance(module, ModuleView) else ModuleView(module)


def _call(module: nn.Module, *args, **kwargs) -> Any:
    """A submodule's output, by its own shape rule (the nearest registered class in its MRO)."""
    found = lookup_by_class(RULES, module.__class__)
    if found is None:
        raise UnsupportedOpError(f"no shape rule for the submodule class {module.__class__.__qualname__}")
    return found.fn(_view(module), *args, **kwargs)


def _apply(fn: Any, x: TensorMeta) -> TensorMeta:
    """``fn(x)`` for a Transformer layer's activation: a module, or a function with a rule."""
    if isinstance(fn, nn.Module):
        return _call(fn, x)
    found = RULES.get(fn)
    if found is None:
        raise UnsupportedOpError(f"no shape rule for the activation {getattr(fn, '__qualname__', fn)!r}")
    return found.fn(x)


def _add(a: TensorMeta, b: TensorMeta) -> TensorMeta:
    """``a + b`` (the residual connections)."""
    return TensorMeta(broadcast_shapes(a.shape, b.shape), result_dtype(a, b))


def _swap01(x: TensorMeta, what: str) -> TensorMeta:
    if x.ndim < 2:
        raise ShapeError(f"{what}: transpose(1, 0) needs at least 2 dims, got size {shape_str(x.shape)}")
    return x.with_shape((x.shape[1], x.shape[0], *x.shape[2:]))


def _unsqueeze(x: TensorMeta, d: int) -> TensorMeta:
    return x.with_shape((*x.shape[:d], 1, *x.shape[d:]))


def _squeeze(x: TensorMeta, d: int) -> TensorMeta:
    """``squeeze(d)`` of a dim known to be 1."""
    return x.with_shape(x.shape[:d] + x.shape[d + 1 :])


def _optional_tensor(value: Any, what: str) -> Optional[TensorMeta]:
    return None if value is None else tensor_arg(value, what)


def _canonical_mask(mask: Optional[TensorMeta], name: str, target: torch.dtype) -> Optional[TensorMeta]:
    """``F._canonical_mask``: a bool mask becomes a float mask of the input's dtype; other
    masks must be floating point."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return TensorMeta(mask.shape, target)
    if not mask.dtype.is_floating_point:
        raise ShapeError(f"only bool and floating types of {name} are supported, got {dtype_name(mask.dtype)}")
    return mask


def _is_float(mask: Optional[TensorMeta]) -> bool:
    return mask is not None and mask.dtype.is_floating_point


def _require_shape(x: TensorMeta, expected: tuple, message) -> None:
    if x.ndim != len(expected):
        raise ShapeError(message())
    for got, want in zip(x.shape, expected):
        require_equal(got, want, message)


def _no_hooks(module: nn.Module) -> bool:
    return not any(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


# -- F.scaled_dot_product_attention ---------------------------------------------------------------


def _check_sdpa_dtypes(q: TensorMeta, k: TensorMeta, v: TensorMeta, mask: Optional[TensorMeta]) -> None:
    if not q.dtype == k.dtype == v.dtype:
        raise ShapeError(f"Expected query, key, and value to have the same dtype, but got query.dtype: "
                         f"{dtype_name(q.dtype)} key.dtype: {dtype_name(k.dtype)} and value.dtype: "
                         f"{dtype_name(v.dtype)} instead.")
    if not q.dtype.is_floating_point:
        raise ShapeError(f"scaled_dot_product_attention: expected a floating point query, got {dtype_name(q.dtype)}")
    if mask is not None and mask.dtype not in (torch.bool, torch.float32, q.dtype):
        raise ShapeError(f"Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                         f"attn_mask.dtype: {dtype_name(mask.dtype)} and query.dtype: {dtype_name(q.dtype)} instead.")


def _grouped_heads(q: TensorMeta, k: TensorMeta, v: TensorMeta) -> tuple[TensorMeta, TensorMeta]:
    """``enable_gqa``: key and value heads (dim -3) are repeated up to the query's; both must
    divide it."""
    for t, name in ((q, "query"), (k, "key"), (v, "value")):
        if t.ndim < 3:
            raise ShapeError(f"enable_gqa needs a heads dim (-3): {name} has size {shape_str(t.shape)}")
    heads = q.shape[-3]
    for t, name in ((k, "key"), (v, "value")):
        require_divisible(heads, t.shape[-3],
                          lambda t=t: f"Number of heads in key and value must divide the number of heads in query: "
                          f"{fmt(t.shape[-3])} does not divide {fmt(heads)}")
    repeat = lambda t: t.with_shape((*t.shape[:-3], heads, *t.shape[-2:]))  # noqa: E731
    return repeat(k), repeat(v)


def _check_mask_fits(mask: TensorMeta, scores: tuple) -> None:
    """The mask is added in place to the scores ``(*batch, L, S)``: it must broadcast to them
    without growing them."""
    message = lambda: (f"attn_mask of size {shape_str(mask.shape)} does not broadcast to the attention "  # noqa: E731
                       f"scores' size {shape_str(scores)}")
    broadcast_into(scores, mask.shape, message)


def _check_fused_cpu_mask(q, k, v, mask: TensorMeta, dropout_p, enable_gqa: bool) -> None:
    """Choosing the CPU flash kernel reads ``attn_mask.size(-2)``, so a mask of fewer than 2 dims
    fails where that kernel's other conditions hold (``use_flash_attention_cpp`` in ATen's
    sdp_utils_cpp.cpp): 4-D inputs with one batch size and matching (or, with ``enable_gqa``,
    grouped) heads, and no dropout."""
    if mask.ndim >= 2 or not (q.ndim == k.ndim == v.ndim == 4) or not torch.backends.cuda.flash_sdp_enabled():
        return
    if not isinstance(dropout_p, (int, float)) or dropout_p > 0:
        return
    conditions = [eq(q.shape[0], k.shape[0]), eq(q.shape[0], v.shape[0])]
    if enable_gqa:
        conditions += [eq(mod(q.shape[1], k.shape[1]), 0), eq(k.shape[1], v.shape[1])]
    else:
        conditions += [eq(q.shape[1], k.shape[1]), eq(q.shape[1], v.shape[1])]
    fused = sympy.And(*conditions)
    require(sympy.Not(fused) if isinstance(fused, sympy.Basic) else not fused,
            lambda: f"attn_mask of size {shape_str(mask.shape)} needs at least 2 dims: the CPU flash attention "
            f"kernel reads its dim -2")


@rule(F.scaled_dot_product_attention)
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False) -> TensorMeta:
    """``query (*, L, E)``, ``key (*, S, E)``, ``value (*, S, Ev)`` -> ``(*, L, Ev)`` where ``*`` is
    the broadcast of the three batch shapes; ``attn_mask`` must broadcast to ``(*, L, S)``."""
    q, k, v = (tensor_arg(t, f"scaled_dot_product_attention {n}")
               for t, n in ((query, "query"), (key, "key"), (value, "value")))
    mask = _optional_tensor(attn_mask, "scaled_dot_product_attention attn_mask")
    _check_sdpa_dtypes(q, k, v, mask)
    if min(q.ndim, k.ndim, v.ndim) < 2:
        raise ShapeError(f"Expected query, key, and value to all be at least 2 dimensional, but got "
                         f"query.dim: {q.ndim} key.dim: {k.ndim} and value.dim: {v.ndim} instead.")
    if mask is not None:
        _check_fused_cpu_mask(q, k, v, mask, dropout_p, enable_gqa)
    if is_causal and mask is not None:
        raise ShapeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True")
    if enable_gqa:
        k, v = _grouped_heads(q, k, v)
    require_equal(q.shape[-1], k.shape[-1], lambda: f"scaled_dot_product_attention: query's last dim "
                  f"{fmt(q.shape[-1])} and key's {fmt(k.shape[-1])} differ")
    scores = (*broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
    if mask is not None:
        _check_mask_fits(mask, scores)
    require_equal(k.shape[-2], v.shape[-2], lambda: f"scaled_dot_product_attention: key has {fmt(k.shape[-2])} "
                  f"positions but value has {fmt(v.shape[-2])}")
    batch = broadcast_shapes(scores[:-2], v.shape[:-2])
    return TensorMeta((*batch, q.shape[-2], v.shape[-1]), q.dtype)


# -- multi-head attention: F.multi_head_attention_forward's checks --------------------------------


@dataclass(frozen=True)
class Projections:
    """What the in- and out-projections of a multi-head attention fix."""

    embed_dim: DimExpr  # E: the query's features (embed_dim_to_check)
    num_heads: int
    kdim: DimExpr  # the key's features the key projection takes
    vdim: DimExpr
    separate: bool  # use_separate_proj_weight: key and value need only agree on (S, N)
    out_features: DimExpr
    weight_dtype: torch.dtype
    extra_keys: int  # keys appended: 1 for bias_k/bias_v, 1 for add_zero_attn


def module_projections(module: nn.MultiheadAttention) -> Projections:
    weight = module.in_proj_weight if module._qkv_same_embed_dim else module.q_proj_weight
    return Projections(
        embed_dim=module.embed_dim,
        num_heads=module.num_heads,
        kdim=module.kdim,
        vdim=module.vdim,
        separate=not module._qkv_same_embed_dim,
        out_features=module.out_proj.out_features,
        weight_dtype=weight.dtype,
        extra_keys=int(module.bias_k is not None) + int(module.add_zero_attn),
    )


def _mha_shape_check(q, k, v, key_padding_mask, attn_mask, num_heads: int) -> bool:
    """``F._mha_shape_check``: whether the input is batched (3-D) or not (2-D)."""
    if q.ndim not in (2, 3):
        raise ShapeError(f"query should be unbatched 2D or batched 3D tensor but received {q.ndim}-D query tensor")
    batched = q.ndim == 3
    kind = "batched (3-D)" if batched else "unbatched (2-D)"
    if k.ndim != q.ndim or v.ndim != q.ndim:
        raise ShapeError(f"For {kind} `query`, expected `key` and `value` to be {q.ndim}-D but found "
                         f"{k.ndim}-D and {v.ndim}-D tensors respectively")
    if key_padding_mask is not None and key_padding_mask.ndim != q.ndim - 1:
        raise ShapeError(f"For {kind} `query`, expected `key_padding_mask` to be `None` or {q.ndim - 1}-D but "
                         f"found {key_padding_mask.ndim}-D tensor instead")
    if attn_mask is not None:
        if attn_mask.ndim not in (2, 3):
            raise ShapeError(f"For {kind} `query`, expected `attn_mask` to be `None`, 2-D or 3-D but found "
                             f"{attn_mask.ndim}-D tensor instead")
        if not batched and attn_mask.ndim == 3:
            expected = (num_heads, q.shape[0], k.shape[0])
            _require_shape(attn_mask, expected, lambda: f"Expected `attn_mask` shape to be {fmt(expected)} but "
                           f"got {shape_str(attn_mask.shape)}")
    return batched


def _check_projections(q: TensorMeta, k: TensorMeta, v: TensorMeta, p: Projections) -> None:
    """The in-projections are linear maps of the three inputs' last dims."""
    if p.separate:
        for a, b, what in zip(k.shape[:2], v.shape[:2], ("sequence", "batch")):
            require_equal(a, b, lambda a=a, b=b, what=what: f"key's {what} dim {fmt(a)} does not match "
                          f"value's {fmt(b)}")
    else:
        for a, b in zip(k.shape, v.shape):
            require_equal(a, b, lambda: f"key shape {shape_str(k.shape)} does not match value shape "
                          f"{shape_str(v.shape)}")
    for t, size, name in ((k, p.kdim, "key"), (v, p.vdim, "value")):
        require_equal(t.shape[-1], size, lambda t=t, size=size, name=name: f"the {name} projection expects "
                      f"{fmt(size)} features, got {name} of size {shape_str(t.shape)}")
    for t, name in ((q, "query"), (k, "key"), (v, "value")):
        if t.dtype != p.weight_dtype:
            raise ShapeError(f"{name} dtype ({dtype_name(t.dtype)}) and the projection weight's "
                             f"({dtype_name(p.weight_dtype)}) must be the same")


def _check_attn_mask(mask: TensorMeta, tgt_len, src_len, bsz, num_heads: int) -> None:
    """A 2-D mask is ``(L, S)``, a 3-D one ``(N*num_heads, L, S)``."""
    expected = (tgt_len, src_len) if mask.ndim == 2 else (bsz * num_heads, tgt_len, src_len)
    _require_shape(mask, expected, lambda: f"The shape of the {mask.ndim}D attn_mask is {shape_str(mask.shape)}, "
                   f"but should be {fmt(expected)}.")


def _check_mask_dtypes(q: TensorMeta, masks: list, need_weights: bool, causal_unknown: bool) -> None:
    """The (summed) mask is ``baddbmm``'s input with the weights, which needs the query's dtype,
    else SDPA's, which takes float32 or the query's dtype."""
    if not masks:
        return
    dtype = masks[0].dtype if len(masks) == 1 else torch.promote_types(masks[0].dtype, masks[1].dtype)
    allowed = (q.dtype,) if need_weights else (q.dtype, torch.float32)
    if dtype in allowed:
        return
    if causal_unknown:
        raise DataDependentError(
            f"a {dtype_name(dtype)} attention mask with a {dtype_name(q.dtype)} input is accepted only when its "
            f"values are exactly a causal mask (PyTorch then drops it): that depends on the mask's values"
        )
    raise ShapeError(f"the attention mask's dtype {dtype_name(dtype)} does not match the query's "
                     f"({dtype_name(q.dtype)})")


def mha_forward(q, k, v, p: Projections, *, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal: Optional[bool] = False):
    """``query (L, N, E)``, ``key (S, N, kdim)``, ``value (S, N, vdim)`` (unbatched without ``N``) ->
    ``(output (L, N, out), weights (N, L, S') or (N, num_heads, L, S') or None)`` with
    ``S' = S + extra_keys``; ``is_causal=None`` stands for "depends on the mask's values"."""
    batched = _mha_shape_check(q, k, v, key_padding_mask, attn_mask, p.num_heads)
    if not batched:
        q, k, v = (_unsqueeze(t, 1) for t in (q, k, v))
        key_padding_mask = None if key_padding_mask is None else _unsqueeze(key_padding_mask, 0)
    tgt_len, bsz, embed_dim = q.shape
    src_len = k.shape[0]
    kpm = _canonical_mask(key_padding_mask, "key_padding_mask", q.dtype)
    if is_causal and attn_mask is None:
        raise ShapeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                         "method `generate_square_subsequent_mask` to create this mask.")
    drops_mask = kpm is None and not need_weights
    mask = None if is_causal and drops_mask else _canonical_mask(attn_mask, "attn_mask", q.dtype)
    require_equal(embed_dim, p.embed_dim, lambda: f"was expecting embedding dimension of {fmt(p.embed_dim)}, "
                  f"but got {fmt(embed_dim)}")
    _check_projections(q, k, v, p)
    require_equal(k.shape[1], bsz, lambda: f"key's batch size {fmt(k.shape[1])} does not match query's {fmt(bsz)}")
    if mask is not None:
        _check_attn_mask(mask, tgt_len, src_len, bsz, p.num_heads)
    if kpm is not None:
        for got, want, i in ((kpm.shape[0], bsz, 0), (kpm.shape[1], src_len, 1)):
            require_equal(got, want, lambda got=got, want=want, i=i: f"Expected key_padded_mask.shape[{i}] to be "
                          f"{fmt(want)}, but got {fmt(got)}")
    masks = [m for m in (mask, kpm) if m is not None]
    _check_mask_dtypes(q, masks, need_weights, causal_unknown=is_causal is None and drops_mask)
    out = TensorMeta((tgt_len, bsz, p.out_features), q.dtype)
    weights = None
    if need_weights:
        heads = () if average_attn_weights else (p.num_heads,)
        weights = TensorMeta((bsz, *heads, tgt_len, src_len + p.extra_keys), q.dtype)
    if not batched:
        out = _squeeze(out, 1)
        weights = None if weights is None else _squeeze(weights, 0)
    return out, weights


# -- the fused kernels (eval mode, see the module docstring) ----------------------------------------


def _mha_fast_path(module: nn.MultiheadAttention, q, k, v, float_masks: bool) -> bool:
    """``MultiheadAttention.forward``'s conditions for ``torch._native_multi_head_attention``."""
    if float_masks or not torch.backends.mha.get_fastpath_enabled():
        return False
    if q.ndim != 3 or not (q is k and k is v):
        return False
    weight, bias = module.in_proj_weight, module.in_proj_bias
    if weight is None or bias is None or q.dtype != weight.dtype or q.dtype != bias.dtype:
        return False
    return (not module.training and module.num_heads % 2 == 0 and module.batch_first and module.bias_k is None
            and module.bias_v is None and not module.add_zero_attn and module._qkv_same_embed_dim)


def _check_fused_masks(bsz, seq, heads: int, attn_mask, kpm) -> None:
    """``MultiheadAttention.merge_masks`` and the fused masked softmax over scores
    ``(N, heads, L, L)``: a padding mask alone must be ``(N, L)`` (or have the scores' shape);
    otherwise the masks are only viewed as ``(N, -1, L, L)`` (3-D) or ``(1, 1, L, L)`` and
    ``(N, 1, 1, L)``, and their sum must have the scores' shape."""
    scores = (bsz, heads, seq, seq)
    if attn_mask is None:
        if kpm is None:
            return
        expected = (bsz, seq) if kpm.ndim == 2 else scores
        _require_shape(kpm, expected, lambda: f"For mask_type == {1 if kpm.ndim == 2 else 2} the mask of size "
                       f"{shape_str(kpm.shape)} should be {fmt(expected)}")
        return
    numel = product(attn_mask.shape)
    if attn_mask.ndim == 3:
        sizes = [bsz * heads * seq * seq] + ([bsz * seq * seq] if kpm is not None else [])
        require(one_of(numel, sizes), lambda: f"attn_mask of size {shape_str(attn_mask.shape)} cannot be viewed "
                f"as {fmt(scores)}")
    else:
        require_equal(numel, seq * seq, lambda: f"shape '[1, 1, {fmt(seq)}, {fmt(seq)}]' is invalid for "
                      f"input of size {fmt(numel)}")
    if kpm is not None:
        require_equal(product(kpm.shape), bsz * seq, lambda: f"shape '[{fmt(bsz)}, 1, 1, {fmt(seq)}]' is "
                      f"invalid for input of size {fmt(product(kpm.shape))}")


def _fused_attention(q: TensorMeta, embed_dim, heads: int, attn_mask, kpm) -> None:
    """Checks of the fused self-attention on ``q (N, L, E)``."""
    bsz, seq, features = q.shape
    require_equal(features, embed_dim, lambda: f"passed-in embed_dim {fmt(embed_dim)} didn't match last dim "
                  f"of query {fmt(features)}")
    _check_fused_masks(bsz, seq, heads, attn_mask, kpm)


def _native_mha(module: nn.MultiheadAttention, q: TensorMeta, attn_mask, kpm, need_weights, average):
    _fused_attention(q, module.embed_dim, module.num_heads, attn_mask, kpm)
    bsz, seq, _ = q.shape
    out = TensorMeta((bsz, seq, module.out_proj.out_features), q.dtype)
    if not need_weights:
        return out, None
    heads = () if average else (module.num_heads,)
    return out, TensorMeta((bsz, *heads, seq, seq), q.dtype)


# -- nn.MultiheadAttention ---------------------------------------------------------------------------


@rule(nn.MultiheadAttention)
def multihead_attention_module(module: nn.MultiheadAttention, query, key, value, key_padding_mask=None,
                               need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False):
    """``query (L, N, E)``, ``key (S, N, kdim)``, ``value (S, N, vdim)`` (``(N, L, E)``... with
    ``batch_first``, ``(L, E)``... unbatched) -> ``(attn_output (L, N, E), attn_weights)`` with
    weights ``(N, L, S)`` averaged over heads, ``(N, num_heads, L, S)`` per head, or None
    without ``need_weights``; ``S`` counts ``bias_k`` and ``add_zero_attn`` keys.
    Masks: ``key_padding_mask (N, S)``, ``attn_mask (L, S)`` or ``(N*num_heads, L, S)``."""
    q, k, v = (tensor_arg(t, f"MultiheadAttention {n}") for t, n in ((query, "query"), (key, "key"), (value, "value")))
    kpm_in = _optional_tensor(key_padding_mask, "MultiheadAttention key_padding_mask")
    mask_in = _optional_tensor(attn_mask, "MultiheadAttention attn_mask")
    float_masks = _is_float(kpm_in) or _is_float(mask_in)
    kpm = _canonical_mask(kpm_in, "key_padding_mask", q.dtype)
    mask = _canonical_mask(mask_in, "attn_mask", q.dtype)
    if _mha_fast_path(module, q, k, v, float_masks):
        return _native_mha(module, q, mask, kpm, need_weights, average_attn_weights)
    transpose = module.batch_first and q.ndim == 3
    if transpose:
        q, k, v = (_swap01(t, "MultiheadAttention") for t in (q, k, v))
    out, weights = mha_forward(q, k, v, module_projections(module), key_padding_mask=kpm,
                               need_weights=need_weights, attn_mask=mask,
                               average_attn_weights=average_attn_weights, is_causal=is_causal)
    return (_swap01(out, "MultiheadAttention") if transpose else out), weights


# -- F.multi_head_attention_forward -----------------------------------------------------------------


def _parameter(t: Any, shape: tuple, name: str, *, exact: bool) -> TensorMeta:
    """A projection parameter of the size ``nn.MultiheadAttention`` gives it. With ``exact``,
    PyTorch rejects any other size; otherwise other sizes take paths (broadcast biases, uneven
    chunks) that are not modelled."""
    t = tensor_arg(t, f"multi_head_attention_forward {name}")
    message = lambda: f"multi_head_attention_forward: expecting {name} of size {fmt(shape)}, got {shape_str(t.shape)}"  # noqa: E731
    if exact:
        _require_shape(t, shape, message)
    elif t.ndim != len(shape) or any(equal(a, b) is not True for a, b in zip(t.shape, shape)):
        raise UnsupportedOpError(f"{message()} (only the size nn.MultiheadAttention uses is supported)")
    return t


def _in_projections(k: TensorMeta, v: TensorMeta, e: int, packed, separate, bias):
    """(weight, kdim, vdim) of the in-projections: a packed ``(3E, E)`` weight, or ``q/k/v``
    weights ``(E, E)``, ``(E, kdim)``, ``(E, vdim)`` matching the key's and value's features."""
    if separate is not None:
        q_weight, k_weight, v_weight = separate
        weight = _parameter(q_weight, (e, e), "q_proj_weight", exact=True)
        kdim = _parameter(k_weight, (e, k.shape[-1]), "k_proj_weight", exact=True).shape[1]
        vdim = _parameter(v_weight, (e, v.shape[-1]), "v_proj_weight", exact=True).shape[1]
    else:
        weight = _parameter(packed, (3 * e, e), "in_proj_weight", exact=True)
        kdim = vdim = e
    if bias is not None:
        # Separate weights take the bias in three (E,) chunks, each checked; a packed weight's
        # bias is broadcast by linear, where other sizes may pass.
        _parameter(bias, (3 * e,), "in_proj_bias", exact=separate is not None)
    return weight, kdim, vdim


def _out_features(weight: Any, bias: Any, e: int) -> DimExpr:
    """The out-projection ``(out, E)`` maps the heads' concatenation to ``out`` features."""
    weight = tensor_arg(weight, "multi_head_attention_forward out_proj_weight")
    out_features = weight.shape[0] if weight.ndim == 2 else -1
    _parameter(weight, (out_features, e), "out_proj_weight", exact=True)
    if bias is not None:
        _parameter(bias, (out_features,), "out_proj_bias", exact=False)
    return out_features


def _extra_keys(bias_k: Any, bias_v: Any, add_zero_attn: bool, e: int) -> int:
    """Keys appended to the sequence: one for ``bias_k``/``bias_v`` (both or neither), one for
    ``add_zero_attn``."""
    if (bias_k is None) != (bias_v is None):
        given, missing = ("k", "v") if bias_k is not None else ("v", "k")
        raise ShapeError(f"bias_{given} is set but bias_{missing} is None")
    if bias_k is not None:
        _parameter(bias_k, (1, 1, e), "bias_k", exact=False)
        _parameter(bias_v, (1, 1, e), "bias_v", exact=False)
    return int(bias_k is not None) + int(bool(add_zero_attn))


@rule(F.multi_head_attention_forward)
def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                                 bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias,
                                 training=True, key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None, k_proj_weight=None,
                                 v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
                                 is_causal=False):
    """Sequence-first inputs as :func:`mha_forward`, with parameters of the sizes
    ``nn.MultiheadAttention`` gives them (``in_proj_weight (3E, E)`` or ``q/k/v_proj_weight
    (E, E|kdim|vdim)``, ``out_proj_weight (out, E)``, ``bias_k/bias_v (1, 1, E)``)."""
    q, k, v = (tensor_arg(t, f"multi_head_attention_forward {n}")
               for t, n in ((query, "query"), (key, "key"), (value, "value")))
    if static_k is not None or static_v is not None:
        raise UnsupportedOpError("multi_head_attention_forward: static_k/static_v are not supported")
    if not is_concrete(embed_dim_to_check) or not is_concrete(num_heads):
        raise UnsupportedOpError("multi_head_attention_forward: embed_dim and num_heads must be concrete ints")
    if embed_dim_to_check % num_heads:
        raise ShapeError(f"embed_dim {embed_dim_to_check} not divisible by num_heads {num_heads}")
    kpm = _optional_tensor(key_padding_mask, "multi_head_attention_forward key_padding_mask")
    mask = _optional_tensor(attn_mask, "multi_head_attention_forward attn_mask")
    _mha_shape_check(q, k, v, kpm, mask, num_heads)  # before reading the key's and value's features
    e = embed_dim_to_check
    separate = (q_proj_weight, k_proj_weight, v_proj_weight) if use_separate_proj_weight else None
    weight, kdim, vdim = _in_projections(k, v, e, in_proj_weight, separate, in_proj_bias)
    p = Projections(e, num_heads, kdim, vdim, separate is not None, _out_features(out_proj_weight, out_proj_bias, e),
                    weight.dtype, _extra_keys(bias_k, bias_v, add_zero_attn, e))
    return mha_forward(q, k, v, p, key_padding_mask=kpm, need_weights=need_weights, attn_mask=mask,
                       average_attn_weights=average_attn_weights, is_causal=is_causal)


# -- Transformer layers -------------------------------------------------------------------------------


def _feed_forward(module: nn.Module, x: TensorMeta, dropout: nn.Module) -> TensorMeta:
    """``dropout(linear2(dropout(activation(linear1(x)))))``."""
    hidden = _call(module.dropout, _apply(module.activation, _call(module.linear1, x)))
    return _call(dropout, _call(module.linear2, hidden))


def _self_attention(attn: nn.MultiheadAttention, x: TensorMeta, mask, kpm, is_causal) -> TensorMeta:
    """The self-attention block: ``q``, ``k`` and ``v`` are one tensor (as the fast path wants)."""
    return _call(attn, x, x, x, attn_mask=mask, key_padding_mask=kpm, need_weights=False, is_causal=is_causal)[0]


def _encoder_layer_fast_path(module: nn.TransformerEncoderLayer, x: TensorMeta) -> bool:
    """``TransformerEncoderLayer.forward``'s conditions for ``torch._transformer_encoder_layer_fwd``."""
    attn = _view(module.self_attn)
    return (torch.backends.mha.get_fastpath_enabled() and x.ndim == 3 and not module.training
            and attn.batch_first and attn.in_proj_bias is not None and attn._qkv_same_embed_dim
            and bool(module.activation_relu_or_gelu) and module.norm1.eps == module.norm2.eps
            and attn.num_heads % 2 == 0 and _no_hooks(module))


@rule(nn.TransformerEncoderLayer)
def transformer_encoder_layer(module: nn.TransformerEncoderLayer, src, src_mask=None, src_key_padding_mask=None,
                              is_causal=False) -> TensorMeta:
    """``src (S, N, d_model)`` (``(N, S, d_model)`` with ``batch_first``, ``(S, d_model)``
    unbatched) -> the same shape; masks as for the self-attention
    (https://pytorch.org/docs/stable/generated/torch.nn.TransformerEncoderLayer.html)."""
    x = tensor_arg(src, "TransformerEncoderLayer src")
    kpm = _canonical_mask(_optional_tensor(src_key_padding_mask, "src_key_padding_mask"), "src_key_padding_mask",
                          x.dtype)
    mask = _canonical_mask(_optional_tensor(src_mask, "src_mask"), "src_mask", x.dtype)
    if _encoder_layer_fast_path(module, x):
        attn = _view(module.self_attn)
        if x.dtype != attn.in_proj_weight.dtype:
            raise ShapeError(f"TransformerEncoderLayer: src dtype ({dtype_name(x.dtype)}) and weight dtype "
                             f"({dtype_name(attn.in_proj_weight.dtype)}) must be the same")
        _fused_attention(x, attn.embed_dim, attn.num_heads, mask, kpm)
        return x

    def sa(y):
        return _call(module.dropout1, _self_attention(module.self_attn, y, mask, kpm, is_causal))

    if module.norm_first:
        x = _add(x, sa(_call(module.norm1, x)))
        return _add(x, _feed_forward(module, _call(module.norm2, x), module.dropout2))
    x = _call(module.norm1, _add(x, sa(x)))
    return _call(module.norm2, _add(x, _feed_forward(module, x, module.dropout2)))


@rule(nn.TransformerDecoderLayer)
def transformer_decoder_layer(module: nn.TransformerDecoderLayer, tgt, memory, tgt_mask=None, memory_mask=None,
                              tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=False,
                              memory_is_causal=False) -> TensorMeta:
    """``tgt (T, N, d_model)``, ``memory (S, N, d_model)`` -> ``(T, N, d_model)`` (batch first or
    unbatched alike); self-attention over ``tgt``, then attention to ``memory``
    (https://pytorch.org/docs/stable/generated/torch.nn.TransformerDecoderLayer.html)."""
    x = tensor_arg(tgt, "TransformerDecoderLayer tgt")
    mem = tensor_arg(memory, "TransformerDecoderLayer memory")

    def sa(y):
        return _call(module.dropout1, _self_attention(module.self_attn, y, tgt_mask, tgt_key_padding_mask,
                                                      tgt_is_causal))

    def cross(y):
        out = _call(module.multihead_attn, y, mem, mem, attn_mask=memory_mask,
                    key_padding_mask=memory_key_padding_mask, is_causal=memory_is_causal, need_weights=False)[0]
        return _call(module.dropout2, out)

    if module.norm_first:
        x = _add(x, sa(_call(module.norm1, x)))
        x = _add(x, cross(_call(module.norm2, x)))
        return _add(x, _feed_forward(module, _call(module.norm3, x), module.dropout3))
    x = _call(module.norm1, _add(x, sa(x)))
    x = _call(module.norm2, _add(x, cross(x)))
    return _call(module.norm3, _add(x, _feed_forward(module, x, module.dropout3)))


# -- Transformer stacks ---------------------------------------------------------------------------------


def _batch_first(stack: nn.Module) -> bool:
    """A Transformer stack's layout: its first layer's self-attention's."""
    return _view(stack.layers[0]).self_attn.batch_first


def _seq_len(x: TensorMeta, batch_first: bool, what: str) -> DimExpr:
    """``_get_seq_len``: dim 0 of an unbatched input, else dim 1 with ``batch_first``, else 0."""
    d = 0 if x.ndim == 2 or not batch_first else 1
    if x.ndim <= d:
        raise ShapeError(f"{what} of size {shape_str(x.shape)} has no sequence dim {d}")
    return x.shape[d]


def _detect_causal(mask: Optional[TensorMeta], is_causal: Optional[bool], size: DimExpr) -> Optional[bool]:
    """``_detect_is_causal_mask``: the hint when given; else a mask of size ``(size, size)``
    counts as causal when its values are exactly the causal mask's, which only the data tells
    (None; see :func:`mha_forward`)."""
    if is_causal is not None:
        return is_causal is True
    if mask is None or mask.ndim != 2 or any(equal(d, size) is False for d in mask.shape):
        return False
    return None


def _packs_batch(module: nn.TransformerEncoder, x: TensorMeta, kpm) -> bool:
    """``TransformerEncoder.forward``'s first conditions for packing the batch as a nested tensor
    by the padding mask (before those on the mask's values and on ``mask``)."""
    return (torch.backends.mha.get_fastpath_enabled() and getattr(module, "use_nested_tensor", False)
            and not module.layers[0].training and x.ndim == 3 and kpm is not None)


def _check_packing_mask(x: TensorMeta, kpm: TensorMeta) -> None:
    """The padding mask that packs the batch must be ``(N, S)``."""
    if kpm.ndim != 2:
        raise ShapeError(f"Padding mask should be 2D, got size {shape_str(kpm.shape)}")
    _require_shape(kpm, x.shape[:2], lambda: f"Mask size should match input size: mask "
                   f"{shape_str(kpm.shape)}, input {shape_str(x.shape)}")


@rule(nn.TransformerEncoder)
def transformer_encoder(module: nn.TransformerEncoder, src, mask=None, src_key_padding_mask=None,
                        is_causal=None) -> TensorMeta:
    """``src`` through ``num_layers`` encoder layers (and ``norm``): the same shape."""
    x = tensor_arg(src, "TransformerEncoder src")
    kpm = _canonical_mask(_optional_tensor(src_key_padding_mask, "src_key_padding_mask"), "src_key_padding_mask",
                          x.dtype)
    mask = _canonical_mask(_optional_tensor(mask, "mask"), "mask", x.dtype)
    if _packs_batch(module, x, kpm) and (getattr(module, "mask_check", True) or mask is None):
        # The padding mask is checked (whether it is left-aligned, with mask_check) before
        # ``mask`` rules the packing out; without ``mask`` it packs the batch (or, not
        # left-aligned, goes to the layers, which want the same shape) and the layers see neither.
        _check_packing_mask(x, kpm)
        kpm = kpm if mask is not None else None
    seq = _seq_len(x, _batch_first(module), "TransformerEncoder src")
    causal = _detect_causal(mask, is_causal, seq)
    out = x
    for layer in module.layers:
        out = _call(layer, out, src_mask=mask, is_causal=causal, src_key_padding_mask=kpm)
    return out if module.norm is None else _call(module.norm, out)


@rule(nn.TransformerDecoder)
def transformer_decoder(module: nn.TransformerDecoder, tgt, memory, tgt_mask=None, memory_mask=None,
                        tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=None,
                        memory_is_causal=False) -> TensorMeta:
    """``tgt`` through ``num_layers`` decoder layers attending to ``memory`` (and ``norm``): ``tgt``'s shape."""
    out = tensor_arg(tgt, "TransformerDecoder tgt")
    seq = _seq_len(out, _batch_first(module), "TransformerDecoder tgt")
    causal = _detect_causal(_optional_tensor(tgt_mask, "tgt_mask"), tgt_is_causal, seq)
    for layer in module.layers:
        out = _call(layer, out, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                    tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                    tgt_is_causal=causal, memory_is_causal=memory_is_causal)
    return out if module.norm is None else _call(module.norm, out)


@rule(nn.Transformer)
def transformer(module: nn.Transformer, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
                src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
                src_is_causal=None, tgt_is_causal=None, memory_is_causal=False) -> TensorMeta:
    """``src (S, N, d_model)``, ``tgt (T, N, d_model)`` -> ``(T, N, d_model)``; batch sizes must
    agree (https://pytorch.org/docs/stable/generated/torch.nn.Transformer.html)."""
    s, t = tensor_arg(src, "Transformer src"), tensor_arg(tgt, "Transformer tgt")
    d = 0 if module.batch_first else 1
    if s.ndim <= d or t.ndim <= d:
        raise ShapeError(f"Transformer: src of size {shape_str(s.shape)} and tgt of size {shape_str(t.shape)} "
                         f"need a dim {d}")
    if s.ndim == 3:
        require_equal(s.shape[d], t.shape[d], lambda: f"the batch number of src and tgt must be equal: "
                      f"{fmt(s.shape[d])} and {fmt(t.shape[d])}")
    for x in (s, t):
        require_equal(x.shape[-1], module.d_model, lambda x=x: f"the feature number of src and tgt must be equal "
                      f"to d_model: {fmt(x.shape[-1])} and d_model={module.d_model}")
    memory = _call(module.encoder, s, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                   is_causal=src_is_causal)
    return _call(module.decoder, t, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                 tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                 tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)
