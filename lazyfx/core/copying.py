"""Deep copies of a user's model: the one copy with a memo that analysis and rewrite share.

``copy.deepcopy`` with a memo keeps the user's model intact while lazyfx runs
code on a twin: the analysis initializes lazy modules on a copy whose tensors
live on the meta device (:func:`lazyfx.analysis.fallback.generic.meta_copy`),
and ``materialize(inplace=False)`` builds its result on a copy whose tensors
are created directly on the target device (:func:`lazyfx.build.rewrite.copy_model`).
Both go through :func:`copy_module`, which asks for each parameter and buffer
what its copy is, and :func:`deepcopy_consistently`, which makes the functions
the model holds (lambdas, closures) call the copies, not the user's modules.
"""

from __future__ import annotations

import copy
import functools
import types
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn as nn

from lazyfx.core.journal import MODULE_INTERNALS

# replace(module, tensor, is_parameter) -> the tensor's copy, or None to deep-copy it as it is
Replace = Callable[[nn.Module, torch.Tensor, bool], Optional[torch.Tensor]]


def copy_module(model: nn.Module, replace: Replace, modules: Optional[Iterable[nn.Module]] = None) -> nn.Module:
    """A deep copy of ``model`` (:func:`deepcopy_consistently`) in which each parameter and buffer
    of ``modules`` (by default ``model.modules()``) is ``replace(module, tensor, is_parameter)``;
    a tensor several modules share is asked for once, by the first of them, and one ``replace``
    returns None for is deep-copied as it is.

    >>> import torch.nn as nn
    >>> model = nn.Sequential(nn.Linear(2, 3))
    >>> copied = copy_module(model, lambda module, tensor, is_parameter: (
    ...     nn.Parameter(tensor.detach().to("meta")) if is_parameter else None))
    >>> copied[0].weight.device, model[0].weight.device
    (device(type='meta'), device(type='cpu'))
    """
    memo: dict[int, Any] = {}
    for module in model.modules() if modules is None else modules:
        for tensors, is_parameter in ((module._parameters.values(), True), (module._buffers.values(), False)):
            for tensor in tensors:
                if tensor is None or id(tensor) in memo:
                    continue
                new = replace(module, tensor, is_parameter)
                if new is not None:
                    memo[id(tensor)] = new
    return deepcopy_consistently(model, memo)


def deepcopy_consistently(model: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """``copy.deepcopy(model, memo)`` where the functions held in the model's attributes (lambdas,
    closures, defaults, also inside partials and containers) that reach one of its modules or
    tensors are copied too, reaching the copies.

    >>> import torch.nn as nn
    >>> def build():
    ...     model = nn.Linear(2, 2)
    ...     model.size = lambda: model.weight.shape  # a closure over the model itself
    ...     return model
    >>> copied = deepcopy_consistently(build(), {})
    >>> copied.size.__closure__[0].cell_contents is copied
    True
    """
    originals = set(memo) | {id(obj) for module in model.modules()
                             for obj in (module, *module._parameters.values(), *module._buffers.values())
                             if obj is not None}
    functions = _functions_reaching(model, originals)
    # copy.deepcopy keeps a function as it is, so a lambda, closure or default that holds one of the
    # model's modules would still call the user's module from the copy; each such function gets a
    # twin whose cells and defaults are filled once the modules' copies exist
    twins = {}
    for function in functions:
        twin = types.FunctionType(function.__code__, function.__globals__, function.__name__, None,
                                  tuple(types.CellType() for _ in function.__closure__ or ()) or None)
        twin.__qualname__, twin.__module__ = function.__qualname__, function.__module__
        memo[id(function)] = twins[id(function)] = twin
    copied = copy.deepcopy(model, memo)
    for function in functions:
        twin = twins[id(function)]
        for cell, new_cell in zip(function.__closure__ or (), twin.__closure__ or ()):
            if _cell_full(cell):  # empty while the name is not yet assigned in the enclosing function
                new_cell.cell_contents = copy.deepcopy(cell.cell_contents, memo)
        twin.__defaults__ = copy.deepcopy(function.__defaults__, memo)
        twin.__kwdefaults__ = copy.deepcopy(function.__kwdefaults__, memo)
        twin.__dict__.update(copy.deepcopy(function.__dict__, memo))
    return copied


def _functions_reaching(model: nn.Module, originals: set[int]) -> list[types.FunctionType]:
    """The plain functions held in the model's attributes (directly, in containers, partials, bound
    methods or other functions' closures and defaults) whose closure or defaults reach one of the
    model's modules or tensors (``originals``)."""
    found: dict[int, types.FunctionType] = {}
    reaching: dict[int, bool] = {}

    def reaches(value: Any, depth: int) -> bool:
        if id(value) in originals:
            return True
        if depth <= 0 or isinstance(value, (torch.Tensor, nn.Module, type)) or type(value) in _ATOMS:
            return False
        if isinstance(value, types.FunctionType):
            if id(value) not in reaching:
                reaching[id(value)] = False  # a recursive closure
                inside = [c.cell_contents for c in value.__closure__ or () if _cell_full(c)]
                inside += list(value.__defaults__ or ()) + list((value.__kwdefaults__ or {}).values())
                inside += list(vars(value).values())
                hit = False
                for item in inside:
                    hit = reaches(item, depth - 1) or hit  # visit all: nested functions need twins too
                reaching[id(value)] = hit
                if hit:
                    found[id(value)] = value
            return reaching[id(value)]
        if isinstance(value, types.MethodType):
            return reaches(value.__func__, depth - 1) | reaches(value.__self__, depth - 1)
        if isinstance(value, functools.partial):
            items = [value.func, *value.args, *value.keywords.values()]
        elif isinstance(value, dict):
            items = list(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = list(value)
        else:
            return False
        hit = False
        for item in items:
            hit = reaches(item, depth - 1) or hit
        return hit

    for module in model.modules():
        for name, value in vars(module).items():
            if name not in MODULE_INTERNALS:
                reaches(value, 6)
    return list(found.values())


def _cell_full(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


_ATOMS = frozenset({bool, int, float, complex, str, bytes, type(None), torch.Size, torch.dtype, torch.device})
