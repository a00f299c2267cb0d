"""``report.explain("head.in_features")``: where a lazy size comes from.

The answer is a walk over the report's dataflow graph (networkx): the nodes
upstream of the lazy module's first call, in graph order, each with the value
it computes (its shape as a formula in the input symbols) and the line of code
that made it. Nodes that pass their input's shape on unchanged (a ReLU, a
batch norm) are folded into the next step that changes it, and sizes computed
by hand (``x.size(0)``, ``c * h * w``) are listed where they carry the
symbols the lazy size depends on.
"""

from __future__ import annotations

import json
import linecache
from dataclasses import dataclass, field
from typing import Any, Optional

from lazyfx.analysis.records import op_label
from lazyfx.core.symbolic import fmt, free_symbols
from lazyfx.core.values import TensorMeta, describe

# which dim of a lazy module's input an argument reads, where PyTorch's lazy classes say so
_ARGUMENT_DIMS = {"in_features": -1, "in1_features": -1, "in_channels": "channel", "num_features": "channel",
                  "num_channels": "channel"}


@dataclass
class Step:
    """One node on the way from the inputs to the lazy size.

    Attributes:
        node: The graph node's name.
        op: Its operation, as the report's table names it.
        module_path: The module it calls or belongs to (None in forward's own code).
        value: What it computes, as the report prints it (a shape, or a size).
        location: The line of your code that made it, ``file:line`` (None when unknown).
        source: That line's text.
        through: The nodes before it that passed their input's shape on unchanged.
    """

    node: str
    op: str
    module_path: Optional[str]
    value: str
    location: Optional[str]
    source: Optional[str]
    through: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "module_path": self.module_path, "value": self.value,
                "location": self.location, "source": self.source, "through": list(self.through)}


@dataclass
class Explanation:
    """How a lazy size follows from the input dims: :meth:`Report.explain`'s answer.

    ``print(explanation)`` shows the size, which dim of the module's input it is, and one
    line per step (node, operation, value, ``file:line`` and the code there);
    :meth:`to_dict` and :meth:`to_json` give the same as data.

    Attributes:
        name: What was asked, ``"head.in_features"``.
        value: The size, as a formula in the input symbols (or an int).
        module: The lazy module's path; ``lazy_class`` its class, ``node`` the node that
            first calls it and ``location`` that call's ``file:line``.
        dim: The dim of that call's input the size is read from (None when the size is not
            one dim of it, a lazy module of your own that computes it).
        depends_on: The input symbols the size depends on.
        steps: The chain of operations, from the inputs to the lazy module's input.
    """

    name: str
    value: str
    module: str
    lazy_class: str
    node: str
    location: Optional[str]
    dim: Optional[int]
    depends_on: list[str]
    steps: list[Step]

    def __str__(self) -> str:
        what = f"dim {self.dim} of the input of" if self.dim is not None else "from the input of"
        where = f", {self.location}" if self.location else ""
        head = f"{self.name} = {self.value}: {what} '{self.module}' ({self.lazy_class}{where})"
        if self.depends_on:
            head += f", depends on {', '.join(self.depends_on)}"
        rows = [(s.node, s.op, s.value, s.location or "", s.source or "") for s in self.steps]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [head]
        for step, row in zip(self.steps, rows):
            if step.through:
                lines.append(f"  {'':{widths[0]}}  (through {', '.join(step.through)}: shape unchanged)")
            lines.append(("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4]).rstrip())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The explanation as JSON-ready data: ``name``, ``value``, ``module``, ``lazy_class``,
        ``node``, ``location``, ``dim``, ``depends_on`` and ``steps`` (each ``node``, ``op``, ``module_path``,
        ``value``, ``location``, ``source``, ``through``)."""
        return {"name": self.name, "value": self.value, "module": self.module, "lazy_class": self.lazy_class,
                "node": self.node, "location": self.location, "dim": self.dim, "depends_on": list(self.depends_on),
                "steps": [s.to_dict() for s in self.steps]}

    def to_json(self, **kwargs) -> str:
        """:meth:`to_dict`, serialized (``indent`` defaults to 2)."""
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})


def lazy_sizes(report) -> list[str]:
    """Every name :func:`explain` answers: ``path.argument`` and ``path.parameter`` of each
    resolved lazy module."""
    names = []
    for path, record in report.lazy.items():
        if record.resolution is not None:
            prefix = f"{path}." if path else ""
            names += [prefix + k for k in (*record.resolution.arguments, *record.resolution.parameter_shapes)]
    return names


def explain(report, name: str) -> Explanation:
    """The chain of operations from the input dims to the lazy size ``name`` (see the module
    docstring). Raises ValueError naming the sizes there are when ``name`` is none of them."""
    path, _, attribute = name.rpartition(".")
    record = report.lazy.get(path)
    resolution = record.resolution if record is not None else None
    sizes = {**resolution.arguments, **resolution.parameter_shapes} if resolution is not None else {}
    if attribute not in sizes or not record.nodes:
        known = ", ".join(lazy_sizes(report)) or "none (the model has no resolved lazy module)"
        raise ValueError(f"no lazy size {name!r} to explain; the lazy sizes are: {known}")
    value = sizes[attribute]
    records = {n.name: n for n in report.nodes}
    call = records[record.nodes[0]]
    # imported here, not with the module: every analysis imports the report, and networkx
    # (a third of a second) is needed only when a size is explained
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(records)
    graph.add_edges_from((source, n.name) for n in report.nodes for source in n.sources if source in records)
    upstream = nx.ancestors(graph, call.name)
    symbols = free_symbols(value) if not isinstance(value, tuple) else set().union(*map(free_symbols, value))
    steps: list[Step] = []
    through: list[str] = []
    for name_ in nx.topological_sort(graph.subgraph(upstream)):
        node = records[name_]
        if not _changes(node, records, symbols):
            if isinstance(node.value, TensorMeta):
                through.append(name_)
            continue
        steps.append(_step(node, report, through))
        through = []
    return Explanation(name, fmt(value), path or "<root>", record.lazy_class, call.name,
                       call.location.short() if call.location else None, _dim(call, attribute, value),
                       sorted(str(s) for s in symbols), steps)


def _changes(node, records: dict, symbols: set) -> bool:
    """Whether a node belongs in the chain: an input, an operation that changes its input's
    shape, or a size computed by hand that carries the symbols the lazy size depends on."""
    if node.op == "placeholder":
        return True
    if node.op == "output":
        return False
    if not isinstance(node.value, TensorMeta):
        return bool(symbols & _symbols_in(node.value))
    first = next((records[s].value for s in node.sources if isinstance(records[s].value, TensorMeta)), None)
    return first is None or first.shape != node.value.shape


def _symbols_in(value: Any) -> set:
    if isinstance(value, (tuple, list)):
        return set().union(*map(_symbols_in, value)) if value else set()
    return free_symbols(value)


def _step(node, report, through: list[str]) -> Step:
    location = node.location
    source = linecache.getline(location.file, location.line).strip() if location else ""
    return Step(node.name, op_label(node, report.lazy), node.module_path, describe(node.value),
                location.short() if location else None, source or None, list(through))


def _dim(call, attribute: str, value: Any) -> Optional[int]:
    """The dim of the call's first input that ``attribute`` reads: the one PyTorch's lazy class
    reads, else the only dim equal to it (None when none is, or several)."""
    x = next((t for t in call.inputs if isinstance(t, TensorMeta)), None)
    if x is None or isinstance(value, tuple):
        return None
    where = _ARGUMENT_DIMS.get(attribute)
    if where == "channel" and x.ndim >= 1:
        where = 1 if x.ndim > 1 else 0
    if isinstance(where, int) and -x.ndim <= where < x.ndim and x.shape[where] == value:
        return where % x.ndim if where >= 0 else where
    matches = [i for i, d in enumerate(x.shape) if d == value]
    return matches[0] if len(matches) == 1 else None
