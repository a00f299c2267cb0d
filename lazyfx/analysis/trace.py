"""Trace: the model's forward as a torch.fx graph, with shapes known while tracing.

Lazy modules stay leaves (their forward would touch uninitialized
parameters), as do PyTorch's own modules; containers (Sequential, ModuleList,
ModuleDict) and user modules are traced through, so every node carries the
qualified path of the module it calls, and the user's ``file:line``. So is a
lazy container, a ``LazyModuleMixin`` whose lazy tensors are all in its
submodules: its own initialization is recorded where it is called.

Each node's value is computed the moment the node is created (the tracer
drives the :class:`~lazyfx.analysis.propagate.Propagator`), so Python control
flow on shapes works: ``if x.dim() == 4``, ``assert x.size(1) == 3``,
``for i in range(x.size(1))``, ``len(x)``, ``a, b = x.shape[:2]``. A
condition is decided from the symbolic sizes and the spec's constraints and
recorded in the report; one the spec leaves open is an error that names it
as a formula, with its line and the symbols to pin. Control flow on tensor
*values* cannot be decided from shapes.

Forward arguments the user does not give are specialized to their defaults
(``mask=None`` takes the ``mask is None`` branch), as are Python constants
the user gives.
"""

from __future__ import annotations

import ast
import bisect
import collections
import contextlib
import dis
import functools
import inspect
import itertools
import linecache
import operator
import os
import re
import sys
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import sympy
import torch
import torch.fx as fx
import torch.fx._symbolic_trace as fx_symbolic_trace
import torch.nn as nn
from torch.fx._symbolic_trace import _assert_is_none
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy
from torch.overrides import TorchFunctionMode

from lazyfx.analysis.fallback.generic import resolve_container
from lazyfx.analysis.hooks import call_with_hooks, has_pre_hooks, has_user_hooks
from lazyfx.analysis.propagate import Propagator, real_modules
from lazyfx.analysis.randomness import GeneratorWatcher
from lazyfx.analysis.records import CALLERS, LOCATION, Decision, LazyCall
from lazyfx.analysis.untraceable import untraceable, untraceable_reason
from lazyfx.core import diagnostics
from lazyfx.core.checks import decide
from lazyfx.core.diagnostics import (
    caller_location,
    first_line,
    is_internal,
    location_from_traceback,
    locations_found_once_above,
    source_line,
)
from lazyfx.core.journal import Journal
from lazyfx.core.registry import RULES
from lazyfx.core.symbolic import fmt, free_symbols, is_concrete
from lazyfx.core.target import DEVICE_ATTRIBUTES, TARGET_DEVICE
from lazyfx.core.values import ANALYSIS_DTYPE, RecordValue, TensorMeta, converted_dtype, describe
from lazyfx.errors import (
    DataDependentError,
    LazyFXError,
    ResolutionError,
    ShapeError,
    TraceError,
    UndecidedConditionError,
)
from lazyfx.inputs.bind import with_defaults
from lazyfx.rules.lazy import is_lazy_container, is_lazy_module, registered_submodule

_VAR_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)

class _AnswersFromValue:
    """``len()``, ``int()`` and ``range()`` on a proxy, answered from its computed value; and
    iteration, as torch.fx does it."""

    def __iter__(self) -> Iterator[fx.Proxy]:
        """torch.fx's iteration (``a, b = x`` unpacks into ``x[0]``, ``x[1]``; any other loop
        asks the tracer), with the disassembly of the calling code done once per call site
        rather than at every iteration: torch.fx disassembles the caller's whole function
        each time, which cost a third of tracing a ViT."""
        caller = sys._getframe(1)
        count = _unpacked_count(caller.f_code, caller.f_lasti)
        if count is not None:
            return (self[i] for i in range(count))
        return self.tracer.iter(self)

    def __len__(self) -> int:
        return self.tracer.length(self)

    def __index__(self) -> int:
        return self.tracer.to_int(self)

    def __int__(self) -> int:
        return self.tracer.to_int(self)

    def __getattr__(self, name: str):
        if name in DEVICE_ATTRIBUTES and isinstance(self.tracer.propagator.value(self.node), TensorMeta):
            # a dry run's answer, as a plain value: torch.autocast(device_type=x.device.type) needs a str
            return DEVICE_ATTRIBUTES[name](TARGET_DEVICE.get())
        return ShapeAttribute(self, name)

    def __format__(self, spec: str) -> str:  # f"length {T}" in a message shows the size
        return format(str(self), spec)

    def __str__(self) -> str:
        return describe(self.tracer.propagator.value(self.node))


class ShapeProxy(_AnswersFromValue, fx.Proxy):
    def __setitem__(self, index, value) -> None:
        """``mask[:h, :w] = count`` (torch.fx has no node for it): an ``operator.setitem`` node,
        for the shapes to be checked; the tensor keeps its shape."""
        self.tracer.create_proxy("call_function", operator.setitem, (self, index, value), {})


@functools.lru_cache(maxsize=4096)
def _unpacked_count(code, offset: int) -> Optional[int]:
    """How many names the instruction at ``offset`` of ``code`` unpacks into
    (``UNPACK_SEQUENCE``), or None for any other instruction: torch.fx's test in
    ``Proxy.__iter__``."""
    instructions = list(dis.get_instructions(code))
    index = bisect.bisect_left(instructions, offset, key=lambda instruction: instruction.offset)
    instruction = instructions[index]
    return instruction.argval if instruction.opname == "UNPACK_SEQUENCE" else None


_isinstance = isinstance


def dry_run_isinstance(obj: Any, classinfo: Any) -> bool:
    """``isinstance`` as forward sees it in a dry run: a traced tensor is a ``torch.Tensor`` (and
    not a tuple or a list), a traced size an ``int``. lazyfx puts it in the globals of each
    forward it traces (:meth:`LazyTracer.answer_isinstance_in`) rather than making proxies
    claim ``torch.Tensor`` as their ``__class__``: PyTorch's C++ argument parser asks the same
    question and would then read a proxy as a tensor's memory."""
    if _isinstance(obj, classinfo):
        return True
    if type(obj) is not ShapeProxy:
        return False
    value = obj.tracer.propagator.value(obj.node)
    if type(value) is TensorMeta:
        return issubclass(torch.Tensor, classinfo)
    if (type(value) is int or _isinstance(value, sympy.Expr)) and getattr(value, "is_integer", True):
        return issubclass(int, classinfo)
    return False


def _traced_tensor(obj: Any) -> bool:
    return type(obj) is ShapeProxy and type(obj.tracer.propagator.value(obj.node)) is TensorMeta


_is_tensor = torch.is_tensor


def dry_run_is_tensor(obj: Any) -> bool:
    """``torch.is_tensor`` as forward sees it in a dry run: True for a traced tensor. It stands in
    for ``torch.is_tensor`` while a forward is traced; PyTorch's own callers get its answer."""
    if _is_tensor(obj):
        return True
    return _traced_tensor(obj) and not str(sys._getframe(1).f_globals.get("__name__", "")).startswith("torch.")


class _TypeAsInDryRun(type):
    """The metaclass of :class:`dry_run_type`: calling it with one argument answers
    ``torch.Tensor`` for a traced tensor and ``int`` for a traced size, and it stands for ``type`` in ``isinstance`` and
    ``issubclass``."""

    def __call__(cls, *args, **kwargs):
        if len(args) == 1 and not kwargs:
            obj = args[0]
            if type(obj) is ShapeProxy:  # answers as dry_run_isinstance does
                for kind in (torch.Tensor, int):
                    if dry_run_isinstance(obj, kind):
                        return kind
            return type(obj)
        return type(*args, **kwargs)  # type(name, bases, namespace) makes a class

    def __instancecheck__(cls, obj: Any) -> bool:
        return _isinstance(obj, type)

    def __subclasscheck__(cls, subclass: Any) -> bool:
        return issubclass(subclass, type)


class dry_run_type(type, metaclass=_TypeAsInDryRun):
    """``type`` as forward sees it in a dry run: ``type(x) is torch.Tensor`` holds for a traced
    tensor (a proxy cannot claim ``torch.Tensor`` as its class, see :func:`dry_run_isinstance`).
    lazyfx puts it in the globals of each forward it traces, next to ``isinstance``."""


# the builtins each traced forward's globals get in a dry run's form, while it is traced
_AS_IN_DRY_RUN = {"isinstance": dry_run_isinstance, "type": dry_run_type}


class ShapeAttribute(_AnswersFromValue, fx.proxy.Attribute):
    """``x.shape`` and friends (fx creates their node on first use)."""


class _ModuleStack(collections.OrderedDict):
    """torch.fx's stack of the modules being traced, which it copies (``copy.copy``) into every
    node's ``nn_module_stack``: copied as the plain OrderedDict it is, without ``copy.copy``'s
    generic reduce protocol (a tenth of torch.fx's own work per node)."""

    def __copy__(self) -> collections.OrderedDict:
        return collections.OrderedDict(self)


class _Scope(fx.proxy.Scope):
    """torch.fx's current scope, which it copies (``copy.copy``) at every module call to put it
    back afterwards: copied field by field, without ``copy.copy``'s generic reduce protocol."""

    def __copy__(self) -> fx.proxy.Scope:
        return fx.proxy.Scope(self.module_path, self.module_type)


# Arguments torch.fx's ``Tracer.create_arg`` hands back as they are, after asking of each whether
# it is a parameter, a tensor, a module, a named tuple or an opaque object (exact types only:
# a subclass takes torch.fx's own way)
_PLAIN_ARGUMENTS = frozenset({int, float, bool, complex, str, type(None), type(Ellipsis), torch.dtype, torch.device,
                              torch.memory_format, torch.layout})


# A module path or attribute name of lower-case ASCII letters, digits and underscores
_PLAIN_PATH = re.compile(r"[0-9a-z_]+(?:\.[0-9a-z_]+)*").fullmatch


class LazyTracer(fx.Tracer):
    """A torch.fx tracer that keeps lazy modules as leaves, records for each node the user's
    line that created it, and computes node values as it goes (for control flow)."""

    def __init__(self, propagator: Propagator, inputs: list[Any], restore=None) -> None:
        super().__init__()
        self.module_stack = _ModuleStack()
        self.scope = _Scope("", None)
        self.propagator = propagator
        self._inputs = iter(inputs)  # placeholder values, in forward's parameter order
        # puts modules back as they were before forward ran (undoes what a failed trace did)
        self.restore = restore or (lambda modules: None)
        # where each traced-through submodule on the way to the current node was called, outermost
        # first: a failure inside a block defined in another file names the calls that led there
        self._callers: tuple = ()
        self._unpacking: list[fx.Node] = []  # the getitem nodes that unpack container inputs
        self._isinstance_in: list[tuple[dict, str]] = []  # the globals and names _AS_IN_DRY_RUN went into
        self._isinstance_classes: set[type] = set()  # the classes whose functions' globals have it
        # modules outside the model that forward called (a plain list's, a closure's): put back
        # after the trace, as the snapshot of the model puts the model's own back
        self._outside: list[Journal] = []
        self._outside_ids: set[int] = set()
        # by module id: the lazy values of the sizes read_as_initialized replaced
        self._lazy_attributes: dict[int, dict[str, Any]] = {}
        # the lazy module whose own initialization has run while its later pre-hooks are traced
        # (before its node exists): their draws come after that initialization (hooks.py)
        self.initializing: Optional[str] = None
        self._parameter_paths: Optional[dict[int, tuple[nn.Parameter, str]]] = None  # see _parameter_path
        self._parameters_read: dict[str, nn.Parameter] = {}  # path -> the parameter its cached node reads
        self._leaf_answer: Optional[tuple[nn.Module, str, bool]] = None  # see _fx_call_module
        self._node_names: dict[Any, tuple[Any, str]] = {}  # see _node_name

    def first_calls_so_far(self) -> int:
        """How many lazy modules forward has first called so far, as a dry run initializes them."""
        paths = {call.path for call in self.propagator.result.lazy_calls}
        pending = self.initializing is not None and self.initializing not in paths
        return len(paths) + pending

    def last_node(self) -> Optional[fx.Node]:
        return next(reversed(self.graph.nodes), None)

    def answer_isinstance_in(self, module: nn.Module) -> None:
        """Make ``isinstance`` and ``type`` answer as in a dry run (:func:`dry_run_isinstance`,
        :class:`dry_run_type`) in the code
        ``module``'s forward runs, until :meth:`restore_isinstance`: the globals of forward and
        of every function its class and their bases define (a library's base class, such as
        PyTorch Geometric's ``MessagePassing``, and the code PyG generates for ``propagate``),
        PyTorch's own excepted. A namespace that has such a name of its own keeps it; one that
        imported ``torch.is_tensor`` gets :func:`dry_run_is_tensor` there too."""
        for cls in type(module).__mro__:
            if cls in self._isinstance_classes:
                continue
            self._isinstance_classes.add(cls)
            for function in (*vars(cls).values(), getattr(module, "forward", None)):
                namespace = getattr(function, "__globals__", None)
                if not isinstance(namespace, dict) or str(namespace.get("__name__", "")).startswith("torch."):
                    continue
                for name, stand_in in _AS_IN_DRY_RUN.items():
                    if name not in namespace:
                        namespace[name] = stand_in
                        self._isinstance_in.append((namespace, name))
                if namespace.get("is_tensor") is _is_tensor:  # from torch import is_tensor
                    namespace["is_tensor"] = dry_run_is_tensor
                    self._isinstance_in.append((namespace, "is_tensor"))

    def restore_isinstance(self) -> None:
        while self._isinstance_in:
            namespace, name = self._isinstance_in.pop()
            if name == "is_tensor":
                if namespace.get(name) is dry_run_is_tensor:
                    namespace[name] = _is_tensor
            elif namespace.get(name) is _AS_IN_DRY_RUN[name]:
                del namespace[name]

    def path_of_module(self, mod: nn.Module) -> str:
        """Also for a submodule forward registers as it runs (``self.extra = nn.Linear(...)``),
        which torch.fx's table of paths, made before forward ran, does not know."""
        answer = self._leaf_answer
        if answer is not None and answer[0] is mod:  # torch.fx asking for the path _call_module just found
            return answer[1]
        try:
            return super().path_of_module(mod)
        except NameError:
            for name, module in self.root.named_modules():
                if module is mod:
                    if self.submodule_paths is not None:
                        self.submodule_paths[mod] = name
                    return name
            raise

    def _registered_path(self, mod: nn.Module) -> Optional[str]:
        try:
            return self.path_of_module(mod)
        except NameError:
            return None

    def _call_unregistered(self, m: nn.Module, forward, args, kwargs):
        """A module that is not a submodule of the model is traced through, its parameters taken
        as constants (:meth:`create_arg`); a lazy one cannot be, and materialize could not reach
        it (nor can ``state_dict`` or ``.to()``)."""
        if is_lazy_module(m):
            raise ResolutionError(
                f"forward calls a lazy {type(m).__name__} that is not a submodule of {type(self.root).__name__} "
                f"(held in a plain list, dict, tuple or a closure): its parameters are not part of the model, "
                f"so neither materialize nor state_dict() and .to() reach them",
                code=diagnostics.LAZY_NOT_REGISTERED,
                location=caller_location(),
                notes=["register it: an attribute of the model, nn.ModuleList or nn.ModuleDict"],
            )
        if id(m) not in self._outside_ids:  # forward may update its buffers in place (a step counter)
            self._outside_ids.update(id(sub) for sub in m.modules())
            self._outside.append(Journal.of_model(m))
        return forward(*args, **kwargs)

    def restore_outside(self) -> None:
        """Put back the modules outside the model that forward called (see :meth:`_call_unregistered`)."""
        while self._outside:
            self._outside.pop().rollback()

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict):
        """A parameter forward reads is a ``get_attr`` node of its path (its first name in
        ``named_parameters()``, as torch.fx names it), made anew at a read where

        * it is lazy: before its module's first call it has no shape, after it has one;
        * forward has bound another parameter to that path since the last read
          (``self.scale = nn.Parameter(...)``);

        where torch.fx would give the first read's node. The paths come from a table made
        once per trace (:meth:`_parameter_path`): torch.fx walks ``named_parameters()`` at
        every read it has not cached, and ``inspect.signature`` of ``create_proxy`` at every
        new one (a lazy parameter's reads are all new: 8% of analysing a ConvNeXt, whose
        blocks read their layer scale)."""
        if not isinstance(attr_val, torch.Tensor):  # a submodule, a setting: as it is (torch.fx leaves it too)
            return attr_val
        if not isinstance(attr_val, nn.Parameter) or self.proxy_buffer_attributes:
            return super().getattr(attr, attr_val, parameter_proxy_cache)  # (buffers: as torch.fx reads them)
        path = self._parameter_path(attr_val)
        if path is None:  # not the model's: a plain value, as torch.fx leaves it
            return attr_val
        proxy = parameter_proxy_cache.get(path)
        if proxy is None or is_lazy(attr_val) or self._parameters_read.get(path) is not attr_val:
            factory = (None if not self.param_shapes_constant
                       else lambda node: fx_symbolic_trace.ParameterProxy(self, node, path, attr_val))
            proxy = parameter_proxy_cache[path] = self.create_proxy("get_attr", path, (), {}, proxy_factory_fn=factory)
            self._parameters_read[path] = attr_val
        return proxy

    def _parameter_path(self, parameter: nn.Parameter) -> Optional[str]:
        """The first name of ``parameter`` in the model's ``named_parameters()``, or None. From a
        table made at the first read, where the name still leads to that parameter; else
        (forward registered, rebound or deleted one) from a new search."""
        if self._parameter_paths is None:
            self._parameter_paths = {}
            for name, p in self.root.named_parameters():
                self._parameter_paths.setdefault(id(p), (p, name))
        found = self._parameter_paths.get(id(parameter))
        if found is not None and found[0] is parameter and _parameter_at(self.root, found[1]) is parameter:
            return found[1]
        for name, p in self.root.named_parameters():
            if p is parameter:
                self._parameter_paths[id(parameter)] = (parameter, name)
                return name
        return None

    def create_arg(self, a: Any):
        """A parameter of a module outside the model (see :meth:`_call_unregistered`) enters the
        graph as a constant, as torch.fx stows other tensors (it refuses parameters). A traced
        value and a plain number, string or dtype are answered at once, as torch.fx answers them
        after its checks for tensors and opaque objects (a quarter of its per-node work)."""
        cls = type(a)
        if cls is ShapeProxy:
            return a.node
        if cls in _PLAIN_ARGUMENTS:
            return a
        if cls is tuple:  # (a node's args)
            return tuple([self.create_arg(v) for v in a])
        if cls is dict and all(type(k) is str for k in a):  # (its kwargs)
            return {k: self.create_arg(v) for k, v in a.items()}
        try:
            return super().create_arg(a)
        except NameError:
            if not isinstance(a, nn.Parameter):
                raise
        name = self.tensor_attrs.get(a)
        if name is None:
            name = next(f"_tensor_constant{i}" for i in itertools.count() if not hasattr(self.root, f"_tensor_constant{i}"))
            self.tensor_attrs[a] = name
            self.root.__dict__[name] = a  # a plain attribute: not registered as the model's parameter
        return self.create_node("get_attr", name, (), {})

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        answer = self._leaf_answer
        if answer is not None:  # torch.fx asking again about the call _call_module just decided
            self._leaf_answer = None
            if answer[0] is m and answer[1] == module_qualified_name:
                return answer[2]
        return self._is_leaf(m, module_qualified_name, is_lazy_module(m))

    def _is_leaf(self, m: nn.Module, path: str, lazy: bool) -> bool:
        """:meth:`is_leaf_module`, with whether ``m`` is lazy already known."""
        return (
            lazy and not is_lazy_container(m)
            or path in self.propagator.result.opaque
            or super().is_leaf_module(m, path)
        )

    def _fx_call_module(self, m: nn.Module, path: str, leaf: bool, forward, args, kwargs):
        """torch.fx's ``call_module``, which first asks :meth:`is_leaf_module` what the caller
        has just asked: it gets that answer again without computing it twice. A leaf's node is
        analysed with ``m`` itself, the module this call runs (not looked up again by path)."""
        if leaf:
            self.propagator.called_at(path, m)
        self._leaf_answer = (m, path, leaf)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self._leaf_answer = None

    def create_args_for_root(self, root_fn, is_module, concrete_args=None):
        """torch.fx calls the root's forward itself, never its ``__call__``: the root's own
        hooks are traced around it here (see :mod:`lazyfx.analysis.hooks`). A container input is
        handed to forward as a real container (see :meth:`unpacked`)."""
        fn, args = super().create_args_for_root(root_fn, is_module, concrete_args)
        args = [self.unpacked(a) if isinstance(a, fx.Proxy) and a.node.op == "placeholder" else a for a in args]
        root = self.root
        container = is_module and is_lazy_container(root)
        if not container and (not is_module or not has_user_hooks(root)):
            return fn, args
        if fn is not root_fn and (container or has_pre_hooks(root)):  # flattened or *args inputs
            raise TraceError(f"lazyfx cannot follow the forward pre-hooks of {type(root).__name__} with these "
                             f"inputs (torch.fx rewrites forward's parameters)", code=diagnostics.HOOK_NOT_FOLLOWED)

        def hooked(this, *inputs):
            if container:  # its own initialization first, then its hooks around forward
                return self.lazy_container_call(root, "", lambda *a, **k: fn(this, *a, **k))(*inputs)
            return call_with_hooks(self, root, "", lambda a, k: fn(this, *a, **k), inputs, {})

        return hooked, args

    def lazy_container_call(self, m: nn.Module, path: str, forward):
        """``forward`` of a lazy container (:func:`~lazyfx.rules.lazy.is_lazy_container`): its own
        initialization is recorded first, as a dry run runs it first (from the inputs, before the
        lazy layers inside), then its forward is traced with its other hooks around it."""
        def call(*args, **kwargs):
            value = self.propagator.value
            inputs = fx.node.map_aggregate((args, kwargs), lambda a: value(a.node) if isinstance(a, fx.Proxy) else a)
            nodes: list[str] = []
            fx.node.map_aggregate(args, lambda a: nodes.append(a.node.name) if isinstance(a, fx.Proxy) else None)
            with real_modules():
                resolution = resolve_container(m, path, *inputs, self.propagator.result.meta_kernels())
            self.propagator.result.lazy_calls.append(
                LazyCall(path, m, resolution, nodes[0] if nodes else "", caller_location()))
            return call_with_hooks(self, m, path, lambda a, k: forward(*a, **k), args, kwargs)

        return call

    def unpacked(self, proxy: fx.Proxy) -> Any:
        """The input ``proxy`` stands for, as forward would get it in a dry run: a constant
        torch.fx does not specialize (an Enum member, an object) is itself; a dict, tuple,
        list or named tuple value becomes that container (the same keys, in the same order),
        whose tensors are ``getitem`` nodes on the placeholder, its constants themselves; so
        ``.get``, ``in``, ``len``, iteration and unpacking are Python's own, and a missing key
        is missing. A ``getitem`` forward never uses is dropped after tracing."""
        def unpack(source: fx.Proxy, value: Any) -> Any:
            if isinstance(value, RecordValue):  # a ModelOutput: attributes, int indexing, None fields
                items = {key: unpack(get(source, key), v) for key, v in value.items()}
                fields = {name: items[name] if name in items else
                          v if v is None else unpack(self.create_proxy("call_function", getattr, (source, name), {}), v)
                          for name, v in value.fields.items()}
                return TracedRecord(items, fields, value.type_name)
            if isinstance(value, dict):
                return {key: unpack(get(source, key), v) for key, v in value.items()}
            if isinstance(value, (tuple, list)):
                items = [unpack(get(source, i), v) for i, v in enumerate(value)]
                return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)  # a named tuple
            if isinstance(value, TensorMeta):
                return source
            return value  # None, a number, a string, a dtype: the value itself, as in a dry run

        def get(parent: fx.Proxy, key: Any) -> fx.Proxy:
            item = self.create_proxy("call_function", operator.getitem, (parent, key), {})
            self._unpacking.append(item.node)
            return item

        value = self.propagator.value(proxy.node)
        if isinstance(value, TensorMeta):
            return proxy
        return unpack(proxy, value)  # a container, or a constant (an Enum member, an object) as it is

    def drop_unused_unpacking(self) -> None:
        """Erase the unpacking ``getitem`` nodes nothing uses (a leaf forward ignores, a
        container's own node once its leaves are unpacked), innermost first, and the size nodes
        :meth:`read_as_initialized` made that forward never read."""
        for node in reversed(self._unpacking):
            if not node.users and node.graph is self.graph:
                self.graph.erase_node(node)
                self.propagator.records.pop(node, None)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        """Trace into ``m``; if its code cannot be traced, undo that and keep it as one opaque
        node, analysed by abstract execution (:mod:`lazyfx.analysis.fallback.abstract`). A ModelOutput it returns
        is a :class:`TracedRecord` to forward, as the real one is in a dry run."""
        out = self._call_module(m, forward, args, kwargs)
        if isinstance(out, fx.Proxy) and isinstance(self.propagator.value(out.node), RecordValue):
            return self.unpacked(out)
        return out

    def _call_module(self, m: nn.Module, forward, args, kwargs):
        path = self._registered_path(m)
        if path is None:  # held in a plain list, a dict or a closure: no path for a graph node
            return self._call_unregistered(m, forward, args, kwargs)
        lazy = is_lazy_module(m)
        if self._is_leaf(m, path, lazy):
            if path not in self.propagator.result.opaque and has_user_hooks(m):  # fx never runs a leaf's hooks
                leaf = super().call_module

                def initialized_leaf(a, k):
                    self.read_as_uninitialized(m)
                    out = leaf(m, forward, a, k)
                    self.read_as_initialized(m, path, a, k)
                    return out

                return call_with_hooks(self, m, path, initialized_leaf, args, kwargs)
            self.read_as_uninitialized(m)
            out = self._fx_call_module(m, path, True, forward, args, kwargs)
            if lazy:  # (a leaf's forward is not run: it stays as lazy as it was)
                self.read_as_initialized(m, path, args, kwargs)
            return out
        if is_wrapped(m):
            self.propagator.result.opaque[path] = WRAPPED
            return super().call_module(m, forward, args, kwargs)
        if is_lazy_container(m):
            forward = self.lazy_container_call(m, path, m.forward)
        self.answer_isinstance_in(m)
        mark = self._mark()
        callers = self._callers
        call = caller_location()
        if call is not None:
            self._callers = callers + ((call, path),)
        try:
            return self._fx_call_module(m, path, False, forward, args, kwargs)
        except Exception as exc:
            if not untraceable(exc) and not self.assertion_not_about_shapes(exc):
                raise
            self._undo_since(mark)
            self.restore(m.modules())  # no fx Proxy left in m's attributes for abstract execution
            self.propagator.result.opaque[path] = untraceable_reason(exc)
            if isinstance(exc, DataDependentError) and exc.counted:  # the verdict, should abstract execution not do better
                self.propagator.result.refusals[path] = exc
            self._callers = callers
            return super().call_module(m, forward, args, kwargs)
        finally:
            self._callers = callers

    def read_as_initialized(self, m: nn.Module, path: str, args: tuple, kwargs: dict) -> None:
        """After a lazy module's first call, forward reads the sizes its initialization set
        (``self.proj.in_features``) as a dry run does: a concrete size is that int, a symbolic
        one that the input's shape gives is that traced size (``x.size(-1)``: using it as a
        Python number is LFX011 unless the spec decides it), any other symbolic one refuses
        to be used (LFX011). The model's snapshot puts the lazy values back after the analysis."""
        if not is_lazy_module(m) or path in self.propagator.result.opaque:
            return
        if isinstance(m, LazyModuleMixin) and not m.has_uninitialized_params():
            return  # PyTorch's initialization sets nothing then (a norm without affine or stats)
        # the latest call of m (found from the end: this runs after every lazy module's call)
        call = next((c for c in reversed(self.propagator.result.lazy_calls) if c.path == path and c.module is m), None)
        if call is None:
            return
        tensors: Optional[list[fx.Proxy]] = None  # the call's traced inputs, found where a size is symbolic
        for name, size in call.resolution.arguments.items():
            if not isinstance(m.__dict__.get(name), int) or isinstance(m.__dict__[name], bool):
                continue
            if is_concrete(size):
                value: Any = int(size)
            else:
                if tensors is None:
                    tensors = []
                    fx.node.map_aggregate((args, kwargs),
                                          lambda a: tensors.append(a) if isinstance(a, fx.Proxy) else None)
                value = next((t.size(d) for t in tensors if isinstance(v := self.propagator.value(t.node), TensorMeta)
                              for d in range(v.ndim) if v.shape[d] == size), None)
                if value is not None:  # a size node forward may never read: dropped after tracing then
                    self._unpacking.append(value.node)
                else:
                    value = _SymbolicAttribute(f"self.{path}.{name}" if path else f"self.{name}", size)
            self._lazy_attributes.setdefault(id(m), {}).setdefault(name, m.__dict__[name])
            m.__dict__[name] = value

    def read_as_uninitialized(self, m: nn.Module) -> None:
        """The lazy values back in ``m`` before it is called again: each call is resolved
        from the lazy module, as :meth:`read_as_initialized` found it."""
        if self._lazy_attributes:  # (none outside lazy modules' calls)
            m.__dict__.update(self._lazy_attributes.pop(id(m), {}))

    def trace(self, root, concrete_args=None) -> fx.Graph:
        """torch.fx's trace, with the functions marked ``torch.fx.wrap`` traced into
        (:meth:`call_wrapped`) instead of kept as opaque calls."""
        opaque = fx_symbolic_trace._create_wrapped_func
        fx_symbolic_trace._create_wrapped_func = _traced_into(opaque)  # read by fx as it patches them
        try:
            with locations_found_once_above(sys._getframe()):  # (a location for every node)
                return super().trace(root, concrete_args)
        finally:
            fx_symbolic_trace._create_wrapped_func = opaque

    def call_wrapped(self, fn, opaque, args: tuple, kwargs: dict) -> Any:
        """Trace into ``fn``, a Python function marked ``torch.fx.wrap``: torch.fx would keep
        it as one call (its Python code branches on sizes, which proxies cannot follow), and
        the meta-kernel fallback would then run it with every size fixed at a
        representative value wherever its code reads one. lazyfx follows such branches, so
        each operation inside gets its rule and the user's line. If its code still cannot
        be traced, that is undone and the call is kept, as ``opaque`` makes it."""
        mark = self._mark()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, ShapeError) or (isinstance(exc, LazyFXError) and exc.final) \
                    or not (untraceable(exc) or isinstance(exc, LazyFXError)):
                raise  # an answer about the shapes, not about the code
            self._undo_since(mark)
            try:
                return opaque(*args, **kwargs)
            except LazyFXError:
                if isinstance(exc, LazyFXError):  # what tracing into it found says more (LFX011)
                    raise exc from None
                raise

    def _mark(self) -> tuple:
        return next(reversed(self.graph.nodes), None), len(self.module_stack), self.propagator.checkpoint()

    def _undo_since(self, mark: tuple) -> None:
        """Erase the nodes traced since ``mark`` and forget what was learned from them."""
        last, stack, checkpoint = mark
        erased = _nodes_after(self.graph, last)
        for node in reversed(erased):
            self.graph.erase_node(node)
        while len(self.module_stack) > stack:
            self.module_stack.popitem()
        self.propagator.rollback(checkpoint, erased)

    def create_node(self, kind: str, target: Any, args: tuple, kwargs: dict, name: Optional[str] = None,
                    type_expr: Any = None) -> fx.Node:
        if name is None:
            name = self._node_name(target)
        if self.check_mutable_operations:  # (off unless set: torch.fx then reads the arguments here)
            node = super().create_node(kind, target, args, kwargs, name, type_expr)
        else:
            # The node is made without its arguments, which are set right after, as any pass
            # sets them. Graph.create_node walks the arguments of a call with torch's pytree
            # to warn of a raw torch.SymInt among them, which lazyfx's tracing never passes
            # (its sizes are ints and traced proxies): half of the call's cost (6.6 of 13 us
            # measured with timeit on torch 2.13).
            node = super().create_node(kind, target, (), {}, name, type_expr)
            if args:
                node.args = args
            if kwargs:
                node.kwargs = kwargs
        if kind == "placeholder":
            self.propagator.placeholder_values[node.name] = next(self._inputs)
        elif kind != "output":  # made outside forward's body
            node.meta[LOCATION] = caller_location()
            if self._callers:
                node.meta[CALLERS] = self._callers
        self.propagator.step(node)
        return node

    def _node_name(self, target: Any) -> Optional[str]:
        """The name torch.fx derives from a node's target (``Graph._target_to_str``: the name
        without a magic method's underscores, in snake case), which its namespace then makes a
        unique identifier. A module path or method name in lower case is its own name (its
        snake case changes nothing), with its dots already the underscores the namespace would
        put there; other targets are derived once, by identity (kept alive, so that the id is
        not reused). None where torch.fx would refuse the target: it says why."""
        if type(target) is str:
            if not (target.startswith("__") and target.endswith("__")):
                if _PLAIN_PATH(target):  # (torch.fx would then replace each dot by "_" itself)
                    return target.replace(".", "_")
                if target.lower() == target:
                    return target
        elif not callable(target):
            return None
        key = target if type(target) is str else id(target)
        known = self._node_names.get(key)
        if known is not None and (known[0] is target or type(target) is str):
            return known[1]
        name = self.graph._target_to_str(target)
        self._node_names[key] = (target, name)
        return name

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return ShapeProxy(node, self)

    # -- Python control flow on traced values ---------------------------------------

    def to_bool(self, obj: fx.Proxy) -> bool:
        value = self.propagator.value(obj.node)
        if isinstance(value, TensorMeta):
            raise DataDependentError(
                f"control flow on a tensor's values ({_source(obj.node)}) cannot be followed from shapes",
                location=obj.node.meta.get(LOCATION),
            )
        if isinstance(value, (bool, int, float)) or value is None:
            taken = bool(value)
            code = source_line(obj.node.meta.get(LOCATION))
            self._decided(obj.node, _condition_text(code) if code else obj.node.name, taken)
            return taken
        if isinstance(value, sympy.Basic):
            condition = value if value.is_Boolean or value.is_Relational else sympy.Ne(value, 0)
            taken = decide(condition) if not isinstance(condition, bool) else condition
            if taken is None:
                raise self._undecided(obj.node, condition)
            self._decided(obj.node, fmt(condition), bool(taken))
            return bool(taken)
        return bool(value)

    def to_int(self, obj: fx.Proxy) -> int:
        value = self.propagator.value(obj.node)
        if is_concrete(value):
            return value
        if isinstance(value, sympy.Basic):
            raise self._undecided(obj.node, value, what="a concrete number (range(), int(), an index)")
        if isinstance(value, TensorMeta):
            raise DataDependentError(
                f"a tensor's value is used as a number ({_source(obj.node)}): it cannot be known from shapes",
                location=obj.node.meta.get(LOCATION),
            )
        raise TraceError(f"{_source(obj.node)}: expected an integer, got {type(value).__name__}",
                         location=obj.node.meta.get(LOCATION))

    def length(self, obj: fx.Proxy) -> int:
        value = self.propagator.value(obj.node)
        if isinstance(value, (tuple, list, dict)):
            return len(value)
        if isinstance(value, TensorMeta):
            if value.ndim == 0:
                raise TraceError("len() of a 0-d tensor", location=obj.node.meta.get(LOCATION))
            if is_concrete(value.shape[0]):
                return value.shape[0]
            raise self._undecided(obj.node, value.shape[0], what="a concrete length (len())")
        raise TraceError(f"len() of {type(value).__name__}", location=obj.node.meta.get(LOCATION))

    def iter(self, obj: fx.Proxy) -> Iterator:
        return iter([obj[i] for i in range(self.length(obj))])

    def assertion_not_about_shapes(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a user ``assert`` that failed on something other than a traced
        size (``type(x) is torch.Tensor``, a check a traced value does not pass as a tensor
        does): a limitation of tracing, not the model's fault. An assert whose condition was
        decided false from the sizes (``assert x.dim() == 2``) left that decision at its lines."""
        if not isinstance(exc, AssertionError):
            return False
        location = location_from_traceback(exc)
        if location is None:
            return False
        file, lines = os.path.realpath(location.file), range(location.line, location.line + _statement_length(location))
        return not any(
            not d.taken and d.location is not None and d.location.line in lines and os.path.realpath(d.location.file) == file
            for d in self.propagator.result.decisions
        )

    def _decided(self, node: fx.Node, condition: str, taken: bool) -> None:
        location = caller_location()
        self.propagator.result.decisions.append(
            Decision(condition=condition, taken=taken, location=location, node=node.name, source=source_line(location))
        )

    def _undecided(self, node: fx.Node, value: Any, what: str = "a branch") -> UndecidedConditionError:
        symbols = ", ".join(sorted(str(s) for s in free_symbols(value)))
        location = caller_location()
        return UndecidedConditionError(
            f"forward needs {what} from `{fmt(value)}`, which depends on {symbols}, and the input spec "
            f"does not decide it ({_line(location)})",
            location=location,
            notes=[f"pin {symbols} to concrete sizes, or constrain {'it' if ',' not in symbols else 'them'} "
                   f"with lazyfx.Dim(..., min=, max=, multiple_of=) so that the condition always holds or never does"],
        )


class TracedRecord(dict):
    """What forward gets for a Hugging Face ``ModelOutput`` a module returned: its keys (the
    fields that are not None) in order, each a traced value; every field an attribute (a None
    one is None, so ``out.attentions is None`` answers as in a dry run); an int or a slice
    indexes its ``to_tuple()``, as the ModelOutput's does."""

    def __init__(self, items: dict, fields: dict, type_name: str) -> None:
        super().__init__(items)
        self.__dict__["_record"] = (fields, type_name)

    def __getattr__(self, name: str) -> Any:
        fields, type_name = self.__dict__["_record"]
        if name in fields:
            return fields[name]
        raise AttributeError(f"'{type_name}' object has no attribute '{name}'")

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        return tuple(self.values())


class _SymbolicAttribute:
    """A size a lazy module's initialization set from a symbolic formula the input's shape does
    not give as one dim (``in_features = 64*(H//4)``): read after the module's call, it refuses
    to be used as a number (LFX011), as a traced size would without the spec deciding it."""

    def __init__(self, name: str, size: sympy.Expr) -> None:
        self.name, self.size = name, size

    def _refuse(self, *args: Any) -> Any:
        symbols = ", ".join(sorted(str(s) for s in free_symbols(self.size)))
        location = caller_location()
        raise UndecidedConditionError(
            f"forward reads {self.name}, which its initialization set to `{fmt(self.size)}`, which depends on "
            f"{symbols}, as a number ({_line(location)})",
            location=location, notes=[f"pin {symbols} to concrete sizes in the input spec"])

    def __repr__(self) -> str:
        return fmt(self.size)


for _method in ("__index__", "__int__", "__float__", "__bool__", "__add__", "__radd__", "__sub__", "__rsub__",
                "__mul__", "__rmul__", "__floordiv__", "__rfloordiv__", "__truediv__", "__rtruediv__", "__mod__",
                "__rmod__", "__pow__", "__neg__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
                "__format__"):
    setattr(_SymbolicAttribute, _method, _SymbolicAttribute._refuse)


class _RealTensors(TorchFunctionMode):
    """Real tensors forward uses while it is traced, as the analysis sees them.

    * A real tensor indexed by traced values (``self.pe[: x.size(0)]``, ``table[idx]``) becomes a
      graph node, as a traced tensor's indexing is: PyTorch's indexing would otherwise ask the
      traced size for a concrete ``__index__``. The tensor enters the graph as a ``get_attr``
      (a buffer by its name, any other tensor as torch.fx's ``_tensor_constant``).
    * Under ``materialize(dtype=)``, an operation that runs on the model's own parameters or
      buffers for real (``next(self.parameters()).dtype``, ``self.scale * 2``) sees them in that
      dtype, as after ``model.to(dtype)``: a copy in that dtype, made once, of only the tensors
      forward computes with this way (an operation with traced values gets the tensor as a
      ``get_attr``, converted by propagation).
    """

    def __init__(self, tracer: LazyTracer, model: nn.Module) -> None:
        super().__init__()
        self.tracer = tracer
        self.target = ANALYSIS_DTYPE.get()
        self.state: dict[int, torch.Tensor] = {}  # id -> a parameter or buffer the target dtype converts
        if self.target is not None:
            for tensor in itertools.chain(model.parameters(), model.buffers()):
                if converted_dtype(tensor.dtype, self.target) != tensor.dtype:
                    self.state[id(tensor)] = tensor
        self.converted: dict[int, torch.Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is _GETITEM and not isinstance(args[0], fx.Proxy) and _holds_proxy(args[1]):
            return self.tracer.create_proxy("call_function", operator.getitem, args, {})
        kwargs = kwargs or {}
        if self.state and not _holds_proxy(args) and not _holds_proxy(tuple(kwargs.values())):
            args = tuple(self._as_converted(a) for a in args)
            kwargs = {k: self._as_converted(v) for k, v in kwargs.items()}
        return func(*args, **kwargs)

    def _as_converted(self, value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return type(value)(self._as_converted(v) for v in value)
        if not isinstance(value, torch.Tensor) or id(value) not in self.state:
            return value
        converted = self.converted.get(id(value))
        if converted is None:
            converted = self.converted[id(value)] = _in_dtype(value, self.target)
        return converted


def _parameter_at(root: nn.Module, path: str) -> Optional[nn.Parameter]:
    """The parameter registered at ``path`` now, or None."""
    owner, _, name = path.rpartition(".")
    try:
        module = registered_submodule(root, owner)
    except AttributeError:  # forward removed a module on the way
        return None
    return module._parameters.get(name)


def _in_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` as ``module.to(dtype)`` leaves it: a lazy one stays uninitialized."""
    if isinstance(tensor, UninitializedParameter):
        return UninitializedParameter(tensor.requires_grad, tensor.device, dtype)
    if isinstance(tensor, UninitializedBuffer):
        return UninitializedBuffer(tensor.requires_grad, tensor.device, dtype)
    data = tensor.detach().to(dtype)
    return nn.Parameter(data, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else data


_GETITEM = torch.Tensor.__getitem__


def _holds_proxy(index: Any) -> bool:
    if isinstance(index, fx.Proxy):
        return True
    if isinstance(index, slice):
        return any(isinstance(b, fx.Proxy) for b in (index.start, index.stop, index.step))
    if isinstance(index, (tuple, list)):
        return any(_holds_proxy(item) for item in index)
    return False


def _traced_into(make_opaque):
    """torch.fx's ``_create_wrapped_func``, whose wrappers trace into a user's Python function
    (:meth:`LazyTracer.call_wrapped`). Builtins (``math.sqrt``), PyTorch's own functions and
    functions with a shape rule stay calls."""
    def create_wrapped_func(fn):
        opaque = make_opaque(fn)
        if not (inspect.isfunction(fn) and not is_internal(fn.__code__.co_filename) and fn not in RULES):
            return opaque

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            proxy = fx_symbolic_trace._find_proxy(args, kwargs)
            if proxy is None or not isinstance(proxy.tracer, LazyTracer):
                return opaque(*args, **kwargs)
            return proxy.tracer.call_wrapped(fn, opaque, args, kwargs)

        return wrapped

    return create_wrapped_func


WRAPPED = ("forward is wrapped by a decorator: torch.fx would trace the wrapper's (*args, **kwargs) "
           "instead of forward's own parameters")


def is_wrapped(module: nn.Module) -> bool:
    """A forward behind a functools.wraps-style decorator (Hugging Face models have them)."""
    return getattr(type(module).forward, "__wrapped__", None) is not None


def _nodes_after(graph: fx.Graph, last: Optional[fx.Node]) -> list[fx.Node]:
    """The nodes after ``last`` (all of them when ``last`` is None: the graph was empty)."""
    nodes = []
    for node in reversed(graph.nodes):  # from the end: the nodes since a mark are few, the graph large
        if node is last:
            return nodes[::-1]
        nodes.append(node)
    if last is not None:
        raise ValueError(f"{last} is not in the graph")
    return nodes[::-1]


def _statement_length(location) -> int:
    """How many lines the statement starting at ``location`` spans (1 when unknown)."""
    lines = []
    for offset in range(20):
        line = linecache.getline(location.file, location.line + offset)
        if not line:
            break
        lines.append(line)
        try:
            ast.parse("".join(lines).strip())
            return len(lines)
        except SyntaxError:
            continue
    return 1


def _condition_text(code: str) -> str:
    """The condition of an ``if``/``elif``/``while``/``assert`` line (``x.dim() == 3``), else the line."""
    source = code[2:] if code.startswith("elif ") else code
    if source.endswith(":"):
        source += " pass"
    try:
        statement = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        return code
    if isinstance(statement, (ast.If, ast.While, ast.Assert)):
        return ast.get_source_segment(source, statement.test) or code
    return code


def _line(location) -> str:
    if location is None:
        return "in forward"
    code = source_line(location)
    return f"`{code}`" if code else f"line {location.line}"


def _source(node: fx.Node) -> str:
    location = node.meta.get(LOCATION)
    return _line(location).strip("`") if location else node.name


@dataclass
class TracedProgram:
    """A traced forward, with the inputs bound to its placeholders."""

    root: nn.Module
    graph: fx.Graph
    placeholder_values: dict[str, Any]  # placeholder node name -> abstract input value

    @property
    def model_name(self) -> str:
        return type(self.root).__name__


def _is_constant(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def trace(model: nn.Module, bound: inspect.BoundArguments, propagator: Propagator, restore=None) -> TracedProgram:
    """Trace ``model`` with the abstract inputs ``bound`` to its forward's parameters.
    ``restore(modules)`` undoes what forward did to those modules, before a module whose
    tracing failed is analysed again by abstract execution."""
    signature, inputs = bound.signature, with_defaults(bound)
    ordered = [inputs[name] for name in signature.parameters]
    tracer = LazyTracer(propagator, ordered, restore)
    if tracer.is_leaf_module(model, ""):
        if has_user_hooks(model):
            raise TraceError(f"lazyfx does not follow the hooks of a bare {type(model).__name__} given as the model; "
                             f"wrap it in nn.Sequential", code=diagnostics.HOOK_NOT_FOLLOWED)
        return _leaf_program(model, bound)
    if is_wrapped(model):
        propagator.result.opaque[""] = WRAPPED
        return _leaf_program(model, bound)
    concrete = {
        name: value
        for name, value in inputs.items()
        if _is_constant(value) and signature.parameters[name].kind not in _VAR_KINDS
    }
    checkpoint = propagator.checkpoint()
    tracer.answer_isinstance_in(model)
    is_tensor, torch.is_tensor = torch.is_tensor, dry_run_is_tensor  # patches_restored also puts it back
    watcher = GeneratorWatcher(propagator.result, lambda: propagator.stepping[-1] if propagator.stepping else None,
                               tracer.first_calls_so_far, tracer.last_node)
    try:
        with _RealTensors(tracer, model), watcher:
            graph = tracer.trace(model, concrete_args=concrete or None)
    except RecursionError:  # too deep: recursion_room says so
        raise
    except Exception as exc:
        if isinstance(exc, AssertionError) and not tracer.assertion_not_about_shapes(exc):
            raise _trace_error(model, exc) from exc
        if not untraceable(exc) and not tracer.assertion_not_about_shapes(exc):
            raise exc if isinstance(exc, LazyFXError) else _trace_error(model, exc) from exc
        # forward itself cannot be traced: the whole model is one opaque node
        propagator.rollback(checkpoint, list(propagator.records))
        tracer.restore(model.modules())
        propagator.result.opaque[""] = untraceable_reason(exc)
        if isinstance(exc, DataDependentError) and exc.counted:
            propagator.result.refusals[""] = exc
        return _leaf_program(model, bound)
    finally:
        torch.is_tensor = is_tensor
        tracer.restore_isinstance()
        tracer.restore_outside()
    _drop_specialization_guards(graph)
    tracer.drop_unused_unpacking()
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    values = {node.name: value for node, value in zip(placeholders, ordered)}
    return TracedProgram(model, graph, values)


# Python frames one analysis may use: tracing a nested module takes about 8 frames per level
# (PyTorch's eager call 3), so 200 levels of nn.Sequential need some 1,400; the default limit of
# 1,000 would stop at about 120 levels; 4,000 allow about 500. A higher limit the user set stays.
ANALYSIS_RECURSION_LIMIT = 4000


@contextlib.contextmanager
def recursion_room() -> Iterator[None]:
    """Python's recursion limit at least :data:`ANALYSIS_RECURSION_LIMIT` within the block; a model
    nested deeper still is a :class:`TraceError` that says so, instead of a RecursionError deep
    inside torch.fx or a rule."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, ANALYSIS_RECURSION_LIMIT))
    try:
        yield
    except RecursionError:
        raise TraceError(
            f"the model nests calls deeper than lazyfx can follow: Python's recursion limit of "
            f"{sys.getrecursionlimit()} frames during the analysis is reached (tracing takes about 8 frames per "
            f"level of nested modules)",
            notes=["raise it with sys.setrecursionlimit() before calling lazyfx, or nest fewer levels (or, if "
                   "forward calls itself without end, stop the recursion)"],
        ) from None
    finally:
        sys.setrecursionlimit(previous)


# One analysis at a time in the process: torch.fx patches nn.Module's methods process-wide
# while it traces (its patcher is a global), and abstract execution patches Tensor.__bool__.
ANALYSIS_LOCK = threading.RLock()

# What torch.fx and lazyfx patch while an analysis runs.
_PATCHED = ((nn.Module, "__call__"), (nn.Module, "__getattr__"), (torch.Tensor, "__bool__"),
            (fx_symbolic_trace, "_create_wrapped_func"), (torch, "is_tensor"), (torch.Tensor, "numpy"))
_ABSENT = object()


@contextlib.contextmanager
def patches_restored() -> Iterator[None]:
    """Within the block, under :data:`ANALYSIS_LOCK`: whatever is raised (KeyboardInterrupt
    included, even while torch.fx reverts its own patches), the methods torch.fx and lazyfx
    patch, the functions ``torch.fx.wrap`` patches into modules and torch.fx's current
    patcher are as they were on entry when the block is left."""
    with ANALYSIS_LOCK:
        methods = [(owner, name, owner.__dict__.get(name, _ABSENT)) for owner, name in _PATCHED]
        wrapped = [(frame, name, frame.get(name, _ABSENT))
                   for (_, name), frame in list(fx_symbolic_trace._wrapped_fns_to_patch.items())]
        patcher = fx_symbolic_trace.CURRENT_PATCHER
        try:
            yield
        finally:
            leftover = fx_symbolic_trace.CURRENT_PATCHER
            if leftover is not None and leftover is not patcher:  # interrupted while torch.fx reverted
                for patch in reversed(leftover.patches_made):  # nn.Module's methods, math's functions...
                    with contextlib.suppress(KeyError):
                        patch.revert()
            for owner, name, original in methods:
                if owner.__dict__.get(name, _ABSENT) is not original:
                    if original is _ABSENT:
                        delattr(owner, name)
                    else:
                        setattr(owner, name, original)
            for frame, name, original in wrapped:
                if frame.get(name, _ABSENT) is not original:
                    if original is _ABSENT:
                        del frame[name]
                    else:
                        frame[name] = original
            fx_symbolic_trace.CURRENT_PATCHER = patcher


def _drop_specialization_guards(graph: fx.Graph) -> None:
    """Remove the guards torch.fx adds for each specialized argument (``_assert_is_none(mask_1,
    ...)``, ``torch._assert(scale_1 == 2, ...)``): the values are the user's own constants, so
    the guards always hold, and they are not operations of the model."""
    for node in reversed(list(graph.nodes)):
        if (
            node.op == "call_function"
            and node.target in (_assert_is_none, torch._assert)
            and len(node.args) > 1
            and isinstance(node.args[1], str)
            and "has been specialized to have value" in node.args[1]
        ):
            checked = node.args[0]
            graph.erase_node(node)
            if isinstance(checked, fx.Node) and checked.op == "call_function" and not checked.users:
                graph.erase_node(checked)  # the ``scale_1 == 2`` comparison


def _leaf_program(model: nn.Module, bound: inspect.BoundArguments) -> TracedProgram:
    """A graph that calls ``model`` itself with the inputs the user gave (``*args`` and
    ``**kwargs`` spread, defaults left to forward): for a bare lazy module, or a forward
    that cannot be traced."""
    graph = fx.Graph()
    values: dict[str, Any] = {}

    def placeholder(name: str, value: Any) -> fx.Node:
        node = graph.placeholder(name)
        values[node.name] = value
        return node

    names = list(bound.signature.parameters)
    args = tuple(placeholder(names[min(i, len(names) - 1)], v) for i, v in enumerate(bound.args))
    kwargs = {k: placeholder(k, v) for k, v in bound.kwargs.items()}
    graph.output(graph.call_module("", args, kwargs))
    return TracedProgram(model, graph, values)


def _trace_error(model: nn.Module, exc: Exception) -> LazyFXError:
    if isinstance(exc, AssertionError):  # the user's own assert, decided false from the shapes
        return ShapeError(
            f"an assertion in forward fails for these inputs: {exc}" if str(exc) else
            "an assertion in forward fails for these inputs",
            location=location_from_traceback(exc),
        )
    reason = first_line(exc) or type(exc).__name__
    notes = []
    if "control flow" in reason or "iterate" in reason or "len(" in reason:
        notes.append(
            "torch.fx traces with placeholders instead of tensors, so Python control flow on "
            "tensor values cannot be followed; move that logic into a submodule or "
            "make it independent of the input"
        )
    return TraceError(
        f"torch.fx could not trace {type(model).__name__}.forward: {type(exc).__name__}: {reason}",
        location=location_from_traceback(exc),
        notes=notes,
    )
