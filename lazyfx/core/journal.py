"""An undo log of module states and tensor data.

Two stages undo what they did to the user's model with it: the analysis, which restores
what a forward did to ``self`` while it was traced (:meth:`Journal.of_model`), and
materialization in place, which restores the lazy model when it fails.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedParameter, is_lazy
from torch.utils.hooks import RemovableHandle


class Journal:
    """Undo log of module states and tensor data: for in-place materialization, and as the
    snapshot that undoes what a forward does to ``self`` while it is analysed
    (:meth:`of_model`)."""

    def __init__(self) -> None:
        # (module, class, __dict__, [(container, contents)], [container empty when saved])
        self._modules: list[tuple[nn.Module, type, dict, list[tuple[Any, Any]], list[Any]]] = []
        self._data: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._values: list[tuple[torch.Tensor, Optional[int], torch.Tensor]] = []
        self._lazy: list[tuple[torch.Tensor, type, torch.Tensor]] = []  # materialized in place
        self._swapped: list[tuple[torch.Tensor, torch.Tensor]] = []  # materialized in place on another device

    @classmethod
    def of_model(cls, model: nn.Module) -> "Journal":
        """A snapshot of every module of ``model``: its class, its ``__dict__`` (attributes,
        ``_parameters``/``_buffers``/``_modules`` and hook dicts, lists and dicts, each by
        identity and contents) and the values of its buffers and tensor attributes (a forward
        may update those in place: ``self.steps += 1`` runs on the real buffer while torch.fx
        traces). Parameters are read as graph nodes, never run on, so their values are not
        copied."""
        journal = cls()
        seen: set[int] = set()
        for module in model.modules():
            tensors = journal.save_module(module)
            if module._buffers or tensors:  # (most modules hold neither)
                for tensor in (*module._buffers.values(), *tensors):
                    if tensor is not None and id(tensor) not in seen and not is_lazy(tensor):
                        seen.add(id(tensor))
                        journal.save_values(tensor)
        return journal

    def save_module(self, module: nn.Module) -> list[torch.Tensor]:
        """Saves the module's state; returns its tensor attributes that are not parameters."""
        # Containers (_parameters, hook dicts, lists...) are restored in place: hook handles
        # hold weak references to those very dict objects. An empty one is only cleared.
        # One pass, by exact type first: this runs for every module before every analysis.
        attrs = module.__dict__.copy()
        full, empty, tensors = [], [], []
        for name, value in attrs.items():
            kind = type(value)
            if kind is tuple:  # immutable, but the tensors in it are not (a KV cache as a tuple)
                if not _SCALARS.issuperset(map(type, value)):  # (kernel_size and the like: ints only)
                    tensors += _tensors_inside(value)
                continue
            if kind in SAVED_AS_IS:
                continue
            if name in MODULE_STATE:  # the common case, cheaply
                if not value:
                    empty.append(value)
                    continue
            elif isinstance(value, (dict, list, set)):
                tensors += _tensors_inside(value)
            copy_of = _CONTAINERS.get(kind)
            if copy_of is None and isinstance(value, (dict, list, set)):
                copy_of = dict if isinstance(value, dict) else list if isinstance(value, list) else set
            if copy_of is not None:
                if value:
                    full.append((value, copy_of(value)))
                else:
                    empty.append(value)
            elif kind is torch.Tensor or isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                tensors.append(value)
        self._modules.append((module, type(module), attrs, full, empty))
        return tensors

    def save_data(self, tensor: torch.Tensor) -> None:
        self._data.append((tensor, tensor.data))

    def save_lazy(self, tensor: torch.Tensor) -> None:
        """A lazy tensor about to be materialized in place (its class and data change)."""
        self._lazy.append((tensor, type(tensor), tensor.data))

    def save_swap(self, tensor: torch.Tensor, other: torch.Tensor) -> None:
        """``tensor`` and ``other`` swapped contents (torch.utils.swap_tensors): swapped back on rollback."""
        self._swapped.append((tensor, other))

    def save_values(self, tensor: torch.Tensor) -> None:
        """A copy of ``tensor``'s values, put back if it changes in place (same object)."""
        if tensor.device.type != "meta":  # a meta tensor has no values to change
            self._values.append((tensor, _version(tensor), tensor.detach().clone()))

    def clear(self) -> None:
        """Forget everything saved (after a rollback, when nothing more is to be undone)."""
        self.__init__()

    def rollback(self, modules: Optional[Iterable[nn.Module]] = None) -> None:
        """Undo every change (only those to ``modules`` and their tensors, when given)."""
        only = None if modules is None else {id(m) for m in modules}
        for tensor, data in reversed(self._data):
            tensor.data = data
        for tensor, cls, data in reversed(self._lazy):
            tensor.data = data
            tensor.__class__ = cls
        for tensor, other in reversed(self._swapped):
            torch.utils.swap_tensors(tensor, other)
        for module, cls, attrs, full, empty in reversed(self._modules):
            if only is not None and id(module) not in only:
                continue
            for container, contents in full:
                if isinstance(container, list):
                    container[:] = contents
                else:  # a dict or a set (_non_persistent_buffers_set)
                    container.clear()
                    container.update(contents)
            for container in empty:
                if container:
                    container.clear()
            module.__dict__.clear()
            module.__dict__.update(attrs)
            if module.__class__ is not cls:
                module.__class__ = cls
        tensors = None if only is None else {id(t) for m in (modules or ()) for t in _tensors_of(m)}
        for tensor, version, values in reversed(self._values):
            if (tensors is None or id(tensor) in tensors) and (version is None or _version(tensor) != version):
                with torch.no_grad():
                    if tensor.shape == values.shape and tensor.dtype == values.dtype:
                        tensor.copy_(values)
                    else:
                        tensor.data = values


# Module attributes saved by contents and restored in place (subclasses too), with how to copy
# them; and the types of attributes that are saved as they are (immutable, or parameters).
_CONTAINERS: dict[type, Callable] = {dict: dict, OrderedDict: dict, list: list, set: set}
SAVED_AS_IS = frozenset({bool, int, float, complex, str, bytes, type(None), tuple, torch.Size, torch.dtype, torch.device,
                        RemovableHandle, nn.Parameter, UninitializedParameter})


_SCALARS = frozenset({bool, int, float, complex, str, type(None)})  # a tuple of only these holds no tensor

# nn.Module's own dicts: parameters, buffers and submodules are saved by other means, hooks hold
# functions
MODULE_INTERNALS = frozenset({"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"})

# What every module holds, as the installed torch's nn.Module.__init__ sets it: its mode, its
# parameter, buffer and submodule dicts and its hook dicts (none of them tensors forward changes)
MODULE_STATE = frozenset(vars(nn.Module()))


def _tensors_inside(container: Any, depth: int = 3) -> list[torch.Tensor]:
    """The tensors (not parameters) held in a user's list, tuple, dict or set attribute, a few
    levels deep: a forward may update them in place (``self.cache["k"].add_(x)``)."""
    found: list[torch.Tensor] = []
    items = container.values() if isinstance(container, dict) else container
    for item in items:
        if isinstance(item, torch.Tensor):
            if not isinstance(item, nn.Parameter):
                found.append(item)
        elif depth > 1 and isinstance(item, (dict, list, tuple, set)):
            found += _tensors_inside(item, depth - 1)
    return found


def _version(tensor: torch.Tensor) -> Optional[int]:
    """The tensor's in-place version counter (None where it has none: inference tensors)."""
    try:
        return tensor._version
    except RuntimeError:  # pragma: no cover - inference-mode tensors
        return None


def _tensors_of(module: nn.Module) -> list[torch.Tensor]:
    return [t for t in (*module._buffers.values(), *module.__dict__.values()) if isinstance(t, torch.Tensor)]
