"""`report.explain("head.in_features")` and `lazyfx show --explain`: the chain of operations
from the input dims to a lazy size, on three models (a plain CNN, sizes computed by hand
with x.size() and a skip connection joined by torch.cat)."""

import json

import pytest
import torch
import torch.nn as nn

import lazyfx
from lazyfx.cli import main
from lazyfx.core.symbolic import substitute
from lazyfx.demo import Net


class ByHand(nn.Module):
    """The flattened size computed from x.size(): the sizes themselves are steps."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.act = nn.ReLU()
        self.head = nn.LazyLinear(5)

    def forward(self, x):
        y = self.act(self.conv(x))
        b, c, h, w = y.size(0), y.size(1), y.size(2), y.size(3)
        return self.head(y.reshape(b, c * h * w))


class Skip(nn.Module):
    """A skip connection: the lazy conv after torch.cat reads channels from both branches."""

    def __init__(self):
        super().__init__()
        self.enc = nn.LazyConv2d(16, 3, padding=1)
        self.down = nn.MaxPool2d(2)
        self.mid = nn.LazyConv2d(32, 3, padding=1)
        self.up = nn.LazyConvTranspose2d(16, 2, stride=2)
        self.fuse = nn.LazyConv2d(4, 1)

    def forward(self, x):
        skip = self.enc(x)
        return self.fuse(torch.cat([skip, self.up(self.mid(self.down(skip)))], dim=1))


def _nodes(explanation) -> list[str]:
    return [step.node for step in explanation.steps]


def test_a_cnn_head_from_the_input_through_each_size_change():
    explanation = lazyfx.infer(Net(), ("B", 3, "H", "W")).explain("head.in_features")
    assert explanation.value == "64*((H - 9)//4 + 1)*((W - 9)//4 + 1)"
    assert (explanation.module, explanation.lazy_class, explanation.dim) == ("head", "LazyLinear", -1)
    assert explanation.depends_on == ["H", "W"] and explanation.location == "demo.py:25"
    assert _nodes(explanation) == ["x", "features_0", "features_3", "features_4", "flatten"]
    steps = {s.node: s for s in explanation.steps}
    assert steps["features_3"].through == ["features_1", "features_2"]  # batch norm, ReLU: shape unchanged
    assert steps["features_4"].value == "(B, 64, (H - 9)//4 + 1, (W - 9)//4 + 1)"
    assert steps["features_4"].op == "MaxPool2d" and steps["features_4"].location == "demo.py:24"
    assert steps["flatten"].source == "return self.head(features.flatten(1))"
    text = str(explanation)
    assert text.splitlines()[0] == ("head.in_features = 64*((H - 9)//4 + 1)*((W - 9)//4 + 1): dim -1 of the input "
                                    "of 'head' (LazyLinear, demo.py:25), depends on H, W")
    assert "(through features_1, features_2: shape unchanged)" in text


def test_the_last_step_gives_the_size_at_every_input_size():
    report = lazyfx.infer(Net(), ("B", 3, "H", "W"))
    last = report.explain("head.in_features").steps[-1]
    formula = report.nodes[[n.name for n in report.nodes].index(last.node)].value.shape[-1]
    for H, W in ((9, 9), (32, 40), (101, 64)):
        model = Net()
        model(torch.zeros(1, 3, H, W))  # a dry run initializes head
        assert substitute(formula, {"H": H, "W": W}) == model.head.in_features


def test_sizes_computed_by_hand_are_steps_where_they_carry_the_symbols():
    explanation = lazyfx.infer(ByHand(), ("B", 3, "H", "W")).explain("head.in_features")
    assert explanation.value == "8*((H - 3)//2 + 1)*((W - 3)//2 + 1)"
    nodes = _nodes(explanation)
    assert nodes[:2] == ["x", "conv"] and nodes[-1] == "reshape"
    assert {"size_2", "size_3", "mul_1"} <= set(nodes)  # h, w and c*h*w: they carry H and W
    assert "size" not in nodes  # the batch size: head.in_features does not depend on B
    steps = {s.node: s for s in explanation.steps}
    assert steps["mul_1"].value == "8*((H - 3)//2 + 1)*((W - 3)//2 + 1)"
    assert steps["size_2"].through == ["act"]  # the first step after the ReLU (it reads the ReLU's size)


def test_a_skip_connection_brings_both_branches():
    report = lazyfx.infer(Skip(), ("B", 3, "H", "W"))
    explanation = report.explain("fuse.in_channels")
    assert (explanation.value, explanation.dim, explanation.depends_on) == ("32", 1, [])
    nodes = _nodes(explanation)
    assert nodes == ["x", "enc", "down", "mid", "up", "cat"]
    assert explanation.steps[-2].value == "(B, 16, 2*(H//2), 2*(W//2))"
    assert explanation.steps[-1].value == "(B, 32, H, W)"  # the model requires even H and W
    assert report.explain("mid.in_channels").steps[-1].node == "down"


def test_json_has_the_same_steps():
    explanation = lazyfx.infer(Net(), ("B", 3, "H", "W")).explain("head.weight")
    data = json.loads(explanation.to_json())
    assert data["name"] == "head.weight" and data["dim"] is None  # a parameter's shape is not one dim
    assert data["value"] == "(10, 64*((H - 9)//4 + 1)*((W - 9)//4 + 1))"
    assert [s["node"] for s in data["steps"]] == _nodes(explanation)
    assert data["steps"][1] == {"node": "features_0", "op": "LazyConv2d -> Conv2d", "module_path": "features.0",
                                "value": "(B, 32, (H - 3)//2 + 1, (W - 3)//2 + 1)", "location": "demo.py:24",
                                "source": "features = self.features(x)", "through": []}


def test_an_unknown_size_names_the_sizes_there_are():
    report = lazyfx.infer(Net(), ("B", 3, 32, 32))
    with pytest.raises(ValueError, match=r"no lazy size 'head.out_features' to explain; the lazy sizes are: "
                                         r"features.0.in_channels, .*head.in_features, head.weight, head.bias$"):
        report.explain("head.out_features")
    with pytest.raises(ValueError, match="no lazy size 'relu.x'"):
        report.explain("relu.x")


def test_show_explain_prints_text_or_json(capsys, monkeypatch):
    assert main(["show", "lazyfx.demo:Net", "-i", "B,3,H,W", "--explain", "head.in_features"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("head.in_features = 64*((H - 9)//4 + 1)*((W - 9)//4 + 1): dim -1")
    assert "lazy modules" not in out  # the explanation instead of the table
    assert main(["show", "lazyfx.demo:Net", "-i", "B,3,H,W", "--explain", "head.in_features", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"][-1]["node"] == "flatten"
    assert main(["show", "lazyfx.demo:Net", "-i", "B,3,H,W", "--explain", "head.nope"]) == 2
    assert "--explain head.nope: no lazy size 'head.nope' to explain" in capsys.readouterr().err
