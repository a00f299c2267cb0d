"""The report ``lazyfx.infer`` returns: every node's shapes, every lazy module's
resolution, the input domain and the diagnostics; a readable table and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import sympy
import torch

from lazyfx.analysis.records import Decision, NodeRecord, op_label
from lazyfx.analysis.resolve import LazyModuleRecord
from lazyfx.build.checkpoint import fit
from lazyfx.core.diagnostics import Diagnostic
from lazyfx.core.symbolic import fmt
from lazyfx.core.values import TensorMeta, UninitializedTensor, describe, dtype_name
from lazyfx.domain.domain import Domain
from lazyfx.outputs.explain import Explanation, explain


@dataclass
class Report:
    """What lazyfx inferred about a model for the given inputs.

    [`infer`][lazyfx.infer] returns one. ``print(report)`` shows all of it: the
    model's inputs and output, a table of every node, how each lazy module
    resolves, the input domain (``valid for:``), the assumptions, what was
    decided from shapes or not traced into a graph, and the warnings.
    [`to_json`][lazyfx.outputs.report.Report.to_json] gives the same as data.

    Attributes:
        model: The model's class name.
        inputs: The value of each of forward's parameters, by name, defaults
            included: a [`TensorMeta`][lazyfx.TensorMeta] for a tensor,
            containers and constants as they are.
        nodes: One [`NodeRecord`][lazyfx.analysis.records.NodeRecord] per
            torch.fx node, in graph order.
        lazy: One [`LazyModuleRecord`][lazyfx.analysis.resolve.LazyModuleRecord]
            per lazy submodule, by module path: in initialization order (the
            order in which forward first calls them, as a dry run initializes
            them), then those forward never calls.
        output: What forward returns: a `TensorMeta`, or a tuple, list or dict
            of values.
        domain: The inputs the model accepts, a
            [`Domain`][lazyfx.domain.domain.Domain].
        diagnostics: Warnings, as [`Diagnostic`][lazyfx.core.diagnostics.Diagnostic]s
            with severity ``"warning"``: a lazy module whose size depends on a
            symbol (LFX040) or that forward never calls (LFX042), a size a meta
            kernel fixed to one value (LFX023).
        decisions: The Python conditions in forward that lazyfx decided from
            shapes (``if x.dim() == 4:``), each with its ``condition``, whether
            it was ``taken``, its ``location`` and ``source`` line.
        opaque: The submodules that could not be traced into a graph and were
            analysed by abstract execution on meta tensors instead, by module
            path (``""`` for the model itself), with the reason.

    Examples:
        >>> report = lazyfx.infer(Net(), ("B", 3, 32, 32))
        >>> print(report)
        Net(x: (B, 3, 32, 32)) -> (B, 10)
        node        op                              module      inputs           output           source
        ----------  ------------------------------  ----------  ---------------  ---------------  ----------
        x           input                                                        (B, 3, 32, 32)
        features_0  LazyConv2d -> Conv2d            features.0  (B, 3, 32, 32)   (B, 32, 15, 15)  demo.py:24
        ...
        head        LazyLinear -> Linear            head        (B, 2304)        (B, 10)          demo.py:25
        output      output                                                       (B, 10)
        lazy modules (4, in initialization order):
          features.0: LazyConv2d -> Conv2d(in_channels=3)  [weight (32, 3, 3, 3), bias (32,)]
          ...
          head: LazyLinear -> Linear(in_features=2304)  [weight (10, 2304), bias (10,)]
        valid for: all positive sizes
        >>> report.output
        TensorMeta(shape=(B, 10), dtype=torch.float32)
        >>> report.lazy["head"].resolution.arguments
        {'in_features': 2304}
        >>> report.domain.contains(B=8)
        True
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
        """The output's shape when the model returns a single tensor, else None.

        Examples:
            >>> lazyfx.infer(Net(), ("B", 3, 32, 32)).output_shape
            (B, 10)
        """
        return self.output.shape if isinstance(self.output, TensorMeta) else None

    def fit(self, state_dict) -> Domain:
        """The input sizes a checkpoint fits.

        The result is the report's domain with every symbolic lazy size set
        equal to the size the checkpoint has for it: ``head.in_features =
        64*((H - 9)//4 + 1)**2`` and a ``head.weight`` with 2304 columns give
        ``29 <= H <= 32``. Keys the checkpoint lacks are ignored.

        Args:
            state_dict (Mapping[str, torch.Tensor]): A checkpoint saved from
                the eager model (``eager.state_dict()``, or read back with
                ``torch.load(..., weights_only=True)``).

        Returns:
            The input sizes that give the lazy parameters the checkpoint's
                shapes, as a [`Domain`][lazyfx.domain.domain.Domain].

        Raises:
            ShapeError: A checkpoint shape contradicts the inputs (a different
                rank, a concrete size that differs, or a formula that takes
                the checkpoint's size at no input size), or no input size
                fits the checkpoint (LFX030). The message names the key and
                both shapes.
            SpecError: ``state_dict`` is a path (load it with
                ``torch.load(path, weights_only=True)``), or holds a value
                that is not a tensor (LFX002).

        Examples:
            >>> state = lazyfx.materialize(Net(), ("B", 3, 32, 32), seed=0).state_dict()
            >>> print(lazyfx.infer(Net(), ("B", 3, "H", "H")).fit(state))
            29 <= H <= 32
            >>> lazyfx.infer(Net(), ("B", 3, 28, 28)).fit(state)
            Traceback (most recent call last):
                ...
            lazyfx.errors.ShapeError: LFX030 checkpoint key 'head.weight' has shape (10, 2304), but the inputs resolve it to (10, 1600) (in module 'head')
        """
        return fit(self, state_dict)

    def explain(self, name: str) -> Explanation:
        """Where a lazy size comes from: the chain of operations from the input dims to it.

        A walk over the report's dataflow graph, from the inputs to the lazy
        module's first call: each step with its value (a shape, as a formula
        in the input symbols), the ``file:line`` that made it and the code
        there. Steps that keep their input's shape are named as ``through``
        on the next one that changes it.

        Args:
            name (str): A lazy module's constructor argument or parameter,
                ``"path.name"``: ``"head.in_features"``, ``"head.weight"``.

        Returns:
            An ``Explanation``: it prints as text (the size, the dim of the
                module's input it is read from, a line per step);
                ``to_dict()`` and ``to_json()`` give it as data (``steps``,
                each with ``node``, ``op``, ``value``, ``location``,
                ``source``, ``through``).

        Raises:
            ValueError: ``name`` is no lazy size of the report; the message
                lists those there are.

        Examples:
            >>> print(lazyfx.infer(Net(), ("B", 3, "H", "W")).explain("head.in_features"))
            head.in_features = 64*((H - 9)//4 + 1)*((W - 9)//4 + 1): dim -1 of the input of 'head' (LazyLinear, demo.py:25), depends on H, W
              x           input                 (B, 3, H, W)
              features_0  LazyConv2d -> Conv2d  (B, 32, (H - 3)//2 + 1, (W - 3)//2 + 1)    demo.py:24  features = self.features(x)
                          (through features_1, features_2: shape unchanged)
              features_3  LazyConv2d -> Conv2d  (B, 64, (H - 3)//2 - 1, (W - 3)//2 - 1)    demo.py:24  features = self.features(x)
              features_4  MaxPool2d             (B, 64, (H - 9)//4 + 1, (W - 9)//4 + 1)    demo.py:24  features = self.features(x)
              flatten     Tensor.flatten        (B, 64*((H - 9)//4 + 1)*((W - 9)//4 + 1))  demo.py:25  return self.head(features.flatten(1))
            >>> lazyfx.infer(Net(), ("B", 3, 32, 32)).explain("head.in_features").to_dict()["value"]
            '2304'
        """
        return explain(self, name)

    @property
    def unresolved(self) -> list[LazyModuleRecord]:
        """The lazy modules whose parameters the inputs do not fix.

        Those whose sizes depend on an input symbol, and those forward never
        calls; [`materialize`][lazyfx.materialize] refuses both.

        Examples:
            >>> report = lazyfx.infer(Net(), ("B", 3, "H", "W"))
            >>> [(record.path, record.symbols()) for record in report.unresolved]
            [('head', ['H', 'W'])]
        """
        return [r for r in self.lazy.values() if not r.is_concrete]

    # -- text ------------------------------------------------------------------------

    def table(self) -> str:
        """The per-node table, as ``print(report)`` shows it.

        One row per torch.fx node: its name, the operation (a lazy module as
        ``LazyLinear -> Linear``; operations computed by PyTorch's meta kernel
        marked ``[meta kernel]``), the module path, the input and output
        shapes, and the ``file:line`` in your code.

        Examples:
            >>> print(lazyfx.infer(Net(), ("B", 3, 32, 32)).table())
            node        op                              module      inputs           output           source
            ----------  ------------------------------  ----------  ---------------  ---------------  ----------
            x           input                                                        (B, 3, 32, 32)
            features_0  LazyConv2d -> Conv2d            features.0  (B, 3, 32, 32)   (B, 32, 15, 15)  demo.py:24
            features_1  LazyBatchNorm2d -> BatchNorm2d  features.1  (B, 32, 15, 15)  (B, 32, 15, 15)  demo.py:24
            features_2  ReLU                            features.2  (B, 32, 15, 15)  (B, 32, 15, 15)  demo.py:24
            features_3  LazyConv2d -> Conv2d            features.3  (B, 32, 15, 15)  (B, 64, 13, 13)  demo.py:24
            features_4  MaxPool2d                       features.4  (B, 64, 13, 13)  (B, 64, 6, 6)    demo.py:24
            flatten     Tensor.flatten                              (B, 64, 6, 6)    (B, 2304)        demo.py:25
            head        LazyLinear -> Linear            head        (B, 2304)        (B, 10)          demo.py:25
            output      output                                                       (B, 10)
        """
        rows = [("node", "op", "module", "inputs", "output", "source")]
        for n in self.nodes:
            rows.append(
                (
                    n.name,
                    op_label(n, self.lazy),
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
        """How each lazy module resolves, one line each, as ``print(report)`` shows it.

        Each line gives the module path, the lazy and eager classes, the
        inferred constructor arguments, the parameter shapes, and the symbols
        they depend on, if any.

        Examples:
            >>> print(lazyfx.infer(Net(), ("B", 3, "H", "W")).lazy_summary())
            lazy modules (4, in initialization order):
              features.0: LazyConv2d -> Conv2d(in_channels=3)  [weight (32, 3, 3, 3), bias (32,)]
              features.1: LazyBatchNorm2d -> BatchNorm2d(num_features=32)  [weight (32,), bias (32,), running_mean (32,), running_var (32,)]
              features.3: LazyConv2d -> Conv2d(in_channels=32)  [weight (64, 32, 3, 3), bias (64,)]
              head: LazyLinear -> Linear(in_features=64*((H - 9)//4 + 1)*((W - 9)//4 + 1))  [weight (10, 64*((H - 9)//4 + 1)*((W - 9)//4 + 1)), bias (10,)]  (depends on H, W)
            >>> print(lazyfx.infer(nn.ReLU(), "B,3").lazy_summary())
            no lazy modules
        """
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
        """Everything in the report as JSON-ready data.

        Dims are ints or formula strings as the report prints them, dtypes
        their names (``"float32"``). The keys: ``model``; ``inputs`` and
        ``output`` (a tensor is ``{"shape", "dtype"}``); ``nodes`` (``name``,
        ``op``, ``target``, ``module_path``, ``inputs``, ``output``, ``rule``,
        ``fallback``, ``file``, ``line``); ``lazy_modules`` (``path``,
        ``lazy_class``, ``eager_class``, ``called``, ``resolved``,
        ``arguments``, ``parameters``, ``depends_on``, ``call_sites``);
        ``domain`` (``text``, ``conditions``, ``smallest``, ``example``,
        ``empty``, ``assumptions``); ``diagnostics`` (see
        [`Diagnostic.to_dict`][lazyfx.core.diagnostics.Diagnostic.to_dict]);
        ``not_traced``; ``decisions`` (``condition``, ``taken``, ``source``,
        ``file``, ``line``).

        Examples:
            >>> data = lazyfx.infer(Net(), ("B", 3, "H", "W")).to_dict()
            >>> list(data)
            ['model', 'inputs', 'output', 'nodes', 'lazy_modules', 'domain', 'diagnostics', 'not_traced', 'decisions']
            >>> data["output"]
            {'shape': ['B', 10], 'dtype': 'float32'}
            >>> data["lazy_modules"][-1]["arguments"]
            {'in_features': '64*((H - 9)//4 + 1)*((W - 9)//4 + 1)'}
            >>> data["domain"]["conditions"], data["domain"]["example"]
            (['H >= 9', 'W >= 9'], {'B': 1, 'H': 9, 'W': 9})
        """
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
                    "sources": list(n.sources),
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
        """The report as JSON text: [`to_dict`][lazyfx.outputs.report.Report.to_dict], serialized.

        Args:
            **kwargs (Any): Passed to ``json.dumps``; ``indent`` defaults to 2.

        Returns:
            The JSON document.

        Examples:
            >>> import json
            >>> report = lazyfx.infer(Net(), ("B", 3, 32, 32))
            >>> json.loads(report.to_json()) == report.to_dict()
            True
            >>> report.to_json(indent=None)[:60]
            '{"model": "Net", "inputs": {"x": {"shape": ["B", 3, 32, 32],'
        """
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})


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
    if isinstance(value, UninitializedTensor):  # a lazy parameter before its module's call: no shape yet
        return {"shape": None, "dtype": dtype_name(value.dtype)}
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
