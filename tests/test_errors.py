"""Bad input gets a specific error pointing at the user's code, and loses nothing:
after every failure the user's model is exactly as it was."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedParameter

import lazyfx
from dryrun import assert_same_model, dry_run
from lazyfx.demo import Net


def line_of(marker: str, obj=None) -> int:
    """The line number of the source line carrying ``marker`` in this file."""
    lines, start = inspect.getsourcelines(obj) if obj is not None else (open(__file__).read().splitlines(), 1)
    for i, line in enumerate(lines):
        if marker in line:
            return start + i
    raise AssertionError(marker)


def snapshot(model: nn.Module) -> list:
    """Everything a failed call must leave alone: classes, tensor objects, hooks, attributes."""
    return [
        (
            name,
            type(m),
            [(k, type(v), id(v)) for k, v in m._parameters.items()],
            [(k, type(v), id(v)) for k, v in m._buffers.items()],
            list(m._forward_pre_hooks),
            list(m._load_state_dict_pre_hooks),
            sorted(m.__dict__),
            m.training,
            {k: v for k, v in vars(m).items() if isinstance(v, (int, float, str, tuple, bool))},
        )
        for name, m in model.named_modules()
    ]


class Mismatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(8, 3)
        self.fc = nn.Linear(100, 10)

    def forward(self, x):
        x = self.conv(x).flatten(1)
        return self.fc(x)  # <- mismatch


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x, y):
        a = self.fc(x)  # <- first call
        b = self.fc(y)  # <- second call
        return a, b


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)
        self.spare = nn.LazyLinear(2)

    def forward(self, x):
        return self.fc(x)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        if x.sum() > 0:  # <- data-dependent
            x = x * 2
        return self.fc(x)


@torch.library.custom_op("lazyfx_tests::no_meta_kernel", mutates_args=())
def no_meta_kernel(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


class NoRule(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        return self.fc(no_meta_kernel(x))  # <- no rule


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("B,3,,32", "an empty entry at position 2"),
        ("B,3,32.5,32", "'32.5' at position 2"),
        ("B,-3,32,32", "dims are non-negative"),
        ("B,3,32,32:float33", "unknown dtype 'float33'"),
        ("B,3,32,32:", "nothing after ':'"),
    ],
)
def test_malformed_spec_strings(spec, fragment):
    model = Net()
    before = snapshot(model)
    with pytest.raises(lazyfx.SpecError) as info:
        lazyfx.materialize(model, spec)
    assert fragment in str(info.value)
    assert info.value.code == "LFX001"
    assert snapshot(model) == before


def test_wrong_input_rank_names_the_module_and_the_line():
    model = Net()
    before = snapshot(model)
    with pytest.raises(lazyfx.ShapeError) as info:
        lazyfx.infer(model, ("B", 3))
    diag = info.value.diagnostics[0]
    assert diag.code.code == "LFX030"
    assert diag.module_path == "features.0"
    assert "LazyConv2d expects a 3D or 4D input, got 2D input of size [B, 3]" in diag.message
    assert diag.location.file.endswith("lazyfx/demo.py")
    assert diag.location.line == line_of("features = self.features(x)", Net)
    assert snapshot(model) == before


def test_eager_layer_disagreeing_with_the_lazy_ones():
    model = Mismatch()
    before = snapshot(model)
    with pytest.raises(lazyfx.ShapeError) as info:
        lazyfx.materialize(model, ("B", 3, 32, 32))
    message = str(info.value)
    assert "Linear has in_features=100 but the input's last dim is 7200" in message
    assert f"test_errors.py:{line_of('# <- mismatch')}" in message
    assert info.value.diagnostics[0].module_path == "fc"
    assert snapshot(model) == before


def test_eager_layer_disagreement_no_symbolic_size_satisfies_is_a_shape_error_at_its_line():
    model = Mismatch()
    before = snapshot(model)
    with pytest.raises(lazyfx.ShapeError) as info:
        lazyfx.infer(model, ("B", 3, "H", "W"))
    diagnostic = info.value.diagnostics[0]
    assert diagnostic.message.endswith("no input sizes satisfy 8*(H - 2)*(W - 2) == 100 together with H >= 3 and W >= 3")
    assert diagnostic.location.line == line_of("# <- mismatch") and diagnostic.module_path == "fc"
    assert snapshot(model) == before


def test_eager_layer_disagreement_with_symbolic_sizes_is_a_domain_condition():
    report = lazyfx.infer(nn.Sequential(nn.LazyConv2d(8, 3), nn.Flatten(), nn.Linear(128, 10)), ("B", 3, "H", "W"))
    assert str(report.domain) == "H >= 3 and W >= 3 and (H, W) in {(3, 18), (4, 10), (6, 6), (10, 4), (18, 3)}"
    assert report.domain.contains(B=1, H=6, W=6) and not report.domain.contains(B=1, H=32, W=32)


def test_symbol_dependent_lazy_parameter_is_not_guessed():
    model = Net()
    before = snapshot(model)
    report = lazyfx.infer(model, ("B", 3, "H", "W"))
    record = report.lazy["head"]
    assert not record.is_concrete and record.symbols() == ["H", "W"]
    assert [d.code.code for d in report.diagnostics] == ["LFX040"]
    with pytest.raises(lazyfx.ResolutionError) as info:
        lazyfx.materialize(model, ("B", 3, "H", "W"))
    message = str(info.value)
    assert "needs in_features = 64*((H - 9)//4 + 1)*((W - 9)//4 + 1), which depends on H, W" in message
    assert "pin H, W to concrete sizes" in message
    assert info.value.code == "LFX040"
    assert snapshot(model) == before


def test_lazy_module_called_with_conflicting_shapes_names_both_sites():
    model = Twice()
    before = snapshot(model)
    with pytest.raises(lazyfx.ResolutionError) as info:
        lazyfx.materialize(model, ("B", 4), ("B", 5))
    message = str(info.value)
    assert info.value.code == "LFX041"
    assert "resolve in_features differently: 4 at" in message
    assert f"test_errors.py:{line_of('# <- first call')}" in message
    assert f"test_errors.py:{line_of('# <- second call')}" in message
    assert snapshot(model) == before


def test_conflicting_calls_that_depend_on_symbols_become_a_condition():
    report = lazyfx.infer(Twice(), ("B", "N"), ("B", "M"))
    assert str(report.domain) == "N == M"
    assert report.domain.contains(B=2, N=3, M=3) and not report.domain.contains(B=2, N=3, M=4)


def test_lazy_module_never_called():
    model = Unused()
    before = snapshot(model)
    report = lazyfx.infer(model, ("B", 4))
    assert [d.code.code for d in report.diagnostics] == ["LFX042"]
    with pytest.raises(lazyfx.ResolutionError, match="'spare' \\(LazyLinear\\) is never called"):
        lazyfx.materialize(model, ("B", 4))
    assert snapshot(model) == before


def test_untraceable_model_is_analysed_and_the_report_says_why():
    model = DataDependent()
    before = snapshot(model)
    report = lazyfx.infer(model, ("B", 4))
    assert str(report.output) == "(B, 3)"
    assert "control flow on a tensor's values (if x.sum() > 0:)" in report.opaque[""]
    assert snapshot(model) == before


def test_op_without_a_rule_is_named_with_its_line():
    model = NoRule()
    before = snapshot(model)
    with pytest.raises(lazyfx.UnsupportedOpError) as info:
        lazyfx.materialize(model, ("B", 4))
    diag = info.value.diagnostics[0]
    assert diag.code.code == "LFX020"
    assert "no shape rule for torch.ops.lazyfx_tests.no_meta_kernel.default" in diag.message
    assert diag.location.line == line_of("# <- no rule")
    assert snapshot(model) == before


def test_inplace_failure_rolls_back_everything():
    def build():
        return nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d(), nn.LazyLinear(2))

    model = build()
    before = snapshot(model)

    def boom():
        raise RuntimeError("boom")

    model[2].reset_parameters = boom  # fails after the first two lazy modules are done
    before = snapshot(model)
    with pytest.raises(lazyfx.MaterializeError, match="RuntimeError: boom") as info:
        lazyfx.materialize(model, ("B", 3), inplace=True)
    assert "the given model is unchanged" in str(info.value)
    assert snapshot(model) == before
    assert all(isinstance(p, UninitializedParameter) for p in model.parameters())
    del model[2].reset_parameters
    # The hooks still work: a dry run of the rolled-back model equals a fresh one.
    torch.manual_seed(0)
    expected = dry_run(build, (2, 3))
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, 3))
    assert_same_model(expected, model)


def test_not_a_module():
    with pytest.raises(lazyfx.SpecError, match="needs an nn.Module, got function"):
        lazyfx.infer(lambda x: x, ("B", 3))


def test_inputs_that_do_not_fit_forward():
    with pytest.raises(lazyfx.SpecError, match=r"do not fit Twice.forward\(x, y\)"):
        lazyfx.infer(Twice(), ("B", 4))
    with pytest.raises(lazyfx.SpecError, match="unexpected keyword argument 'z'"):
        lazyfx.infer(Twice(), ("B", 4), ("B", 4), z=("B", 4))


def test_bad_materialize_options():
    with pytest.raises(lazyfx.SpecError, match="invalid device"):
        lazyfx.materialize(Net(), ("B", 3, 32, 32), device="gpu7")
    with pytest.raises(lazyfx.SpecError, match="floating point dtype"):
        lazyfx.materialize(Net(), ("B", 3, 32, 32), dtype=torch.int64)


def test_errors_are_one_hierarchy_with_structured_diagnostics():
    for cls in (lazyfx.SpecError, lazyfx.TraceError, lazyfx.UnsupportedOpError, lazyfx.ShapeError,
                lazyfx.ResolutionError, lazyfx.MaterializeError):
        assert issubclass(cls, lazyfx.LazyFXError)
    with pytest.raises(lazyfx.LazyFXError) as info:
        lazyfx.infer(Mismatch(), ("B", 3, 32, 32))
    data = info.value.diagnostics[0].to_dict()
    assert data["code"] == "LFX030" and data["name"] == "shape-mismatch"
    assert data["file"].endswith("test_errors.py") and data["line"] == line_of("# <- mismatch")
