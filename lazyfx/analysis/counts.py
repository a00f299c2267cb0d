"""Counts that depend on tensor values, answered for abstract execution.

How many elements a boolean mask selects (``nonzero``, ``x[mask]``,
``masked_select``) is known only from data; PyTorch's meta kernels refuse to
guess it. A graph layer that removes self loops (``edge_index[:, mask]``)
needs one, though no parameter and no output size of the layer depends on
it. Abstract execution (:mod:`lazyfx.analysis.fallback.abstract`) therefore runs a module with
every such count answered by a *policy* -- every element selected, about
half of them, none -- and keeps its findings only where the runs agree: a
lazy size or an output size that moves with the count is refused
(:class:`~lazyfx.errors.DataDependentError`), as before.

Masks of the same size get the same count within one run, so that two uses
of one mask stay consistent (``x[mask]`` and ``y[mask]``). A model that
needs two different masks to select equally many elements fails on such
data whatever lazyfx says; that, like any check on values, is not a shape.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch

from lazyfx.core.compat import DispatchMode
from lazyfx.core.diagnostics import SourceLocation, caller_location

aten = torch.ops.aten

# The policies, in the order abstract execution runs them: the first one gives the findings,
# the others must agree with it.
POLICIES = ("all", "half", "none")


class Counts(DispatchMode):
    """Answers the value-dependent counts of the operations in :data:`_COUNTED` by ``policy``
    (on meta tensors), recording which operation asked and where."""

    def __init__(self, policy: str) -> None:
        super().__init__()
        self.policy = policy
        self.asked: list[tuple[str, Optional[SourceLocation]]] = []

    def count(self, elements: int) -> int:
        """How many of ``elements`` a mask selects under the policy."""
        if self.policy == "all":
            return elements
        return elements // 2 if self.policy == "half" else 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        answer = _COUNTED.get(func)
        kwargs = kwargs or {}
        if answer is not None:
            result = answer(self, *args, **kwargs)
            if result is not NotImplemented:
                self.asked.append((_NAMES[func], caller_location()))
                return result
        return func(*args, **kwargs)

    def sites(self) -> list[str]:
        """The operations that asked, with their lines (``boolean-mask indexing at loop.py:650``), once each."""
        return list(dict.fromkeys(f"{op} at {loc}" if loc else op for op, loc in self.asked))

    def where(self) -> str:
        return ", ".join(self.sites())


def _nonzero(mode: Counts, x: torch.Tensor) -> Any:
    if not x.is_meta:  # a tensor made from Python data keeps its values: PyTorch counts them
        return NotImplemented
    return torch.empty((mode.count(x.numel()), x.dim()), dtype=torch.long, device=x.device)


def _masked_select(mode: Counts, x: torch.Tensor, mask: torch.Tensor) -> Any:
    if mask.dtype != torch.bool or not mask.is_meta:
        return NotImplemented  # PyTorch's own error, or its own count of a mask with values
    size = torch.broadcast_shapes(x.shape, mask.shape)
    return torch.empty((mode.count(size.numel()),), dtype=x.dtype, device=x.device)


def _index(mode: Counts, x: torch.Tensor, indices: list) -> Any:
    """``x[indices]`` with each boolean mask replaced by the long indices of the elements it
    selects (as PyTorch expands it: one index tensor per dim the mask covers)."""
    if not any(_counted_mask(i) for i in indices):
        return NotImplemented
    expanded: list = []
    dim = 0
    for index in indices:
        if not _counted_mask(index):
            if index is not None and index.dtype in _MASKS and not index.is_meta and index.dim() > 0:
                # a mask with values (made from Python data): the indices of its own True elements
                expanded += list(index.nonzero().unbind(1))
                dim += index.dim()
                continue
            expanded.append(index)
            dim += 1
            continue
        for j, size in enumerate(index.shape):
            if dim + j >= x.dim() or x.shape[dim + j] != size:
                raise IndexError(f"The shape of the mask {list(index.shape)} at index {j} does not match the shape "
                                 f"of the indexed tensor {list(x.shape)} at index {dim + j}")
        selected = torch.zeros(mode.count(index.numel()), dtype=torch.long, device=index.device)
        expanded += [selected] * index.dim()
        dim += index.dim()
    return aten.index.Tensor(x, expanded)


def _counted_mask(index: Optional[torch.Tensor]) -> bool:
    """A boolean mask without values (on meta) whose count the policy answers. A 0-dim one is
    left to PyTorch (which cannot answer it on meta: LFX022 stands)."""
    return index is not None and index.dtype in _MASKS and index.is_meta and index.dim() > 0


_MASKS = (torch.bool, torch.uint8)
_COUNTED = {aten.nonzero.default: _nonzero, aten.masked_select.default: _masked_select,
            aten.index.Tensor: _index}
_NAMES = {aten.nonzero.default: "nonzero", aten.masked_select.default: "masked_select",
          aten.index.Tensor: "boolean-mask indexing"}


@contextlib.contextmanager
def counting(policy: str) -> Iterator[Counts]:
    """Value-dependent counts answered by ``policy`` within the block."""
    with Counts(policy) as mode:
        yield mode
