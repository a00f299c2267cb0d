"""Pass 1, trace: the model's forward as a torch.fx graph.

Lazy modules stay leaves (their forward would touch uninitialized
parameters), as do PyTorch's own modules; containers (Sequential, ModuleList,
ModuleDict) and user modules are traced through, so every node carries the
qualified path of the module it calls. Stack traces are recorded so that
diagnostics point at the user's ``file:line``.

Forward arguments the user does not give are specialized to their defaults
(``mask=None`` takes the ``mask is None`` branch), as are Python constants
the user gives, so that control flow on them traces.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx._symbolic_trace import _assert_is_none

from lazyfx.diagnostics import caller_location, location_from_traceback
from lazyfx.errors import LazyFXError, SpecError, TraceError
from lazyfx.resolvers import is_lazy_module

_VAR_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


LOCATION = "lazyfx_location"  # node.meta key: the user's file:line that created the node


class LazyTracer(fx.Tracer):
    """A torch.fx tracer that keeps lazy modules as leaves and records, for each node,
    the user's line that created it (the innermost frame outside torch and lazyfx;
    much cheaper than fx's ``record_stack_traces``, which formats whole stacks)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_lazy_module(m) or super().is_leaf_module(m, module_qualified_name)

    def create_node(self, kind: str, *args, **kwargs) -> fx.Node:
        node = super().create_node(kind, *args, **kwargs)
        if kind not in ("placeholder", "output"):  # those are made outside forward's body
            node.meta[LOCATION] = caller_location()
        return node


@dataclass
class TracedProgram:
    """A traced forward, with the inputs bound to its placeholders."""

    root: nn.Module
    graph: fx.Graph
    placeholder_values: dict[str, Any]  # placeholder node name -> abstract input value

    @property
    def model_name(self) -> str:
        return type(self.root).__name__


def bind_inputs(model: nn.Module, args: tuple, kwargs: dict) -> tuple[inspect.Signature, dict[str, Any]]:
    """Match the user's inputs to ``model.forward``'s parameters (defaults filled in)."""
    signature = inspect.signature(model.forward)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        params = ", ".join(str(p) for p in signature.parameters.values())
        raise SpecError(f"the inputs do not fit {type(model).__name__}.forward({params}): {exc}") from None
    bound.apply_defaults()
    return signature, dict(bound.arguments)


def _is_constant(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def trace(model: nn.Module, inputs: dict[str, Any], signature: inspect.Signature) -> TracedProgram:
    """Trace ``model`` with ``inputs`` (forward parameter name -> abstract value)."""
    tracer = LazyTracer()
    if tracer.is_leaf_module(model, ""):
        return _leaf_program(model, inputs, signature)
    concrete = {
        name: value
        for name, value in inputs.items()
        if _is_constant(value) and signature.parameters[name].kind not in _VAR_KINDS
    }
    try:
        graph = tracer.trace(model, concrete_args=concrete or None)
    except LazyFXError:
        raise
    except Exception as exc:
        raise _trace_error(model, exc) from exc
    _drop_specialization_guards(graph)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    names = [p for p in signature.parameters]
    values = {}
    for node, name in zip(placeholders, names):
        values[node.name] = inputs[name]
    return TracedProgram(model, graph, values)


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


def _leaf_program(model: nn.Module, inputs: dict[str, Any], signature: inspect.Signature) -> TracedProgram:
    """A graph that calls ``model`` itself: for a bare lazy (or torch.nn) module given as the model."""
    graph = fx.Graph()
    args, kwargs, values = [], {}, {}
    for name, param in signature.parameters.items():
        node = graph.placeholder(name)
        values[node.name] = inputs[name]
        if param.kind == inspect.Parameter.KEYWORD_ONLY:
            kwargs[name] = node
        else:
            args.append(node)
    graph.output(graph.call_module("", tuple(args), kwargs))
    return TracedProgram(model, graph, values)


def _trace_error(model: nn.Module, exc: Exception) -> TraceError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    notes = []
    if "control flow" in reason or "iterate" in reason or "len(" in reason:
        notes.append(
            "torch.fx traces with placeholders instead of tensors, so Python control flow on "
            "tensor values or shapes cannot be followed; move that logic into a submodule or "
            "make it independent of the input"
        )
    return TraceError(
        f"torch.fx could not trace {type(model).__name__}.forward: {type(exc).__name__}: {reason}",
        location=location_from_traceback(exc),
        notes=notes,
    )
