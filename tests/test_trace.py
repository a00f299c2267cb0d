"""Tracing: lazy modules stay leaves, containers are traced through with qualified paths,
every node knows the user's line that created it."""

import contextlib
import inspect

import pytest
import torch
import torch.nn as nn

import lazyfx
from lazyfx import api
from dryrun import assert_same_model, dry_run, materialized


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = nn.LazyConv2d(width, 3, padding=1)
        self.norm = nn.LazyBatchNorm2d()

    def forward(self, x):
        return torch.relu(self.norm(self.conv(x)))  # <- block line


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([nn.Sequential(Block(4), Block(8)), nn.Sequential(Block(16))])
        self.heads = nn.ModuleDict({"cls": nn.LazyLinear(3), "box": nn.Sequential(nn.ReLU(), nn.LazyLinear(4))})

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        x = torch.flatten(x, 1)
        return {name: head(x) for name, head in self.heads.items()}


def test_containers_are_traced_through_with_qualified_paths():
    report = lazyfx.infer(Nested(), ("B", 3, 8, 8))
    assert list(report.lazy) == [
        "stages.0.0.conv", "stages.0.0.norm", "stages.0.1.conv", "stages.0.1.norm",
        "stages.1.0.conv", "stages.1.0.norm", "heads.cls", "heads.box.1",
    ]
    assert report.lazy["heads.cls"].resolution.arguments == {"in_features": 16 * 8 * 8}
    assert {k: str(t) for k, t in report.output.items()} == {"cls": "(B, 3)", "box": "(B, 4)"}


def test_nested_model_matches_a_dry_run():
    expected = dry_run(Nested, (2, 3, 8, 8))
    assert_same_model(expected, materialized(Nested, ("B", 3, 8, 8)))


def test_lazy_modules_are_leaves_and_nodes_know_their_line():
    report = lazyfx.infer(Nested(), ("B", 3, 8, 8))
    conv = next(n for n in report.nodes if n.module_path == "stages.0.0.conv")
    assert conv.op == "call_module"
    lines, start = inspect.getsourcelines(Block.forward)
    expected_line = start + next(i for i, line in enumerate(lines) if "<- block line" in line)
    assert conv.location.line == expected_line and conv.location.file == __file__
    relu = next(n for n in report.nodes if n.target == "torch.relu" and n.module_path == "stages.1.0")
    assert relu.location.line == expected_line


class FlattenByNumel(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.LazyLinear(2)

    def forward(self, x):
        return self.head(x.reshape(x.shape[0], x.shape[1:].numel()))  # torch.Size.numel()


def test_the_numel_of_a_shape_is_the_product_of_its_sizes():
    report = lazyfx.infer(FlattenByNumel(), ("B", 3, "H"))
    assert str(report.lazy["head"].resolution.arguments["in_features"]) == "3*H"
    expected = dry_run(FlattenByNumel, (2, 3, 4))
    actual = materialized(FlattenByNumel, ("B", 3, 4))
    assert_same_model(expected, actual)
    x = torch.randn(2, 3, 4)
    assert torch.equal(actual(x), expected(x))

    class NumelOfShape(nn.Module):  # torch.numel takes a tensor, not a torch.Size
        def forward(self, x):
            return torch.numel(x.shape)

    with pytest.raises(TypeError):
        NumelOfShape()(torch.zeros(2))
    with pytest.raises(lazyfx.LazyFXError, match="numel"):
        lazyfx.infer(NumelOfShape(), ("B",))


def test_an_analysis_imports_neither_torch_dynamo_nor_networkx():
    """torch wraps each TorchDispatchMode subclass's __torch_dispatch__ so that its first use
    imports torch._dynamo (as long as importing torch itself); lazyfx's modes opt out, so a
    process's first analysis (every `lazyfx check` of a changed model) does not pay it. Nor
    does it import networkx (a third of a second), which only report.explain needs."""
    import subprocess
    import sys

    program = """
import sys, torch, torch.nn as nn, lazyfx
from torch.utils._python_dispatch import TorchDispatchMode
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm, self.head = nn.LazyConv2d(8, 3), nn.LazyBatchNorm2d(), nn.LazyLinear(4)
    def forward(self, x):
        y = self.norm(self.conv(x))
        return self.head(torch.flatten(torch.relu(y) * 2 + y, 1))
model = Net()
lazyfx.infer(model, ("B", 3, 16, 16))
lazyfx.materialize(model, ("B", 3, 16, 16), seed=0)
print("after lazyfx:", "torch._dynamo" in sys.modules, "networkx" in sys.modules)
report = lazyfx.infer(model, ("B", 3, 16, 16))
report.explain("head.in_features")
print("after explain:", "networkx" in sys.modules)
class Plain(TorchDispatchMode):  # the counterpart: a mode without the opt-out does import it
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))
with Plain():
    torch.empty(1, device="meta")
print("after a plain mode:", "torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["after lazyfx: False False", "after explain: True",
                                           "after a plain mode: True"], out.stdout


class _NamesOfEveryKind(nn.Module):
    """Targets whose node names torch.fx derives differently: mixed case (snake-cased), a
    leading digit (a Sequential's index), a magic method, non-ASCII letters."""

    def __init__(self) -> None:
        super().__init__()
        self.convA = nn.Conv2d(3, 4, 3)
        self.BN = nn.BatchNorm2d(4)
        self.seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.ÄLayer = nn.Identity()

    def forward(self, x):
        y = self.BN(self.convA(x))
        y = torch.nn.functional.relu(y) + torch.sigmoid(y)
        y = self.seq(y.permute(0, 2, 3, 1)).sum(dim=-1)
        y = self.ÄLayer(y).__add__(1)
        return y.transpose(1, 2).contiguous()


def test_nodes_are_named_as_torch_fx_names_them():
    """lazyfx derives node names on its own fast path; they must be torch.fx's own, which users
    see in messages and in the rewritten module's code."""
    fx_names = [n.name for n in torch.fx.symbolic_trace(_NamesOfEveryKind()).graph.nodes]
    report = lazyfx.infer(_NamesOfEveryKind(), ("B", 3, 16, 16))
    assert [n.name for n in report.nodes] == fx_names
    assert "conv_a" in fx_names and "seq_0" in fx_names and "add_1" in fx_names
    nested = lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Sequential(nn.ReLU()), nn.Conv2d(4, 4, 1)))  # noqa: E731
    fx_names = [n.name for n in torch.fx.symbolic_trace(nested()).graph.nodes]
    assert [n.name for n in lazyfx.infer(nested(), ("B", 3, 16, 16)).nodes] == fx_names
    assert fx_names[1:4] == ["_0", "_1_0_0", "_1_1"]


class _CallsWithKeywords(nn.Module):
    """Calls with keyword arguments, constants and nested containers among their arguments,
    a parameter read, a size query and a method call."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(4, 1, 1))

    def forward(self, x):
        y = self.conv(x) * self.scale
        y = torch.nn.functional.interpolate(y, scale_factor=2, mode="nearest")
        z = torch.cat([y, y.flip(dims=(1,))], dim=1)
        return torch.sum(z.view(z.size(0), -1, 4), dim=(1, 2), keepdim=True).expand(-1, x.size(1), 2)


def _node_rows(graph) -> list[tuple]:
    def names(value):
        return torch.fx.node.map_arg(value, lambda n: f"%{n.name}")

    return [(n.name, n.op, n.target, names(n.args), dict(names(n.kwargs)), sorted(u.name for u in n.users))
            for n in graph.nodes]


@pytest.mark.parametrize("model", [_NamesOfEveryKind, _CallsWithKeywords])
def test_the_traced_graph_is_torch_fx_own(model):
    """lazyfx makes each node without its arguments and sets them right after (skipping
    torch.fx's per-node pytree walk): every node's arguments, keyword arguments and users must
    be those torch.fx's own trace gives."""
    _, _, program, _ = api._propagated(model(), (("B", 3, 8, 8),), {}, None)
    assert _node_rows(program.graph) == _node_rows(torch.fx.symbolic_trace(model()).graph)
    assert any(n.kwargs for n in program.graph.nodes)  # (keyword arguments were set too)


class _Located(nn.Module):
    """Nodes made at every depth: the model's own forward, a submodule's forward, a Sequential
    (torch's code) of leaves, a leaf called from a helper function."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _NamesOfEveryKind()
        self.seq = nn.Sequential(nn.ReLU(), nn.Sequential(nn.Tanh()))

    def forward(self, x):
        return _helper(self.seq(self.inner(x)))


def _helper(y):
    return y * 2


def test_node_locations_are_those_of_a_full_walk(monkeypatch):
    """The tracer's location walk stops at its own frame, with the user frame above found once;
    every node's location must be what walking the whole stack finds (the user's line, or for
    nodes that torch's own code made, the line that called lazyfx)."""
    from lazyfx.analysis import trace as trace_module

    def located(build):
        report = lazyfx.infer(build(), ("B", 3, 16, 16))
        return [(n.name, n.location and (n.location.file, n.location.line, n.location.function))
                for n in report.nodes]

    fast = located(_Located)
    sequential = lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU()))  # noqa: E731 (torch's code only)
    fast_sequential = located(sequential)
    monkeypatch.setattr(trace_module, "locations_found_once_above", lambda frame: contextlib.nullcontext())
    assert fast == located(_Located)
    assert fast_sequential == located(sequential)
    assert {where[2] for _, where in fast if where} == {"forward", "_helper"}  # (counterpart: not all one line)
    assert {where[2] for _, where in fast_sequential if where} == {"located"}  # the line that called lazyfx
