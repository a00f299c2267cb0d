"""The abstract values that flow through the graph during propagation.

A tensor is a :class:`TensorMeta` (symbolic shape and dtype, no data).
Everything else a traced program computes is a plain Python value: sizes are
dims (``int`` or sympy expressions, see :mod:`lazyfx.core.symbolic`), ``x.shape``
is a tuple of dims, tuple outputs are tuples, constants are themselves.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch
from torch.fx.immutable_collections import immutable_dict, immutable_list

from lazyfx.core.symbolic import DimExpr, fmt, is_concrete


@dataclass(frozen=True)
class TensorMeta:
    """A tensor without data: its shape (dims) and dtype.

    This is how a report describes every tensor: ``report.output``, the
    values in ``report.inputs`` and each node's ``value``. A dim is an ``int``
    or a sympy expression in the input symbols: ``B``, ``(H - 3)//2 + 1``.
    ``str()`` gives the shape as the report prints it (with the dtype when it
    is not float32).

    Attributes:
        shape (tuple[DimExpr, ...]): The dims, ints and sympy expressions.
        dtype (torch.dtype): The dtype.

    Examples:
        >>> out = lazyfx.infer(Net(), ("B", 3, "H", "W")).output
        >>> out
        TensorMeta(shape=(B, 10), dtype=torch.float32)
        >>> print(out)
        (B, 10)
        >>> print(lazyfx.infer(nn.Identity(), "B,T:int64").output)
        (B, T) int64

        A formula evaluates at concrete sizes with sympy's ``subs``:

        >>> x = lazyfx.infer(Net().features, ("B", 3, "H", "W")).output
        >>> print(x.shape[2])
        (H - 9)//4 + 1
        >>> x.shape[2].subs({s: 64 for s in x.shape[2].free_symbols})
        14
    """

    shape: tuple[DimExpr, ...]
    dtype: torch.dtype = torch.float32
    # (smallest, largest) of an integer tensor's values where shapes alone give them and both are
    # attained (``torch.arange(T)``: 0 and T - 1), so an index lookup can check them; None: unknown
    value_range: Optional[tuple[DimExpr, DimExpr]] = field(default=None, compare=False, repr=False)

    @property
    def ndim(self) -> int:
        """The number of dims, as ``Tensor.ndim``.

        Examples:
            >>> lazyfx.TensorMeta((2, 3)).ndim
            2
        """
        return len(self.shape)

    def dim(self) -> int:
        """The number of dims, as ``Tensor.dim()``.

        Examples:
            >>> lazyfx.TensorMeta((2, 3, 4)).dim()
            3
        """
        return len(self.shape)

    def with_shape(self, shape) -> TensorMeta:
        """The same dtype with another shape.

        Args:
            shape (Sequence[DimExpr]): The new dims.

        Returns:
            A new `TensorMeta`; this one is unchanged (it is frozen).

        Examples:
            >>> lazyfx.TensorMeta((2, 3), torch.int64).with_shape((6,))
            TensorMeta(shape=(6,), dtype=torch.int64)
        """
        return TensorMeta(tuple(shape), self.dtype)

    @property
    def is_concrete(self) -> bool:
        """Whether every dim is an int (no input symbol in the shape).

        Examples:
            >>> lazyfx.infer(Net(), ("B", 3, 32, 32)).output.is_concrete
            False
            >>> lazyfx.infer(Net(), (8, 3, 32, 32)).output.is_concrete
            True
        """
        return all(is_concrete(d) for d in self.shape)

    def __str__(self) -> str:
        return fmt(self.shape) + ("" if self.dtype == torch.float32 else f" {dtype_name(self.dtype)}")


@dataclass(frozen=True)
class UninitializedTensor:
    """A lazy parameter or buffer read before its module's first call: what PyTorch's
    ``UninitializedParameter`` knows (its dtype, whether it requires grad), without a shape.
    Forward may read those (``x.to(self.proj.weight.dtype)``); anything that needs its shape or
    values is LFX020 (see :func:`lazyfx.analysis.propagate.uninitialized_query`)."""

    name: str  # as forward reads it: self.proj.weight
    dtype: torch.dtype
    requires_grad: bool

    def __str__(self) -> str:
        return f"uninitialized {dtype_name(self.dtype)}"


# materialize(dtype=): the model is analysed as it will be after ``.to(dtype)``.
ANALYSIS_DTYPE: contextvars.ContextVar[Optional[torch.dtype]] = contextvars.ContextVar("lazyfx_analysis_dtype",
                                                                                        default=None)


@contextlib.contextmanager
def analysis_dtype(dtype: Optional[torch.dtype]) -> Iterator[None]:
    """Within the block the model's floating-point parameters and buffers read as ``dtype``, as
    after ``module.to(dtype)``, and inputs whose spec gives no dtype are in ``dtype`` (a dry run
    after ``.to(dtype)`` feeds the model its own dtype)."""
    token = ANALYSIS_DTYPE.set(dtype)
    try:
        yield
    finally:
        ANALYSIS_DTYPE.reset(token)


def converted_dtype(dtype: torch.dtype, target: Optional[torch.dtype]) -> torch.dtype:
    """The dtype ``module.to(target)`` gives a parameter or buffer of ``dtype``: floating-point and
    complex ones take ``target``, the others (``num_batches_tracked``, token tables) keep theirs."""
    if target is None or not (dtype.is_floating_point or dtype.is_complex):
        return dtype
    return target


def analysed_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the analysis sees for a model tensor of ``dtype`` (see :func:`analysis_dtype`)."""
    return converted_dtype(dtype, ANALYSIS_DTYPE.get())


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def same_tuple_type(original: tuple, items: list) -> tuple:
    """``items`` as a tuple of ``original``'s type, so named results keep their names
    (``torch.return_types.max``'s ``.values``, a namedtuple's fields)."""
    if hasattr(type(original), "_fields"):  # a namedtuple
        return type(original)(*items)
    if hasattr(type(original), "n_fields"):  # a structseq, as torch.return_types.max
        return type(original)(items)
    return tuple(items)


class RecordValue(dict):
    """A dict whose fields are attributes too, indexed by integers in order: what a Hugging Face
    ``ModelOutput`` (an ``OrderedDict`` dataclass) is in the analysis. Its keys are the fields
    that are not None, as the ModelOutput's; ``out.name`` reads any field (None ones too),
    ``out[0]`` the first key's value, as ``out.to_tuple()[0]``.

    Examples:
        >>> from lazyfx.core.values import RecordValue
        >>> out = RecordValue({"last_hidden_state": TensorMeta((2, 5))}, "BaseModelOutput",
        ...                   {"last_hidden_state": TensorMeta((2, 5)), "attentions": None})
        >>> print(out.field("last_hidden_state"), out.field("attentions"), out.to_tuple()[0])
        (2, 5) None (2, 5)
    """

    def __init__(self, items: dict, type_name: str, fields: dict) -> None:
        super().__init__(items)
        self.type_name = type_name
        self.fields = fields

    def field(self, name: str) -> Any:
        """The field ``name`` (None where it is None), as ``getattr`` on the ModelOutput.

        Examples:
            >>> RecordValue({}, "Out", {"loss": None}).field("loss") is None
            True
        """
        if name not in self.fields:
            raise AttributeError(f"'{self.type_name}' object has no attribute '{name}'")
        return self.fields[name]

    def to_tuple(self) -> tuple:
        """The values of its keys, in order, as ``ModelOutput.to_tuple()``.

        Examples:
            >>> RecordValue({"a": 1, "b": 2}, "Out", {"a": 1, "b": 2, "c": None}).to_tuple()
            (1, 2)
        """
        return tuple(self.values())


def mapped_dict(value: dict, fn: Callable[[Any], Any]) -> dict:
    """``value`` with ``fn`` applied to each of its values: a plain dict, or, for a ModelOutput
    (a dict that is a dataclass) or a :class:`RecordValue`, a RecordValue, so that its fields
    stay attributes.

    Examples:
        >>> mapped_dict({"a": 1}, lambda v: v + 1)
        {'a': 2}
    """
    if isinstance(value, RecordValue):
        fields = {k: fn(v) for k, v in value.fields.items()}
        return RecordValue({k: fields[k] if k in fields else fn(v) for k, v in value.items()}, value.type_name, fields)
    if type(value) is not dict and dataclasses.is_dataclass(value):
        fields = {f.name: fn(getattr(value, f.name, None)) for f in dataclasses.fields(value)}
        return RecordValue({k: fields[k] if k in fields else fn(v) for k, v in value.items()},
                           type(value).__name__, fields)
    return {k: fn(v) for k, v in value.items()}


def map_values(fn: Callable[[Any], Any], value: Any) -> Any:
    """Apply ``fn`` to every leaf of a nested tuple/list/dict value (a ModelOutput stays a
    :class:`RecordValue`)."""
    if isinstance(value, tuple):
        return same_tuple_type(value, [map_values(fn, v) for v in value])
    if isinstance(value, list):
        return [map_values(fn, v) for v in value]
    if isinstance(value, dict):
        return mapped_dict(value, lambda v: map_values(fn, v))
    return fn(value)


def tensors_in(value: Any) -> list[TensorMeta]:
    """The TensorMeta leaves of a nested value, in order (as :func:`map_values` visits them)."""
    found: list[TensorMeta] = []
    _collect_tensors(value, found)
    return found


def _collect_tensors(value: Any, found: list[TensorMeta]) -> None:
    # asked for every node's inputs: plain containers walked directly, without map_values' copies,
    # and their tensors and plain numbers without a call each
    kind = type(value)
    if kind is TensorMeta:
        found.append(value)
        return
    if kind is tuple or kind is list or kind is immutable_list:
        items = value
    elif kind is dict or kind is immutable_dict:  # (a node's kwargs, as torch.fx maps them)
        items = value.values()
    else:
        if isinstance(value, (tuple, list, dict, TensorMeta)):  # a named tuple, a ModelOutput, a subclass
            map_values(lambda v: found.append(v) if isinstance(v, TensorMeta) else None, value)
        return
    for item in items:
        kind = type(item)
        if kind is TensorMeta:
            found.append(item)
        elif kind is not int and kind is not float and kind is not bool and item is not None:
            _collect_tensors(item, found)


def describe(value: Any) -> str:
    """A value as the report prints it: tensors as their shape (and dtype when not
    float32), sizes as formulas, containers element by element."""
    if isinstance(value, TensorMeta):
        return str(value)
    if isinstance(value, torch.dtype):
        return dtype_name(value)
    if isinstance(value, UninitializedTensor):
        return str(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    return fmt(value)
