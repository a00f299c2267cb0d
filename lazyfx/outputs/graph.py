"""``lazyfx show --graph``: the dataflow graph, drawn as SVG (or an HTML page with it), Graphviz
DOT, or Mermaid (``.mmd``, or a Markdown page with a ``mermaid`` block, which GitHub renders).

One box per node (its module path and operation; lazy modules filled amber
with their resolved arguments, red where the arguments depend on input
symbols; nodes PyTorch's meta kernels or abstract execution computed have a
dashed border and a tag), one arrow per data dependency labelled with the
value that flows along it (tensor shapes as formulas).

What is drawn (:func:`picture`): bookkeeping nodes (``x.shape``, ``x.size(0)``,
arithmetic and comparisons of sizes, picking one output of a tuple) are hidden
behind their consumers, and when the picture would still be taller than one
screen, each chain of nodes (one consumer, one input) becomes one box with a row
per node. Both are graph rewrites with networkx, so every format shows the same.

The SVG layout is layered top to bottom: layers from ``networkx.topological_generations``
(sources other than the inputs moved down next to their first use), long
edges broken into one waypoint per layer they cross, nodes ordered in each
layer by barycenter sweeps (keeping the order with the fewest crossings),
then placed horizontally as close as possible to their neighbours
(isotonic regression with minimum gaps). Text is sized from DejaVu Sans's
advance widths, so boxes fit their text; each node's output label sits in a
band reserved below its layer, so labels never overlap boxes. Mermaid and
Graphviz lay out their own formats.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

import networkx as nx

from lazyfx.analysis.records import Provenance
from lazyfx.core.symbolic import fmt
from lazyfx.core.values import TensorMeta, describe

FORMATS = (".svg", ".html", ".dot", ".mmd", ".md")

# -- the graph ------------------------------------------------------------------------------------


def edges(report) -> dict[str, list[str]]:
    """Each node's input nodes, by name, as the report recorded them."""
    return {n.name: list(n.sources) for n in report.nodes}


@dataclass
class Row:
    """One node of a stack (a chain drawn as one box): its title, its operation, its output."""

    name: str
    kind: str  # module, function, lazy, unresolved
    title: str
    text: str
    shape: str
    tags: list[str] = field(default_factory=list)


@dataclass
class Box:
    """What one node's box shows, and how it is styled. A stack (``kind="stack"``) shows a
    chain of nodes as rows instead of ``title`` and ``lines``."""

    name: str
    kind: str  # input, output, module, function, lazy, unresolved, stack
    title: str
    lines: list[tuple[str, str]]  # (text, style): "op", "args", "note"
    tags: list[str] = field(default_factory=list)  # "meta kernel", "abstract execution"
    tooltip: str = ""
    rows: list[Row] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # bookkeeping nodes drawn as part of this one


def dataflow(report, edges: Mapping[str, Sequence[str]]) -> nx.DiGraph:
    """The report's nodes as a DiGraph: node attribute ``box`` (a :class:`Box`), edge attributes
    ``label`` (the value flowing, as the report prints it) and ``tensor`` (whether it is one)."""
    graph = nx.DiGraph()
    records = {n.name: n for n in report.nodes}
    for record in report.nodes:
        graph.add_node(record.name, box=_box(record, report), record=record)
    for record in report.nodes:
        for source in edges.get(record.name, ()):
            if source in records:
                value = records[source].value
                graph.add_edge(source, record.name, label=_short(describe(value), 64),
                               tensor=isinstance(value, TensorMeta) or _holds_tensors(value))
    return graph


def _holds_tensors(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return any(isinstance(v, TensorMeta) or _holds_tensors(v) for v in value)
    if isinstance(value, dict):
        return _holds_tensors(list(value.values()))
    return False


# -- what the picture shows: bookkeeping behind its consumers, long chains as stacks -------------

SCREEN_HEIGHT = 1080  # px: one screen of a 1920x1080 display


def is_bookkeeping(record, source_value: Any = None) -> bool:
    """Whether a node only reads or moves sizes: ``getattr`` (``x.shape``), a size or dim query,
    arithmetic on sizes and comparisons of them (any call whose value holds no tensor), and a
    ``getitem`` that picks one output out of a tuple (``out, _ = self.rnn(x)``; ``source_value``
    is what it indexes). Indexing a tensor (``x[:, 0]``) is an operation, not bookkeeping."""
    if record.op not in ("call_function", "call_method"):
        return False
    if not (isinstance(record.value, TensorMeta) or _holds_tensors(record.value)):
        return True
    return record.target == "operator.getitem" and not isinstance(source_value, TensorMeta)


def hide_bookkeeping(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``graph`` with the bookkeeping nodes taken out: each one's inputs lead straight
    to its consumers (dashed where only sizes flow), and the consumer's box lists it."""
    out = graph.copy()
    for name in list(nx.topological_sort(graph)):
        record = graph.nodes[name]["record"]
        indexed = record.sources[0] if record.sources else None
        source_value = graph.nodes[indexed]["record"].value if indexed in graph else None
        if not is_bookkeeping(record, source_value):
            continue
        sources = list(out.predecessors(name))
        through_tensor = isinstance(record.value, TensorMeta) or _holds_tensors(record.value)
        for source in sources:
            data = out.edges[source, name]
            for target in out.successors(name):
                tensor = data["tensor"] and through_tensor
                if out.has_edge(source, target):
                    out.edges[source, target]["tensor"] |= tensor
                else:
                    out.add_edge(source, target, label=data["label"], tensor=tensor)
        for target in out.successors(name):
            box = out.nodes[target]["box"]
            out.nodes[target]["box"] = replace(box, hidden=[*box.hidden, *out.nodes[name]["box"].hidden, name],
                                               tooltip=f"{box.tooltip}\nreads {name} ({record.target})")
        out.remove_node(name)
    return out


def _chains(graph: nx.DiGraph) -> list[list[str]]:
    """Maximal runs of nodes where each one's only consumer is the next, and the next's only
    input is it (inputs and the output stay out), in graph order."""
    def chained(name: str) -> bool:
        return graph.nodes[name]["box"].kind not in ("input", "output")

    def follower(name: str):
        if graph.out_degree(name) != 1:
            return None
        (target,) = graph.successors(name)
        return target if graph.in_degree(target) == 1 and chained(target) else None

    starts = [n for n in graph if chained(n)
              and not any(follower(p) == n for p in graph.predecessors(n) if chained(p))]
    chains = []
    for start in starts:
        chain = [start]
        while (nxt := follower(chain[-1])) is not None:
            chain.append(nxt)
        if len(chain) > 1:
            chains.append(chain)
    return chains


def stack_chains(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``graph`` where each chain of two or more nodes is one box (a stack), one row
    per node with its output; the stack keeps the first node's name."""
    out = graph.copy()
    for chain in _chains(graph):
        first, last = chain[0], chain[-1]
        rows = [_row(graph, name) for name in chain]
        hidden = [h for name in chain for h in graph.nodes[name]["box"].hidden]
        tooltip = "\n".join(graph.nodes[name]["box"].tooltip for name in chain)
        box = Box(first, "stack", rows[0].title, [], tooltip=tooltip, rows=rows, hidden=hidden)
        outgoing = [(t, d) for _, t, d in graph.out_edges(last, data=True)]
        out.remove_nodes_from(chain[1:])
        out.nodes[first]["box"] = box
        out.nodes[first]["record"] = graph.nodes[last]["record"]
        for target, data in outgoing:
            out.add_edge(first, target, **data)
    return out


def _row(graph: nx.DiGraph, name: str) -> Row:
    box = graph.nodes[name]["box"]
    text = " ".join(t for t, style in box.lines if style == "op") if box.kind not in ("lazy", "unresolved") else \
        box.lines[0][0] + "(" + ", ".join(t for t, style in box.lines if style == "args") + ")"
    if box.kind == "function" and text.startswith("in "):  # where a function runs: in its tooltip
        text = ""
    return Row(name, box.kind, box.title, text, describe(graph.nodes[name]["record"].value), list(box.tags))


def picture(report, edges: Mapping[str, Sequence[str]], all_nodes: bool = False) -> nx.DiGraph:
    """The graph ``show --graph`` draws: the dataflow, bookkeeping nodes behind their consumers
    and, where the picture would be taller than one screen, chains as stacks. ``all_nodes``
    keeps every node as its own box."""
    graph = dataflow(report, edges)
    if all_nodes:
        return graph
    graph = hide_bookkeeping(graph)
    if svg_size(report, graph)[1] > SCREEN_HEIGHT:
        graph = stack_chains(graph)
    return graph


def _box(record, report) -> Box:
    where = record.location.short() if record.location else ""
    tags = {Provenance.META_KERNEL: ["meta kernel"], Provenance.ABSTRACT_EXECUTION: ["abstract execution"]}.get(
        record.provenance, [])
    tooltip = "\n".join(t for t in (f"node {record.name}", record.target, where, record.rule or "") if t)
    if record.op == "placeholder":
        return Box(record.name, "input", record.name, [("input", "op")], tooltip=tooltip)
    if record.op == "output":
        return Box(record.name, "output", "output", [], tooltip=tooltip)
    if record.op != "call_module":
        lines = [(f"in {record.module_path}", "op")] if record.module_path else []
        return Box(record.name, "function", _short(record.target, 48), lines, tags, tooltip)
    lazy = report.lazy.get(record.module_path)
    kind = "module" if lazy is None else "lazy" if lazy.is_concrete else "unresolved"
    lines = _lazy_lines(lazy) if lazy is not None else [(record.target, "op")]
    if "abstract execution" in tags:  # the lazy modules inside, resolved while executing it
        prefix = f"{record.module_path}." if record.module_path else ""
        lines += [(_short(f"{path[len(prefix):]}: {_arguments(r)}", 56), "args")
                  for path, r in report.lazy.items() if path.startswith(prefix) and path != record.module_path]
    return Box(record.name, kind, record.module_path or "<root>", lines, tags, tooltip)


def _lazy_lines(lazy) -> list[tuple[str, str]]:
    """``LazyConv2d → Conv2d``, the inferred arguments (or parameter shapes), what they depend on."""
    lines = [(f"{lazy.lazy_class} \u2192 {lazy.eager_class}", "op")]
    resolution = lazy.resolution
    if resolution is None:
        return lines + [("never called: unresolved", "note")]
    if resolution.arguments:
        lines += [(_short(f"{k}={fmt(v)}", 56), "args") for k, v in resolution.arguments.items()]
    else:
        lines += [(_short(f"{k} {fmt(s)}", 56), "args") for k, s in resolution.parameter_shapes.items()]
    if not lazy.is_concrete:
        lines.append((f"depends on {', '.join(lazy.symbols())}", "note"))
    return lines


def _arguments(record) -> str:
    resolution = record.resolution
    args = ", ".join(f"{k}={fmt(v)}" for k, v in resolution.arguments.items()) if resolution else "never called"
    return f"{record.eager_class}({args})"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# -- text metrics -----------------------------------------------------------------------------------

# DejaVu Sans advance widths (1/1000 em) for ASCII 32..126, regular and bold; the SVG asks for
# DejaVu Sans first, then Verdana, whose metrics are close. Other characters count as 1 em.
_SANS = (318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636, 636,
         636, 636, 636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752, 295,
         295, 656, 557, 863, 748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390, 838,
         500, 500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521,
         392, 634, 592, 818, 592, 592, 525, 636, 337, 636, 838)
_SANS_BOLD = (348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696, 696,
              696, 696, 696, 696, 696, 696, 400, 400, 838, 838, 838, 580, 1000, 774, 762, 734, 830, 683, 683, 821,
              837, 372, 372, 775, 637, 995, 837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771, 724, 725, 457,
              365, 457, 838, 500, 500, 675, 716, 593, 716, 678, 435, 716, 712, 343, 343, 665, 343, 1042, 712, 687,
              716, 716, 493, 595, 478, 712, 652, 924, 645, 652, 582, 712, 365, 712, 838)
_MONO = 602  # DejaVu Sans Mono, Menlo: every character

SANS_FONT = "'DejaVu Sans', Verdana, 'Segoe UI', sans-serif"
MONO_FONT = "'DejaVu Sans Mono', Menlo, Consolas, monospace"


@dataclass(frozen=True)
class Font:
    size: float
    bold: bool = False
    mono: bool = False

    def width(self, text: str) -> float:
        if self.mono:
            return len(text) * _MONO * self.size / 1000
        table = _SANS_BOLD if self.bold else _SANS
        units = sum(table[ord(c) - 32] if 32 <= ord(c) < 127 else 1000 for c in text)
        return units * self.size / 1000 * 1.04  # a little room for other fonts' metrics


TITLE, OP, ARGS, NOTE, TAG, LABEL, LEGEND = Font(13, bold=True), Font(11.5), Font(11, mono=True), Font(11), \
    Font(9.5, bold=True), Font(11, mono=True), Font(11)
TITLE_BIG, ROW_TITLE = Font(15, bold=True), Font(11.5, bold=True)
STYLE_FONT = {"op": OP, "args": ARGS, "note": NOTE}

# -- colours, each with a meaning (the legend lists them) -----------------------------------------

KINDS = {  # kind: (fill, stroke, legend text)
    "input": ("#e3eefb", "#3b6fb6", "model input / output"),
    "module": ("#ffffff", "#8c959f", "module"),
    "function": ("#f3f4f6", "#b6bdc6", "function or tensor method"),
    "lazy": ("#fff1cc", "#c98a00", "lazy module, resolved (its inferred arguments)"),
    "unresolved": ("#fde4e4", "#c93c3c", "lazy module depending on input symbols"),
}
KINDS["output"] = KINDS["input"]
KINDS["stack"] = KINDS["module"]
TAGS = {"meta kernel": ("#7a4fd0", "computed by PyTorch's meta kernel (no lazyfx rule)"),
        "abstract execution": ("#0f7b84", "abstract execution (not traced)")}
TEXT, MUTED, EDGE, LABEL_FILL, LABEL_STROKE = "#1f2328", "#57606a", "#6e7781", "#f6f8fa", "#d0d7de"

# -- layout -----------------------------------------------------------------------------------------

PAD_X, PAD_Y, LINE_GAP = 12, 8, 4
H_GAP, STEM, LABEL_H, LAYER_GAP, DUMMY_W = 28, 7, 19, 22, 10
MARGIN, HEADER_GAP = 24, 18


@dataclass
class Placed:
    name: str
    layer: int
    width: float  # the slot: the box or its output label, whichever is wider
    box_w: float = 0.0
    box_h: float = 0.0
    dummy: bool = False
    x: float = 0.0  # centre
    y: float = 0.0  # top of the box


ROW_H, COLUMN_GAP = 15, 14


def _columns(box: Box) -> tuple[float, float, float]:
    """The widths of a stack's three columns: titles, operations, output shapes."""
    return (max(ROW_TITLE.width(r.title) for r in box.rows),
            max(OP.width(_row_text(r)) for r in box.rows),
            max(LABEL.width(r.shape) for r in box.rows))


def _row_text(row: Row) -> str:
    return row.text + "".join(f" [{t}]" for t in row.tags)


def _box_size(box: Box) -> tuple[float, float]:
    if box.rows:
        width = sum(_columns(box)) + 2 * COLUMN_GAP
        return math.ceil(width + 2 * PAD_X), math.ceil(ROW_H * len(box.rows) + 2 * PAD_Y)
    width = TITLE.width(box.title)
    height = TITLE.size
    for text, style in box.lines:
        width = max(width, STYLE_FONT[style].width(text))
        height += LINE_GAP + STYLE_FONT[style].size + 1
    if box.tags:
        width = max(width, sum(TAG.width(t.upper()) + 12 for t in box.tags) + 4 * (len(box.tags) - 1))
        height += LINE_GAP + TAG.size + 6
    return math.ceil(width + 2 * PAD_X), math.ceil(height + 2 * PAD_Y)


def _layers(graph: nx.DiGraph) -> dict[str, int]:
    """Top-to-bottom layers: topological generations, with sources other than the model's inputs
    (constants, parameters read in forward) moved down to just above their first consumer."""
    layer = {n: i for i, generation in enumerate(nx.topological_generations(graph)) for n in generation}
    for node in graph:
        if graph.in_degree(node) == 0 and graph.out_degree(node) and graph.nodes[node]["box"].kind != "input":
            layer[node] = min(layer[s] for s in graph.successors(node)) - 1
    return layer


@dataclass
class Layout:
    nodes: dict[str, Placed]
    order: list[list[str]]  # per layer, left to right (dummies included)
    routes: dict[tuple[str, str], list[str]]  # each edge: source, its waypoints (dummies), target
    rows: list[tuple[float, float]]  # per layer: top of the row, its height
    width: float
    height: float


def layout(graph: nx.DiGraph) -> Layout:
    layer = _layers(graph)
    nodes: dict[str, Placed] = {}
    for name, data in graph.nodes(data=True):
        box_w, box_h = _box_size(data["box"])
        labels = {d["label"] for _, _, d in graph.out_edges(name, data=True)}
        label_w = max((LABEL.width(t) + 14 for t in labels), default=0.0)
        nodes[name] = Placed(name, layer[name], max(box_w, label_w), box_w, box_h)
    routes: dict[tuple[str, str], list[str]] = {}
    links: list[tuple[str, str]] = []  # edges between adjacent layers, dummies included
    for source, target in graph.edges:
        path = [source]
        for step in range(layer[source] + 1, layer[target]):
            dummy = f"\0{source}\0{target}\0{step}"
            nodes[dummy] = Placed(dummy, step, DUMMY_W, dummy=True)
            path.append(dummy)
        path.append(target)
        routes[(source, target)] = path
        links += list(zip(path, path[1:]))
    order = _order(nodes, links, list(graph.nodes))
    _place_x(nodes, order, links)
    rows = _place_y(nodes, order)
    left = min((n.x - n.width / 2 for n in nodes.values()), default=0.0)
    for n in nodes.values():
        n.x += MARGIN - left
    width = max((n.x + n.width / 2 for n in nodes.values()), default=0.0) + MARGIN
    height = rows[-1][0] + rows[-1][1] + MARGIN if rows else 2 * MARGIN
    return Layout(nodes, order, routes, rows, width, height)


def _order(nodes: dict[str, Placed], links: list[tuple[str, str]], graph_order: list[str]) -> list[list[str]]:
    """Nodes per layer, ordered to reduce crossings: barycenter sweeps down and up from the
    graph's own order, keeping the best ordering seen."""
    depth = max((n.layer for n in nodes.values()), default=-1) + 1
    rank = {name: i for i, name in enumerate(graph_order)}
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in links:
        succs[a].append(b)
        preds[b].append(a)

    def first_rank(name: str) -> float:  # a dummy sorts with the edge's source
        return rank[name.split("\0")[1]] + 0.5 if nodes[name].dummy else rank[name]

    order = [sorted((n for n in nodes if nodes[n].layer == i), key=first_rank) for i in range(depth)]
    best, best_crossings = [list(o) for o in order], _crossings(order, succs)
    for sweep in range(12):
        down = sweep % 2 == 0
        layers = range(1, depth) if down else range(depth - 2, -1, -1)
        for i in layers:
            fixed = order[i - 1] if down else order[i + 1]
            order[i] = _by_barycenter(order[i], {n: p for p, n in enumerate(fixed)}, preds if down else succs)
        _transpose(order, succs)
        crossings = _crossings(order, succs)
        if crossings < best_crossings:
            best, best_crossings = [list(o) for o in order], crossings
        if crossings == 0:
            break
    return best


def _by_barycenter(row: list[str], position: Mapping[str, int], neighbours: Mapping[str, list[str]]) -> list[str]:
    """``row`` sorted by the mean position of each node's neighbours in the fixed layer (a node
    without any keeps its place)."""
    def key(item: tuple[int, str]) -> tuple[float, int]:
        current, name = item
        placed = [position[m] for m in neighbours[name] if m in position]
        return (sum(placed) / len(placed) if placed else current, current)

    return [name for _, name in sorted(enumerate(row), key=key)]


def _transpose(order: list[list[str]], succs: Mapping[str, list[str]]) -> None:
    """Swap neighbours in a layer while that removes crossings (settles barycenter ties)."""
    for _ in range(4):
        improved = False
        for i, row in enumerate(order):
            around = order[max(i - 1, 0):i + 2]
            for k in range(len(row) - 1):
                before = _crossings(around, succs)
                row[k], row[k + 1] = row[k + 1], row[k]
                if _crossings(around, succs) < before:
                    improved = True
                else:
                    row[k], row[k + 1] = row[k + 1], row[k]
        if not improved:
            return


def _crossings(order: list[list[str]], succs: Mapping[str, list[str]]) -> int:
    """Edge crossings between adjacent layers: inversions of the lower ends, counted with a
    Fenwick tree (wide layers stay fast)."""
    total = 0
    for upper, lower in zip(order, order[1:]):
        position = {n: i for i, n in enumerate(lower)}
        ends = sorted((i, position[s]) for i, n in enumerate(upper) for s in succs[n] if s in position)
        tree = [0] * (len(lower) + 1)
        for seen, (_, b) in enumerate(ends):
            i, not_greater = b + 1, 0
            while i > 0:
                not_greater += tree[i]
                i -= i & -i
            total += seen - not_greater
            i = b + 1
            while i <= len(lower):
                tree[i] += 1
                i += i & -i
    return total


def _place_x(nodes: dict[str, Placed], order: list[list[str]], links: list[tuple[str, str]]) -> None:
    """Centres: each layer packed, then moved toward the mean of its neighbours' centres, down and
    up a few times, keeping the order and the gaps (isotonic regression, pool adjacent violators)."""
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in links:
        succs[a].append(b)
        preds[b].append(a)
    for row in order:
        x = 0.0
        for name in row:
            nodes[name].x = x + nodes[name].width / 2
            x += nodes[name].width + H_GAP
    for sweep in range(9):  # down, up, ..., down: a chain ends up straight below its head
        down = sweep % 2 == 0
        rows = order[1:] if down else order[-2::-1]
        for row in rows:
            wanted = []
            for name in row:
                others = preds[name] if down else succs[name]
                wanted.append(sum(nodes[m].x for m in others) / len(others) if others else nodes[name].x)
            gaps = [(nodes[a].width + nodes[b].width) / 2 + _gap(nodes[a], nodes[b]) for a, b in zip(row, row[1:])]
            weights = [1.0 if nodes[n].dummy else 4.0 for n in row]  # long edges give way to boxes
            for name, x in zip(row, _spread(wanted, gaps, weights)):
                nodes[name].x = x


def _gap(a: Placed, b: Placed) -> float:
    return H_GAP / 2 if a.dummy or b.dummy else H_GAP


def _spread(wanted: list[float], gaps: list[float], weights: list[float]) -> list[float]:
    """Positions closest (weighted least squares) to ``wanted`` with ``x[i+1] - x[i] >= gaps[i]``:
    isotonic regression of ``wanted - offsets`` by pooling adjacent violators."""
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    blocks: list[list[float]] = []  # [weighted mean, total weight, count]
    for w, o, weight in zip(wanted, offsets, weights):
        blocks.append([w - o, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    values = [m for m, _, c in blocks for _ in range(c)]
    return [v + o for v, o in zip(values, offsets)]


def _place_y(nodes: dict[str, Placed], order: list[list[str]]) -> list[tuple[float, float]]:
    """Each layer's row: its boxes (centred in the row), a stem, the band for output labels."""
    rows, y = [], 0.0
    for row in order:
        height = max((nodes[n].box_h for n in row if not nodes[n].dummy), default=0.0)
        for name in row:
            nodes[name].y = y + (height - nodes[name].box_h) / 2
        rows.append((y, height))
        y += height + STEM + LABEL_H + LAYER_GAP
    return rows


# -- SVG --------------------------------------------------------------------------------------------


def header(report) -> tuple[str, str]:
    """The picture's heading: the report's ``Model(x: ...) → ...`` line and its domain."""
    inputs = ", ".join(f"{name}: {describe(value)}" for name, value in report.inputs.items())
    return f"{report.model}({inputs}) \u2192 {describe(report.output)}", f"valid for: {report.domain}"


@dataclass
class Geometry:
    placed: Layout
    width: float
    height: float
    legend: list[list[LegendItem]]
    legend_top: float
    graph_top: float


def _geometry(report, graph: nx.DiGraph, heading: bool = True) -> Geometry:
    placed = layout(graph)
    title, subtitle = header(report)
    width = max(placed.width, 360, *([TITLE_BIG.width(title) + 2 * MARGIN, OP.width(subtitle) + 2 * MARGIN]
                                     if heading else []))
    legend = _legend_rows(_legend_items(graph), width - 2 * MARGIN)
    legend_top = MARGIN + (44 if heading else 0)
    graph_top = legend_top + 18 * len(legend) + HEADER_GAP
    return Geometry(placed, width, graph_top + placed.height, legend, legend_top, graph_top)


def svg_size(report, graph: nx.DiGraph) -> tuple[float, float]:
    """The width and height, in pixels, of :func:`to_svg`'s picture of ``graph``."""
    geometry = _geometry(report, graph)
    return geometry.width, geometry.height


def to_svg(report, graph: nx.DiGraph, heading: bool = True) -> str:
    """A standalone SVG picture of the dataflow graph: a heading (the report's input/output line
    and domain, unless ``heading=False``), a legend, the graph."""
    geometry = _geometry(report, graph, heading)
    placed, width, height, legend = geometry.placed, geometry.width, geometry.height, geometry.legend
    legend_top, graph_top = geometry.legend_top, geometry.graph_top
    title, subtitle = header(report)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{SANS_FONT}" class="lazyfx-graph">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M 0 1 L 9 5 L 0 9 z" fill="{EDGE}"/></marker></defs>',
        '<rect width="100%" height="100%" fill="#ffffff"/>',
    ]
    if heading:
        out += [f'<text x="{MARGIN}" y="{MARGIN + 12}" font-size="{TITLE_BIG.size}" font-weight="bold" '
                f'fill="{TEXT}">{escape(title)}</text>',
                f'<text x="{MARGIN}" y="{MARGIN + 30}" font-size="{OP.size}" fill="{MUTED}">{escape(subtitle)}</text>']
    out += _legend(legend, MARGIN, legend_top)
    out.append(f'<g transform="translate({(width - placed.width) / 2:.0f} {graph_top:.0f})">')
    out += _edges(graph, placed)
    out += _labels(graph, placed)
    out += [_node(graph.nodes[name]["box"], placed.nodes[name]) for name in graph.nodes]
    out += ["</g>", "</svg>"]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class LegendItem:
    fill: str
    stroke: str
    text: str
    dashed: bool = False
    line: bool = False  # an edge, not a box

    @property
    def width(self) -> float:
        return LEGEND.width(self.text) + 36


def _legend_items(graph: nx.DiGraph) -> list[LegendItem]:
    """One item for each kind of box and edge the picture has."""
    boxes = [d["box"] for _, d in graph.nodes(data=True)]
    kinds = {b.kind for b in boxes} | {r.kind for b in boxes for r in b.rows} | {"input"}
    tags = {t for b in boxes for t in b.tags} | {t for b in boxes for r in b.rows for t in r.tags}
    items = [LegendItem(*KINDS[k]) for k in ("input", "module", "function", "lazy", "unresolved") if k in kinds]
    items += [LegendItem("#ffffff", TAGS[t][0], TAGS[t][1], dashed=True) for t in TAGS if t in tags]
    if "stack" in kinds:
        items.append(LegendItem(*KINDS["stack"][:2], "a chain of nodes, one row each (--all-nodes draws each)"))
    if any(not d["tensor"] for _, _, d in graph.edges(data=True)):
        items.append(LegendItem("none", EDGE, "a size or constant, not a tensor", dashed=True, line=True))
    return items


def _legend_rows(items: list[LegendItem], width: float) -> list[list[LegendItem]]:
    rows: list[list[LegendItem]] = [[]]
    for item in items:
        if rows[-1] and sum(i.width for i in rows[-1]) + item.width > width:
            rows.append([])
        rows[-1].append(item)
    return rows


def _legend(rows: list[list[LegendItem]], left: float, top: float) -> list[str]:
    out = [f'<g class="legend" font-size="{LEGEND.size}">']
    for number, row in enumerate(rows):
        x, y = left, top + 18 * number
        for item in row:
            dashed = ' stroke-dasharray="4 3"' if item.dashed else ""
            if item.line:
                out.append(f'<line x1="{x:.1f}" y1="{y + 6.5:.1f}" x2="{x + 22:.1f}" y2="{y + 6.5:.1f}" '
                           f'stroke="{item.stroke}" stroke-width="1.4"{dashed}/>')
            else:
                out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="22" height="13" rx="3" fill="{item.fill}" '
                           f'stroke="{item.stroke}" stroke-width="1.4"{dashed}/>')
            out.append(f'<text x="{x + 28:.1f}" y="{y + 10.5:.1f}" fill="{MUTED}">{escape(item.text)}</text>')
            x += item.width
    out.append("</g>")
    return out


def _ports(graph: nx.DiGraph, placed: Layout) -> dict[tuple[str, str], float]:
    """Where each edge enters its target's top: spread over the box, in the order the edges arrive."""
    ports = {}
    for target in graph.nodes:
        incoming = list(graph.predecessors(target))
        node = placed.nodes[target]
        arrive = sorted(incoming, key=lambda s: placed.nodes[placed.routes[(s, target)][-2]].x)
        step = min(18.0, node.box_w / (len(arrive) + 1))
        for i, source in enumerate(arrive):
            ports[(source, target)] = node.x + (i - (len(arrive) - 1) / 2) * step
    return ports


def _edges(graph: nx.DiGraph, placed: Layout) -> list[str]:
    ports = _ports(graph, placed)
    out = ['<g class="edges" fill="none">']
    for (source, target), path in placed.routes.items():
        data = graph.edges[source, target]
        start = placed.nodes[source]
        x, y = start.x, _row_bottom(placed, start) + STEM + LABEL_H
        d = f"M {x:.1f} {y:.1f}"
        for name in path[1:]:
            node = placed.nodes[name]
            if node.dummy:  # through the row and its label band, straight down
                top, bottom = placed.rows[node.layer][0], _row_bottom(placed, node) + STEM + LABEL_H
                d += _curve(x, y, node.x, top) + f" L {node.x:.1f} {bottom:.1f}"
                x, y = node.x, bottom
            else:
                d += _curve(x, y, ports[(source, target)], node.y - 1)
        dashed = "" if data["tensor"] else ' stroke-dasharray="5 4"'
        out.append(f'<path class="edge" data-source={quoteattr(source)} data-target={quoteattr(target)} d="{d}" '
                   f'stroke="{EDGE}" stroke-width="1.4"{dashed} marker-end="url(#arrow)"/>')
    out.append("</g>")
    return out


def _row_bottom(placed: Layout, node: Placed) -> float:
    top, height = placed.rows[node.layer]
    return top + height


def _curve(x0: float, y0: float, x1: float, y1: float) -> str:
    if abs(x1 - x0) < 0.5:
        return f" L {x1:.1f} {y1:.1f}"
    mid = (y1 - y0) / 2
    return f" C {x0:.1f} {y0 + mid:.1f} {x1:.1f} {y1 - mid:.1f} {x1:.1f} {y1:.1f}"


def _labels(graph: nx.DiGraph, placed: Layout) -> list[str]:
    """Each node's output label, once, on the stem below it (all its out-edges carry that value)."""
    out = ['<g class="shapes">']
    for name in graph.nodes:
        edges = list(graph.out_edges(name, data=True))
        if not edges:
            continue
        node, text, tensor = placed.nodes[name], edges[0][2]["label"], edges[0][2]["tensor"]
        bottom = _row_bottom(placed, node)
        width = LABEL.width(text) + 14
        out.append(f'<line x1="{node.x:.1f}" y1="{node.y + node.box_h:.1f}" x2="{node.x:.1f}" '
                   f'y2="{bottom + STEM:.1f}" stroke="{EDGE}" stroke-width="1.4"/>')
        fill, colour, italic = (LABEL_FILL, TEXT, "") if tensor else ("#ffffff", MUTED, ' font-style="italic"')
        out.append(f'<g class="shape" data-node={quoteattr(name)}>'
                   f'<rect x="{node.x - width / 2:.1f}" y="{bottom + STEM:.1f}" width="{width:.1f}" '
                   f'height="{LABEL_H}" rx="9.5" fill="{fill}" stroke="{LABEL_STROKE}"/>'
                   f'<text x="{node.x:.1f}" y="{bottom + STEM + 13.5:.1f}" text-anchor="middle" '
                   f'font-family="{MONO_FONT}" font-size="{LABEL.size}" fill="{colour}"{italic}>{escape(text)}</text></g>')
    out.append("</g>")
    return out


def _stack(box: Box, node: Placed) -> str:
    """A chain as one box: a row per node (its title, operation and output shape), lazy rows
    filled with their kind's colour."""
    left, top = node.x - node.box_w / 2, node.y
    fill, stroke, _ = KINDS["stack"]
    titles, texts, _ = _columns(box)
    out = [f'<g class="node stack" id={quoteattr("node-" + box.name)} data-node={quoteattr(box.name)}>',
           f"<title>{escape(box.tooltip)}</title>",
           f'<rect x="{left:.1f}" y="{top:.1f}" width="{node.box_w:.1f}" height="{node.box_h:.1f}" rx="5" '
           f'fill="{fill}" stroke="{stroke}" stroke-width="1.2"/>']
    for i, row in enumerate(box.rows):
        y = top + PAD_Y + i * ROW_H
        classes = " ".join(["row", row.kind] + (["lazy"] if row.kind == "unresolved" else [])
                           + [t.replace(" ", "-") for t in row.tags])
        out.append(f'<g class="{classes}" data-node={quoteattr(row.name)}>')
        if row.kind in ("lazy", "unresolved"):
            row_fill, row_stroke, _ = KINDS[row.kind]
            out.append(f'<rect x="{left + 3:.1f}" y="{y + 1:.1f}" width="{node.box_w - 6:.1f}" height="{ROW_H - 2}" '
                       f'rx="3" fill="{row_fill}" stroke="{row_stroke}" stroke-width="1"/>')
        base = y + ROW_H / 2 + 3.5
        x = left + PAD_X
        colour = TAGS[row.tags[0]][0] if row.tags else MUTED
        out += [f'<text x="{x:.1f}" y="{base:.1f}" font-size="{ROW_TITLE.size}" font-weight="bold" '
                f'fill="{TEXT}">{escape(row.title)}</text>',
                f'<text x="{x + titles + COLUMN_GAP:.1f}" y="{base:.1f}" font-size="{OP.size}" '
                f'fill="{colour}">{escape(_row_text(row))}</text>',
                f'<text x="{x + titles + texts + 2 * COLUMN_GAP:.1f}" y="{base:.1f}" font-family="{MONO_FONT}" '
                f'font-size="{LABEL.size}" fill="{TEXT}">{escape(row.shape)}</text>', "</g>"]
    out.append("</g>")
    return "".join(out)


def _node(box: Box, node: Placed) -> str:
    if box.rows:
        return _stack(box, node)
    fill, stroke, _ = KINDS[box.kind]
    dashed = ""
    if box.tags:
        stroke, dashed = TAGS[box.tags[0]][0], ' stroke-dasharray="6 3"'
    classes = " ".join(["node", box.kind] + (["lazy"] if box.kind == "unresolved" else [])
                       + [t.replace(" ", "-") for t in box.tags])
    left, top = node.x - node.box_w / 2, node.y
    weight = 1.8 if box.kind in ("lazy", "unresolved") else 1.2
    out = [f'<g class="{classes}" id={quoteattr("node-" + box.name)} data-node={quoteattr(box.name)}>',
           f"<title>{escape(box.tooltip)}</title>",
           f'<rect x="{left:.1f}" y="{top:.1f}" width="{node.box_w:.1f}" height="{node.box_h:.1f}" '
           f'rx="{9 if box.kind == "function" else 5}" fill="{fill}" stroke="{stroke}" stroke-width="{weight}"{dashed}/>']
    y = top + PAD_Y + TITLE.size * 0.8
    out.append(f'<text x="{node.x:.1f}" y="{y:.1f}" text-anchor="middle" font-size="{TITLE.size}" '
               f'font-weight="bold" fill="{TEXT}">{escape(box.title)}</text>')
    y += TITLE.size * 0.2
    for text, style in box.lines:
        font = STYLE_FONT[style]
        y += LINE_GAP + font.size + 1
        family = f' font-family="{MONO_FONT}"' if font.mono else ""
        colour = {"op": MUTED, "args": TEXT, "note": KINDS["unresolved"][1]}[style]
        out.append(f'<text x="{node.x:.1f}" y="{y - 2:.1f}" text-anchor="middle" font-size="{font.size}"{family} '
                   f'fill="{colour}">{escape(text)}</text>')
    if box.tags:
        y += LINE_GAP + 2
        widths = [TAG.width(t.upper()) + 12 for t in box.tags]
        x = node.x - (sum(widths) + 4 * (len(widths) - 1)) / 2
        for tag, w in zip(box.tags, widths):
            colour = TAGS[tag][0]
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{TAG.size + 5}" rx="3" '
                       f'fill="{colour}"/><text x="{x + w / 2:.1f}" y="{y + TAG.size + 1:.1f}" text-anchor="middle" '
                       f'font-size="{TAG.size}" font-weight="bold" fill="#ffffff">{escape(tag.upper())}</text>')
            x += w + 4
    out.append("</g>")
    return "".join(out)


# -- HTML and DOT -----------------------------------------------------------------------------------


def to_html(report, graph: nx.DiGraph) -> str:
    """A standalone page: a title, the report's input/output line and domain, the SVG."""
    title, subtitle = header(report)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lazyfx: {escape(report.model)}</title>
<style>
  body {{ margin: 24px; font-family: {SANS_FONT}; color: {TEXT}; background: #ffffff; }}
  h1 {{ font-size: 20px; margin: 0 0 6px; }}
  p {{ margin: 0 0 4px; color: {MUTED}; }}
  code {{ font-family: {MONO_FONT}; color: {TEXT}; }}
  .picture {{ margin-top: 16px; overflow: auto; }}
  .picture .node:hover rect {{ stroke-width: 2.6; }}
</style>
</head>
<body>
<h1>{escape(report.model)}</h1>
<p><code>{escape(title)}</code></p>
<p>{escape(subtitle)}</p>
<div class="picture">
{to_svg(report, graph, heading=False)}</div>
</body>
</html>
"""


def to_dot(report, graph: nx.DiGraph) -> str:
    """Graphviz text (``dot -Tsvg``) with the same boxes, colours and labels."""
    title, _ = header(report)
    out = ["digraph lazyfx {",
           f"  graph [rankdir=TB, label={_dot_quote(title)}, labelloc=t, fontname=\"DejaVu Sans\", fontsize=14];",
           '  node [shape=box, style="rounded,filled", fontname="DejaVu Sans", fontsize=11];',
           '  edge [fontname="DejaVu Sans Mono", fontsize=10, color="#6e7781"];']
    for name, data in graph.nodes(data=True):
        box = data["box"]
        fill, stroke, _ = KINDS[box.kind]
        style = "rounded,filled" + (",dashed" if box.tags else "")
        lines = [box.title] + [text for text, _ in box.lines] + [f"[{t}]" for t in box.tags]
        if box.rows:
            lines = [" ".join(p for p in (f"{r.title}:", _row_text(r), f"\u2192 {r.shape}") if p) for r in box.rows]
        label = "\\n".join(_dot_escape(line) for line in lines)
        color = TAGS[box.tags[0]][0] if box.tags else stroke
        width = 1.8 if box.kind in ("lazy", "unresolved") else 1.0
        out.append(f'  {_dot_quote(name)} [label="{label}", fillcolor="{fill}", color="{color}", style="{style}", '
                   f'penwidth={width}, class="{box.kind}"];')
    for source, target, data in graph.edges(data=True):
        dashed = "" if data["tensor"] else ", style=dashed"
        out.append(f"  {_dot_quote(source)} -> {_dot_quote(target)} [label={_dot_quote(data['label'])}{dashed}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_quote(text: str) -> str:
    return f'"{_dot_escape(text)}"'


# -- Mermaid ----------------------------------------------------------------------------------------

# Mermaid's entity codes (#quot; ...) for what would end a label or be read as HTML
_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "|": "#124;"}


def _mermaid_text(text: str) -> str:
    return "".join(_MERMAID_ESCAPES.get(c, c) for c in text)


def _mermaid_id(name: str) -> str:
    # a prefix: an id may not be a keyword (end, graph) nor start an edge (o--, x--)
    return "n_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _mermaid_label(box: Box) -> str:
    if box.rows:
        return "<br/>".join(" ".join(part for part in (f"<b>{_mermaid_text(r.title)}</b>", _mermaid_text(_row_text(r)),
                                                      f"\u2192 {_mermaid_text(r.shape)}") if part.strip())
                            for r in box.rows)
    lines = [f"<b>{_mermaid_text(box.title)}</b>"] + [_mermaid_text(t) for t, _ in box.lines]
    return "<br/>".join(lines + [f"[{_mermaid_text(t)}]" for t in box.tags])


def to_mermaid(report, graph: nx.DiGraph) -> str:
    """A Mermaid flowchart (GitHub renders it in Markdown, a PR comment included): the same
    boxes, colours and edge labels, top to bottom; dashed edges carry a size, not a tensor."""
    title, subtitle = header(report)
    ids = {name: _mermaid_id(name) for name in graph.nodes}
    out = ["flowchart TD", f"  %% {title.replace(chr(10), ' ')}", f"  %% {subtitle.replace(chr(10), ' ')}"]
    for name, data in graph.nodes(data=True):
        box = data["box"]
        open_, close = ('(["', '"])') if box.kind in ("input", "output") else ('["', '"]')
        out.append(f"  {ids[name]}{open_}{_mermaid_label(box)}{close}")
    for source, target, data in graph.edges(data=True):
        arrow = "-->" if data["tensor"] else "-.->"
        out.append(f'  {ids[source]} {arrow}|"{_mermaid_text(data["label"])}"| {ids[target]}')
    classes: dict[str, list[str]] = {}
    for name, data in graph.nodes(data=True):
        box = data["box"]
        classes.setdefault(box.kind, []).append(ids[name])
        for tag in box.tags + [t for r in box.rows for t in r.tags]:
            classes.setdefault(tag.replace(" ", "_"), []).append(ids[name])
    for kind, (fill, stroke, _) in KINDS.items():
        if kind in classes:
            width = "2px" if kind in ("lazy", "unresolved") else "1px"
            out.append(f"  classDef {kind} fill:{fill},stroke:{stroke},stroke-width:{width},color:{TEXT}")
    for tag, (colour, _) in TAGS.items():
        if tag.replace(" ", "_") in classes:
            out.append(f"  classDef {tag.replace(' ', '_')} stroke:{colour},stroke-dasharray:6 3")
    out += [f"  class {','.join(dict.fromkeys(members))} {kind}" for kind, members in classes.items()]
    return "\n".join(out) + "\n"


def to_markdown(report, graph: nx.DiGraph) -> str:
    """A Markdown page (or a PR comment): the input/output line, the domain, and the Mermaid
    flowchart in a fenced block."""
    title, subtitle = header(report)
    return f"**{report.model}**: `{title}`\n\n{subtitle}\n\n```mermaid\n{to_mermaid(report, graph)}```\n"


def render(report, edges: Mapping[str, Sequence[str]], suffix: str, all_nodes: bool = False) -> str:
    """The picture as text, by file suffix: ``.svg``, ``.html``, ``.dot``, ``.mmd`` (Mermaid)
    or ``.md`` (Markdown with a Mermaid block). The graph is :func:`picture`'s."""
    renderers = dict(zip(FORMATS, (to_svg, to_html, to_dot, to_mermaid, to_markdown)))
    if suffix.lower() not in renderers:
        raise ValueError(f"cannot draw a graph as {suffix or 'a file without a suffix'}: use {_format_list()}")
    return renderers[suffix.lower()](report, picture(report, edges, all_nodes))


def _format_list() -> str:
    return ", ".join(FORMATS[:-1]) + " or " + FORMATS[-1]


def write(report, edges: Mapping[str, Sequence[str]], path: str, all_nodes: bool = False) -> None:
    """Write :func:`render`'s picture to ``path``, in the format its suffix names."""
    text = render(report, edges, os.path.splitext(path)[1], all_nodes)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
