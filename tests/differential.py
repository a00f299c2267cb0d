"""Differential checking against PyTorch.

``check(example)`` runs the example's module on zero tensors of the drawn
concrete sizes (tiny, on the CPU: the real kernels, whose checks are
sometimes stricter than the meta kernels', e.g. ConvTranspose's
``output_padding < stride``) and through ``lazyfx.infer`` twice: with the concrete sizes,
and with some sizes replaced by symbols (then the symbolic answer is
evaluated at the drawn sizes). PyTorch and lazyfx must agree: both accept
with the same output shapes and dtypes, or both reject.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import sympy
import torch
import torch.nn as nn

import lazyfx
from lazyfx.core.constraints import simplify_condition  # noqa: F401  (re-exported for tests)
from lazyfx.core.symbolic import substitute, symbol
from lazyfx.core.values import TensorMeta


@dataclass
class Example:
    """A module and the (shape, dtype) of each of its inputs."""

    module: nn.Module
    inputs: Sequence[tuple[tuple[int, ...], torch.dtype]]
    symbolic: Optional[Sequence[Sequence[bool]]] = None  # which dims to make symbolic
    note: str = ""
    kwargs: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(s)}:{str(d).removeprefix('torch.')}" for s, d in self.inputs)
        return f"Example({self.module!r}, [{shapes}]{', ' + self.note if self.note else ''})"


@dataclass
class Outcome:
    ok: bool
    value: Any = None
    error: str = ""


def run_torch(example: Example) -> Outcome:
    module = copy.deepcopy(example.module)
    tensors = [torch.zeros(shape, dtype=dtype) for shape, dtype in example.inputs]
    try:
        with torch.no_grad():
            out = module(*tensors, **example.kwargs)
    except Exception as exc:  # PyTorch rejects this input
        return Outcome(False, error=f"{type(exc).__name__}: {exc}")
    return Outcome(True, _torch_value(out))


def _torch_value(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return (tuple(out.shape), out.dtype)
    if isinstance(out, torch.Size):
        return tuple(out)
    if isinstance(out, (tuple, list)):
        return tuple(_torch_value(o) for o in out)
    return out


def _lazyfx_value(value: Any, values: dict) -> Any:
    if isinstance(value, TensorMeta):
        return (tuple(substitute(d, values) for d in value.shape), value.dtype)
    if isinstance(value, (tuple, list)):
        return tuple(_lazyfx_value(v, values) for v in value)
    if isinstance(value, sympy.Basic) and (value.is_Boolean or value.is_Relational):  # a size comparison
        return bool(value.xreplace({sympy.Symbol(k, integer=True, positive=True): v for k, v in values.items()}))
    if isinstance(value, sympy.Basic):
        return substitute(value, values)
    return value


def run_lazyfx(example: Example, symbolic: Optional[Sequence[Sequence[bool]]] = None):
    """(report or None, error or None, symbol values) for the example, optionally symbolic."""
    specs, values = [], {}
    for i, (shape, dtype) in enumerate(example.inputs):
        dims = []
        for j, size in enumerate(shape):
            if symbolic is not None and symbolic[i][j] and size >= 1:
                name = f"d{i}_{j}"
                values[name] = size
                dims.append(name)
            else:
                dims.append(size)
        specs.append(lazyfx.TensorSpec(tuple(dims), dtype=dtype))
    try:
        report = lazyfx.infer(example.module, *specs, **example.kwargs)
    except lazyfx.UnsupportedOpError:
        raise  # a gap in lazyfx, never an answer
    except lazyfx.LazyFXError as exc:  # a shape error, or a call that fails already while tracing
        return None, exc, values
    # a rule runs while torch.fx traces: a rule that reads a parameter of a leaf module directly
    # (instead of through resolvers.ModuleView) adds get_attr nodes to the user's graph
    leaves = {n.module_path for n in report.nodes if n.op == "call_module"}
    added = [n.name for n in report.nodes if n.op == "get_attr"
             and any(str(n.target).startswith(f"self.{leaf}.") for leaf in leaves if leaf)]
    assert not added, f"{example}: the rules added {added} to the traced graph"
    return report, None, values


def check(example: Example, *, symbolic: Optional[Sequence[Sequence[bool]]] = None) -> None:
    """Assert lazyfx agrees with PyTorch on ``example`` (concretely, and symbolically when asked)."""
    expected = run_torch(example)
    report, error, _ = run_lazyfx(example)
    if expected.ok and error is not None and (_empty_output_quirk(expected.value, error) or _flash_value_quirk(error)):
        return
    if expected.ok:
        assert error is None, f"{example}: PyTorch accepts (-> {expected.value}) but lazyfx rejects:\n{error}"
        got = _lazyfx_value(report.output, {})
        assert got == expected.value, f"{example}: lazyfx says {got}, PyTorch says {expected.value}"
    else:
        assert error is not None, (
            f"{example}: PyTorch rejects ({expected.error}) but lazyfx accepts (-> {report.output})"
        )
    symbolic = symbolic if symbolic is not None else example.symbolic
    if symbolic is not None and any(any(row) for row in symbolic):
        check_symbolic(example, symbolic, expected)


def _empty_output_quirk(value: Any, error: Exception) -> bool:
    """Some CPU backends (mkldnn's grouped transposed conv) return an empty tensor where
    PyTorch's reference kernels say "Output size is too small"; lazyfx follows the latter."""
    def has_zero(v):
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], torch.dtype):
            return 0 in v[0]
        return isinstance(v, tuple) and any(has_zero(x) for x in v)

    return has_zero(value) and "too small" in str(error)


def _flash_value_quirk(error: Exception) -> bool:
    """The CPU flash attention kernel of scaled_dot_product_attention (4-D inputs; from torch 2.14
    3-D too) does not check that value has as many positions as key, and reads past value's end
    where it has fewer; the reference kernel refuses, and lazyfx follows it."""
    return re.search(r"key has (\d+) positions but value has (?!\1\b)\d+", str(error)) is not None


def check_symbolic(example: Example, symbolic, expected: Outcome) -> None:
    report, error, values = run_lazyfx(example, symbolic)
    if error is not None:
        assert not expected.ok, (
            f"{example} with symbols {values}: lazyfx says no input is valid ({error}) "
            f"but PyTorch accepts these sizes"
        )
        return
    assignment = {symbol(k): v for k, v in values.items()}
    for assumption in report.domain.assumptions:
        if not bool(assumption.expr.xreplace({s: sympy.Integer(v) for s, v in assignment.items()})):
            return  # the formula was derived assuming otherwise (e.g. a size != 1); nothing to compare
    valid = report.domain.contains(**values)
    assert valid == expected.ok, (
        f"{example}: symbolic domain '{report.domain}' says {'valid' if valid else 'invalid'} at {values}, "
        f"PyTorch {'accepts' if expected.ok else 'rejects: ' + expected.error}"
    )
    if valid:
        got = _lazyfx_value(report.output, values)
        assert got == expected.value, (
            f"{example}: symbolic output {report.output} at {values} is {got}, PyTorch says {expected.value}"
        )


class _Fn(nn.Module):
    """A module whose forward applies ``fn`` to its inputs (for function and method rules)."""

    def __init__(self, fn, name: str = "") -> None:
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "fn")

    def extra_repr(self) -> str:
        return self.name


class _Fn1(_Fn):
    def forward(self, x):
        return self.fn(x)


class _Fn2(_Fn):
    def forward(self, x, y):
        return self.fn(x, y)


class _Fn3(_Fn):
    def forward(self, x, y, z):
        return self.fn(x, y, z)


def fn_module(fn, arity: int = 1, name: str = "") -> nn.Module:
    """A module whose forward is ``fn`` applied to ``arity`` inputs."""
    return {1: _Fn1, 2: _Fn2, 3: _Fn3}[arity](fn, name)
