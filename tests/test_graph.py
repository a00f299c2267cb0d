"""`lazyfx show --graph`: the dataflow graph as SVG, HTML and Graphviz DOT."""

import pathlib
import re
import xml.etree.ElementTree as ET

import pytest
import torch
import torch.nn as nn

import lazyfx
from lazyfx.outputs import graph
from lazyfx.cli import main
from lazyfx.demo import Net
from lazyfx.analysis.fallback.meta import RULE_NAME as FALLBACK
from lazyfx.analysis.records import NodeRecord, Provenance
from lazyfx.core.values import TensorMeta, describe

SVG = "{http://www.w3.org/2000/svg}"
GOLDEN = pathlib.Path(__file__).parent / "golden"
ROOT = pathlib.Path(__file__).parent.parent


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = nn.LazyConv2d(width, 3, padding=1)
        self.norm = nn.LazyBatchNorm2d()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class UNet(nn.Module):
    """A UNet-like block: a skip connection around a downsampling path, joined by torch.cat."""

    def __init__(self):
        super().__init__()
        self.enc = Block(16)
        self.pool = nn.MaxPool2d(2)
        self.mid = Block(32)
        self.up = nn.LazyConvTranspose2d(16, 2, stride=2)
        self.dec = Block(16)
        self.head = nn.LazyConv2d(2, 1)

    def forward(self, x):
        skip = self.enc(x)
        merged = torch.cat([skip, self.up(self.mid(self.pool(skip)))], dim=1)
        return self.head(self.dec(merged)) + x.mean(1, keepdim=True)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)

    def forward(self, x):
        if x.sum() > 0:  # on values: abstract execution
            return self.fc(x)
        return self.fc(x)


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Untraceable()

    def forward(self, x):
        return self.inner(x.view(x.size(0), -1))


def _draw(model, *inputs, suffix=".svg", all_nodes=True):
    report = lazyfx.infer(model, *inputs)
    return report, graph.render(report, graph.edges(report), suffix, all_nodes=all_nodes)


def _nodes(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-node"): g for g in root.iter(f"{SVG}g") if "node" in (g.get("class") or "").split()}


def _texts(element: ET.Element) -> list[str]:
    return [t.text for t in element.iter(f"{SVG}text")]


def _rects(root: ET.Element, kind: str) -> list[tuple[float, float, float, float]]:
    groups = [g for g in root.iter(f"{SVG}g") if kind in (g.get("class") or "").split()]
    rects = []
    for g in groups:
        r = g.find(f"{SVG}rect")
        rects.append(tuple(float(r.get(k)) for k in ("x", "y", "width", "height")))
    return rects


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_the_demo_svg_is_well_formed_with_every_node_and_shape():
    report, svg = _draw(Net(), ("B", 3, 32, 32))
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    boxes = _nodes(root)
    assert set(boxes) == {n.name for n in report.nodes}
    for record in report.nodes:
        if record.module_path:
            assert record.module_path in _texts(boxes[record.name])
    shapes = {g.get("data-node"): _texts(g)[0] for g in root.iter(f"{SVG}g") if g.get("class") == "shape"}
    assert shapes == {n.name: describe(n.value) for n in report.nodes if n.op != "output"}
    assert "(B, 64, 6, 6)" in shapes.values() and "(B, 2304)" in shapes.values()
    assert len(list(root.iter(f"{SVG}path"))) - 1 == len(report.nodes) - 1  # a chain (and the arrow head)


def test_lazy_nodes_carry_the_highlight_class_and_their_arguments():
    _, svg = _draw(Net(), ("B", 3, 32, 32))
    boxes = _nodes(ET.fromstring(svg))
    lazy = {name for name, g in boxes.items() if "lazy" in g.get("class").split()}
    assert lazy == {"features_0", "features_1", "features_3", "head"}
    assert "in_features=2304" in _texts(boxes["head"])
    assert "LazyConv2d \u2192 Conv2d" in _texts(boxes["features_0"])
    assert boxes["features_2"].get("class") == "node module"


def test_symbol_dependent_lazy_nodes_are_marked_with_the_formula():
    _, svg = _draw(Net(), ("B", 3, "H", "W"))
    head = _nodes(ET.fromstring(svg))["head"]
    assert head.get("class").split() == ["node", "unresolved", "lazy"]
    assert "in_features=64*((H - 9)//4 + 1)*((W - 9)//4 + 1)" in _texts(head)
    assert "depends on H, W" in _texts(head)


def test_a_branching_model_has_its_skip_edges_and_nothing_overlaps():
    model = UNet()
    report, svg = _draw(model, ("B", 3, "H", "W"))
    root = ET.fromstring(svg)
    edges = [(p.get("data-source"), p.get("data-target")) for p in root.iter(f"{SVG}path") if p.get("data-source")]
    traced = {n.name: [i.name for i in n.all_input_nodes] for n in torch.fx.symbolic_trace(model).graph.nodes}
    assert graph.edges(report) == traced  # the report's edges are the model's dataflow
    assert sorted(edges) == sorted((s, t) for t, sources in traced.items() for s in sources)
    assert ("enc_act", "cat") in edges and ("up", "cat") in edges  # the skip and the upsampled path
    assert ("x", "mean") in edges and ("x", "enc_conv") in edges
    boxes, labels = _rects(root, "node"), _rects(root, "shape")
    assert len(labels) == len(report.nodes) - 1
    for i, a in enumerate(boxes + labels):
        for b in (boxes + labels)[i + 1:]:
            assert not _overlap(a, b), (a, b)


def test_the_layout_has_no_crossings_where_none_are_needed():
    model = UNet()
    report = lazyfx.infer(model, ("B", 3, 32, 32))
    dataflow = graph.dataflow(report, graph.edges(report))
    placed = graph.layout(dataflow)
    links = [(a, b) for path in placed.routes.values() for a, b in zip(path, path[1:])]
    succs = {n: [b for a, b in links if a == n] for n in placed.nodes}
    assert graph._crossings(placed.order, succs) == 0
    layers = graph._layers(dataflow)
    assert all(layers[s] < layers[t] for s, t in dataflow.edges)


def test_spread_keeps_the_order_and_the_gaps():
    x = graph._spread([10.0, 10.0, 10.0, 100.0], [20.0, 30.0, 5.0], [1.0, 1.0, 1.0, 1.0])
    assert [b - a for a, b in zip(x, x[1:])][:2] == pytest.approx([20.0, 30.0])
    assert x[3] == pytest.approx(100.0)
    assert sum(x[:3]) / 3 == pytest.approx(10.0)  # the three that collide are centred on what they want


def test_fallback_and_abstract_execution_nodes_are_marked():
    _, svg = _draw(Outer(), ("B", 2, 3))
    inner = _nodes(ET.fromstring(svg))["inner"]
    assert "abstract-execution" in inner.get("class").split()
    assert "ABSTRACT EXECUTION" in _texts(inner) and "fc: Linear(in_features=6)" in _texts(inner)
    record = NodeRecord("erf", "call_function", "torch.special_i0e", None, [], TensorMeta((2, 3)), FALLBACK, None,
                        provenance=Provenance.META_KERNEL)
    box = graph._box(record, lazyfx.infer(Net(), ("B", 3, 32, 32)))
    assert box.tags == ["meta kernel"] and box.kind == "function"


def test_non_tensor_edges_are_dashed_and_in_the_legend():
    _, svg = _draw(Outer(), ("B", 2, 3))
    root = ET.fromstring(svg)
    dashed = [p for p in root.iter(f"{SVG}path") if p.get("data-source") == "size"]
    assert dashed and all(p.get("stroke-dasharray") for p in dashed)
    assert "a size or constant, not a tensor" in _texts(root.find(f"{SVG}g[@class='legend']"))


def test_dot_output():
    report, dot = _draw(UNet(), ("B", 3, 32, 32), suffix=".dot")
    assert dot.startswith("digraph lazyfx {") and dot.rstrip().endswith("}")
    for record in report.nodes:
        assert f'"{record.name}" [label=' in dot
    assert '"enc_act" -> "cat" [label="(B, 16, 32, 32)"];' in dot
    assert re.search(r'"up" \[label="up\\nLazyConvTranspose2d → ConvTranspose2d\\nin_channels=32", '
                     r'fillcolor="#fff1cc"', dot)


def test_html_output_embeds_the_svg_with_a_title():
    _, page = _draw(Net(), ("B", 3, 32, 32), suffix=".html")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>lazyfx: Net</title>" in page
    assert "Net(x: (B, 3, 32, 32)) \u2192 (B, 10)" in page
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    assert len(_nodes(ET.fromstring(svg))) == 9


def test_show_writes_the_graph_after_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    for suffix in (".svg", ".html", ".dot"):
        out = tmp_path / f"net{suffix}"
        assert main(["show", "lazyfx.demo:Net", "--input", "B,3,32,32", "--graph", str(out)]) == 0
        captured = capsys.readouterr()
        assert captured.out == (GOLDEN / "demo_concrete.txt").read_text()
        assert captured.err == f"wrote {out}\n"
        assert "features.0" in out.read_text()
    ET.parse(tmp_path / "net.svg")


def test_show_graph_usage_errors(tmp_path, capsys):
    assert main(["show", "lazyfx.demo:Net", "-i", "B,3,32,32", "--graph", str(tmp_path / "net.png")]) == 2
    assert "must end in .svg, .html, .dot, .mmd or .md" in capsys.readouterr().err
    assert main(["show", "lazyfx.demo:Net", "-i", "B,3,32,32", "--all-nodes"]) == 2
    assert "--all-nodes is an option of --graph FILE" in capsys.readouterr().err
    assert main(["show", "lazyfx.demo:Net", "-i", "B,3,32,32", "--graph", str(tmp_path / "no" / "net.svg")]) == 2
    assert "cannot write" in capsys.readouterr().err
