"""Differential cases for joining/splitting, shape manipulation, indexing and matrix products
(see tests/cases.py for the conventions).

Index tensors are inputs of the module, zero-filled by the oracle: index 0 is valid in
every dim of size >= 1, so only shapes decide acceptance. Ops whose output shape depends
on values (nonzero, masks, unique, tolist) are exercised here only on empty inputs, where
the shape is known; tests/test_data_dependent.py checks that they refuse the rest.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from cases import FLOAT, case, example, mostly, sizes
from differential import Example, fn_module
from lazyfx.core.registry import Method

LONG = torch.int64
DTYPES = [FLOAT, FLOAT, torch.float64, torch.int64]


def _concrete(ex: Example, *dims: tuple[int, int]) -> Example:
    """Keep these (input, dim) positions concrete: the number of outputs depends on them."""
    for i, d in dims:
        if ex.symbolic and i < len(ex.symbolic) and -len(ex.symbolic[i]) <= d < len(ex.symbolic[i]):
            ex.symbolic[i][d] = False
    return ex


def _dim(draw, rank: int) -> int:
    """A dim index, sometimes out of range."""
    return draw(st.integers(-rank - 1, rank))


def _call(via: str, name: str, *args, **kwargs):
    """``torch.name(x, *args)`` or ``x.name(*args)``."""
    if via == "torch":
        return lambda x: getattr(torch, name)(x, *args, **kwargs)
    return lambda x: getattr(x, name)(*args, **kwargs)


# -- joining -----------------------------------------------------------------------------------


@case("stack")
def stack_case(draw):
    rank = draw(st.integers(0, 3))
    base = sizes(draw, rank, 1, 4)
    n = draw(st.integers(1, 3))
    shapes = [base] + [tuple(mostly(draw, d, st.integers(1, 4)) for d in base) for _ in range(n - 1)]
    if draw(st.integers(0, 9)) == 0 and n > 1:
        shapes[-1] = shapes[-1][1:]
    dim = draw(st.integers(-rank - 2, rank + 1))
    dtypes = [draw(st.sampled_from(DTYPES)) for _ in shapes]
    module = fn_module(lambda *xs: torch.stack(list(xs), dim), n, f"stack(dim={dim})")
    return example(draw, module, *shapes, dtypes=dtypes)


@case("hstack/vstack/dstack/column_stack", over=[torch.hstack, torch.vstack, torch.dstack, torch.column_stack])
def stack_family_case(draw, fn):
    rank = draw(st.integers(0, 3))
    base = sizes(draw, rank, 1, 4)
    joined = {torch.hstack: 1 if rank > 1 else 0, torch.vstack: 0, torch.dstack: 2, torch.column_stack: 1}[fn]
    shapes = [base]
    for _ in range(draw(st.integers(0, 2))):
        other = [mostly(draw, d, st.integers(1, 4)) for d in base]
        if joined < rank:
            other[joined] = draw(st.integers(1, 4))
        if draw(st.integers(0, 7)) == 0:
            other = list(sizes(draw, draw(st.integers(0, 3)), 1, 4))
        shapes.append(tuple(other))
    dtypes = [draw(st.sampled_from(DTYPES)) for _ in shapes]
    module = fn_module(lambda *xs: fn(list(xs)), len(shapes), fn.__name__)
    return example(draw, module, *shapes, dtypes=dtypes)


# -- splitting ---------------------------------------------------------------------------------


SPLITS = ["torch.split(int)", "torch.split(list)", "Tensor.split(int)", "Tensor.split(list)",
          "torch.split_with_sizes", "Tensor.split_with_sizes"]


def _split_sizes(draw, size: int) -> list:
    """Sizes that sum to ``size`` (sometimes not, or with a negative entry)."""
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=3)))
    bounds = [0, *cuts, size]
    parts = [b - a for a, b in zip(bounds, bounds[1:])]
    if draw(st.integers(0, 7)) == 0:
        parts[draw(st.integers(0, len(parts) - 1))] += draw(st.sampled_from([-1, 1, -size - 1]))
    return parts


@case("split", over=SPLITS)
def split_case(draw, kind):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 0 if draw(st.integers(0, 9)) == 0 else 1, 6)
    dim = _dim(draw, rank)
    size = shape[dim] if -rank <= dim < rank else 3
    by_list = "list" in kind or "sizes" in kind
    arg = _split_sizes(draw, size) if by_list else mostly(draw, draw(st.integers(1, 4)), st.integers(-1, 0))
    via = "torch" if kind.startswith("torch") else "Tensor"
    name = "split_with_sizes" if "sizes" in kind else "split"
    module = fn_module(_call(via, name, arg, dim), 1, f"{name}({arg}, {dim})")
    return _concrete(example(draw, module, shape), (0, dim))


@case("chunk", over=["torch", "Tensor"])
def chunk_case(draw, via):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 0 if draw(st.integers(0, 9)) == 0 else 1, 8)
    dim = _dim(draw, rank)
    chunks = mostly(draw, draw(st.integers(1, 4)), st.integers(-1, 0))
    return example(draw, fn_module(_call(via, "chunk", chunks, dim), 1, f"chunk({chunks}, {dim})"), shape)


@case("unbind", over=["torch", "Tensor"])
def unbind_case(draw, via):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 0 if draw(st.integers(0, 9)) == 0 else 1, 4)
    dim = _dim(draw, rank)
    return _concrete(example(draw, fn_module(_call(via, "unbind", dim), 1, f"unbind({dim})"), shape), (0, dim))


@case("tensor_split", over=["torch sections", "torch indices", "Tensor sections", "Tensor indices",
                            "sections=", "indices="])
def tensor_split_case(draw, kind):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 1, 7)
    dim = _dim(draw, rank)
    if "sections" in kind:
        arg = mostly(draw, draw(st.integers(1, 5)), st.integers(-1, 0))
    else:
        arg = draw(st.lists(st.integers(-8, 8), max_size=3))
    if kind.endswith("="):
        keyword = kind[:-1]
        call = lambda x: torch.tensor_split(x, dim=dim, **{keyword: arg})  # noqa: E731
    else:
        call = _call(kind.split()[0], "tensor_split", arg, dim)
    return example(draw, fn_module(call, 1, f"tensor_split({arg}, {dim})"), shape)


# -- expand, repeat, tile --------------------------------------------------------------------


def _expand_target(draw, shape: tuple) -> tuple:
    lead = tuple(mostly(draw, draw(st.integers(1, 3)), st.sampled_from([-1, 0]))
                 for _ in range(draw(st.integers(0, 2))))
    own = tuple(draw(st.sampled_from([-1, d, d, d, 2, 3])) if d != 1 else draw(st.sampled_from([-1, 1, 3, 0]))
                for d in shape)
    target = lead + own
    if draw(st.integers(0, 9)) == 0:
        target = target[1:]
    return target


@case("expand", over=["expand(*sizes)", "expand(sizes)", "expand(size=sizes)", "expand(y.size())", "expand_as"])
def expand_case(draw, kind):
    shape = tuple(draw(st.sampled_from([1, 1, 2, 3])) for _ in range(draw(st.integers(0, 3))))
    target = _expand_target(draw, shape)
    other = tuple(max(t, 1) for t in target)
    calls = {
        "expand(*sizes)": lambda x, y: x.expand(*target),
        "expand(sizes)": lambda x, y: x.expand(target),
        "expand(size=sizes)": lambda x, y: x.expand(size=target),
        "expand(y.size())": lambda x, y: x.expand(y.size()),
        "expand_as": lambda x, y: x.expand_as(y),
    }
    return example(draw, fn_module(calls[kind], 2, f"{kind} {target}"), shape, other)


@case("repeat", over=["repeat(*sizes)", "repeat(sizes)", "repeat(repeats=sizes)"])
def repeat_case(draw, kind):
    shape = sizes(draw, draw(st.integers(0, 3)), 1, 3)
    repeats = tuple(mostly(draw, draw(st.integers(0, 3)), st.just(-1)) for _ in range(draw(st.integers(0, 4))))
    call = {"repeat(*sizes)": lambda x: x.repeat(*repeats), "repeat(sizes)": lambda x: x.repeat(repeats),
            "repeat(repeats=sizes)": lambda x: x.repeat(repeats=repeats)}[kind]
    return example(draw, fn_module(call, 1, f"repeat{repeats}"), shape)


@case("tile", over=["torch.tile", "Tensor.tile(*dims)", "Tensor.tile(dims)", "Tensor.tile(dims=dims)"])
def tile_case(draw, kind):
    shape = sizes(draw, draw(st.integers(0, 3)), 1, 3)
    dims = tuple(mostly(draw, draw(st.integers(0, 3)), st.just(-1)) for _ in range(draw(st.integers(0, 4))))
    calls = {"torch.tile": lambda x: torch.tile(x, dims), "Tensor.tile(*dims)": lambda x: x.tile(*dims),
             "Tensor.tile(dims)": lambda x: x.tile(dims), "Tensor.tile(dims=dims)": lambda x: x.tile(dims=dims)}
    return example(draw, fn_module(calls[kind], 1, f"tile{dims}"), shape)


@case("view(dtype)")
def view_dtype_case(draw):
    shape = sizes(draw, draw(st.integers(0, 3)), 0 if draw(st.integers(0, 9)) == 0 else 1, 6)
    source, target = (draw(st.sampled_from([FLOAT, torch.float64, torch.float16, torch.int8, torch.bool, LONG,
                                            torch.complex64])) for _ in range(2))
    call = (lambda x: x.view(target)) if draw(st.booleans()) else (lambda x: x.view(dtype=target))
    return example(draw, fn_module(call, 1, f"view({target})"), shape, dtypes=[source])


# -- reordering ----------------------------------------------------------------------------------


@case("movedim", over=[torch.movedim, torch.moveaxis, Method("movedim"), Method("moveaxis")])
def movedim_case(draw, key):
    rank = draw(st.integers(0, 4))
    n = draw(st.integers(1, max(rank, 1)))
    source = [_dim(draw, rank) if draw(st.integers(0, 9)) == 0 else draw(st.integers(-max(rank, 1), max(rank, 1) - 1))
              for _ in range(n)]
    dest = [draw(st.integers(-max(rank, 1), max(rank, 1) - 1)) for _ in range(n + (draw(st.integers(0, 9)) == 0))]
    if len(source) == len(dest) == 1 and draw(st.booleans()):
        source, dest = source[0], dest[0]
    name = key.name if isinstance(key, Method) else key.__name__
    call = (lambda x: getattr(x, name)(source, dest)) if isinstance(key, Method) else (lambda x: key(x, source, dest))
    return example(draw, fn_module(call, 1, f"{name}({source}, {dest})"), sizes(draw, rank, 1, 4))


@case("flip", over=["torch.flip", "Tensor.flip(*dims)", "Tensor.flip(dims)", "Tensor.flip(dims=dims)", "torch.fliplr", "torch.flipud",
                    "Tensor.fliplr", "Tensor.flipud"])
def flip_case(draw, kind):
    rank = draw(st.integers(0, 3))
    dims = [_dim(draw, rank) for _ in range(draw(st.integers(0 if kind == "torch.flip" else 1, 3)))]
    calls = {"torch.flip": lambda x: torch.flip(x, dims), "Tensor.flip(*dims)": lambda x: x.flip(*dims),
             "Tensor.flip(dims)": lambda x: x.flip(dims), "Tensor.flip(dims=dims)": lambda x: x.flip(dims=dims),
             "torch.fliplr": torch.fliplr, "torch.flipud": torch.flipud,
             "Tensor.fliplr": lambda x: x.fliplr(), "Tensor.flipud": lambda x: x.flipud()}
    return example(draw, fn_module(calls[kind], 1, f"{kind}({dims})"), sizes(draw, rank, 1, 4))


@case("roll", over=["torch", "Tensor"])
def roll_case(draw, via):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 0 if draw(st.integers(0, 9)) == 0 else 1, 4)
    n = draw(st.integers(0, 3))
    shifts = [draw(st.integers(-5, 5)) for _ in range(n)]
    dims = draw(st.one_of(st.none(), st.lists(st.integers(-rank - 1, rank), min_size=n, max_size=n + 1)))
    if len(shifts) == 1 and draw(st.booleans()):
        shifts = shifts[0]
        if dims is not None and len(dims) == 1 and draw(st.booleans()):
            dims = dims[0]
    args = (shifts,) if dims is None else (shifts, dims)
    return example(draw, fn_module(_call(via, "roll", *args), 1, f"roll{args}"), shape)


@case("diagonal", over=["torch", "Tensor"])
def diagonal_case(draw, via):
    rank = draw(st.integers(0, 4))
    offset = draw(st.integers(-4, 4))
    dim1, dim2 = _dim(draw, rank), _dim(draw, rank)
    call = _call(via, "diagonal", offset, dim1, dim2) if draw(st.booleans()) else \
        _call(via, "diagonal", offset=offset, dim1=dim1, dim2=dim2)
    return example(draw, fn_module(call, 1, f"diagonal({offset}, {dim1}, {dim2})"), sizes(draw, rank, 1, 5))


# -- narrow and select -------------------------------------------------------------------------


@case("narrow", over=["torch", "Tensor", "start from size", "tensor start"])
def narrow_case(draw, kind):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 1, 6)
    dim = _dim(draw, rank)
    size = shape[dim] if -rank <= dim < rank else 3
    start = draw(st.integers(-size - 1, size + 1))
    length = mostly(draw, draw(st.integers(0, max(size - max(start, start + size, 0), 0))), st.integers(-1, 7))
    if kind == "start from size":
        back = draw(st.integers(0, 3))
        return example(draw, fn_module(lambda x: x.narrow(dim, x.size(dim) - back, length), 1,
                                       f"narrow({dim}, size - {back}, {length})"), shape)
    if kind == "tensor start":
        return example(draw, fn_module(lambda x, s: torch.narrow(x, dim, s, length), 2, f"narrow({dim}, t, {length})"),
                       shape, (), dtypes=[FLOAT, draw(st.sampled_from([LONG, LONG, torch.int32, FLOAT]))])
    via = "torch" if kind == "torch" else "Tensor"
    return example(draw, fn_module(_call(via, "narrow", dim, start, length), 1, f"narrow({dim}, {start}, {length})"),
                   shape)


@case("select", over=["torch", "Tensor", "index from size"])
def select_case(draw, kind):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 1, 5)
    dim = _dim(draw, rank)
    index = draw(st.integers(-6, 6))
    if kind == "index from size":
        back = draw(st.integers(0, 2))
        call = lambda x: x.select(dim, x.size(-1) - back)  # noqa: E731
    else:
        call = _call("torch" if kind == "torch" else "Tensor", "select", dim, index)
    return example(draw, fn_module(call, 1, f"select({dim}, {index})"), shape)


# -- index_select, gather, scatter, take_along_dim ---------------------------------------------


INDEX_DTYPES = [LONG, LONG, LONG, torch.int32, torch.int16, FLOAT]


@case("index_select", over=["torch", "Tensor"])
def index_select_case(draw, via):
    rank = draw(st.integers(0, 3))
    dim = _dim(draw, rank)
    index = sizes(draw, mostly(draw, 1, st.sampled_from([0, 2])), 0 if draw(st.integers(0, 5)) == 0 else 1, 4)
    call = (lambda x, i: torch.index_select(x, dim, i)) if via == "torch" else (lambda x, i: x.index_select(dim, i))
    return example(draw, fn_module(call, 2, f"index_select({dim})"), sizes(draw, rank, 1, 4), index,
                   dtypes=[draw(st.sampled_from(DTYPES)), draw(st.sampled_from(INDEX_DTYPES))])


def _index_like(draw, shape: tuple, dim: int, bound_other: bool = True) -> tuple:
    """An index shape of the input's rank: no larger than ``shape`` except along ``dim`` (mostly)."""
    rank = len(shape)
    out = []
    for d, s in enumerate(shape):
        own = (dim % rank == d) if rank and -rank <= dim < rank else False
        out.append(draw(st.integers(1, 5)) if own else mostly(draw, draw(st.integers(1, s)), st.integers(1, 5)))
    if draw(st.integers(0, 14)) == 0:
        out = out[1:] if out else [2]
    if draw(st.integers(0, 14)) == 0 and out:
        out[draw(st.integers(0, len(out) - 1))] = 0
    return tuple(out)


@case("gather", over=["torch", "Tensor"])
def gather_case(draw, via):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 1, 4)
    dim = _dim(draw, rank)
    index = _index_like(draw, shape, dim)
    call = (lambda x, i: torch.gather(x, dim, i)) if via == "torch" else (lambda x, i: x.gather(dim, i))
    return example(draw, fn_module(call, 2, f"gather({dim})"), shape, index,
                   dtypes=[draw(st.sampled_from(DTYPES)), draw(st.sampled_from(INDEX_DTYPES))])


@case("scatter", over=["torch.scatter(src)", "torch.scatter(value)", "Tensor.scatter(src)", "scatter(reduce=)",
                       "torch.scatter_add", "Tensor.scatter_add"])
def scatter_case(draw, kind):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 1, 4)
    dim = _dim(draw, rank)
    index = _index_like(draw, shape, dim)
    src = tuple(mostly(draw, i + draw(st.integers(0, 2)), st.integers(1, 4)) for i in index)
    if draw(st.integers(0, 14)) == 0:
        src = src[1:]
    dtype = draw(st.sampled_from([FLOAT, FLOAT, torch.float64]))
    src_dtype = mostly(draw, dtype, st.sampled_from([FLOAT, torch.float64]))
    calls = {
        "torch.scatter(src)": lambda x, i, s: torch.scatter(x, dim, i, s),
        "torch.scatter(value)": lambda x, i, s: torch.scatter(x, dim, i, 1.5),
        "Tensor.scatter(src)": lambda x, i, s: x.scatter(dim, i, s),
        "scatter(reduce=)": lambda x, i, s: torch.scatter(x, dim, i, s, reduce="add"),
        "torch.scatter_add": lambda x, i, s: torch.scatter_add(x, dim, i, s),
        "Tensor.scatter_add": lambda x, i, s: x.scatter_add(dim, i, s),
    }
    return example(draw, fn_module(calls[kind], 3, f"{kind}({dim})"), shape, index, src,
                   dtypes=[dtype, draw(st.sampled_from(INDEX_DTYPES)), src_dtype])


@case("take_along_dim", over=["torch", "Tensor", "no dim"])
def take_along_dim_case(draw, kind):
    rank = draw(st.integers(0, 3))
    shape = sizes(draw, rank, 1, 4)
    if kind == "no dim":
        index = sizes(draw, draw(st.integers(0, 3)), 0 if draw(st.integers(0, 9)) == 0 else 1, 4)
        call = lambda x, i: torch.take_along_dim(x, i)  # noqa: E731
        dim = None
    else:
        dim = _dim(draw, rank)
        index = tuple(draw(st.sampled_from([1, s, s, 2])) for s in shape)
        if draw(st.integers(0, 9)) == 0:
            index = index[1:]
        call = (lambda x, i: torch.take_along_dim(x, i, dim)) if kind == "torch" else \
            (lambda x, i: x.take_along_dim(i, dim))
    return example(draw, fn_module(call, 2, f"take_along_dim({dim})"), shape, index,
                   dtypes=[FLOAT, draw(st.sampled_from([LONG, LONG, torch.int32]))])


# -- advanced indexing ---------------------------------------------------------------------------


def _basic_item(draw, size: int):
    return draw(st.one_of(
        st.integers(-size, size - 1),
        st.builds(slice, st.one_of(st.none(), st.integers(-4, 4)), st.one_of(st.none(), st.integers(-4, 4)),
                  st.one_of(st.none(), st.integers(1, 2))),
        st.none(),
        st.booleans(),
    ))


class _Slot:
    """Stands for the ``n``-th index tensor input in a drawn index."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"t{self.n}"


def _resolve(index: tuple, tensors: tuple) -> tuple:
    return tuple(tensors[i.n] if isinstance(i, _Slot) else i for i in index)


@case("advanced indexing", over=["index tensors", "lists", "list as index", "0-dim tensors"])
def advanced_indexing_case(draw, kind):
    rank = draw(st.integers(0 if kind == "lists" else 1, 4))
    shape = sizes(draw, rank, 1, 4)
    n_tensors = 2 if kind in ("index tensors", "0-dim tensors") else 0
    index_shapes = [sizes(draw, draw(st.integers(0 if kind == "0-dim tensors" else 1, 2)), 1, 3)
                    for _ in range(n_tensors)]
    if kind == "index tensors" and draw(st.booleans()):
        index_shapes[1] = tuple(draw(st.sampled_from([1, s])) for s in index_shapes[0])
    items: list = []
    for i in range(draw(st.integers(1, rank + 1))):
        size = shape[i] if i < rank else 2
        advanced = draw(st.integers(0, 2)) > 0
        if advanced and kind == "lists":
            # 0 and -1 are in range whichever dim the list ends up indexing
            items.append(draw(st.one_of(st.lists(st.sampled_from([0, -1]), max_size=3),
                                        st.lists(st.lists(st.sampled_from([0, -1]), min_size=2, max_size=2),
                                                 min_size=1, max_size=2),
                                        st.lists(st.booleans(), min_size=size, max_size=size))))
        elif advanced and n_tensors and sum(isinstance(x, _Slot) for x in items) < n_tensors:
            items.append(_Slot(sum(isinstance(x, _Slot) for x in items)))
        else:
            items.append(_basic_item(draw, size))
    if draw(st.integers(0, 3)) == 0:
        items.insert(draw(st.integers(0, len(items))), Ellipsis)
    used = max((x.n + 1 for x in items if isinstance(x, _Slot)), default=0)
    index_shapes = index_shapes[:used]
    if kind == "list as index":
        index = [draw(st.sampled_from([0, -1])) for _ in range(draw(st.integers(0, 3)))]
        if draw(st.booleans()):
            index = [draw(st.booleans()) for _ in range(mostly(draw, shape[0], st.integers(1, 4)))]
        fn = lambda x: x[index]  # noqa: E731
        return example(draw, fn_module(fn, 1, f"x[{index}]"), shape)
    index = tuple(items)
    dtypes = [FLOAT] + [draw(st.sampled_from([LONG, LONG, torch.int32, torch.int16] if kind == "0-dim tensors"
                                             else [LONG, LONG, torch.int32, torch.int16, FLOAT]))
                        for _ in index_shapes]
    fn = {1: lambda x: x[index], 2: lambda x, a: x[_resolve(index, (a,))],
          3: lambda x, a, b: x[_resolve(index, (a, b))]}[1 + len(index_shapes)]
    ex = example(draw, fn_module(fn, 1 + len(index_shapes), f"x[{index}]"), shape, *index_shapes, dtypes=dtypes)
    if any(item is False for item in items):
        # False indexes with shape (0,), which broadcasts with a symbolic size only if that is 1, and
        # broadcast_shapes takes a symbol not to be 1 (so it rejects outright): keep index sizes concrete.
        ex.symbolic[1:] = [[False] * len(s) for s in index_shapes]
    return ex


@case("boolean masks (empty or mismatched)")
def mask_indexing_case(draw):
    rank = draw(st.integers(1, 3))
    shape = list(sizes(draw, rank, 1, 4))
    shape[draw(st.integers(0, rank - 1))] = 0
    start = draw(st.integers(0, rank - 1))
    k = draw(st.integers(1, rank - start))
    mask = tuple(mostly(draw, d, st.integers(1, 3)) for d in shape[start : start + k])
    index = (slice(None),) * start
    dtype = draw(st.sampled_from([torch.bool, torch.bool, torch.uint8]))
    if 0 not in mask:  # only an empty mask has a known number of True values
        mask = (*mask[:-1], 0)
    return example(draw, fn_module(lambda x, m: x[(*index, m)], 2, f"x[{index} + mask]"), tuple(shape), mask,
                   dtypes=[FLOAT, dtype])


# -- value-dependent ops on empty inputs ----------------------------------------------------------


def _empty_shape(draw, rank_lo: int = 1) -> tuple:
    shape = list(sizes(draw, draw(st.integers(rank_lo, 3)), 1, 3))
    shape[draw(st.integers(0, len(shape) - 1))] = 0
    return tuple(shape)


@case("nonzero/argwhere (empty)", over=["torch.nonzero", "Tensor.nonzero", "as_tuple", "torch.argwhere",
                                        "Tensor.argwhere"])
def nonzero_case(draw, kind):
    calls = {"torch.nonzero": torch.nonzero, "Tensor.nonzero": lambda x: x.nonzero(),
             "as_tuple": lambda x: torch.nonzero(x, as_tuple=True), "torch.argwhere": torch.argwhere,
             "Tensor.argwhere": lambda x: x.argwhere()}
    return example(draw, fn_module(calls[kind], 1, kind), _empty_shape(draw))


@case("masked_select (empty)", over=["torch", "Tensor"])
def masked_select_case(draw, via):
    shape = _empty_shape(draw)
    mask = tuple(draw(st.sampled_from([1, d, d])) for d in shape[draw(st.integers(0, len(shape))):])
    if draw(st.integers(0, 7)) == 0:
        mask = (*mask, 2)
    call = (lambda x, m: torch.masked_select(x, m)) if via == "torch" else (lambda x, m: x.masked_select(m))
    dtype = mostly(draw, torch.bool, st.sampled_from([torch.uint8, FLOAT]))
    ex = example(draw, fn_module(call, 2, "masked_select"), shape, mask, dtypes=[FLOAT, dtype])
    # A mask size facing the input's 0 broadcasts only if it is 1, which broadcast_shapes assumes
    # a symbol is not; keep the mask concrete.
    ex.symbolic[1] = [False] * len(mask)
    return ex


@case("unique (empty or one element)", over=["torch", "Tensor"])
def unique_case(draw, via):
    shape = _empty_shape(draw) if draw(st.booleans()) else (1,) * draw(st.integers(0, 2))
    flags = {"return_inverse": draw(st.booleans()), "return_counts": draw(st.booleans())}
    call = (lambda x: torch.unique(x, **flags)) if via == "torch" else (lambda x: x.unique(**flags))
    ex = example(draw, fn_module(call, 1, f"unique({flags})"), shape)
    ex.symbolic = None  # a symbolic size could exceed one element
    return ex


@case("tolist (empty)")
def tolist_case(draw):
    ex = example(draw, fn_module(lambda x: x.tolist(), 1, "tolist"), _empty_shape(draw))
    ex.symbolic = None  # tolist() gives one nested list per index: a symbolic count is not a value
    return ex


# -- matrix products ---------------------------------------------------------------------------------


MATRIX_DTYPES = [FLOAT, FLOAT, FLOAT, torch.float64, torch.int64, torch.bool]


def _dtypes(draw, n: int) -> list:
    first = draw(st.sampled_from(MATRIX_DTYPES))
    return [first] + [mostly(draw, first, st.sampled_from(MATRIX_DTYPES)) for _ in range(n - 1)]


def _maybe(draw, size: int, hi: int = 4) -> int:
    """``size``, sometimes another size or 0."""
    return draw(st.sampled_from([size] * 8 + [0, draw(st.integers(1, hi))]))


def _keyed(key, n: int):
    return (lambda *xs: getattr(xs[0], key.name)(*xs[1:])) if isinstance(key, Method) else key


@case("mm/bmm/mv/dot/outer", over=[torch.mm, Method("mm"), torch.bmm, Method("bmm"), torch.mv, Method("mv"),
                                   torch.dot, Method("dot"), torch.outer, Method("outer")])
def products_case(draw, key):
    name = key.name if isinstance(key, Method) else key.__name__
    n, k, p, b = (_maybe(draw, draw(st.integers(1, 4))) for _ in range(4))
    a_shape, b_shape = {
        "mm": ((n, k), (_maybe(draw, k), p)),
        "bmm": ((b, n, k), (_maybe(draw, b), _maybe(draw, k), p)),
        "mv": ((n, k), (_maybe(draw, k),)),
        "dot": ((k,), (_maybe(draw, k),)),
        "outer": ((n,), (p,)),
    }[name]
    if draw(st.integers(0, 9)) == 0:
        a_shape = a_shape[1:] if draw(st.booleans()) else (*a_shape, 2)
    return example(draw, fn_module(_keyed(key, 2), 2, name), a_shape, b_shape, dtypes=_dtypes(draw, 2))


@case("addmm/baddbmm/addbmm", over=[torch.addmm, Method("addmm"), torch.baddbmm, Method("baddbmm"), torch.addbmm,
                                    Method("addbmm")])
def add_products_case(draw, key):
    name = key.name if isinstance(key, Method) else key.__name__
    n, k, p, b = (_maybe(draw, draw(st.integers(1, 4))) for _ in range(4))
    shapes = {
        "addmm": ((n, k), (_maybe(draw, k), p), (n, p)),
        "baddbmm": ((b, n, k), (_maybe(draw, b), _maybe(draw, k), p), (b, n, p)),
        "addbmm": ((b, n, k), (_maybe(draw, b), _maybe(draw, k), p), (n, p)),
    }[name]
    out = shapes[2]
    added = tuple(draw(st.sampled_from([d, d, 1])) for d in out)[draw(st.integers(0, len(out))):]
    if draw(st.integers(0, 9)) == 0:
        added = (2, *added) if draw(st.booleans()) else tuple(d + 1 for d in added)
    dtypes = _dtypes(draw, 3)
    fn = _keyed(key, 3)
    if draw(st.booleans()):
        beta, alpha = draw(st.sampled_from([1, 0.5])), draw(st.sampled_from([1, 2]))
        fn = (lambda x, m1, m2: getattr(x, name)(m1, m2, beta=beta, alpha=alpha)) if isinstance(key, Method) else \
            (lambda x, m1, m2: key(x, m1, m2, beta=beta, alpha=alpha))
        if (beta, alpha) != (1, 1) and any(d in (torch.int64, torch.bool) for d in dtypes):
            dtypes = [FLOAT] * 3  # integer tensors take integer scalars; scalars are not what is tested
    return example(draw, fn_module(fn, 3, name), added, shapes[0], shapes[1], dtypes=[dtypes[2], *dtypes[:2]])


@case("matmul dtypes")
def matmul_dtypes_case(draw):
    a = sizes(draw, draw(st.integers(1, 3)), 1, 3)
    b = (a[-1], *sizes(draw, draw(st.integers(0, 2)), 1, 3))
    if len(b) > 2:
        b = (*b[:-2], a[-1], b[-1])
    dtypes = _dtypes(draw, 2)
    return example(draw, fn_module(torch.matmul, 2, "matmul"), a, b, dtypes=dtypes)


# -- einsum --------------------------------------------------------------------------------------------


LABELS = "abcdeB"


def _einsum_operand(draw, label_sizes: dict, ellipsis: tuple) -> tuple[str, tuple]:
    """Labels for one operand (a repeat or "..." sometimes) and a shape that fits them (mostly)."""
    labels = draw(st.lists(st.sampled_from(LABELS), max_size=3))
    shape = []
    for label in labels:
        shape.append(draw(st.sampled_from([label_sizes[label]] * 6 + [1, draw(st.integers(0, 4))])))
    term = "".join(labels)
    if ellipsis is not None and draw(st.booleans()):
        at = draw(st.integers(0, len(labels)))
        covered = ellipsis[draw(st.integers(0, len(ellipsis))):]
        covered = tuple(draw(st.sampled_from([d, d, 1])) for d in covered)
        term = term[:at] + "..." + term[at:]
        shape = shape[:at] + list(covered) + shape[at:]
    if draw(st.integers(0, 14)) == 0:
        shape = shape[:-1] if shape else [2]
    return term, tuple(shape)


@case("einsum", over=["equation", "operand list", "sublist", "mixed dtypes"])
def einsum_case(draw, kind):
    label_sizes = {label: draw(st.integers(1, 4)) for label in LABELS}
    ellipsis = sizes(draw, draw(st.integers(0, 2)), 1, 3) if draw(st.booleans()) and kind != "mixed dtypes" else None
    n = draw(st.integers(1, 3)) if kind != "mixed dtypes" else 2
    operands = [_einsum_operand(draw, label_sizes, ellipsis) for _ in range(n)]
    terms, shapes = [t for t, _ in operands], [s for _, s in operands]
    used = sorted({c for t in terms for c in t if c.isalpha()})
    output = None
    if draw(st.booleans()):
        output = "".join(draw(st.permutations(used))[: draw(st.integers(0, len(used)))])
        if any("..." in t for t in terms) and draw(st.booleans()):
            output = "..." + output
        if draw(st.integers(0, 14)) == 0:
            output += draw(st.sampled_from(["z", used[0] if used else "a", ".."]))
    equation = ",".join(terms) + ("" if output is None else "->" + output)
    if kind == "mixed dtypes":
        dtypes = [draw(st.sampled_from([FLOAT, torch.float64, torch.float16])) for _ in range(2)]
        shapes = [tuple(max(d, 1) for d in s) for s in shapes]  # empty operands take another code path
    elif n == 1:
        dtypes = [draw(st.sampled_from([FLOAT, torch.float64, torch.int64, torch.int32, torch.bool]))]
    else:
        dtypes = [draw(st.sampled_from([FLOAT, FLOAT, torch.float64, torch.int64]))] * n
    if kind == "sublist":
        # fx records the sublist form only when a tensor follows the first (torch.functional.einsum
        # checks isinstance(args[0], torch.Tensor), which a Proxy is not)
        if n == 1 or any(".." in t.replace("...", "") for t in terms) or (output and ".." in output.replace("...", "")):
            kind = "equation"
        else:
            subs = [_sublist(t) for t in terms]
            out = [] if output is None else [_sublist(output)]

            def fn(*xs):
                args = [a for x, s in zip(xs, subs) for a in (x, s)] + out
                return torch.einsum(*args)

            return example(draw, fn_module(fn, n, f"einsum sublists {subs} -> {out}"), *shapes, dtypes=dtypes)
    if kind == "operand list":
        fn = lambda *xs: torch.einsum(equation, list(xs))  # noqa: E731
    else:
        fn = lambda *xs: torch.einsum(equation, *xs)  # noqa: E731
    return example(draw, fn_module(fn, n, f"einsum({equation!r})"), *shapes, dtypes=dtypes)


def _sublist(term: str) -> list:
    out: list = []
    i = 0
    while i < len(term):
        if term.startswith("...", i):
            out.append(Ellipsis)
            i += 3
            continue
        c = term[i]
        out.append(ord(c) - ord("A") if c.isupper() else ord(c) - ord("a") + 26)
        i += 1
    return out
