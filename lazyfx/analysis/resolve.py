"""Resolve: one answer per lazy module, from all of its call sites.

A lazy module called at several sites must be resolved the same way at each
(PyTorch would initialize it at the first and fail at the next): sites that
provably disagree are an error naming both; sites that agree only for some
inputs add a condition to the input domain. Lazy modules are listed in
first-call order, the order in which a dry run would initialize them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch.nn as nn

from lazyfx.analysis.fallback.generic import UnknownSize
from lazyfx.analysis.propagate import Propagation
from lazyfx.analysis.records import LazyCall
from lazyfx.core import diagnostics
from lazyfx.core.checks import Recorder, equal, require_equal
from lazyfx.core.diagnostics import SourceLocation
from lazyfx.core.symbolic import DimExpr, fmt, free_symbols, is_concrete
from lazyfx.errors import ResolutionError
from lazyfx.rules.lazy import Resolution, is_lazy_module


@dataclass
class LazyModuleRecord:
    """How one lazy module resolves: an entry of ``report.lazy``.

    Attributes:
        path: The module's path in the model (``"head"``; ``""`` for a bare
            lazy module).
        lazy_class: Its class's name (``"LazyLinear"``).
        eager_class: The name of the class it becomes (``"Linear"``): its
            ``cls_to_become``, or its own class when it has none.
        resolution: What its input determines; None when forward never
            calls it.
        call_sites: The lines of your code that call it, in call order (each
            with ``file`` and ``line``; None when unknown).
        nodes: The names of the graph nodes that call it (for a lazy
            container, which is traced through, the node of its first input).
        specialized_by: Why its shapes hold for one input size only: the
            meta-kernel specializations upstream of a call (LFX023). Such a
            module is not materialized.
        reached_in_training: For a module forward does not call, whether it
            does in training mode (the model being in eval mode): an
            auxiliary classifier behind ``if self.training``.
        reached_in_eval: For a module forward does not call, whether it does
            in eval mode (the model being in training mode): a calibration
            head behind ``if not self.training``.
        used_through: For a module forward does not call, the lazy module
            called with its parameters swapped in (``torch.func.functional_call``,
            tensordict's ``to_module``), if any.
        draws_before: The random draws forward makes after the previous lazy
            module's first call and before this one's (dropout in training
            mode, noise), in order: a dry run initializes this module after
            them, so materialize replays them first.

    Examples:
        >>> record = lazyfx.infer(Net(), ("B", 3, "H", "W")).lazy["head"]
        >>> record.lazy_class, record.eager_class, record.nodes
        ('LazyLinear', 'Linear', ['head'])
        >>> record.call_sites[0].line
        25
        >>> record.resolution.parameter_shapes["bias"]
        (10,)
    """

    path: str
    lazy_class: str
    eager_class: str
    resolution: Optional[Resolution]  # None when the module is never called
    call_sites: list[Optional[SourceLocation]] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    specialized_by: list[str] = field(default_factory=list)  # fallback specializations upstream of a call
    reached_in_training: bool = False
    reached_in_eval: bool = False
    used_through: Optional[str] = None
    draws_before: list = field(default_factory=list)  # randomness.Draw: replayed before its initialization

    @property
    def materializable(self) -> bool:
        """Whether [`materialize`][lazyfx.materialize] can build it.

        True when its parameters are concrete and hold for every input the
        specs allow (not only for a size a meta kernel specialized to).

        Examples:
            >>> report = lazyfx.infer(Net(), ("B", 3, "H", 32))
            >>> report.lazy["features.0"].materializable, report.lazy["head"].materializable
            (True, False)
        """
        return self.is_concrete and not self.specialized_by

    @property
    def called(self) -> bool:
        """Whether forward calls the module (else nothing determines its parameters: LFX042).

        Examples:
            >>> class Unused(nn.Module):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.used = nn.LazyLinear(4)
            ...         self.spare = nn.LazyLinear(4)
            ...
            ...     def forward(self, x):
            ...         return self.used(x)
            >>> report = lazyfx.infer(Unused(), ("B", 8))
            >>> report.lazy["used"].called, report.lazy["spare"].called
            (True, False)
            >>> report.lazy["spare"].resolution is None
            True
        """
        return self.resolution is not None

    @property
    def is_concrete(self) -> bool:
        """Whether it is called and its arguments and parameter shapes are all ints.

        Examples:
            >>> report = lazyfx.infer(Net(), ("B", 3, "H", "W"))
            >>> [path for path, record in report.lazy.items() if record.is_concrete]
            ['features.0', 'features.1', 'features.3']
        """
        return self.resolution is not None and self.resolution.is_concrete

    def symbols(self) -> list[str]:
        """The input symbols its arguments and parameter shapes depend on, sorted.

        Returns:
            The symbols' names; empty when the module is never called or
                resolves to concrete sizes.

        Examples:
            >>> report = lazyfx.infer(Net(), ("B", 3, "H", 32))
            >>> report.lazy["head"].symbols(), report.lazy["features.0"].symbols()
            (['H'], [])
        """
        if self.resolution is None:
            return []
        found = set(self.resolution.depends_on)
        for value in list(self.resolution.arguments.values()) + [
            d for shape in self.resolution.parameter_shapes.values() for d in shape
        ]:
            found |= {s.name for s in free_symbols(value) if not isinstance(s, UnknownSize)}
        return sorted(found)


def resolve(root: nn.Module, propagation: Propagation, graph=None) -> dict[str, LazyModuleRecord]:
    calls_by_path: dict[str, list[LazyCall]] = {}
    for call in propagation.lazy_calls:
        calls_by_path.setdefault(call.path, []).append(call)
    records: dict[str, LazyModuleRecord] = {}
    for path, calls in calls_by_path.items():  # first-call order
        first = calls[0]
        for other in calls[1:]:
            _check_agreement(first, other, propagation.recorder)
        records[path] = LazyModuleRecord(
            path=path,
            lazy_class=type(first.module).__name__,
            eager_class=_eager_name(first.module),
            resolution=first.resolution,
            call_sites=[c.location for c in calls],
            nodes=[c.node for c in calls],
        )
    for path, module in root.named_modules():
        if path not in records and is_lazy_module(module):
            records[path] = LazyModuleRecord(path, type(module).__name__, _eager_name(module), None)
    if graph is not None and propagation.fallback is not None and propagation.fallback.specialized:
        _mark_specialized(records, propagation, graph)
    return records


def _mark_specialized(records: dict[str, LazyModuleRecord], propagation: Propagation, graph) -> None:
    """A lazy module whose input flows from a node where PyTorch's meta kernel fixed a
    size to its hint is resolved for that size only: note which specializations reach it."""
    messages: dict[str, list[str]] = {}
    for message, node_name, _ in propagation.fallback.specialized:
        messages.setdefault(node_name, []).append(message)
    nodes = {n.name: n for n in graph.nodes}
    for record in records.values():
        upstream: set[str] = set()
        stack = [nodes[name] for name in record.nodes if name in nodes]  # a lazy container called without tensors: none
        while stack:
            for parent in stack.pop().all_input_nodes:
                if parent.name not in upstream:
                    upstream.add(parent.name)
                    stack.append(parent)
        record.specialized_by = [m for name in sorted(upstream & messages.keys()) for m in messages[name]]


def _eager_name(module: nn.Module) -> str:
    """The class the module becomes: ``cls_to_become``, or its own class when it has none."""
    cls = getattr(module, "cls_to_become", None) or type(module)
    return cls.__name__


def _check_agreement(first: LazyCall, other: LazyCall, recorder: Recorder) -> None:
    with recorder.at(other.node):
        for name, value in first.resolution.arguments.items():
            again: DimExpr = other.resolution.arguments.get(name)
            if equal(value, again) is False:
                raise ResolutionError(
                    f"lazy module '{first.path}' is called with inputs that resolve {name} differently: "
                    f"{fmt(value)} at {_site(first)} but {fmt(again)} at {_site(other)}",
                    code=diagnostics.CONFLICTING_CALLS,
                    module_path=first.path,
                    location=other.location,
                    notes=[f"the first call, at {_site(first)}, decides {name}; PyTorch would fail at the second"],
                )
            if not (is_concrete(value) and is_concrete(again)):
                require_equal(value, again, lambda n=name, v=value, a=again: (
                    f"'{first.path}' is called at {_site(first)} and {_site(other)}; both need "
                    f"{n}: {fmt(v)} == {fmt(a)}"))


def _site(call: LazyCall) -> str:
    return str(call.location) if call.location else f"node {call.node}"
