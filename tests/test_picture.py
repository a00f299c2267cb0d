"""What `lazyfx show --graph` draws by default: bookkeeping nodes behind their consumers, long
chains as one box (a 14-layer CNN fits one screen), and Mermaid that GitHub renders."""

import json
import re
import warnings
import xml.etree.ElementTree as ET

import torch.nn as nn

import lazyfx
from lazyfx import cli
from lazyfx.cli import main
from lazyfx.demo import Net
from lazyfx.outputs import graph

SVG = "{http://www.w3.org/2000/svg}"


class Recurrent(nn.Module):
    """Bookkeeping of every kind: x.shape, getitem of sizes and of the LSTM's outputs, a size
    query, size arithmetic and a comparison; x[:, -1] indexes a tensor and stays."""

    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(8, 3)
        self.rnn = nn.LSTM(8, 4, batch_first=True)
        self.fc = nn.LazyLinear(2)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        if y.size(2) > 0:
            y = y * 2
        y = y.view(b, c, h * w).transpose(1, 2)
        out, _ = self.rnn(y)
        return self.fc(out[:, -1] + y.size(1))


class CNN14(nn.Module):
    """12 conv layers (conv, batch norm, ReLU; a max pool after every third) and 2 linear layers."""

    def __init__(self):
        super().__init__()
        layers = []
        for i, width in enumerate((32, 32, 32, 64, 64, 64, 128, 128, 128, 256, 256, 256)):
            layers += [nn.LazyConv2d(width, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU()]
            if i % 3 == 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))

    def forward(self, x):
        return self.head(self.features(x))


BOOKKEEPING = {"getattr_1", "getitem", "getitem_1", "getitem_2", "getitem_3", "size", "gt", "mul_1", "getitem_4",
               "getitem_5", "size_1"}


def _picture(model, spec, all_nodes=False):
    report = lazyfx.infer(model, spec)
    return report, graph.picture(report, graph.edges(report), all_nodes=all_nodes)


def _svg_height(svg: str) -> float:
    return float(ET.fromstring(svg).get("height"))


def test_bookkeeping_nodes_are_drawn_as_part_of_their_consumers():
    report, shown = _picture(Recurrent(), ("B", 3, "H", "W"))
    everything = graph.dataflow(report, graph.edges(report))
    assert {n.name for n in report.nodes} - set(graph.hide_bookkeeping(everything)) == BOOKKEEPING
    hidden = graph.hide_bookkeeping(everything)
    assert len(hidden) == len(report.nodes) - len(BOOKKEEPING) == 10
    assert "getitem_6" in hidden  # out[:, -1] indexes a tensor: an operation
    assert hidden.has_edge("rnn", "getitem_6") and hidden.edges["rnn", "getitem_6"]["tensor"]
    assert hidden.has_edge("conv", "view") and not hidden.edges["conv", "view"]["tensor"]  # only its sizes
    assert set(hidden.nodes["view"]["box"].hidden) == {"getattr_1", "getitem", "getitem_1", "getitem_2",
                                                        "getitem_3", "mul_1"}
    assert not hidden.has_node("gt")  # a comparison that only Python's `if` read
    assert len(graph.picture(report, graph.edges(report), all_nodes=True)) == len(report.nodes)


def test_a_model_without_bookkeeping_keeps_every_node():
    report, shown = _picture(Net(), ("B", 3, 32, 32))
    assert set(shown) == {n.name for n in report.nodes}
    assert all(not d["box"].rows for _, d in shown.nodes(data=True))


def test_a_14_layer_cnn_fits_one_screen_with_a_row_per_node():
    report = lazyfx.infer(CNN14(), ("B", 3, "H", "W"))
    svg = graph.render(report, graph.edges(report), ".svg")
    assert _svg_height(svg) <= graph.SCREEN_HEIGHT == 1080
    root = ET.fromstring(svg)
    rows = {g.get("data-node"): g for g in root.iter(f"{SVG}g") if "row" in (g.get("class") or "").split()}
    assert set(rows) == {n.name for n in report.nodes if n.op not in ("placeholder", "output")}
    head = rows["head_1"]
    assert head.get("class").split()[:2] == ["row", "unresolved"]
    texts = [t.text for t in head.iter(f"{SVG}text")]
    assert texts == ["head.1", "LazyLinear \u2192 Linear(in_features=256*(H//16)*(W//16))", "(B, 256)"]
    assert [t.text for t in rows["features_9"].iter(f"{SVG}text")][2] == "(B, 32, H//2, W//2)"
    # every node its own box: five times as tall
    tall = graph.render(report, graph.edges(report), ".svg", all_nodes=True)
    assert _svg_height(tall) > 4 * graph.SCREEN_HEIGHT


def test_chains_stop_at_branches_and_joins():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.d = nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(8), nn.ReLU()

        def forward(self, x):
            y = self.a(x)
            return self.d(self.c(self.b(y)) + y)

    report, shown = _picture(Skip(), ("B", 4))
    chains = graph._chains(shown)
    # a feeds two nodes: a chain ends there; add joins two: a chain starts there
    assert chains == [["b", "c"], ["add", "d"]]
    stacked = graph.stack_chains(shown)
    assert set(stacked) == {"x", "a", "b", "add", "output"}
    assert [r.name for r in stacked.nodes["b"]["box"].rows] == ["b", "c"]
    assert sorted(stacked.edges) == [("a", "add"), ("a", "b"), ("add", "output"), ("b", "add"), ("x", "a")]


# -- Mermaid -----------------------------------------------------------------------------------------

NODE = re.compile(r'^  (n_\w+)(\(\["|\[")((?:[^"])*)("\]\)|"\])$')
EDGE = re.compile(r'^  (n_\w+) (-->|-\.->)\|"([^"]*)"\| (n_\w+)$')
CLASSDEF = re.compile(r"^  classDef (\w+) [\w-]+:[^ ,]+(?:,[\w-]+:[^,]+)*$")
CLASS = re.compile(r"^  class (n_\w+(?:,n_\w+)*) (\w+)$")


def _parse_mermaid(text: str) -> tuple[dict, list, dict, dict]:
    """Mermaid's flowchart grammar, the subset lazyfx writes: every line must be one of these."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes, edges, classdefs, classes = {}, [], {}, {}
    for line in lines[1:]:
        if line.startswith("  %% "):
            continue
        if m := NODE.match(line):
            assert m.group(1) not in nodes and {m.group(2), m.group(4)} in ({'["', '"]'}, {'(["', '"])'})
            nodes[m.group(1)] = m.group(3)
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(4), m.group(3), m.group(2)))
        elif m := CLASSDEF.match(line):
            classdefs[m.group(1)] = line
        elif m := CLASS.match(line):
            for member in m.group(1).split(","):
                classes.setdefault(member, set()).add(m.group(2))
        else:
            raise AssertionError(f"not Mermaid lazyfx writes: {line!r}")
    for source, target, _, _ in edges:
        assert source in nodes and target in nodes
    assert set(classes) <= set(nodes) and {c for cs in classes.values() for c in cs} <= set(classdefs)
    return nodes, edges, classes, classdefs


def test_mermaid_has_every_box_and_edge_of_the_picture():
    report, shown = _picture(Recurrent(), ("B", 3, "H", "W"))
    nodes, edges, classes, _ = _parse_mermaid(graph.render(report, graph.edges(report), ".mmd"))
    assert set(nodes) == {graph._mermaid_id(n) for n in shown}
    assert sorted((s, t) for s, t, _, _ in edges) == sorted((graph._mermaid_id(s), graph._mermaid_id(t))
                                                           for s, t in shown.edges)
    labels = {(s, t): (label, arrow) for s, t, label, arrow in edges}
    assert labels["n_x", "n_conv"] == ("(B, 3, H, W)", "-->")
    assert labels["n_conv", "n_view"][1] == "-.->"  # only sizes flow
    assert "lazy" in classes["n_fc"] and classes["n_x"] == {"input"}
    assert "<b>fc</b><br/>LazyLinear → Linear<br/>in_features=4" in nodes["n_fc"]


def test_mermaid_escapes_what_would_end_a_label():
    assert graph._mermaid_text('a "b" | c<d> & #') == "a #quot;b#quot; #124; c#lt;d#gt; #amp; #35;"
    assert graph._mermaid_id("end") == "n_end" and graph._mermaid_id("x") == "n_x"


def test_mermaid_of_a_stacked_cnn_and_its_markdown_page():
    report = lazyfx.infer(CNN14(), ("B", 3, "H", "W"))
    text = graph.render(report, graph.edges(report), ".mmd")
    nodes, edges, classes, _ = _parse_mermaid(text)
    assert set(nodes) == {"n_x", "n_features_0", "n_output"} and classes["n_features_0"] == {"stack"}
    rows = nodes["n_features_0"].split("<br/>")
    assert len(rows) == len(report.nodes) - 2
    assert rows[-1] == "<b>head.3</b> LazyLinear → Linear(in_features=256) → (B, 10)"
    page = graph.render(report, graph.edges(report), ".md")
    assert page.startswith("**CNN14**: `CNN14(x: (B, 3, H, W)) → (B, 10)`\n\nvalid for: H >= 16 and W >= 16\n")
    assert page.endswith(f"```mermaid\n{text}```\n")


def test_show_writes_mermaid_and_every_node_on_request(tmp_path, capsys):
    out = tmp_path / "net.mmd"
    assert main(["show", "lazyfx.demo:Net", "-i", "B,3,32,32", "--graph", str(out), "--all-nodes"]) == 0
    assert capsys.readouterr().err == f"wrote {out}\n"
    nodes, edges, _, _ = _parse_mermaid(out.read_text())
    assert len(nodes) == 9 and len(edges) == 8
    page = tmp_path / "net.md"
    assert main(["show", "lazyfx.demo:Net", "-i", "B,3,32,32", "--graph", str(page)]) == 0
    assert "```mermaid\nflowchart TD\n" in page.read_text()


def test_the_cli_knows_the_formats_the_graph_writes():
    assert cli.GRAPH_FORMATS == graph.FORMATS


# -- warnings raised while analysing go into the report ----------------------------------------------

MODELS = '''
import warnings

import torch.nn as nn
import torch.nn.functional as F


class Upsampled(nn.Module):
    def forward(self, x):
        return F.upsample(x, scale_factor=2)


class Loud(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(2)

    def forward(self, x):
        warnings.warn("the model's own warning")
        return self.fc(x)
'''


def _show(path, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the suite's configuration ignores UserWarnings
        return main(["show", path, *args])


def test_warnings_are_listed_with_the_report_not_over_it(tmp_path, capsys):
    (tmp_path / "models.py").write_text(MODELS)
    assert _show(f"{tmp_path / 'models.py'}:Upsampled", "-i", "B,3,H,W") == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    found = [line for line in captured.out.splitlines() if "LFX026" in line]
    # PyTorch's deprecation warning, at the user's line that called F.upsample
    assert found == [f"{tmp_path / 'models.py'}:10: LFX026 UserWarning: `nn.functional.upsample` is deprecated. "
                     "Use `nn.functional.interpolate` instead."]
    assert _show(f"{tmp_path / 'models.py'}:Upsampled", "-i", "B,3,H,W", "--json") == 0
    diagnostics = json.loads(capsys.readouterr().out)["diagnostics"]
    assert [(d["code"], d["severity"], d["line"]) for d in diagnostics] == [("LFX026", "warning", 10)]
    assert _show(f"{tmp_path / 'models.py'}:Loud", "-i", "B,3") == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "LFX026 UserWarning: the model's own warning" in captured.out


def test_a_model_that_warns_nothing_has_no_warning_listed(tmp_path, capsys):
    assert _show("lazyfx.demo:Net", "-i", "B,3,32,32") == 0
    assert "LFX026" not in capsys.readouterr().out
