"""Pass 2, propagate: an abstract value (symbolic shape and dtype) for every node.

One walk over ``graph.nodes`` dispatching on ``node.op``: placeholders take
the user's input specs, ``get_attr`` the shapes of the model's tensors, and
every call goes to its rule in the registry. A lazy module's call goes to its
resolver first (what the input determines) and then to its eager class's
rule. Conditions that rules could not decide are recorded per node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.parameter import is_lazy

from lazyfx import diagnostics
from lazyfx.checks import Recorder
from lazyfx.constraints import Constraints
from lazyfx.diagnostics import SourceLocation, location_from_stack_trace
from lazyfx.errors import LazyFXError, UnsupportedOpError
from lazyfx.fallback import RULE_NAME as FALLBACK
from lazyfx.fallback import MetaKernelFallback
from lazyfx.generic import resolve_generic
from lazyfx.passes.trace import LOCATION, TracedProgram
from lazyfx.registry import RESOLVERS, RULES, Method, Rule, ensure_loaded, key_name
from lazyfx.resolvers import Resolution, ResolvedModule, is_lazy_module
from lazyfx.values import TensorMeta, tensors_in


@dataclass
class NodeRecord:
    """What propagation learned about one node."""

    name: str
    op: str  # fx opcode
    target: str  # what is called, as the report shows it
    module_path: Optional[str]
    inputs: list[TensorMeta]
    value: Any
    rule: Optional[str]
    location: Optional[SourceLocation]
    key: Any = None  # the registry key the node dispatched on

    @property
    def fallback(self) -> bool:
        """Whether PyTorch's meta kernel computed this node (no lazyfx rule)."""
        return self.rule == FALLBACK


@dataclass
class LazyCall:
    """One call of a lazy module and what its input resolved."""

    path: str
    module: nn.Module
    resolution: Resolution
    node: str
    location: Optional[SourceLocation]


@dataclass
class Propagation:
    nodes: list[NodeRecord] = field(default_factory=list)
    lazy_calls: list[LazyCall] = field(default_factory=list)
    output: Any = None
    recorder: Recorder = field(default_factory=Recorder)
    fallback: Optional[MetaKernelFallback] = None  # created at the first node without a rule

    def meta_kernels(self) -> MetaKernelFallback:
        if self.fallback is None:
            self.fallback = MetaKernelFallback(self.recorder.constraints)
        return self.fallback


def propagate(program: TracedProgram, constraints: Constraints) -> Propagation:
    ensure_loaded()
    result = Propagation(recorder=Recorder(constraints))
    env: dict[fx.Node, Any] = {}
    for node in program.graph.nodes:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        location = node.meta.get(LOCATION) or location_from_stack_trace(node.stack_trace)
        module_path = node.target if node.op == "call_module" else _enclosing_module(node)
        with result.recorder.at(node.name):
            try:
                value, rule_name, key = _dispatch(program, node, args, kwargs, result, location)
            except LazyFXError as exc:
                raise exc.with_context(
                    location=location, module_path=module_path, op=_op_name(program, node), node=node.name
                ) from exc.__cause__
            except Exception as exc:  # a rule that cannot handle these arguments
                raise UnsupportedOpError(
                    f"the shape rule for {_op_name(program, node)} could not handle its arguments: "
                    f"{type(exc).__name__}: {exc}",
                    code=diagnostics.RULE_FAILED,
                    location=location,
                    module_path=module_path,
                    node=node.name,
                ) from exc
        env[node] = value
        if node.op == "output":
            result.output = value
        result.nodes.append(
            NodeRecord(
                name=node.name,
                op=node.op,
                target=_op_name(program, node),
                module_path=module_path,
                inputs=tensors_in((args, kwargs)),
                value=value,
                rule=rule_name,
                location=location,
                key=key,
            )
        )
    return result


GENERIC = "generic: the module's own initialization + meta kernel"


def _enclosing_module(node: fx.Node) -> Optional[str]:
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1]
        return path[0] if isinstance(path, tuple) else path
    return None


def _op_name(program: TracedProgram, node: fx.Node) -> str:
    if node.op == "call_module":
        module = program.root.get_submodule(node.target)
        return f"{type(module).__name__}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        return key_name(node.target)
    if node.op == "get_attr":
        return f"self.{node.target}"
    return node.op


def _dispatch(program, node, args, kwargs, result: Propagation, location) -> tuple[Any, Optional[str], Any]:
    """(value, rule name, registry key) of one node."""
    op = node.op
    if op == "placeholder":
        return program.placeholder_values[node.name], None, None
    if op == "output":
        return args[0], None, None
    if op == "get_attr":
        return _get_attr(program.root, node.target), None, None
    if op == "call_module":
        return _call_module(program.root.get_submodule(node.target), node, args, kwargs, result, location)
    key = node.target if op == "call_function" else Method(node.target)
    rule = RULES.get(key)
    if rule is None:
        call = node.target if op == "call_function" else _method_caller(node.target)
        return result.meta_kernels().run(call, args, kwargs, key_name(key)), FALLBACK, key
    return rule.fn(*args, **kwargs), rule.name, key


def _method_caller(name: str):
    def call(self, *args, **kwargs):
        return getattr(self, name)(*args, **kwargs)

    return call


def _get_attr(root: nn.Module, target: str) -> Any:
    owner_path, _, name = target.rpartition(".")
    owner = root.get_submodule(owner_path)
    value = getattr(owner, name)
    if isinstance(value, torch.Tensor):
        if is_lazy(value):
            raise UnsupportedOpError(
                f"forward reads the uninitialized lazy tensor self.{target} directly; its shape is only "
                f"known once its module has been called"
            )
        return TensorMeta(tuple(int(s) for s in value.shape), value.dtype)
    return value


def _module_rule(module_class: type) -> Optional[Rule]:
    """The rule of the nearest registered class in the MRO (subclasses behave like their base)."""
    for cls in module_class.__mro__:
        rule = RULES.get(cls)
        if rule is not None:
            return rule
    return None


def _call_module(module: nn.Module, node, args, kwargs, result: Propagation, location):
    if is_lazy_module(module):
        resolver = RESOLVERS.get(type(module))
        if resolver is None:  # a user's or a third-party lazy module: run its own initialization
            resolution, value = resolve_generic(module, node.target, args, kwargs, result.meta_kernels())
            result.lazy_calls.append(LazyCall(node.target, module, resolution, node.name, location))
            return value, GENERIC, type(module)
        resolution = resolver.fn(module, *args, **kwargs)
        result.lazy_calls.append(LazyCall(node.target, module, resolution, node.name, location))
        eager = module.cls_to_become
        rule = _module_rule(eager)
        if rule is None:  # pragma: no cover - every built-in lazy class has an eager rule
            raise UnsupportedOpError(f"no shape rule for {eager.__name__}")
        view = ResolvedModule(module, resolution.arguments)
        return rule.fn(view, *args, **kwargs), f"{resolver.name} + {rule.name}", resolver.key
    rule = _module_rule(type(module))
    if rule is None:
        value = result.meta_kernels().run_module(module, args, kwargs, key_name(type(module)))
        return value, FALLBACK, type(module)
    return rule.fn(module, *args, **kwargs), rule.name, rule.key

