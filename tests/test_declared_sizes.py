"""Declared sizes are requirements (issue 12, points 1-3 and 7): ``lazyfx check`` reports every
declared input size the model rejects, with the smallest counterexample, and a symbol declared
without bounds that the model fixes; a contradiction is an error. Each claim is checked against
PyTorch: a counterexample really fails, a size called valid really runs."""

import pathlib
import sys
import textwrap
import types

import pytest
import sympy
import torch
import torch.nn as nn
from hypothesis import event, given, settings
from hypothesis import strategies as st

import lazyfx
from lazyfx import api
from lazyfx.cli import main
from lazyfx.core.checks import Condition
from lazyfx.core.constraints import Constraints, SymbolInfo
from lazyfx.core.diagnostics import Severity
from lazyfx.core.symbolic import symbol
from lazyfx.domain.domain import Domain

MODELS = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class CatNet(nn.Module):  # a skip concatenated at the wrong resolution
        def __init__(self):
            super().__init__()
            self.down = nn.LazyConv2d(16, 3, stride=2, padding=1)
            self.side = nn.LazyConv2d(8, 1)
            self.head = nn.LazyLinear(10)

        def forward(self, x):
            y = torch.cat([self.down(x), self.side(x)], dim=1)
            return self.head(y.mean((2, 3)))


    class Head64(nn.Module):  # a head sized for 64x64 inputs
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.LazyConv2d(16, 3, padding=1), nn.MaxPool2d(2),
                                          nn.LazyConv2d(32, 3, padding=1), nn.MaxPool2d(2))
            self.head = nn.Linear(32 * 16 * 16, 10)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))


    class Fine(nn.Module):  # valid for every H, W >= 3
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(8, 3)
            self.head = nn.LazyLinear(10)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))


    class AddNet(nn.Module):  # a strided and an unstrided branch added
        def __init__(self):
            super().__init__()
            self.a = nn.LazyConv2d(8, 3, stride=2, padding=1)
            self.b = nn.LazyConv2d(8, 1)

        def forward(self, x):
            return self.a(x) + self.b(x)


    class Positions(nn.Module):  # learned positions for at most 32 tokens
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(32, 16))
            self.proj = nn.LazyLinear(16)

        def forward(self, x):
            return self.proj(x) + self.pos[: x.size(1)]
""")


def line_of(text: str, marker: str) -> int:
    """The line of ``text`` that holds ``marker`` (1-based), as a finding names it."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("models", "blocks", "net", "raises")  # modules these tests import from tmp_path
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)

    def configure(*entries: str, top: str = "") -> pathlib.Path:
        text = top + "\n" + "\n".join(f"[[tool.lazyfx.models]]\n{textwrap.dedent(e)}" for e in entries)
        (tmp_path / "pyproject.toml").write_text(text)
        return tmp_path

    yield configure
    for name in names:  # imported during the test: other tests' 'models' package is not this one
        sys.modules.pop(name, None)


def _models():
    import models

    return models


def _runs(model: nn.Module, *shape: int) -> bool:
    torch.manual_seed(0)
    try:
        model.eval()(torch.zeros(*shape))
    except (RuntimeError, ValueError, IndexError):
        return False
    return True


# -- a symbol declared without bounds must vary --------------------------------------------------


def test_a_size_the_model_fixes_is_a_finding(project, capsys):
    assert main(["check", "models.py:CatNet", "--input", "B,3,H,W"]) == 1
    out = capsys.readouterr().out
    line = line_of(MODELS, "y = torch.cat")
    assert f"models.py:{line}:9: LFX032 H is declared as a size that varies, but the model accepts only H == 1" in out
    assert "LFX032 W is declared" in out
    models = _models()
    assert _runs(models.CatNet(), 1, 3, 1, 1) and not _runs(models.CatNet(), 1, 3, 2, 2)


def test_the_one_valid_size_declared_passes(project, capsys):
    assert main(["check", "models.py:CatNet", "--input", "B,3,1,1"]) == 0
    assert main(["check", "models.py:CatNet", "--input", "B,3,H,W", "--where", "H==1", "--where", "W==1"]) == 0


def test_allowing_fixed_sizes(project, capsys):
    assert main(["check", "models.py:CatNet", "--input", "B,3,H,W", "--allow-fixed-sizes"]) == 0
    project('target = "models.py:CatNet"\ninputs = ["B,3,H,W"]\nallow_fixed_sizes = true',
            'target = "models.py:CatNet"\nname = "strict"\ninputs = ["B,3,H,W"]')
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "[strict]" in out and "[models.py:CatNet]" not in out
    project('target = "models.py:CatNet"\ninputs = ["B,3,H,W"]', top="[tool.lazyfx]\nallow_fixed_sizes = true")
    assert main(["check"]) == 0


def test_lower_bounds_stay_information(project, capsys):
    assert main(["check", "models.py:Fine", "--input", "B,3,H,W"]) == 0
    report = lazyfx.infer(_models().Fine(), "B,3,H,W")
    assert str(report.domain) == "H >= 3 and W >= 3" and report.diagnostics == []


def test_an_upper_bound_is_a_finding_until_declared(project, capsys):
    assert main(["check", "models.py:Positions", "--input", "B,T,8"]) == 1
    assert "LFX032 T is declared as a size that varies, but the model accepts only T <= 32" in capsys.readouterr().out
    assert main(["check", "models.py:Positions", "--input", "B,T,8", "--where", "T<=32"]) == 0
    assert main(["check", "models.py:Positions", "--input", "B,T,8", "--where", "T<=64"]) == 1
    assert "the declared input size T=33 fails" in capsys.readouterr().out
    models = _models()
    assert _runs(models.Positions(), 2, 32, 8) and not _runs(models.Positions(), 2, 33, 8)


def test_two_sizes_tied_together():
    class Add(nn.Module):
        def forward(self, x, y):
            return x + y

    report = lazyfx.infer(Add(), ("B", "N"), ("B", "M"))
    [tied] = [d for d in report.diagnostics if d.code.code == "LFX032"]
    assert tied.message.startswith("M, N are declared as sizes that vary, but the model ties them: N == M")
    quiet = lazyfx.infer(Add(), ("B", "N"), ("B", "N"))
    assert quiet.diagnostics == []
    declared = lazyfx.infer(Add(), ("B", lazyfx.Dim("N", min=2)), ("B", lazyfx.Dim("M", min=2)))
    [rejected] = [d for d in declared.diagnostics if d.code.code == "LFX031"]
    assert "the declared input size M=2, N=3 fails" in rejected.message
    assert not _runs_add(2, 3) and _runs_add(2, 2)


def _runs_add(n: int, m: int) -> bool:
    try:
        torch.zeros(1, n) + torch.zeros(1, m)
    except RuntimeError:
        return False
    return True


# -- declared sizes are requirements ---------------------------------------------------------------


def test_a_declared_size_the_model_rejects_is_a_finding(project, capsys):
    project('target = "models.py:Head64"\ninputs = ["B,3,H,W"]\nconstraints = ["H>=32", "W==H"]')
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    line = line_of(MODELS, "return self.head(self.features(x).flatten(1))")
    assert f"models.py:{line}:9: LFX031 the declared input size H=32 fails: Linear has in_features=8192" in out
    assert "note: the sizes are declared as H >= 32, and the model needs 32*(H//4)**2 == 8192" in out
    assert "note: the model is valid for: 64 <= H <= 67" in out
    models = _models()
    assert not _runs(models.Head64(), 1, 3, 32, 32)
    assert all(_runs(models.Head64(), 1, 3, h, h) for h in (64, 67))


def test_declared_sizes_the_model_accepts_pass(project, capsys):
    project('target = "models.py:Head64"\ninputs = ["B,3,H,W"]\nconstraints = ["H>=64", "H<=67", "W==H"]')
    assert main(["check"]) == 0
    assert main(["check", "models.py:Head64", "-i", "B,3,H,H", "-w", "H>=64", "-w", "H<=68"]) == 1
    assert "the declared input size H=68 fails" in capsys.readouterr().out
    assert not _runs(_models().Head64(), 1, 3, 68, 68)


def test_dim_bounds_in_python_are_declarations():
    models = MODELS_NS()
    H = lazyfx.Dim("H", min=32)
    report = lazyfx.infer(models["Head64"](), ("B", 3, H, H))
    [finding] = report.diagnostics
    assert finding.code.code == "LFX031" and finding.severity == "warning"
    assert finding.module_path == "head" and finding.op == "Linear"
    ok = lazyfx.infer(models["Head64"](), ("B", 3, lazyfx.Dim("H", min=64, max=67), lazyfx.Dim("H", min=64, max=67)))
    assert ok.diagnostics == []


def test_a_declared_multiple_decides_a_remainder():
    class Skip(nn.Module):  # pool then upsample, added to the input: H must be even
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(3, 1)

        def forward(self, x):
            return x + nn.functional.interpolate(nn.functional.max_pool2d(self.conv(x), 2), scale_factor=2)

    even = lazyfx.infer(Skip(), ("B", 3, lazyfx.Dim("H", multiple_of=2), 8))
    assert [d.code.code for d in even.diagnostics] == []
    bounded = lazyfx.infer(Skip(), ("B", 3, lazyfx.Dim("H", min=4), 8))
    [finding] = [d for d in bounded.diagnostics if d.code.code == "LFX031"]
    assert "the declared input size H=5 fails" in finding.message
    # and no bounds at all: a remainder is information, not a finding
    assert lazyfx.infer(Skip(), ("B", 3, "H", 8)).diagnostics == []
    for h, ok in ((4, True), (5, False), (6, True)):
        try:
            Skip()(torch.zeros(1, 3, h, 8))
            ran = True
        except RuntimeError:
            ran = False
        assert ran is ok


def MODELS_NS() -> dict:
    namespace: dict = {}
    exec(compile(MODELS, "models_ns.py", "exec"), namespace)
    return namespace


# -- contradictions ----------------------------------------------------------------------------


def test_requirements_that_contradict_the_assumptions_are_an_error(project, capsys):
    with pytest.raises(lazyfx.ShapeError) as caught:
        lazyfx.infer(_models().AddNet(), "B,3,H,W")
    error = caught.value
    assert error.code == "LFX030"
    assert "no input sizes satisfy" in error.message
    assert any("assuming" in note and "broadcasting" in note for note in error.diagnostics[0].notes)
    line = line_of(MODELS, "return self.a(x) + self.b(x)")
    assert error.diagnostics[0].location.line == line
    assert main(["check", "models.py:AddNet", "--input", "B,3,H,W"]) == 1
    assert f"models.py:{line}:9: LFX030" in capsys.readouterr().out
    assert main(["show", "models.py:AddNet", "--input", "B,3,H,W"]) == 1
    assert "valid for" not in capsys.readouterr().out


def test_a_broadcast_that_is_possible_stays_an_assumption():
    class Scale(nn.Module):
        def forward(self, x, s):
            return x * s

    report = lazyfx.infer(Scale(), ("B", "N"), ("B", "M"))
    assert report.domain.assumptions and not report.domain.is_empty


# -- locations in other files ------------------------------------------------------------------


BLOCKS = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(x)
""")

NET = textwrap.dedent("""
    import torch.nn as nn

    from blocks import Block


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, x):
            return self.block(x)
""")


def test_a_failure_in_another_file_is_reported_there_with_the_calls(project, tmp_path, capsys):
    (tmp_path / "blocks.py").write_text(BLOCKS)
    (tmp_path / "net.py").write_text(NET)
    project('target = "net.py:Net"\ninputs = ["B,6"]', 'target = "models.py:Fine"\ninputs = ["B,3,H,W"]')
    assert main(["check", "blocks.py"]) == 1  # pre-commit passes the changed file: the model using it is checked
    out = capsys.readouterr().out
    assert f"blocks.py:{line_of(BLOCKS, 'return self.fc(x)')}:9: LFX030 Linear has in_features=8 but the " \
           f"input's last dim is 6" in out
    assert f"note: called as 'block' from net.py:{line_of(NET, 'return self.block(x)')}" in out
    assert "models.py" not in out
    assert main(["check", "models.py"]) == 0


# -- differential: random conv stacks with a fixed head, random declared bounds --------------------


@settings(max_examples=20, deadline=None)
@given(
    layers=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 2), st.integers(0, 1)), min_size=1, max_size=3),
    fitted=st.integers(6, 24),
    low=st.integers(2, 30),
    span=st.one_of(st.none(), st.integers(0, 12)),
)
def test_check_agrees_with_pytorch_on_declared_sizes(layers, fitted, low, span):
    def build() -> nn.Module:
        convs = [nn.LazyConv2d(2, (k, 1), stride=(s, 1), padding=(p, 0)) for k, s, p in layers]
        return nn.Sequential(*convs, nn.Flatten(), nn.LazyLinear(3))

    probe = build()
    if not _runs(probe, 1, 1, fitted, 1):
        return
    head_in = probe[-1].in_features

    def model() -> nn.Module:
        return nn.Sequential(*[nn.LazyConv2d(2, (k, 1), stride=(s, 1), padding=(p, 0)) for k, s, p in layers], nn.Flatten(),
                             nn.Linear(head_in, 3))

    high = None if span is None else low + span
    H = lazyfx.Dim("H", min=low, max=high)
    try:
        report = lazyfx.infer(model(), (1, 1, H, 1))
    except lazyfx.ShapeError:  # no declared size fits at all
        assert not any(_runs(model(), 1, 1, h, 1) for h in range(low, (high or low + 40) + 1))
        return
    rejected = [d for d in report.diagnostics if d.code.code == "LFX031"]
    top = high if high is not None else low + 40
    failing = [h for h in range(low, top + 1) if not _runs(model(), 1, 1, h, 1)]
    event("rejected" if rejected else "accepted")
    if rejected:
        sizes = [int(d.message.split("H=")[1].split(" ")[0]) for d in rejected]
        assert min(sizes) == failing[0], (sizes, failing[:5])
    else:
        assert failing == []


# -- honest codes ------------------------------------------------------------------------------


RAISES = textwrap.dedent("""
    import torch.nn as nn


    class Check(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)

        def forward(self, x):
            if x.shape[-1] != 16:
                raise ValueError(f"expected 16 features, got {x.shape[-1]}")
            return self.fc(x)
""")


def test_a_forward_that_raises_has_its_own_code(project, tmp_path, capsys):
    (tmp_path / "raises.py").write_text(RAISES)
    assert main(["check", "raises.py:Check", "--input", "B,8"]) == 1
    line = line_of(RAISES, "raise ValueError")
    assert (f"raises.py:{line}:13: LFX033 Check.forward raises at every size lazyfx tried: ValueError: expected 16 "
            f"features, got 8") in capsys.readouterr().out
    assert main(["check", "raises.py:Check", "--input", "B,16"]) == 0


def test_pytorch_rejecting_an_op_is_not_a_raise_of_the_user():
    class Cat(nn.Module):
        def forward(self, x):
            return torch.cat([x, x.new_zeros(2, 3)])

    with pytest.raises(lazyfx.ShapeError) as caught:
        lazyfx.infer(Cat(), (4, 5))
    assert caught.value.code == "LFX030"


# -- found by trying it as a sceptic ------------------------------------------------------------


class _Positions(nn.Module):  # a learned table added: T must be 16, or 1 by broadcasting
    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, 16, 8))

    def forward(self, x):
        return x + self.pos


def test_a_broadcast_or_equal_size_is_fixed_too():
    report = lazyfx.infer(_Positions(), (2, "T", 8))
    [fixed] = [d for d in report.diagnostics if d.code.code == "LFX032"]
    assert fixed.message.startswith("T is declared as a size that varies, but the model accepts only")
    assert report.domain.contains(T=1) and report.domain.contains(T=16) and not report.domain.contains(T=2)
    declared = lazyfx.infer(_Positions(), (2, lazyfx.Dim("T", max=40), 8))
    [rejected] = [d for d in declared.diagnostics if d.code.code == "LFX031"]
    assert "the declared input size T=2 fails" in rejected.message
    assert not _runs(_Positions(), 2, 2, 8) and _runs(_Positions(), 2, 16, 8) and _runs(_Positions(), 2, 1, 8)


def test_a_counterexample_is_never_a_size_the_analysis_assumed_away():
    class Skip(nn.Module):  # even H: equal sizes; H = 3: 2 against 1, which broadcasts
        def __init__(self):
            super().__init__()
            self.a = nn.LazyConv2d(4, 3, stride=2, padding=1)
            self.b = nn.LazyConv2d(1, 1)

        def forward(self, x):
            return self.a(x) + self.b(nn.functional.max_pool2d(x, 2))

    report = lazyfx.infer(Skip(), (2, 3, lazyfx.Dim("H", min=2), 8))
    [rejected] = [d for d in report.diagnostics if d.code.code == "LFX031"]
    assert "the declared input size H=5 fails" in rejected.message
    assert _runs(Skip(), 2, 3, 3, 8) and not _runs(Skip(), 2, 3, 5, 8)


def test_an_explicit_lower_bound_of_one_is_a_declaration(project, tmp_path, capsys):
    (tmp_path / "tr.py").write_text(textwrap.dedent("""
        import torch.nn as nn


        class Tr(nn.Module):  # down by 2 and up by 2, added to the input: H must be even
            def __init__(self):
                super().__init__()
                self.down = nn.LazyConv2d(4, 3, stride=2, padding=1)
                self.up = nn.LazyConvTranspose2d(3, 3, stride=2, padding=1, output_padding=1)

            def forward(self, x):
                return x + self.up(self.down(x))
    """))
    assert main(["check", "tr.py:Tr", "--input", "2,3,H,8", "--where", "H>=1"]) == 1
    assert "the declared input size H=3 fails" in capsys.readouterr().out
    assert main(["check", "tr.py:Tr", "--input", "2,3,H,8"]) == 0  # undeclared: a remainder is information
    assert main(["check", "tr.py:Tr", "--input", "2,3,H,8", "--where", "H%2==0"]) == 0


def test_an_undecided_declared_condition_is_its_own_code_and_a_warning():
    H, W = symbol("H"), symbol("W")
    declared = Constraints({n: SymbolInfo(n, min=2, declared=True) for n in "HW"})
    no_graph = types.SimpleNamespace(nodes=[])
    # (H - 1)*(W - 1) + 1 >= 1 holds everywhere, which intervals cannot prove: undecided
    [undecided] = api._declared_size_diagnostics(
        Domain(declared, [Condition(sympy.Ge(H * W - H - W + 2, 1), "made up")]), no_graph)
    assert undecided.code.code == "LFX034" and undecided.message.startswith("cannot decide")
    assert undecided.code.severity is Severity.WARNING
    # a condition some declared size violates: LFX031, an error of lazyfx check
    [rejected] = api._declared_size_diagnostics(Domain(declared, [Condition(sympy.Eq(H, W), "tied")]), no_graph)
    assert rejected.code.code == "LFX031" and "H=2, W=3" in rejected.message
    assert rejected.code.severity is Severity.ERROR
