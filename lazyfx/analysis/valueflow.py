"""Whether a lazy module's initialization reads its input's *values*, not only its shapes.

lazyfx replays a lazy module's own initialization on shape-only (meta) inputs, which is
exact only when the initialization looks at nothing but sizes and dtypes. One that fits
its parameters to the first batch (a gSDE-style exploration scale, a data-dependent
normalization) cannot be reproduced without data: a dry run's values depend on the batch.
:func:`follow_input_values` follows the input's data through the operations the
initialization runs (a dispatch mode: every ATen operation, whatever Python called it), and
raises :class:`ReadsInputValues` where a value derived from the input is read into Python
(``if (x == 0).all():``, ``x.max().item()``) or ends up in one of the module's own
parameters or buffers (``self.scale.copy_(x.std(0))``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch
import torch.nn as nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.nn.parameter import is_lazy
from torch.utils._pytree import tree_leaves

from lazyfx.core import diagnostics
from lazyfx.core.compat import DispatchMode
from lazyfx.core.diagnostics import SourceLocation, caller_location
from lazyfx.errors import DataDependentError

# Operations that read a tensor's values into Python.
_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
          torch.ops.aten.item.default}


# Copies that take a (meta) tensor's values to another device: tolist() and .cpu() inside
# PyTorch read the values that way.
_COPIES = {torch.ops.aten._to_copy.default, torch.ops.aten._copy_from.default,
           torch.ops.aten._copy_from_and_resize.default}


def _off_meta(args: tuple, kwargs: dict) -> bool:
    """Whether a copy's destination is not on meta (its ``device`` or its ``dst`` tensor)."""
    device = kwargs.get("device")
    if device is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
        device = args[1].device
    source = args[0] if args and isinstance(args[0], torch.Tensor) else None
    return device is not None and torch.device(device).type != "meta" and source is not None and source.is_meta


class ReadsInputValues(Exception):
    """Raised inside the initialization: what read the input's values, and where."""

    def __init__(self, what: str, location: Optional[SourceLocation]) -> None:
        super().__init__(what)
        self.what, self.location = what, location


def _metadata_only(func) -> bool:
    """An operation that takes a tensor for its size, dtype and device only."""
    name = func._schema.name.split("::")[-1]
    return name.endswith("_like") or name.startswith(("new_", "sym_"))


def _storages(value: Any) -> list[StorageWeakRef]:
    found = []
    for tensor in tree_leaves(value):
        if isinstance(tensor, torch.Tensor) and not is_lazy(tensor):  # a lazy submodule's: no storage yet
            try:
                found.append(StorageWeakRef(tensor.untyped_storage()))
            except (RuntimeError, NotImplementedError):  # no storage: an uninitialized or sparse tensor
                pass
    return found


class _InputValues(DispatchMode):
    """Marks the storages that hold data derived from the inputs, op by op."""

    def __init__(self, inputs: Any) -> None:
        super().__init__()
        self.derived = set(_storages(inputs))
        self.writes: dict[int, Optional[SourceLocation]] = {}  # id of a tensor -> where input data went in
        self._alive: list[Any] = []  # a freed storage's address could be reused by an unrelated one

    def is_derived(self, tensor: torch.Tensor) -> bool:
        return any(s in self.derived for s in _storages(tensor))

    def _mark(self, value: Any) -> None:
        self.derived.update(_storages(value))
        self._alive.append(value)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        derived = not _metadata_only(func) and any(s in self.derived for s in _storages((args, kwargs)))
        if derived and func in _READS:
            raise ReadsInputValues(f"reads a value computed from its input ({func.__name__.split('.')[0]})",
                                   caller_location())
        if derived and func in _COPIES and _off_meta(args, kwargs):  # x.tolist() copies to cpu first
            raise ReadsInputValues("copies a value computed from its input off the meta device (tolist, .cpu())",
                                   caller_location())
        out = func(*args, **kwargs)
        if derived:
            self._mark(out)
            for argument, value in zip(func._schema.arguments, args):  # in-place writes: self.w.copy_(x)
                if argument.alias_info is not None and argument.alias_info.is_write:
                    self._mark(value)
                    self.writes.setdefault(id(value), caller_location())
        return out


@contextlib.contextmanager
def follow_input_values(module: nn.Module, inputs: Any) -> Iterator[None]:
    """Run the block (``module``'s initialization on ``inputs``) raising ``ReadsInputValues``
    where it reads the inputs' values or stores them in the module's own tensors.
    ``bool(tensor)`` is checked before whatever ``Tensor.__bool__`` is installed answers (the
    branch explorer of abstract execution answers it without dispatching)."""
    flow = _InputValues(inputs)
    answer = torch.Tensor.__bool__

    def checked_bool(tensor: torch.Tensor) -> bool:
        if flow.is_derived(tensor):
            raise ReadsInputValues("branches on a value computed from its input", caller_location())
        return answer(tensor)

    numpy = torch.Tensor.numpy

    def checked_numpy(tensor: torch.Tensor, *args, **kwargs):  # does not dispatch
        if flow.is_derived(tensor):
            raise ReadsInputValues("reads a value computed from its input (numpy)", caller_location())
        return numpy(tensor, *args, **kwargs)

    torch.Tensor.__bool__ = checked_bool  # type: ignore[method-assign]
    torch.Tensor.numpy = checked_numpy  # type: ignore[method-assign]
    try:
        with flow:
            yield
    finally:
        torch.Tensor.__bool__ = answer  # type: ignore[method-assign]
        torch.Tensor.numpy = numpy  # type: ignore[method-assign]
    for name, tensor in (*module.named_parameters(), *module.named_buffers()):
        if tensor is not None and flow.is_derived(tensor):
            raise ReadsInputValues(f"sets '{name}' from its input's values", flow.writes.get(id(tensor)))


def reads_values_error(path: str, module: nn.Module, reads: ReadsInputValues) -> DataDependentError:
    """The error for a lazy module whose initialization ``reads`` its input's values."""
    return DataDependentError(
        f"the initialization of the lazy module '{path}' ({type(module).__name__}) {reads.what}: its parameters "
        f"depend on the data a dry run sees, not only on sizes, so lazyfx cannot resolve them",
        code=diagnostics.INIT_READS_VALUES, module_path=path, location=reads.location,
        notes=["initialize from the input's sizes only and fit the data-dependent part on the first real batch "
               "(after materializing), or initialize this module with a dry run on real data"],
        final=True,  # no other way of analysing the model gets the values either
    )
