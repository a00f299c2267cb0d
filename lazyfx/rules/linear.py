"""Linear maps: nn.Linear, F.linear, nn.Identity and matrix products (matmul, @, mm, bmm,
mv, dot, outer, addmm/baddbmm/addbmm, einsum).

Shapes follow https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
and the ``torch.matmul`` broadcasting rules
(https://pytorch.org/docs/stable/generated/torch.matmul.html). Matrix products
take operands of one dtype, and have no bool kernels.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Optional

import sympy
import torch
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.checks import decide, eq, require, require_equal
from lazyfx.core.registry import Method, rule
from lazyfx.core.symbolic import DimExpr, fmt, is_concrete
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import broadcast_shapes, broadcast_size, result_dtype, shape_str, tensor_arg
from lazyfx.rules.lazy import weight_dtype_of
from lazyfx.rules.views import expand_shape


def linear_shape(x: TensorMeta, *, in_features: DimExpr, out_features: DimExpr, weight_dtype, op: str) -> TensorMeta:
    """``(*, in_features) -> (*, out_features)``."""
    if x.ndim == 0:
        raise ShapeError(f"{op}: input must have at least 1 dim, got a 0-dim tensor")
    if weight_dtype is not None and x.dtype != weight_dtype:
        raise ShapeError(
            f"{op}: input dtype {fmt(x.dtype)} and weight dtype {fmt(weight_dtype)} must be the same"
        )
    require_equal(
        x.shape[-1],
        in_features,
        lambda: f"{op} has in_features={fmt(in_features)} but the input's last dim is {fmt(x.shape[-1])} "
        f"(input of size {shape_str(x.shape)})",
    )
    return x.with_shape((*x.shape[:-1], out_features))


@rule(nn.Linear)
def linear_module(module: nn.Linear, x: TensorMeta) -> TensorMeta:
    return linear_shape(
        tensor_arg(x, "Linear input"),
        in_features=module.in_features,
        out_features=module.out_features,
        weight_dtype=weight_dtype_of(module),
        op="Linear",
    )


@rule(F.linear)
def linear_function(input, weight, bias=None) -> TensorMeta:
    w = tensor_arg(weight, "linear weight")
    if w.ndim not in (1, 2):
        raise ShapeError(f"linear: weight must be 1D or 2D, got size {shape_str(w.shape)}")
    out_features = w.shape[0] if w.ndim == 2 else None
    x = tensor_arg(input, "linear input")
    y = linear_shape(x, in_features=w.shape[-1], out_features=out_features, weight_dtype=w.dtype, op="linear")
    return y if w.ndim == 2 else x.with_shape(x.shape[:-1])


@rule(nn.Identity)
def identity_module(module: nn.Module, x, *args, **kwargs):
    return x


def check_matrix_dtypes(op: str, *tensors: TensorMeta, shapes=()) -> torch.dtype:
    """Matrix products take operands of one dtype, and CPU/CUDA kernels have no bool version,
    which only matters when a kernel runs: not when a dim in ``shapes`` (the output's, and for
    a plain product the inner size) is 0."""
    dtypes = [t.dtype for t in tensors]
    if len(set(dtypes)) > 1:
        raise ShapeError(f"{op}: expected all operands to have the same dtype, got "
                         + ", ".join(dtype_name(d) for d in dtypes))
    if dtypes[0] == torch.bool and not any(is_concrete(s) and s == 0 for s in shapes):
        raise ShapeError(f"{op}: not implemented for 'Bool' tensors")
    return dtypes[0]


@rule(torch.matmul, operator.matmul, Method("matmul"))
def matmul(input, other) -> TensorMeta:
    """``torch.matmul``: 1D@1D -> scalar, 2D@2D -> (n, m), 1D operands get a
    dim prepended/appended then removed, batch dims broadcast."""
    a, b = tensor_arg(input, "matmul input"), tensor_arg(other, "matmul other")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("both arguments to matmul need to be at least 1D, "
                         f"but they are {a.ndim}D and {b.ndim}D")
    if a.dtype != b.dtype:
        if (a.ndim >= 3 or b.ndim >= 3) and _any_empty([a, b]):
            raise UnsupportedOpError(
                "matmul of operands with different dtypes and a dim of size 0: whether PyTorch accepts it "
                "depends on whether it folds the batch into one matrix product (strict) or runs bmm (which "
                "skips empty operands)"
            )
        raise ShapeError(f"matmul: expected both operands to have the same dtype, "
                         f"got {fmt(a.dtype)} and {fmt(b.dtype)}")
    a_shape = (1, *a.shape) if a.ndim == 1 else a.shape
    b_shape = (*b.shape, 1) if b.ndim == 1 else b.shape
    require_equal(
        a_shape[-1],
        b_shape[-2],
        lambda: f"matmul: inner dims differ: {shape_str(a.shape)} @ {shape_str(b.shape)} "
        f"({fmt(a_shape[-1])} != {fmt(b_shape[-2])})",
    )
    batch = broadcast_shapes(a_shape[:-2], b_shape[:-2])
    out = (*batch, *((a_shape[-2],) if a.ndim > 1 else ()), *((b_shape[-1],) if b.ndim > 1 else ()))
    # 1D @ 1D is a dot product, whose kernel is dispatched even for empty vectors.
    check_matrix_dtypes("matmul", a, b, shapes=(*out, a_shape[-1]) if out else ())
    return TensorMeta(out, a.dtype)


# -- fixed-rank matrix products: mm, bmm, mv, dot, outer and the add* forms ---------------------


def _expect_rank(x: TensorMeta, rank: int, message: str) -> None:
    if x.ndim != rank:
        raise ShapeError(f"{message}, got {x.ndim}-D tensor of size {shape_str(x.shape)}")


def mm_shape(a: TensorMeta, b: TensorMeta, op: str) -> tuple:
    """``(n, k) @ (k, p) -> (n, p)``."""
    _expect_rank(a, 2, f"{op}: mat1 must be a matrix")
    _expect_rank(b, 2, f"{op}: mat2 must be a matrix")
    require_equal(a.shape[1], b.shape[0], lambda: f"{op}: mat1 and mat2 shapes cannot be multiplied "
                                                  f"({fmt(a.shape[0])}x{fmt(a.shape[1])} and "
                                                  f"{fmt(b.shape[0])}x{fmt(b.shape[1])})")
    return (a.shape[0], b.shape[1])


def bmm_shape(a: TensorMeta, b: TensorMeta, op: str) -> tuple:
    """``(b, n, k) @ (b, k, p) -> (b, n, p)`` (no broadcasting of the batch)."""
    _expect_rank(a, 3, f"{op}: batch1 must be a 3D tensor")
    _expect_rank(b, 3, f"{op}: batch2 must be a 3D tensor")
    for got, want in ((b.shape[0], a.shape[0]), (b.shape[1], a.shape[2])):
        require_equal(got, want, lambda: f"{op}: Expected size for first two dimensions of batch2 tensor to be: "
                                         f"[{fmt(a.shape[0])}, {fmt(a.shape[2])}] but got: "
                                         f"[{fmt(b.shape[0])}, {fmt(b.shape[1])}].")
    return (a.shape[0], a.shape[1], b.shape[2])


def _added(input, shape: tuple, op: str) -> TensorMeta:
    """The added ``input`` of addmm & co., which must expand to the product's shape."""
    x = tensor_arg(input, f"{op} input")
    expand_shape(x, shape)
    return x


@rule(torch.mm, Method("mm"))
def mm(input, mat2) -> TensorMeta:
    """``(n, k) @ (k, p) -> (n, p)``, one dtype."""
    a, b = tensor_arg(input, "mm input"), tensor_arg(mat2, "mm mat2")
    shape = mm_shape(a, b, "mm")
    return TensorMeta(shape, check_matrix_dtypes("mm", a, b, shapes=(*shape, a.shape[1])))


@rule(torch.bmm, Method("bmm"))
def bmm(input, mat2) -> TensorMeta:
    """``(b, n, k) @ (b, k, p) -> (b, n, p)``, one dtype (see :func:`_empty_bmm_dtype` for empty operands)."""
    a, b = tensor_arg(input, "bmm input"), tensor_arg(mat2, "bmm mat2")
    shape = bmm_shape(a, b, "bmm")
    dtype = _empty_bmm_dtype(a, b) or check_matrix_dtypes("bmm", a, b, shapes=(*shape, a.shape[2]))
    return TensorMeta(shape, dtype)


def _empty_bmm_dtype(batch1: TensorMeta, batch2: TensorMeta) -> Optional[torch.dtype]:
    """With a dim of size 0, ATen's bmm returns a tensor of ``batch2``'s dtype without running
    (or checking) a kernel; None when there is something to compute."""
    if _any_empty([batch1, batch2]):
        return batch2.dtype
    return None


@rule(torch.addmm, Method("addmm"))
def addmm(input, mat1, mat2, *, beta=1, alpha=1) -> TensorMeta:
    """``beta*input + alpha*(mat1 @ mat2)``: ``(n, p)``; ``input`` expands to it."""
    a, b = tensor_arg(mat1, "addmm mat1"), tensor_arg(mat2, "addmm mat2")
    shape = mm_shape(a, b, "addmm")
    x = _added(input, shape, "addmm")
    return TensorMeta(shape, check_matrix_dtypes("addmm", x, a, b, shapes=shape))


@rule(torch.baddbmm, Method("baddbmm"))
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1) -> TensorMeta:
    """``beta*input + alpha*(batch1 @ batch2)``: ``(b, n, p)``; ``input`` expands to it and has
    ``batch1``'s dtype (``batch2``'s is checked by the kernel, which empty operands skip)."""
    a, b = tensor_arg(batch1, "baddbmm batch1"), tensor_arg(batch2, "baddbmm batch2")
    shape = bmm_shape(a, b, "baddbmm")
    x = _added(input, shape, "baddbmm")
    empty = _empty_bmm_dtype(a, b)
    if empty is None:
        return TensorMeta(shape, check_matrix_dtypes("baddbmm", x, a, b, shapes=shape))
    if x.dtype != a.dtype:
        raise ShapeError(f"baddbmm: Input dtypes must be the same, got: input {dtype_name(x.dtype)}, batch1: "
                         f"{dtype_name(a.dtype)}, batch2: {dtype_name(b.dtype)}")
    check_matrix_dtypes("baddbmm", b, shapes=shape)  # the result, beta * input, has batch2's dtype
    return TensorMeta(shape, empty)


@rule(torch.addbmm, Method("addbmm"))
def addbmm(input, batch1, batch2, *, beta=1, alpha=1) -> TensorMeta:
    """``beta*input + alpha*sum_b(batch1[b] @ batch2[b])``: ``(n, p)``; ``input`` expands to it."""
    a, b = tensor_arg(batch1, "addbmm batch1"), tensor_arg(batch2, "addbmm batch2")
    _expect_rank(a, 3, "addbmm: batch1 must be a 3D tensor")
    _expect_rank(b, 3, "addbmm: batch2 must be a 3D tensor")
    require_equal(a.shape[0], b.shape[0], lambda: f"addbmm: batch1 and batch2 must have same number of batches, "
                                                  f"got {fmt(a.shape[0])} and {fmt(b.shape[0])}")
    require_equal(a.shape[2], b.shape[1], lambda: f"addbmm: Incompatible matrix sizes for bmm "
                                                  f"({fmt(a.shape[1])}x{fmt(a.shape[2])} and "
                                                  f"{fmt(b.shape[1])}x{fmt(b.shape[2])})")
    shape = (a.shape[1], b.shape[2])
    x = _added(input, shape, "addbmm")
    if is_concrete(a.shape[0]) and a.shape[0] == 0:  # no batch: the result is input * beta, in place
        if x.dtype == torch.bool and beta != 0:
            raise ShapeError("addbmm: result type Long can't be cast to the desired output type Bool")
        return TensorMeta(shape, x.dtype)
    return TensorMeta(shape, check_matrix_dtypes("addbmm", x, a, b, shapes=shape))


@rule(torch.mv, Method("mv"))
def mv(input, vec) -> TensorMeta:
    """``(n, m) @ (m,) -> (n,)``, one dtype."""
    a, v = tensor_arg(input, "mv input"), tensor_arg(vec, "mv vec")
    if a.ndim != 2 or v.ndim != 1:
        raise ShapeError(f"vector + matrix @ vector expected, got 1, {a.ndim}, {v.ndim}")
    require_equal(a.shape[1], v.shape[0], lambda: f"size mismatch, got input ({fmt(a.shape[0])}), mat "
                                                  f"({fmt(a.shape[0])}x{fmt(a.shape[1])}), vec ({fmt(v.shape[0])})")
    return TensorMeta((a.shape[0],), check_matrix_dtypes("mv", a, v, shapes=a.shape))


@rule(torch.dot, Method("dot"))
def dot(input, tensor) -> TensorMeta:
    """``(n,) . (n,) -> ()``, one dtype."""
    a, b = tensor_arg(input, "dot input"), tensor_arg(tensor, "dot tensor")
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"1D tensors expected, but got {a.ndim}D and {b.ndim}D tensors")
    require_equal(a.shape[0], b.shape[0], lambda: f"inconsistent tensor size, expected tensor [{fmt(a.shape[0])}] "
                                                  f"and src [{fmt(b.shape[0])}] to have the same number of elements")
    return TensorMeta((), check_matrix_dtypes("dot", a, b))


@rule(torch.outer, Method("outer"))
def outer(input, vec2) -> TensorMeta:
    """``(n,) x (m,) -> (n, m)``: an elementwise product, so dtypes promote (bool included)."""
    a, b = tensor_arg(input, "outer input"), tensor_arg(vec2, "outer vec2")
    for name, v in (("self", a), ("vec2", b)):
        if v.ndim != 1:
            raise ShapeError(f"outer: Expected 1-D argument {name}, but got {v.ndim}-D")
    return TensorMeta((a.shape[0], b.shape[0]), result_dtype(a, b))


# -- einsum ------------------------------------------------------------------------------------
#
# Parsing and checks follow ATen's einsum (aten/src/ATen/native/Linear.cpp): labels are
# [a-zA-Z] (uppercase sort first), one "..." per operand, a label's sizes broadcast across
# operands (1 stretches), a label repeated within an operand takes a diagonal (equal sizes),
# the implicit output is "..." followed by the labels that occur once, in order.

_ELLIPSIS = "..."


@dataclass
class _Equation:
    inputs: list[list[str]]  # per operand: labels and "..."
    output: list[str]


@rule(torch.einsum)
def einsum(*args) -> TensorMeta:
    """``torch.einsum(equation, *operands)`` (or the operands as one list, or the sublist form
    ``einsum(op0, [0, 1], op1, [1, 2], [0, 2])``): each output dim is its label's size,
    broadcast over the operands; ``...`` dims broadcast aligned from the right.
    https://pytorch.org/docs/stable/generated/torch.einsum.html"""
    equation, operands = _einsum_arguments(args)
    parsed = _parse_equation(equation, operands)
    label_sizes, ellipsis = _einsum_sizes(parsed, operands)
    shape = [d for label in parsed.output for d in (ellipsis if label == _ELLIPSIS else (label_sizes[label],))]
    return TensorMeta(tuple(shape), _einsum_dtype(parsed, operands, ellipsis))


def _einsum_arguments(args: tuple) -> tuple[str, list[TensorMeta]]:
    if len(args) < 2:
        raise ShapeError("einsum(): must specify the equation string and at least one operand, "
                         "or at least one operand and its subscripts list")
    if isinstance(args[0], str):
        equation, operands = args[0], list(args[1:])
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = list(operands[0])
    else:  # sublist form: operand, subscripts, operand, subscripts, ..., [output subscripts]
        terms = [",".join("".join(_sublist_label(n) for n in sub) for sub in args[1::2])]
        if len(args) % 2:
            terms.append("".join(_sublist_label(n) for n in args[-1]))
        equation, operands = "->".join(terms), list(args[:-1:2] if len(args) % 2 else args[::2])
    return equation, [tensor_arg(op, "einsum operand") for op in operands]


def _sublist_label(n) -> str:
    if n is Ellipsis:
        return _ELLIPSIS
    if isinstance(n, int) and 0 <= n < 52:
        return chr(ord("A") + n) if n < 26 else chr(ord("a") + n - 26)
    raise ShapeError(f"einsum(): subscript in subscript list is not within the valid range [0, 52), got {n!r}")


def _parse_term(text: str, offset: int, what: str) -> list[str]:
    """The labels of one term (spaces ignored), with "..." as one entry."""
    labels: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == ".":
            if _ELLIPSIS in labels:
                raise ShapeError(f"einsum(): found '.' for {what} for which an ellipsis was already found")
            if text[i : i + 3] != _ELLIPSIS:
                raise ShapeError(f"einsum(): found '.' for {what} that is not part of any ellipsis")
            labels.append(_ELLIPSIS)
            i += 3
            continue
        if c != " ":
            if not (c.isascii() and c.isalpha()):
                raise ShapeError(f"einsum(): invalid subscript given at index {offset + i} in the equation string, "
                                 f"subscripts must be in [a-zA-Z]")
            labels.append(c)
        i += 1
    return labels


def _parse_equation(equation: str, operands: list[TensorMeta]) -> _Equation:
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) > len(operands):
        raise ShapeError("einsum(): fewer operands were provided than specified in the equation")
    if len(terms) < len(operands):
        raise ShapeError("einsum(): more operands were provided than specified in the equation")
    inputs, offset = [], 0
    for i, (term, op) in enumerate(zip(terms, operands)):
        labels = _parse_term(term, offset, f"operand {i}")
        offset += len(term) + 1
        named = len([x for x in labels if x != _ELLIPSIS])
        if _ELLIPSIS in labels and named > op.ndim:
            raise ShapeError(f"einsum(): the number of subscripts in the equation ({named}) is more than the number "
                             f"of dimensions ({op.ndim}) for operand {i}")
        if _ELLIPSIS not in labels and named != op.ndim:
            raise ShapeError(f"einsum(): the number of subscripts in the equation ({named}) does not match the "
                             f"number of dimensions ({op.ndim}) for operand {i} and no ellipsis was given")
        inputs.append(labels)
    return _Equation(inputs, _parse_output(rhs, len(lhs) + 2, inputs) if arrow else _implicit_output(inputs))


def _implicit_output(inputs: list[list[str]]) -> list[str]:
    """"..." (when an operand has one), then the labels that occur exactly once, sorted (A-Z before a-z)."""
    counts: dict[str, int] = {}
    for labels in inputs:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    once = sorted(label for label, n in counts.items() if n == 1 and label != _ELLIPSIS)
    return ([_ELLIPSIS] if _ELLIPSIS in counts else []) + once


def _parse_output(rhs: str, offset: int, inputs: list[list[str]]) -> list[str]:
    output = _parse_term(rhs, offset, "output")
    seen_in_inputs = {label for labels in inputs for label in labels}
    for i, label in enumerate(output):
        if label == _ELLIPSIS:
            continue
        if label in output[:i]:
            raise ShapeError(f"einsum(): output subscript {label} appears more than once in the output")
        if label not in seen_in_inputs:
            raise ShapeError(f"einsum(): output subscript {label} does not appear in the equation for any input "
                             f"operand")
    return output


def _einsum_sizes(parsed: _Equation, operands: list[TensorMeta]) -> tuple[dict[str, DimExpr], list[DimExpr]]:
    """Each label's size and the "..." dims, broadcast over the operands."""
    covered = [_ellipsis_dims(labels, op) for labels, op in zip(parsed.inputs, operands)]
    ellipsis: list[DimExpr] = [1] * max((len(c) for c in covered), default=0)
    sizes: dict[str, DimExpr] = {}
    for i, (labels, op) in enumerate(zip(parsed.inputs, operands)):
        _merge_ellipsis(ellipsis, covered[i], i)
        _merge_labels(sizes, zip((x for x in labels if x != _ELLIPSIS), _named_sizes(labels, op)), i)
    return sizes, ellipsis


def _merge_ellipsis(ellipsis: list[DimExpr], covered: list[DimExpr], i: int) -> None:
    """Broadcast operand ``i``'s "..." dims into ``ellipsis`` (aligned from the right)."""
    for j, size in enumerate(covered, len(ellipsis) - len(covered)):
        seen = ellipsis[j]
        ellipsis[j] = broadcast_size(seen, size, lambda j=j, size=size, seen=seen: (
            f"einsum(): dimension {j} covered by ellipsis in operand {i} has size {fmt(size)} which does not "
            f"broadcast with previously seen ellipsis with size {fmt(seen)} for the respective dimension"))


def _merge_labels(sizes: dict[str, DimExpr], named, i: int) -> None:
    """Broadcast operand ``i``'s label sizes into ``sizes``; a label repeated within it needs equal sizes."""
    named = list(named)
    # A diagonal's equal sizes are required before any of its sizes is broadcast, where that is
    # open: a broadcast would otherwise assume a size != 1 that the diagonal fixes to 1 ("ab,bb"
    # with b of size 1 in the second operand). Where it is decided, PyTorch's own order of checks
    # (and of messages) below is kept.
    firsts: dict[str, DimExpr] = {}
    for label, size in named:
        first = firsts.setdefault(label, size)
        if first is not size and decide(eq(size, first)) is None:
            require(eq(size, first), _diagonal_message(label, i, size, first))
    own: dict[str, DimExpr] = {}
    for label, size in named:
        if label in own:  # a diagonal
            require_equal(size, own[label], _diagonal_message(label, i, size, own[label]))
            continue
        own[label] = size
        seen = sizes.get(label, 1)
        sizes[label] = broadcast_size(seen, size, lambda label=label, size=size, seen=seen: (
            f"einsum(): subscript {label} has size {fmt(size)} for operand {i} which does not broadcast with "
            f"previously seen size {fmt(seen)}"))


def _diagonal_message(label: str, i: int, size: DimExpr, first: DimExpr) -> Callable[[], str]:
    """PyTorch's message for a repeated label whose sizes differ, made only when it is needed."""
    return lambda: (f"einsum(): subscript {label} is repeated for operand {i} but the sizes don't match, "
                    f"{fmt(size)} != {fmt(first)}")


def _ellipsis_dims(labels: list[str], op: TensorMeta) -> list[DimExpr]:
    """The sizes of the dims an operand's "..." covers (none without one)."""
    if _ELLIPSIS not in labels:
        return []
    at = labels.index(_ELLIPSIS)
    return list(op.shape[at : at + op.ndim - len(labels) + 1])


def _einsum_dtype(parsed: _Equation, operands: list[TensorMeta], ellipsis: list) -> torch.dtype:
    """One floating (or int64) dtype is kept. Otherwise the dtype depends on how PyTorch evaluates
    the sum (its integer ``sum`` gives int64, a contraction runs ``bmm``, which needs one dtype),
    which is modelled where it is simple and said to be unsupported elsewhere."""
    dtypes = [op.dtype for op in operands]
    first = dtypes[0]
    reduced = _reduced_labels(parsed, ellipsis)
    if len(set(dtypes)) == 1:
        if first.is_floating_point or first.is_complex or first == torch.int64 or not reduced:
            return first
        if len(operands) == 1:
            return torch.int64  # the reduction is a sum, which promotes integers to int64
        raise UnsupportedOpError(f"einsum of {dtype_name(first)} operands with summed labels: the result's "
                                 f"dtype (and whether PyTorch has a kernel) depends on its evaluation order")
    if len(operands) == 2 and all(d.is_floating_point for d in dtypes) and not _any_empty(operands):
        _require_no_contraction(parsed, operands, dtypes)
        return torch.promote_types(*dtypes)
    raise UnsupportedOpError(f"einsum of operands with different dtypes ({', '.join(map(dtype_name, dtypes))}): "
                             f"whether PyTorch accepts them depends on its evaluation order; cast them to one dtype")


def _reduced_labels(parsed: _Equation, ellipsis: list) -> set:
    inputs = {label for labels in parsed.inputs for label in labels if label != _ELLIPSIS}
    reduced = inputs - set(parsed.output)
    if ellipsis and _ELLIPSIS not in parsed.output:
        reduced.add(_ELLIPSIS)
    return reduced


def _any_empty(operands: list[TensorMeta]) -> bool:
    return any(is_concrete(s) and s == 0 for op in operands for s in op.shape)


def _require_no_contraction(parsed: _Equation, operands: list[TensorMeta], dtypes: list) -> None:
    """Two operands of different dtypes are multiplied elementwise (promoting) unless a label they
    share is summed with a size other than 1 in both: that runs ``bmm``, which rejects them (a label
    of size 1 in one operand is summed out of the other first)."""
    first, second = (dict(zip((x for x in labels if x != _ELLIPSIS), _named_sizes(labels, op)))
                     for labels, op in zip(parsed.inputs, operands))
    for label in sorted(set(first) & set(second) - set(parsed.output)):
        a, b = first[label], second[label]
        require(sympy.Or(sympy.Eq(a, 1), sympy.Eq(b, 1)), lambda label=label, a=a, b=b: (
            f"einsum(): contracting subscript {label} (sizes {fmt(a)} and {fmt(b)}) needs operands of one dtype, "
            f"got {dtype_name(dtypes[0])} and {dtype_name(dtypes[1])}"))
    if _ELLIPSIS in parsed.inputs[0] and _ELLIPSIS in parsed.inputs[1] and _ELLIPSIS not in parsed.output:
        raise UnsupportedOpError("einsum summing '...' dims of operands with different dtypes")


def _named_sizes(labels: list[str], op: TensorMeta) -> list[DimExpr]:
    """The sizes of an operand's labelled dims (those "..." covers left out)."""
    if _ELLIPSIS not in labels:
        return list(op.shape)
    at = labels.index(_ELLIPSIS)
    after = len(labels) - at - 1
    return list(op.shape[:at]) + list(op.shape[op.ndim - after :] if after else [])
