"""The abstract values that flow through the graph during propagation.

A tensor is a :class:`TensorMeta` (symbolic shape and dtype, no data).
Everything else a traced program computes is a plain Python value: sizes are
dims (``int`` or sympy expressions, see :mod:`lazyfx.symbolic`), ``x.shape``
is a tuple of dims, tuple outputs are tuples, constants are themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from lazyfx.symbolic import DimExpr, fmt, is_concrete


@dataclass(frozen=True)
class TensorMeta:
    """A tensor without data: its shape (dims) and dtype."""

    shape: tuple[DimExpr, ...]
    dtype: torch.dtype = torch.float32

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def with_shape(self, shape) -> "TensorMeta":
        return TensorMeta(tuple(shape), self.dtype)

    @property
    def is_concrete(self) -> bool:
        return all(is_concrete(d) for d in self.shape)

    def __str__(self) -> str:
        return fmt(self.shape) + ("" if self.dtype == torch.float32 else f" {dtype_name(self.dtype)}")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def map_values(fn: Callable[[Any], Any], value: Any) -> Any:
    """Apply ``fn`` to every leaf of a nested tuple/list/dict value."""
    if isinstance(value, tuple):
        return tuple(map_values(fn, v) for v in value)
    if isinstance(value, list):
        return [map_values(fn, v) for v in value]
    if isinstance(value, dict):
        return {k: map_values(fn, v) for k, v in value.items()}
    return fn(value)


def tensors_in(value: Any) -> list[TensorMeta]:
    """The TensorMeta leaves of a nested value, in order."""
    found: list[TensorMeta] = []

    def visit(v):
        if isinstance(v, TensorMeta):
            found.append(v)
        return v

    map_values(visit, value)
    return found


def describe(value: Any) -> str:
    """A value as the report prints it: tensors as their shape (and dtype when not
    float32), sizes as formulas, containers element by element."""
    if isinstance(value, TensorMeta):
        return str(value)
    if isinstance(value, torch.dtype):
        return dtype_name(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    return fmt(value)
