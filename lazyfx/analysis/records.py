"""What the analysis records about the traced program: nodes, lazy calls, decisions.

The tracer (:mod:`lazyfx.analysis.trace`) creates these records and the propagator
(:mod:`lazyfx.analysis.propagate`) fills them; the report and the later stages read them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch.nn as nn

from lazyfx.core.diagnostics import SourceLocation
from lazyfx.core.values import TensorMeta
from lazyfx.rules.lazy import Resolution

LOCATION = "lazyfx_location"  # node.meta key: the user's file:line that created the node
CALLERS = "lazyfx_callers"  # node.meta key: ((file:line, module path), ...) of the submodule calls around it


def call_notes(callers: tuple) -> tuple[str, ...]:
    """``called as 'block' from model.py:9``, outermost call first: how forward reached a node
    inside a submodule (defined in another file, say)."""
    return tuple(f"called as '{path}' from {location}" for location, path in callers)


class Provenance(enum.Enum):
    """How the analysis obtained a node's value: the data behind a record's ``rule`` text.

    Examples:
        >>> report = lazyfx.infer(Net(), ("B", 3, 32, 32))
        >>> for node in report.nodes[:4]:
        ...     print(node.name, node.provenance.name, node.rule)
        x GIVEN None
        features_0 LAZY_RESOLVER lazy.resolve_conv + conv.conv_module
        features_1 LAZY_RESOLVER lazy.resolve_batch_norm + norm.batch_norm_module
        features_2 RULE activation.same_shape_module
    """

    GIVEN = "given"  # no rule: an input's spec, a tensor of the model, the output's values
    RULE = "rule"  # a shape rule of lazyfx's registry
    LAZY_RESOLVER = "lazy resolver + rule"  # a built-in lazy class's resolver, then its eager class's rule
    META_KERNEL = "meta kernel"  # PyTorch's meta kernel, for want of a rule (analysis/fallback/meta.py)
    ABSTRACT_EXECUTION = "abstract execution"  # forward run on meta tensors (analysis/fallback/abstract.py)
    # a lazy module without a built-in resolver: its own initialization run on shape-only tensors,
    # then the rule of the eager class it becomes, or the meta kernel (analysis/fallback/generic.py)
    GENERIC_INIT = "generic lazy initialization"


@dataclass
class NodeRecord:
    """What lazyfx learned about one node of the traced graph: a row of the report's table.

    ``report.nodes`` lists them in graph order.

    Attributes:
        name: The torch.fx node's name (``"features_0"``, ``"flatten"``).
        op: The torch.fx opcode: ``"placeholder"`` (an input),
            ``"call_module"``, ``"call_function"``, ``"call_method"``,
            ``"get_attr"`` or ``"output"``.
        target: What the node calls, as the report shows it: a module's class
            (``"LazyConv2d"``), ``"Tensor.flatten"``, ``"torch.cat"``,
            ``"operator.add"``.
        module_path: The path of the submodule the node calls, or of the
            submodule whose forward it is part of (``""`` is the model
            itself); None for code in the model's own forward.
        inputs: The tensors among the node's arguments.
        value: The node's output: a `TensorMeta`, a size, a tuple of them...
        rule: The shape rule that computed the output (a lazy module's
            resolver and its eager class's rule joined by ``" + "``);
            ``"fallback: meta kernel"`` where PyTorch's meta kernel did; None
            for inputs and the output. Text for people: `provenance` says the
            same as data.
        location: The line of your code that created the node, with ``file``
            and ``line`` (``str()`` gives ``path:line``); None when unknown.
        sources: The names of the nodes whose values it takes (the graph's
            edges into it), in argument order.
        provenance: How the value was obtained, a `Provenance` (a rule, a lazy
            resolver and a rule, a meta kernel, abstract execution, a generic
            lazy module's own initialization, or given).

    Examples:
        >>> report = lazyfx.infer(Net(), ("B", 3, 32, 32))
        >>> node = report.nodes[1]
        >>> node.name, node.op, node.target, node.module_path
        ('features_0', 'call_module', 'LazyConv2d', 'features.0')
        >>> node.inputs
        [TensorMeta(shape=(B, 3, 32, 32), dtype=torch.float32)]
        >>> node.value
        TensorMeta(shape=(B, 32, 15, 15), dtype=torch.float32)
        >>> node.location.line
        24
    """

    name: str
    op: str  # fx opcode
    target: str  # what is called, as the report shows it
    module_path: Optional[str]
    inputs: list[TensorMeta]
    value: Any
    rule: Optional[str]
    location: Optional[SourceLocation]
    key: Any = None  # the registry key the node dispatched on
    sources: tuple[str, ...] = ()
    callers: tuple = ()  # ((SourceLocation, module path), ...): the submodule calls that led here
    provenance: Provenance = Provenance.GIVEN

    @property
    def fallback(self) -> bool:
        """Whether PyTorch's meta kernel computed this node, for want of a lazyfx rule.

        The report's table marks such nodes ``[meta kernel]``.

        Examples:
            >>> class Distances(nn.Module):
            ...     def forward(self, x):
            ...         return torch.pdist(x)
            >>> report = lazyfx.infer(Distances(), ("N", 3))
            >>> [(node.name, node.fallback) for node in report.nodes]
            [('x', False), ('pdist', True), ('output', False)]
            >>> print(report.output)
            ((N*(N - 1))//2,)
        """
        return self.provenance is Provenance.META_KERNEL


def op_label(node: NodeRecord, lazy: Mapping[str, Any]) -> str:
    """A node's operation as the report's table names it: ``input``, ``output``, a lazy
    module's call as ``LazyLinear -> Linear`` (``lazy`` is ``report.lazy``), an operation
    PyTorch's meta kernel or abstract execution computed with that mark."""
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    record = lazy.get(node.module_path) if node.op == "call_module" else None
    if record is not None:
        return f"{record.lazy_class} -> {record.eager_class}"
    if node.provenance is Provenance.ABSTRACT_EXECUTION:
        return f"{node.target} [abstract execution]"
    return f"{node.target} [meta kernel]" if node.fallback else node.target


@dataclass
class LazyCall:
    """One call of a lazy module and what its input resolved."""

    path: str
    module: nn.Module
    resolution: Resolution
    node: str
    location: Optional[SourceLocation]
    # the lazy tensors the module held when called (by id): parameters swapped in from another
    # module (torch.func.functional_call, tensordict's to_module) are that module's
    held: frozenset = frozenset()


@dataclass
class Decision:
    """A Python condition in forward (``if x.dim() == 4``) that lazyfx decided from shapes.

    ``condition`` is the formula in the input symbols (``(W - 1)//2 + 1 >= 64``) where the
    condition is symbolic, else the condition as written (``x.dim() == 3``); ``source`` is
    the line of code it comes from.
    """

    condition: str
    taken: bool
    location: Optional[SourceLocation]
    node: Optional[str] = None
    source: Optional[str] = None
