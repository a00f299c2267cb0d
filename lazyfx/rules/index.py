"""Shape queries and indexing: ``size()``, ``.shape``, ``dim()``, ``numel()``, ``x[...]``,
select/index_select/gather/scatter/take_along_dim, and the ops whose output shape depends
on tensor values (nonzero, masked_select, unique, ``.item()``, ``.tolist()``, boolean masks).

Queries return size formulas (ints or sympy expressions), so ``x.view(x.size(0), -1)``
stays exact. Indexing a tensor follows PyTorch's semantics (NumPy's, except that ints
select before advanced indexing): slice bounds are clamped to the dim, an int index must
be in ``[-size, size)``, index tensors broadcast together. The values inside an index
tensor are not known, so only what shapes decide is checked (an index into a dim of
size 0 is always out of range).
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import sympy
import torch

from lazyfx.core.checks import assume, decide, le, require, require_equal, require_positive
from lazyfx.core.registry import Method, rule
from lazyfx.core.symbolic import DimExpr, ceildiv, fmt, is_concrete, product
from lazyfx.core.target import TARGET_DEVICE
from lazyfx.core.values import RecordValue, TensorMeta, dtype_name
from lazyfx.errors import DataDependentError, ShapeError, UnsupportedOpError
from lazyfx.rules._util import broadcast_exactly, clamp_max, clamp_min, normalize_dim, shape_str, tensor_arg
from lazyfx.rules.activation import complex_to_real


@rule(Method("size"))
def size(input, dim=None):
    """``x.size()`` is the shape tuple; ``x.size(d)`` one size."""
    x = tensor_arg(input, "size() input")
    if dim is None:
        return tuple(x.shape)
    return x.shape[normalize_dim(dim, x.ndim, wrap_scalar=False)] if x.ndim else _no_dims("size")


def _no_dims(op: str):
    raise ShapeError(f"{op}(dim) on a 0-dim tensor: dimension specified as 0 but tensor has no dimensions")


@rule(Method("dim"), Method("ndimension"))
def dim(input) -> int:
    return tensor_arg(input, "dim() input").ndim


@rule(Method("nelement"), torch.numel)
def numel(input) -> DimExpr:
    return product(tensor_arg(input, "numel() input").shape)


@rule(Method("numel"))
def numel_method(input) -> DimExpr:
    """``x.numel()``, and ``x.shape.numel()`` (``torch.Size.numel``: the product of the sizes)."""
    if isinstance(input, tuple) and not isinstance(input, TensorMeta):
        return product(input)
    return numel(input)


_TENSOR_ATTRIBUTES = {
    "shape": lambda x: tuple(x.shape),
    "ndim": lambda x: x.ndim,
    "dtype": lambda x: x.dtype,
    # Devices do not change shapes; a tensor is where a dry run on the target device has it
    # (lazyfx.core.target.TARGET_DEVICE: cpu for infer, materialize's device)
    "device": lambda x: TARGET_DEVICE.get(),
    "data": lambda x: x,
    # Specs describe dense tensors, and no rule makes a sparse one (PyTorch Geometric asks
    # ``is_sparse(edge_index)`` before it builds its messages).
    "layout": lambda x: torch.strided,
    "is_sparse": lambda x: False,
    "T": lambda x: x.with_shape(tuple(reversed(x.shape))),
    "mT": lambda x: _swap_last_two(x, "mT"),
    "mH": lambda x: _swap_last_two(x, "mH"),
    "real": lambda x: _complex_part(x, "real"),
    "imag": lambda x: _complex_part(x, "imag"),
}


def _complex_part(x: TensorMeta, part: str) -> TensorMeta:
    return complex_to_real(x, part)



def _swap_last_two(x: TensorMeta, what: str) -> TensorMeta:
    if x.ndim == 0:  # deprecated identity on 0-dim tensors
        return x
    if x.ndim < 2:
        raise ShapeError(f"tensor.{what} is only supported on matrices or batches of matrices. Got {x.ndim}-D tensor.")
    return x.with_shape((*x.shape[:-2], x.shape[-1], x.shape[-2]))


@rule(builtins.getattr)
def getattr_(obj, name: str, *default):
    """``x.shape``, ``x.ndim``, ``x.dtype``, ``x.T``, ``x.mT``..."""
    if isinstance(obj, TensorMeta) and name in _TENSOR_ATTRIBUTES:
        return _TENSOR_ATTRIBUTES[name](obj)
    if isinstance(obj, tuple) and name in getattr(type(obj), "__match_args__", getattr(type(obj), "_fields", ())):
        return getattr(obj, name)  # a named result: x.max(1).values, torch.sort(x).indices
    if isinstance(obj, RecordValue):  # a Hugging Face ModelOutput: out.last_hidden_state
        try:
            return obj.field(name)
        except AttributeError as exc:
            if default:
                return default[0]
            raise ShapeError(str(exc)) from None
    raise UnsupportedOpError(f"attribute {name!r} of {type(obj).__name__} is not supported")


@rule(operator.getitem)
def getitem(obj, index):
    """Indexing a tensor, a shape tuple, a tuple of outputs or a dict."""
    if isinstance(obj, TensorMeta):
        return index_tensor(obj, index)
    if isinstance(obj, (tuple, list)):
        if isinstance(index, sympy.Basic):
            raise UnsupportedOpError(f"indexing a tuple with the formula {fmt(index)}")
        try:
            return obj[index]
        except IndexError:
            raise ShapeError(f"tuple index {index} out of range for a tuple of {len(obj)} elements") from None
    if isinstance(obj, RecordValue) and not isinstance(index, str):  # out[0], out[:2]: its to_tuple()
        return getitem(obj.to_tuple(), index)
    if isinstance(obj, dict):
        if index not in obj:
            raise ShapeError(f"key {index!r} not in the dict (keys: {list(obj)})")
        return obj[index]
    raise UnsupportedOpError(f"indexing a {type(obj).__name__}")


# -- x[index] ---------------------------------------------------------------------------------
#
# PyTorch applies the basic items first (ints select, slices narrow, None and Python bools
# insert a dim) and then indexes the remaining dims with the *advanced* items (integer index
# tensors and lists, boolean masks, Python bools): their shapes broadcast together, and the
# broadcast shape replaces the advanced dims in place when they are adjacent, else it goes
# first (torch/csrc/autograd/python_variable_indexing.cpp,
# aten/src/ATen/native/TensorAdvancedIndexing.cpp).
# A 0-dim integer tensor is read as an int (select); a boolean mask selects as many
# elements as it has True values, which only the data knows.


@dataclass(frozen=True)
class IntIndex:
    """An int, a size formula, or a 0-dim integer tensor (``value`` None: known only at run time)."""

    value: Optional[DimExpr]


@dataclass(frozen=True)
class BoolIndex:
    """A Python bool: inserts a dim of size 1 and indexes it with ``[0]`` (True) or ``[]`` (False)."""

    value: bool


@dataclass(frozen=True)
class IndexTensor:
    """An integer index tensor (or a list of ints) of this shape."""

    shape: tuple


@dataclass(frozen=True)
class Mask:
    """A boolean mask of this shape with ``count`` True values (None: known only at run time)."""

    shape: tuple
    count: Optional[DimExpr]


_INDEX_DTYPES = (torch.int64, torch.int32)
_MASK_DTYPES = (torch.bool, torch.uint8)


def index_tensor(x: TensorMeta, index: Any) -> TensorMeta:
    """``x[index]`` with ints, slices, None, ``...``, bools, index tensors/lists and masks."""
    items = [_classify(item) for item in _index_items(index)]
    if sum(1 for i in items if i is Ellipsis) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')")
    consumed = sum(_consumed_dims(i) for i in items)
    if consumed > x.ndim:
        raise ShapeError(f"too many indices for tensor of dimension {x.ndim}")
    fill = [slice(None)] * (x.ndim - consumed)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items = items[:at] + fill + items[at + 1 :]
    else:
        items = items + fill
    dims = _basic_indexing(x, items)
    if any(isinstance(i, Mask) and i.count is None for i in items):
        raise value_dependent(
            "indexing with a boolean mask (x[mask]): the result has as many elements as the mask has True "
            "values, which depends on the mask's values, not its shape", counted=True,
        )
    return x.with_shape(_advanced_indexing(dims))


def _index_items(index: Any) -> tuple:
    if isinstance(index, tuple):
        return index
    if isinstance(index, list) and _list_is_tuple(index):
        return tuple(index)
    return (index,)


def _list_is_tuple(seq: list) -> bool:
    """NumPy's heuristic, which PyTorch keeps: a short list holding a tensor, a sequence, a slice,
    None or ``...`` is read as a tuple of indices (``x[[0, slice(None)]] == x[0, :]``)."""
    return len(seq) < 32 and any(
        isinstance(i, (TensorMeta, list, tuple, slice)) or i is None or i is Ellipsis for i in seq
    )


def _classify(item: Any) -> Any:
    if item is None or item is Ellipsis or isinstance(item, slice):
        return item
    if isinstance(item, bool):
        return BoolIndex(item)
    if isinstance(item, (int, sympy.Basic)):
        return IntIndex(item)
    if isinstance(item, TensorMeta):
        return _classify_tensor(item)
    if isinstance(item, (list, tuple)):
        return _classify_sequence(item)
    raise UnsupportedOpError(f"indexing a tensor with {type(item).__name__} {item!r}")


def _classify_tensor(t: TensorMeta) -> Any:
    if t.dtype in _MASK_DTYPES:
        return Mask(tuple(t.shape), 0 if _is_empty(t.shape) else None)
    if t.ndim == 0 and not (t.dtype.is_floating_point or t.dtype.is_complex):
        return IntIndex(None)  # read with .item(), like an int
    if t.dtype not in _INDEX_DTYPES:
        raise ShapeError(f"tensors used as indices must be long, int, byte or bool tensors, got {fmt(t.dtype)}")
    return IndexTensor(tuple(t.shape))


def _classify_sequence(seq: Sequence[Any]) -> Any:
    """A (nested) list of ints is an index tensor, of bools a mask whose True count is known."""
    shape, leaves = _nested_shape(seq)
    if leaves and all(isinstance(v, bool) for v in leaves):
        return Mask(shape, sum(leaves))
    if all(isinstance(v, (int, sympy.Basic)) for v in leaves):
        return IndexTensor(shape)
    raise UnsupportedOpError(f"indexing a tensor with the list {seq!r} (only lists of ints or of bools are supported)")


def _nested_shape(seq: Any) -> tuple[tuple, list]:
    if not isinstance(seq, (list, tuple)):
        return (), [seq]
    if not seq:
        return (0,), []
    parts = [_nested_shape(s) for s in seq]
    if len({shape for shape, _ in parts}) != 1:
        raise ShapeError(f"an index list must be rectangular, got {seq!r}")
    return (len(seq), *parts[0][0]), [leaf for _, leaves in parts for leaf in leaves]


def _consumed_dims(item: Any) -> int:
    """How many of the input's dims an index item uses up."""
    if isinstance(item, Mask):
        return len(item.shape)
    if isinstance(item, (IntIndex, IndexTensor, slice)):
        return 1
    return 0


def _basic_indexing(x: TensorMeta, items: Sequence[Any]) -> list[tuple[DimExpr, Optional[tuple]]]:
    """The dims left after the basic items, each with the shape of the advanced index on it (or None)."""
    dims: list[tuple[DimExpr, Optional[tuple]]] = []
    d = 0
    for item in items:
        if item is None:
            dims.append((1, None))
        elif isinstance(item, BoolIndex):
            dims.append((1, (1 if item.value else 0,)))
        elif isinstance(item, slice):
            dims.append((slice_length(x.shape[d], item), None))
        elif isinstance(item, IntIndex):
            _check_index(item.value, x.shape[d], d)
        elif isinstance(item, IndexTensor):
            dims.append((x.shape[d], item.shape))
        else:  # a mask
            k = len(item.shape)
            _check_mask(item, x, d)
            dims.extend([(1, (item.count,))] if k == 0 else [(size, (item.count,)) for size in x.shape[d : d + k]])
        d += _consumed_dims(item)
    return dims


def _check_mask(mask: Mask, x: TensorMeta, d: int) -> None:
    for j, (m, s) in enumerate(zip(mask.shape, x.shape[d:])):
        require_equal(m, s, lambda j=j: f"The shape of the mask {shape_str(mask.shape)} at index {j} does not match "
                                        f"the shape of the indexed tensor {shape_str(x.shape)} at index {d + j}")


def _advanced_indexing(dims: list[tuple[DimExpr, Optional[tuple]]]) -> tuple:
    """The advanced indices broadcast together; their shape replaces their dims when these are
    adjacent, else it goes first."""
    positions = [i for i, (_, adv) in enumerate(dims) if adv is not None]
    if not positions:
        return tuple(size for size, _ in dims)
    indices = [adv for _, adv in dims if adv is not None]
    shape = broadcast_exactly(*indices, message=lambda *_: "shape mismatch: indexing tensors could not be "
                              "broadcast together with shapes " + ", ".join(map(shape_str, indices)))
    if not _is_empty(shape):
        for size, adv in dims:
            if adv is not None and is_concrete(size) and size == 0:
                raise ShapeError("index is out of bounds for dimension with size 0")
    rest = [size for size, adv in dims if adv is None]
    if positions[-1] - positions[0] + 1 == len(positions):  # adjacent: in place
        return (*rest[: positions[0]], *shape, *rest[positions[0] :])
    return (*shape, *rest)


def _is_empty(shape: Sequence[DimExpr]) -> bool:
    return any(is_concrete(s) and s == 0 for s in shape)


def _check_index(i: Optional[DimExpr], size: DimExpr, d: int) -> None:
    """An int index must be in ``[-size, size)``; one known only at run time needs ``size >= 1``."""
    if i is None:
        require_positive(size, lambda: f"index is out of bounds for dimension {d} with size {fmt(size)}")
        return
    if is_concrete(i) and is_concrete(size):  # (x[:, 0] in every transformer: no sympy needed)
        inside = -size <= i < size
    else:
        inside = sympy.And(sympy.Ge(i, -size), sympy.Lt(i, size))
    require(inside, lambda: f"index {fmt(i)} is out of bounds for dimension {d} with size {fmt(size)}")


def slice_length(size: DimExpr, s: slice) -> DimExpr:
    """``len(range(size)[s])`` with Python's clamping of out-of-range bounds."""
    step = 1 if s.step is None else s.step
    if not is_concrete(step):
        raise UnsupportedOpError(f"a slice step must be a concrete int, got {fmt(step)}")
    if step <= 0:
        raise ShapeError("slice step must be positive")
    start = 0 if s.start is None else _bound(s.start, size)
    stop = size if s.stop is None else _bound(s.stop, size)
    return clamp_min(ceildiv(stop - start, step), 0)


def _bound(value: DimExpr, size: DimExpr) -> DimExpr:
    """A slice bound clamped into ``[0, size]``; a negative one counts from the end, as in Python.

    A formula's sign is decided under the analysis' constraints (``-T`` is negative); where it
    depends on the input, the shapes are worked out for a bound that counts from the end if it is
    never positive (``-(T // 2)``, 0 at T = 1), else from the start (``T - 5``), and that choice is
    recorded as an assumption of the domain."""
    if is_concrete(value):
        negative = value < 0
    else:
        negative = decide(sympy.Lt(value, 0))
        if negative is None and decide(sympy.Le(value, 0)):  # -(T//2): from the end, except where it is 0
            assume(sympy.Lt(value, 0), lambda: f"{fmt(value)} < 0 (a slice bound that counts from the end)",
                   narrows=True)
            negative = True
        elif negative is None:
            assume(sympy.Ge(value, 0), lambda: f"{fmt(value)} >= 0 (a slice bound that counts from the start)",
                   narrows=True)
            negative = False
    if negative:
        return clamp_min(size + value, 0)
    return clamp_max(value, size)


# -- select, index_select, gather, scatter, take_along_dim ---------------------------------------


# PyTorch's own functions, not whatever ``torch.select`` and ``torch.index_select`` are when the
# rules load: PyTorch Geometric replaces both with Python wrappers on import, which call these
# (a traced call reaches them either way; docs and reports name them torch.select/index_select).
_TORCH_SELECT = torch._C._VariableFunctions.select
_TORCH_INDEX_SELECT = torch._C._VariableFunctions.index_select


@rule(_TORCH_SELECT, Method("select"))
def select(input, dim, index) -> TensorMeta:
    """Dim ``dim`` is removed; ``index`` must be in ``[-size, size)``."""
    x = tensor_arg(input, "select input")
    if x.ndim == 0:
        raise ShapeError("select() cannot be applied to a 0-dim tensor.")
    d = normalize_dim(dim, x.ndim)
    _check_index(None if isinstance(index, TensorMeta) else index, x.shape[d], d)
    return x.with_shape((*x.shape[:d], *x.shape[d + 1 :]))


def _index_dtype(index: TensorMeta, op: str) -> None:
    if index.dtype not in _INDEX_DTYPES:
        raise ShapeError(f"{op}(): Expected dtype int32/int64 for index, got {dtype_name(index.dtype)}")


@rule(_TORCH_INDEX_SELECT, Method("index_select"))
def index_select(input, dim, index) -> TensorMeta:
    """Dim ``dim`` becomes ``index.numel()``; ``index`` is a 0-D or 1-D int32/int64 tensor
    (exactly one element when the input is 0-dim, whose shape is then kept)."""
    x, idx = tensor_arg(input, "index_select input"), tensor_arg(index, "index_select index")
    d = normalize_dim(dim, x.ndim)
    if idx.ndim > 1:
        raise ShapeError(f"index_select(): Index is supposed to be a vector, got size {shape_str(idx.shape)}")
    count = product(idx.shape)
    if x.ndim == 0:
        require_equal(count, 1, lambda: f"index_select(): Index to scalar can have only 1 value, got {fmt(count)} "
                                        f"value(s)")
    _index_dtype(idx, "index_select")
    if x.ndim == 0:
        return x
    _require_indexable(x.shape[d], count, d)
    require_known_indices(idx, x.shape[d], lambda: f"index_select(): index out of range in self: dimension {d} "
                                                    f"has size {fmt(x.shape[d])}")
    return x.with_shape((*x.shape[:d], count, *x.shape[d + 1 :]))


def _require_indexable(size: DimExpr, count: DimExpr, d: int) -> None:
    """Any index into a dim of size 0 is out of range (whatever its values), unless there is none."""
    if is_concrete(size) and size == 0:
        require_equal(count, 0, lambda: f"index out of range in self: dimension {d} has size 0 but "
                                        f"{fmt(count)} indices are taken from it")


def require_known_indices(index: TensorMeta, size: DimExpr, message) -> None:
    """Where an index tensor's smallest and largest values are known (``torch.arange(T)``: 0 and
    ``T - 1``), each must be in ``[0, size)`` (index_select, gather and embedding take no negative
    index), unless the tensor is empty; where they are not known, only its shape is checked."""
    if index.value_range is None or _is_empty(index.shape):
        return
    low, high = index.value_range
    inside = sympy.And(sympy.Ge(low, 0), sympy.Lt(high, size))
    require(sympy.Or(sympy.Eq(product(index.shape), 0), inside),
            lambda: f"{message()}, but the indices go from {fmt(low)} to {fmt(high)}")


def _nonempty(shape: Sequence[DimExpr]) -> tuple:
    """ATen's ``ensure_nonempty_size``: a 0-dim tensor counts as shape ``(1,)`` in gather/scatter."""
    return tuple(shape) if shape else (1,)


def _require_no_larger(index: TensorMeta, other: TensorMeta, skip: Optional[int], message) -> None:
    for d, (i, o) in enumerate(zip(_nonempty(index.shape), _nonempty(other.shape))):
        if d != skip:
            require(le(i, o), message)


@rule(torch.gather, Method("gather"))
def gather(input, dim, index, *, sparse_grad=False) -> TensorMeta:
    """The index's shape with the input's dtype. The index has the input's rank and is no larger
    than the input in every dim but ``dim`` (nothing is checked for an empty index)."""
    x, idx = tensor_arg(input, "gather input"), tensor_arg(index, "gather index")
    d = normalize_dim(dim, x.ndim)
    if _is_empty(idx.shape):
        return TensorMeta(idx.shape, x.dtype)
    _index_dtype(idx, "gather")
    if len(_nonempty(x.shape)) != len(_nonempty(idx.shape)):
        raise ShapeError(f"Index tensor must have the same number of dimensions as input tensor, got "
                         f"{shape_str(idx.shape)} and {shape_str(x.shape)}")
    _require_no_larger(idx, x, d, lambda: f"Size does not match at dimension expected index {shape_str(idx.shape)} "
                                          f"to be no larger than self {shape_str(x.shape)} apart from dimension {d}")
    _require_indexable(_nonempty(x.shape)[d], product(idx.shape), d)
    size = _nonempty(x.shape)[d]
    require_known_indices(idx, size, lambda: f"gather(): index is out of bounds for dimension {d} with size {fmt(size)}")
    return TensorMeta(idx.shape, x.dtype)


def scatter_shape(x: TensorMeta, dim: Any, idx: TensorMeta, src: Any, op: str) -> TensorMeta:
    """The input's shape and dtype. ``src`` (a tensor) has the input's dtype; a non-empty index has
    the input's rank, is no larger than ``src`` in every dim and than the input apart from ``dim``."""
    d = normalize_dim(dim, x.ndim)
    empty = _is_empty(idx.shape)
    if not empty:
        _index_dtype(idx, op)
    if isinstance(src, TensorMeta) and src.dtype != x.dtype:
        raise ShapeError(f"{op}(): Expected self.dtype to be equal to src.dtype, got {dtype_name(x.dtype)} and "
                         f"{dtype_name(src.dtype)}")
    if empty:
        return x
    if len(_nonempty(x.shape)) != len(_nonempty(idx.shape)):
        raise ShapeError("Index tensor must have the same number of dimensions as self tensor")
    too_large = lambda: _scatter_mismatch(idx, x, d, src)  # noqa: E731
    _require_no_larger(idx, x, d, too_large)
    if isinstance(src, TensorMeta):
        if len(_nonempty(src.shape)) != len(_nonempty(idx.shape)):
            raise ShapeError("Index tensor must have the same number of dimensions as src tensor")
        _require_no_larger(idx, src, None, too_large)
    _require_indexable(_nonempty(x.shape)[d], product(idx.shape), d)
    return x


def _scatter_mismatch(idx: TensorMeta, x: TensorMeta, d: int, src: Any) -> str:
    message = (f"Expected index {shape_str(idx.shape)} to be no larger than self {shape_str(x.shape)} apart from "
               f"dimension {d}")
    if isinstance(src, TensorMeta):
        message += f" and to be no larger size than src {shape_str(src.shape)}"
    return message


_SCATTER_REDUCTIONS = (None, "add", "multiply")


@rule(torch.scatter, Method("scatter"))
def scatter(input, dim, index, src=None, value=None, *, reduce=None) -> TensorMeta:
    """``scatter(input, dim, index, src or value, reduce=None)``; see :func:`scatter_shape`."""
    x, idx = tensor_arg(input, "scatter input"), tensor_arg(index, "scatter index")
    if reduce not in _SCATTER_REDUCTIONS:
        raise ShapeError(f"reduce argument must be either add or multiply, got {reduce!r}")
    return scatter_shape(x, dim, idx, src if src is not None else value, "scatter")


@rule(torch.scatter_add, Method("scatter_add"))
def scatter_add(input, dim, index, src) -> TensorMeta:
    """``scatter_add(input, dim, index, src)``; see :func:`scatter_shape`."""
    x, idx = tensor_arg(input, "scatter_add input"), tensor_arg(index, "scatter_add index")
    return scatter_shape(x, dim, idx, tensor_arg(src, "scatter_add src"), "scatter")


@rule(torch.take_along_dim, Method("take_along_dim"))
def take_along_dim(input, indices, dim=None) -> TensorMeta:
    """Without ``dim``: ``(indices.numel(),)`` from the flattened input. With ``dim``: equal ranks
    and int64 indices; the result is the broadcast of the input's shape (``dim`` taken from the
    indices) with the indices' shape (and the input must broadcast the other way too)."""
    x, idx = tensor_arg(input, "take_along_dim input"), tensor_arg(indices, "take_along_dim indices")
    if dim is None:
        count = product(idx.shape)
        if not _is_empty(idx.shape):
            _index_dtype(idx, "gather")
        _require_indexable(product(x.shape), count, 0)
        return TensorMeta((count,), x.dtype)
    if x.ndim != idx.ndim:
        raise ShapeError(f"torch.take_along_dim(): input and indices should have the same number of dimensions, "
                         f"but got {x.ndim} dimensions for input, and {idx.ndim} dimensions for indices")
    if idx.dtype != torch.int64:
        raise ShapeError(f"torch.take_along_dim(): dtype of indices should be Long but got {dtype_name(idx.dtype)}")
    d = normalize_dim(dim, x.ndim, wrap_scalar=False)
    shape = broadcast_exactly((*x.shape[:d], idx.shape[d], *x.shape[d + 1 :]), idx.shape)
    broadcast_exactly((*idx.shape[:d], x.shape[d], *idx.shape[d + 1 :]), x.shape)
    _require_indexable(x.shape[d], product(shape), d)
    return TensorMeta(shape, x.dtype)


# -- ops whose output shape depends on tensor values -------------------------------------------
#
# Their rules check what the shapes decide (a mask that does not broadcast is an error whatever
# its values) and answer exactly where the values cannot matter (an empty input), and otherwise
# raise DataDependentError naming the op and why.


def value_dependent(message: str, counted: bool = False) -> DataDependentError:
    """The error of a rule whose output depends on tensor values. It is final: abstract execution
    (:mod:`lazyfx.analysis.fallback.abstract`, which retries a module that raised a DataDependentError by running it
    on meta tensors) cannot do better, since the meta kernels do not know these shapes either --
    except where the size is a ``counted`` one, how many elements a mask selects: abstract
    execution answers those counts (:mod:`lazyfx.analysis.counts`) and accepts the module where nothing
    depends on them; where something does, this error is the verdict."""
    return DataDependentError(message, final=not counted, counted=counted)


def _data_dependent(op: str, what: str, counted: bool = False) -> DataDependentError:
    return value_dependent(f"{op}: {what} depends on the tensor's values, not on its shape", counted)


@rule(torch.nonzero, Method("nonzero"))
def nonzero(input, *, as_tuple=False):
    """``(n, ndim)`` int64 indices of the ``n`` nonzero elements (``as_tuple``: ``ndim`` tensors
    ``(n,)``, one for a 0-dim input); ``n`` is known only for an empty input (0)."""
    x = tensor_arg(input, "nonzero input")
    if not _is_empty(x.shape):
        raise _data_dependent("nonzero", "the number of rows (one per nonzero element)", counted=True)
    if as_tuple:
        return (TensorMeta((0,), torch.int64),) * max(x.ndim, 1)
    return TensorMeta((0, x.ndim), torch.int64)


@rule(torch.argwhere, Method("argwhere"))
def argwhere(input):
    """``nonzero(input)``: ``(n, ndim)`` int64."""
    x = tensor_arg(input, "argwhere input")
    if not _is_empty(x.shape):
        raise _data_dependent("argwhere", "the number of rows (one per nonzero element)", counted=True)
    return TensorMeta((0, x.ndim), torch.int64)


@rule(torch.masked_select, Method("masked_select"))
def masked_select(input, mask) -> TensorMeta:
    """``(n,)``: the ``n`` elements where the bool ``mask`` (broadcast with the input) is True."""
    x, m = tensor_arg(input, "masked_select input"), tensor_arg(mask, "masked_select mask")
    if m.dtype != torch.bool:
        raise ShapeError(f"masked_select: expected BoolTensor for mask, got {dtype_name(m.dtype)}")
    shape = broadcast_exactly(x.shape, m.shape)
    if not _is_empty(shape):
        raise _data_dependent("masked_select", "the number of elements (one per True element of the mask)", counted=True)
    return TensorMeta((0,), x.dtype)


def _unique(input, return_inverse: bool, return_counts: bool, dim, op: str):
    """``(n,)`` distinct values (+ int64 inverse indices of the input's shape, + int64 counts ``(n,)``);
    ``n`` is known when the input has 0 or 1 elements."""
    x = tensor_arg(input, f"{op} input")
    if dim is not None:
        normalize_dim(dim, x.ndim)
        raise _data_dependent(f"{op}(dim={dim})", "the number of distinct slices")
    numel = product(x.shape)
    if not (is_concrete(numel) and numel <= 1):
        raise _data_dependent(op, "the number of distinct values")
    out = [TensorMeta((numel,), x.dtype)]
    if return_inverse:
        out.append(TensorMeta(x.shape, torch.int64))
    if return_counts:
        out.append(TensorMeta((numel,), torch.int64))
    return out[0] if len(out) == 1 else tuple(out)


@rule(torch.unique)
def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """See :func:`_unique`."""
    return _unique(input, return_inverse, return_counts, dim, "unique")


@rule(Method("unique"))
def unique_method(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """See :func:`_unique`."""
    return _unique(input, return_inverse, return_counts, dim, "Tensor.unique")


@rule(Method("item"))
def item(input):
    """A Python number: the tensor's value. A one-element tensor is required."""
    x = tensor_arg(input, "item() input")
    numel = product(x.shape)
    require_equal(numel, 1, lambda: f"a Tensor with {fmt(numel)} elements cannot be converted to Scalar")
    raise value_dependent(
        "Tensor.item() returns the tensor's value, and a size or shape taken from a tensor's value cannot be "
        "known statically (take sizes from x.size(...) / x.shape instead)"
    )


@rule(Method("tolist"))
def tolist(input):
    """Nested Python lists of the tensor's values; known only when it has no elements."""
    x = tensor_arg(input, "tolist() input")
    if not _is_empty(x.shape):
        raise _data_dependent("Tensor.tolist()", "the result (the elements as Python numbers)")
    return _empty_lists(x.shape)


def _empty_lists(shape: Sequence[DimExpr]) -> list:
    """The nested lists ``tolist()`` returns for a tensor without elements (``(2, 0) -> [[], []]``)."""
    size = shape[0]
    if is_concrete(size) and size == 0:
        return []
    count = size if is_concrete(size) else None
    if count is None:
        raise UnsupportedOpError(f"Tensor.tolist() of an empty tensor with a symbolic dim: it returns {fmt(size)} "
                                 f"nested lists, a number that is not known statically")
    return [_empty_lists(shape[1:]) for _ in range(count)]
