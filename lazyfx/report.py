"""The report ``lazyfx.infer`` returns: every node's shapes, every lazy module's
resolution, the input domain and the diagnostics; a readable table and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import sympy
import torch

from lazyfx.diagnostics import Diagnostic
from lazyfx.domain import Domain
from lazyfx.passes.propagate import Decision, NodeRecord
from lazyfx.passes.resolve import LazyModuleRecord
from lazyfx.symbolic import fmt
from lazyfx.values import TensorMeta, describe, dtype_name


@dataclass
class Report:
    """What lazyfx inferred about a model for the given inputs.

    >>> report = lazyfx.infer(model, ("B", 3, 32, 32))
    >>> print(report)                     # the per-node table
    >>> report.output                     # TensorMeta(shape=(B, 10), dtype=torch.float32)
    >>> report.lazy["head"].resolution.arguments   # {'in_features': 2304}
    >>> report.domain.contains(B=8)       # True
    """

    model: str
    inputs: dict[str, Any]
    nodes: list[NodeRecord]
    lazy: dict[str, LazyModuleRecord]
    output: Any
    domain: Domain
    diagnostics: list[Diagnostic] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)  # Python conditions decided from shapes
    opaque: dict[str, str] = field(default_factory=dict)  # submodules not traced (abstract execution), why

    @property
    def output_shape(self) -> Optional[tuple]:
        """The output's shape when the model returns a single tensor."""
        return self.output.shape if isinstance(self.output, TensorMeta) else None

    def fit(self, state_dict) -> Domain:
        """The input sizes a checkpoint fits: the domain with every symbolic lazy size set
        equal to the checkpoint's (``fc.in_features = 64*((H - 4)//4)**2`` and a weight with
        6272 columns give ``H in {...}``). Raises ShapeError when no size fits."""
        from lazyfx.checkpoint import fit

        return fit(self, state_dict)

    @property
    def unresolved(self) -> list[LazyModuleRecord]:
        """Lazy modules whose parameters are not fixed by the inputs (symbolic or never called)."""
        return [r for r in self.lazy.values() if not r.is_concrete]

    # -- text ------------------------------------------------------------------------

    def table(self) -> str:
        rows = [("node", "op", "module", "inputs", "output", "source")]
        for n in self.nodes:
            rows.append(
                (
                    n.name,
                    _op_label(n, self.lazy),
                    "" if n.module_path is None else (n.module_path or "<root>"),
                    ", ".join(str(t) for t in n.inputs) if n.op not in ("placeholder", "output") else "",
                    describe(n.value),
                    n.location.short() if n.location else "",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def lazy_summary(self) -> str:
        if not self.lazy:
            return "no lazy modules"
        lines = [f"lazy modules ({len(self.lazy)}, in initialization order):"]
        for record in self.lazy.values():
            lines.append("  " + _lazy_line(record))
        return "\n".join(lines)

    def __str__(self) -> str:
        inputs = ", ".join(f"{name}: {describe(value)}" for name, value in self.inputs.items())
        parts = [f"{self.model}({inputs}) -> {describe(self.output)}", "", self.table(), "", self.lazy_summary(),
                 "", f"valid for: {self.domain}"]
        if self.domain.assumptions:
            parts.append("assuming: " + " and ".join(fmt(c.expr) for c in self.domain.assumptions))
        if self.opaque:
            parts += ["", "not traced into a graph (analysed by abstract execution on meta tensors):"]
            parts += [f"  {path or '<root>'}: {reason}" for path, reason in self.opaque.items()]
        if self.decisions:
            parts += ["", "decided from shapes:"]
            parts += [f"  {d.location.short() if d.location else '?'}: {d.condition} -> {d.taken}"
                      for d in self.decisions]
        if self.diagnostics:
            parts += ["", *(str(d) for d in self.diagnostics)]
        return "\n".join(parts)

    # -- data --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "inputs": {k: to_jsonable(v) for k, v in self.inputs.items()},
            "output": to_jsonable(self.output),
            "nodes": [
                {
                    "name": n.name,
                    "op": n.op,
                    "target": n.target,
                    "module_path": n.module_path,
                    "inputs": [to_jsonable(t) for t in n.inputs],
                    "output": to_jsonable(n.value),
                    "rule": n.rule,
                    "fallback": n.fallback,
                    "file": n.location.file if n.location else None,
                    "line": n.location.line if n.location else None,
                }
                for n in self.nodes
            ],
            "lazy_modules": [_lazy_dict(r) for r in self.lazy.values()],
            "domain": {
                "text": str(self.domain),
                "conditions": self.domain.describe(),
                "smallest": self.domain.smallest(),
                "example": self.domain.example(),
                "empty": self.domain.is_empty,
                "assumptions": [fmt(c.expr) for c in self.domain.assumptions],
            },
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "not_traced": dict(self.opaque),
            "decisions": [
                {"condition": d.condition, "taken": d.taken, "source": d.source, "file": d.location.file if d.location else None,
                 "line": d.location.line if d.location else None}
                for d in self.decisions
            ],
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})


def _op_label(node: NodeRecord, lazy: dict[str, LazyModuleRecord]) -> str:
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    record = lazy.get(node.module_path) if node.op == "call_module" else None
    if record is not None:
        return f"{record.lazy_class} -> {record.eager_class}"
    if node.rule and node.rule.startswith("abstract execution"):
        return f"{node.target} [abstract execution]"
    return f"{node.target} [meta kernel]" if node.fallback else node.target


def _lazy_line(record: LazyModuleRecord) -> str:
    head = f"{record.path or '<root>'}: {record.lazy_class} -> {record.eager_class}"
    if record.resolution is None:
        return head + "  (never called: unresolved)"
    args = ", ".join(f"{k}={fmt(v)}" for k, v in record.resolution.arguments.items())
    params = ", ".join(f"{k} {fmt(s)}" for k, s in record.resolution.parameter_shapes.items())
    text = f"{head}({args})"
    if params:
        text += f"  [{params}]"
    if not record.is_concrete:
        text += f"  (depends on {', '.join(record.symbols())})"
    return text


def _lazy_dict(record: LazyModuleRecord) -> dict:
    resolution = record.resolution
    return {
        "path": record.path,
        "lazy_class": record.lazy_class,
        "eager_class": record.eager_class,
        "called": record.called,
        "resolved": record.is_concrete,
        "arguments": {k: to_jsonable(v) for k, v in resolution.arguments.items()} if resolution else None,
        "parameters": {k: to_jsonable(s) for k, s in resolution.parameter_shapes.items()} if resolution else None,
        "depends_on": record.symbols(),
        "call_sites": [str(s) if s else None for s in record.call_sites],
    }


def to_jsonable(value: Any) -> Any:
    """An abstract value as JSON data: dims are ints or formula strings."""
    if isinstance(value, TensorMeta):
        return {"shape": [to_jsonable(d) for d in value.shape], "dtype": dtype_name(value.dtype)}
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, sympy.Basic):
        return fmt(value)
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.dtype):
        return dtype_name(value)
    return repr(value)
