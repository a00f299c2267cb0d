"""Propagate: an abstract value (symbolic shape and dtype) for every node.

A :class:`Propagator` computes each node's value as soon as the node exists:
placeholders take the user's input specs, ``get_attr`` the shapes of the
model's tensors, and every call goes to its rule in the registry (or to the
meta-kernel fallback). A lazy module's call goes to its resolver first (what
the input determines) and then to its eager class's rule. The tracer drives
it while tracing, so that Python control flow on shapes can be decided from
the values; :func:`propagate` completes and collects them. Conditions that
rules could not decide are recorded per node.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator, Optional

import sympy
import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.parameter import is_lazy

import lazyfx.rules.all  # noqa: F401  (registers every rule)
from lazyfx.analysis.fallback import abstract
from lazyfx.analysis.fallback.generic import resolve_generic
from lazyfx.analysis.fallback.meta import RULE_NAME as FALLBACK
from lazyfx.analysis.fallback.meta import MetaKernelFallback
from lazyfx.analysis.records import CALLERS, LOCATION, Decision, LazyCall, NodeRecord, Provenance, call_notes
from lazyfx.core import diagnostics
from lazyfx.core.checks import Recorder, assume, require
from lazyfx.core.constraints import Constraints
from lazyfx.core.diagnostics import first_line, location_from_stack_trace
from lazyfx.core.registry import RESOLVERS, RULES, Method, key_name, lookup_by_class
from lazyfx.core.values import TensorMeta, UninitializedTensor, analysed_dtype, map_values, tensors_in
from lazyfx.errors import LazyFXError, UnsupportedOpError
from lazyfx.rules.lazy import ModuleView, is_lazy_module, is_state, read_attribute, registered_submodule

if TYPE_CHECKING:
    from lazyfx.analysis.trace import TracedProgram

@dataclass
class Propagation:
    nodes: list[NodeRecord] = field(default_factory=list)
    lazy_calls: list[LazyCall] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    opaque: dict[str, str] = field(default_factory=dict)  # submodule path -> why it was not traced
    opaque_draws: dict[str, list] = field(default_factory=dict)  # node -> random draws abstract execution saw
    # random draws forward's own code made for real while it was traced (concrete arguments):
    # (the last graph node before it, Draw), in order (see randomness.GeneratorWatcher)
    real_draws: list[tuple] = field(default_factory=list)
    seeded_nodes: dict[str, str] = field(default_factory=dict)  # node -> a drawing ATen op its analysis ran
    # submodule path -> the error of a count (how many elements a mask selects) that stopped its
    # trace: what the user reads where abstract execution finds that something depends on it
    refusals: dict[str, LazyFXError] = field(default_factory=dict)
    output: Any = None
    recorder: Recorder = field(default_factory=Recorder)
    fallback: Optional[MetaKernelFallback] = None  # created at the first node without a rule
    hints: dict[str, int] = field(default_factory=dict)  # the fallback's representative sizes, where given

    def meta_kernels(self) -> MetaKernelFallback:
        if self.fallback is None:
            self.fallback = MetaKernelFallback(self.recorder.constraints, self.hints)
        return self.fallback


class Propagator:
    """Computes node values one at a time, each as soon as its node exists."""

    def __init__(self, root: nn.Module, constraints: Constraints, hints: Optional[dict[str, int]] = None) -> None:
        self.root = root
        self.result = Propagation(recorder=Recorder(constraints), hints=dict(hints or {}))
        self.placeholder_values: dict[str, Any] = {}
        self.records: dict[fx.Node, NodeRecord] = {}
        self._submodules: dict[str, nn.Module] = {}  # get_submodule walks the path: once per target
        self._uninitialized: set[fx.Node] = set()  # get_attr nodes of lazy tensors not initialized yet
        self.stepping: list[str] = []  # the nodes being analysed (innermost last): not forward's own code

    def release(self) -> None:
        """The meta-kernel fallback's ShapeEnv and FakeTensorMode let go (see
        :meth:`MetaKernelFallback.release`); the propagation's results stay."""
        if self.result.fallback is not None:
            self.result.fallback.release()

    def submodule(self, target: str) -> nn.Module:
        module = self._submodules.get(target)
        if module is None:
            module = self._submodules[target] = registered_submodule(self.root, target)
        return module

    def called_at(self, target: str, module: nn.Module) -> None:
        """``module`` is the one a call_module node at ``target`` runs (the tracer saw it called)."""
        self._submodules[target] = module

    def checkpoint(self) -> tuple:
        result = self.result
        specialized = len(result.fallback.specialized) if result.fallback else 0
        return (len(result.lazy_calls), len(result.decisions), specialized, result.recorder.checkpoint(),
                len(result.real_draws))

    def rollback(self, checkpoint: tuple, erased: list[fx.Node]) -> None:
        """Undo what was learned since ``checkpoint`` while tracing the now ``erased`` nodes."""
        lazy_calls, decisions, specialized, recorded, real_draws = checkpoint
        result = self.result
        del result.lazy_calls[lazy_calls:]
        del result.real_draws[real_draws:]
        del result.decisions[decisions:]
        if result.fallback:
            del result.fallback.specialized[specialized:]
        result.recorder.rollback(recorded)
        for node in erased:
            self.records.pop(node, None)
            result.seeded_nodes.pop(node.name, None)

    def value(self, node: fx.Node) -> Any:
        if node not in self.records:
            self.step(node)
        return self.records[node].value

    def step(self, node: fx.Node) -> NodeRecord:
        name, op, meta = node.name, node.op, node.meta
        self.stepping.append(name)
        try:
            args = fx.node.map_arg(node.args, self.value)
            kwargs = fx.node.map_arg(node.kwargs, self.value) if node.kwargs else {}
            location = meta.get(LOCATION) or location_from_stack_trace(node.stack_trace)
            module = self.submodule(node.target) if op == "call_module" else None
            module_path = node.target if op == "call_module" else _enclosing_module(node)
            op_name = _op_name(module, node)
            result = self.result
            with result.recorder.at(name):
                try:
                    value, rule_name, provenance, key = self._dispatch(node, module, args, kwargs, location)
                    value = _simplified(value, result.recorder.constraints)
                except LazyFXError as exc:
                    raise exc.with_context(location=location, module_path=module_path, op=op_name, node=name,
                                           callers=call_notes(meta.get(CALLERS, ()))) from exc.__cause__
                except RecursionError:  # the model nests too deep: the analysis says so (trace.recursion_room)
                    raise
                except Exception as exc:  # a rule that cannot handle these arguments
                    raise UnsupportedOpError(
                        f"the shape rule for {op_name} could not handle its arguments: {type(exc).__name__}: {exc}",
                        code=diagnostics.RULE_FAILED,
                        location=location,
                        module_path=module_path,
                        node=name,
                    ) from exc
            record = NodeRecord(
                name=name,
                op=op,
                target=op_name,
                module_path=module_path,
                inputs=tensors_in((args, kwargs) if kwargs else args),
                value=value,
                rule=rule_name,
                location=location,
                key=key,
                sources=tuple([n.name for n in node.all_input_nodes]),
                callers=meta.get(CALLERS, ()),
                provenance=provenance,
            )
            self.records[node] = record
            return record
        finally:
            self.stepping.pop()

    def _dispatch(self, node, module, args, kwargs, location) -> tuple[Any, Optional[str], Provenance, Any]:
        """(value, rule name, provenance, registry key) of one node (``module``: the one a
        call_module node calls)."""
        op = node.op
        if op == "placeholder":
            return self.placeholder_values[node.name], None, Provenance.GIVEN, None
        if op == "output":
            return args[0], None, Provenance.GIVEN, None
        if op == "get_attr":
            value = _get_attr(self.root, node.target, self.result.lazy_calls)
            if isinstance(value, UninitializedTensor):
                self._uninitialized.add(node)
            return value, None, Provenance.GIVEN, None
        if self._uninitialized and not self._uninitialized.isdisjoint(node.all_input_nodes):
            return uninitialized_query(node, args, kwargs), None, Provenance.GIVEN, None
        if op == "call_module":
            return _call_module(module, node, args, kwargs, self.result, location)
        key = node.target if op == "call_function" else Method(node.target)
        rule = RULES.get(key)
        if rule is None:
            call = node.target if op == "call_function" else _method_caller(node.target)
            value = self.result.meta_kernels().run(
                call, args, kwargs, key_name(key), same_as=_pure(node, args, key),
                reusable=lambda: node.name not in self.result.seeded_nodes,
                # a Python function (marked torch.fx.wrap) may call modules; PyTorch's own ops do not
                within=real_modules if _may_call_modules(node, args) else contextlib.nullcontext)
            return value, FALLBACK, Provenance.META_KERNEL, key
        return _keeping_values(key, rule.fn(*args, **kwargs), args), rule.name, Provenance.RULE, key


def _pure(node: fx.Node, args: tuple, key: Any) -> Any:
    """``key`` where the node's operation is PyTorch's own (a tensor method, an operator, a
    function of torch's), whose result depends on its arguments alone; else None."""
    if node.op == "call_method":
        return key if args and isinstance(args[0], TensorMeta) else None
    target = node.target
    if inspect.isbuiltin(target) or isinstance(target, torch._ops.OpOverload):
        return key
    module = getattr(target, "__module__", None) or ""
    return key if inspect.isfunction(target) and (module == "torch" or module.startswith("torch.")) else None


def _may_call_modules(node: fx.Node, args: tuple) -> bool:
    """Whether running ``node`` could call an nn.Module (and so needs :func:`real_modules`):
    not a tensor method, nor a builtin or ATen operator."""
    if node.op == "call_method":
        return not (args and isinstance(args[0], TensorMeta))
    return not (inspect.isbuiltin(node.target) or isinstance(node.target, torch._ops.OpOverload))


# Ops whose output holds exactly the input's values (all of them, none new): an index tensor's
# known smallest and largest values stay known through them (torch.arange(T).unsqueeze(0)).
_SAME_VALUES = {
    torch.unsqueeze, torch.reshape, torch.flatten, torch.squeeze, torch.clone,
    *(Method(name) for name in ("unsqueeze", "view", "reshape", "flatten", "squeeze", "expand", "expand_as",
                                "contiguous", "clone", "detach", "to", "long", "int", "repeat")),
}


def _keeping_values(key: Any, value: Any, args: tuple) -> Any:
    source = args[0] if args else None
    if (key in _SAME_VALUES and isinstance(source, TensorMeta) and source.value_range is not None
            and isinstance(value, TensorMeta) and value.value_range is None
            and value.dtype in (torch.int64, torch.int32)):
        return replace(value, value_range=source.value_range)
    return value


def propagate(program: "TracedProgram", propagator: Propagator) -> Propagation:
    """Every node's value, in graph order (computing those tracing did not)."""
    propagator.placeholder_values.update(program.placeholder_values)
    result = propagator.result
    result.nodes = [propagator.records.get(n) or propagator.step(n) for n in program.graph.nodes]
    result.output = result.nodes[-1].value if result.nodes else None
    return result


GENERIC_INIT = "generic: the module's own initialization"
GENERIC = f"{GENERIC_INIT} + meta kernel"

# nn.Module's methods that torch.fx patches while tracing (attribute reads and calls become
# graph nodes): the fallback, generic resolution and abstract execution call modules for real.
_MODULE_METHODS = {name: getattr(nn.Module, name) for name in ("__getattr__", "__call__")}


@contextlib.contextmanager
def real_modules() -> Iterator[None]:
    """nn.Module's own ``__getattr__``/``__call__`` within the block (a no-op outside tracing)."""
    patched = {name: getattr(nn.Module, name) for name in _MODULE_METHODS}
    if all(patched[n] is m for n, m in _MODULE_METHODS.items()):
        yield
        return
    for name, original in _MODULE_METHODS.items():
        setattr(nn.Module, name, original)
    try:
        yield
    finally:
        for name, method in patched.items():
            setattr(nn.Module, name, method)
ABSTRACT = "abstract execution: forward on meta tensors"


def _enclosing_module(node: fx.Node) -> Optional[str]:
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = next(reversed(stack.values()))
        return path[0] if isinstance(path, tuple) else path
    return None


def _op_name(module: Optional[nn.Module], node: fx.Node) -> str:
    if node.op == "call_module":
        return f"{type(module).__name__}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        return key_name(node.target)
    if node.op == "get_attr":
        return f"self.{node.target}"
    return node.op


def _method_caller(name: str):
    def call(self, *args, **kwargs):
        return getattr(self, name)(*args, **kwargs)

    return call


def _get_attr(root: nn.Module, target: str, lazy_calls: list[LazyCall]) -> Any:
    owner: Any = root
    path, _, name = target.rpartition(".")
    for part in path.split(".") if path else ():
        owner = read_attribute(owner, part)
    value = read_attribute(owner, name)
    if isinstance(value, torch.Tensor):
        # materialize(dtype=) analyses the model after .to(dtype): its parameters and buffers, not
        # its plain tensor attributes, are in that dtype
        dtype = analysed_dtype(value.dtype) if isinstance(owner, nn.Module) and is_state(owner, name) else value.dtype
        if is_lazy(value):  # its shape exists once its module has been called, as in a dry run
            for call in lazy_calls:
                if call.path == path and name in call.resolution.parameter_shapes:
                    return TensorMeta(tuple(call.resolution.parameter_shapes[name]), dtype)
            return UninitializedTensor(f"self.{target}", dtype, value.requires_grad)
        return TensorMeta(tuple(int(s) for s in value.shape), dtype)
    return value


# What an UninitializedParameter answers before its module is called: nothing about its shape.
_UNINITIALIZED_ATTRIBUTES = {
    "dtype": lambda t: t.dtype,
    "device": lambda t: torch.device("meta"),  # as for every tensor: wherever the input is
    "requires_grad": lambda t: t.requires_grad,
}
_UNINITIALIZED_METHODS = {
    "is_floating_point": lambda t: t.dtype.is_floating_point,
    "is_complex": lambda t: t.dtype.is_complex,
}


def uninitialized_query(node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """The answer of a node that reads a lazy tensor before its module's first call
    (``self.proj.weight.dtype``, ``.is_floating_point()``), or LFX020 for one that needs its
    shape or values."""
    tensor = args[0] if args else None
    if isinstance(tensor, UninitializedTensor):
        if node.op == "call_function" and node.target is getattr and args[1] in _UNINITIALIZED_ATTRIBUTES:
            return _UNINITIALIZED_ATTRIBUTES[args[1]](tensor)
        if node.op == "call_method" and node.target in _UNINITIALIZED_METHODS and len(args) == 1 and not node.kwargs:
            return _UNINITIALIZED_METHODS[node.target](tensor)
    else:
        found: list[UninitializedTensor] = []
        map_values(lambda v: found.append(v) if isinstance(v, UninitializedTensor) else None, (args, kwargs))
        tensor = found[0]
    module = tensor.name.removeprefix("self.").rpartition(".")[0]
    raise UnsupportedOpError(
        f"forward reads the uninitialized lazy tensor {tensor.name} before self.{module} is called: its dtype "
        f"is known, but its shape is only known once its module has been called"
    )


def _call_module(module: nn.Module, node, args, kwargs, result: Propagation, location):
    lazy = is_lazy_module(module)
    if node.target in result.opaque or lazy and _lazy_with_lazy_children(module):  # abstract execution
        try:
            with real_modules():
                found = abstract.execute(module, node.target, args, kwargs, result.meta_kernels())
        except LazyFXError as exc:
            refusal = result.refusals.get(node.target)
            if refusal is not None and isinstance(exc, UnsupportedOpError):
                refusal.final = True
                raise refusal from refusal.__cause__
            exc.final = True  # the verdict of the last resort: no enclosing module retries
            raise
        for sub, lazy_module, resolution in found.lazy:
            path = f"{node.target}.{sub}" if node.target and sub else node.target or sub
            result.lazy_calls.append(LazyCall(path, lazy_module, resolution, node.name, location))
        result.opaque_draws[node.name] = found.draws
        for sym, rejection in found.rejected.items():  # it runs only below some size: say so
            _limit(node.target or "<root>", sym, rejection)
        return found.output, ABSTRACT, Provenance.ABSTRACT_EXECUTION, type(module)
    if lazy:
        resolver = RESOLVERS.get(type(module))
        if resolver is None:  # a user's or a third-party lazy module: run its own initialization
            with real_modules():
                resolution, value, rule_name = resolve_generic(module, node.target, args, kwargs,
                                                               result.meta_kernels())
            result.lazy_calls.append(LazyCall(node.target, module, resolution, node.name, location, _held(module)))
            rule_text = f"{GENERIC_INIT} + {rule_name}" if rule_name else GENERIC
            return value, rule_text, Provenance.GENERIC_INIT, type(module)
        resolution = resolver.fn(module, *args, **kwargs)
        result.lazy_calls.append(LazyCall(node.target, module, resolution, node.name, location, _held(module)))
        eager = module.cls_to_become
        rule = lookup_by_class(RULES, eager)
        if rule is None:  # pragma: no cover - every built-in lazy class has an eager rule
            raise UnsupportedOpError(f"no shape rule for {eager.__name__}")
        view = ModuleView(module, resolution.arguments, eager)
        return rule.fn(view, *args, **kwargs), f"{resolver.name} + {rule.name}", Provenance.LAZY_RESOLVER, resolver.key
    rule = lookup_by_class(RULES, type(module))
    if rule is None:
        value = result.meta_kernels().run_module(module, args, kwargs, key_name(type(module)), reuse=True,
                                                 reusable=lambda: node.name not in result.seeded_nodes,
                                                 within=real_modules)
        return value, FALLBACK, Provenance.META_KERNEL, type(module)
    return rule.fn(ModuleView(module), *args, **kwargs), rule.name, Provenance.RULE, rule.key


def _lazy_with_lazy_children(module: nn.Module) -> bool:
    """Whether a lazy module has no built-in resolver and lazy submodules: its forward
    initializes them in a dry run, so it runs by abstract execution (the meta-kernel fallback
    cannot run a lazy submodule's initialization)."""
    return type(module) not in RESOLVERS and any(is_lazy_module(sub) for sub in list(module.modules())[1:])


def _held(module: nn.Module) -> frozenset:
    return frozenset(id(t) for t in (*module._parameters.values(), *module._buffers.values())
                     if t is not None and is_lazy(t))


def _simplified(value: Any, constraints: Constraints) -> Any:
    """``value`` with its formulas simplified under the symbols' ``multiple_of``."""
    if not constraints.has_multiples:
        return value

    def leaf(v):
        if isinstance(v, TensorMeta):
            shape = tuple(constraints.simplify(d) for d in v.shape)
            return v if shape == v.shape else replace(v, shape=shape)
        return constraints.simplify(v)

    return map_values(leaf, value)


def _limit(path: str, sym: sympy.Symbol, rejection: abstract.Rejection) -> None:
    """A size from which a module analysed by abstract execution stops running. Where its own
    code raises at those concrete sizes (more positions than a position embedding has), that
    is a requirement of the model, found at the other symbols' representative sizes;
    otherwise the analysis only holds below it."""
    others = ", ".join(f"{s}={v}" for s, v in sorted(rejection.others.items(), key=str))
    at = f"{sym}={rejection.size}" + (f" (with {others})" if others else "")
    if rejection.by_pytorch:
        cause = rejection.error.__cause__
        detail = f"{type(cause).__name__}: {first_line(cause)}" if cause else rejection.error.message
        require(sympy.Lt(sym, rejection.size), f"'{path}' rejects {at}: {detail}")
    else:
        assume(sympy.Lt(sym, rejection.size), f"'{path}' failed when abstract execution ran it at {at}; its "
                                              f"analysis holds for sizes below that")
