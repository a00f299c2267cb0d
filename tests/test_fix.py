"""`lazyfx fix`: lazy constructor calls rewritten into eager ones in the user's source."""

import importlib.util
import inspect
import pathlib
import shutil
import sys

import pytest
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin

import lazyfx
from lazyfx.outputs import fix
from lazyfx.rules.lazy import LAZY_CLASSES
from lazyfx.cli import main

DATA = pathlib.Path(__file__).parent / "data" / "fix"


def _copy(tmp_path, monkeypatch, name: str) -> pathlib.Path:
    """The sample file in a scratch folder, which becomes the working directory."""
    monkeypatch.chdir(tmp_path)
    return pathlib.Path(shutil.copy(DATA / name, tmp_path / name))


def _import(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shapes(module: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# -- the rewrite --------------------------------------------------------------------------------


def test_the_diff_is_golden_and_the_file_is_left_alone(tmp_path, monkeypatch, capsys):
    path = _copy(tmp_path, monkeypatch, "cnn.py")
    assert main(["fix", "cnn.py:Net", "--input", "B,3,32,32"]) == 0
    out, err = capsys.readouterr()
    assert out == (DATA / "cnn.diff").read_text()
    assert err == ""
    assert path.read_text() == (DATA / "cnn.py").read_text()


def test_write_round_trip_builds_the_eager_model_materialize_builds(tmp_path, monkeypatch, capsys):
    path = _copy(tmp_path, monkeypatch, "cnn.py")
    assert main(["fix", "cnn.py:Net", "-i", "B,3,32,32", "--write"]) == 0
    assert capsys.readouterr().out == "rewrote cnn.py: 9 calls (10 lazy modules)\n"
    lazy_net = _import(DATA / "cnn.py", "_fix_sample_lazy").Net()
    eager_net = _import(path, "_fix_sample_eager").Net()
    assert not any(isinstance(m, LazyModuleMixin) for m in eager_net.modules())
    assert _shapes(eager_net) == _shapes(lazyfx.materialize(lazy_net, ("B", 3, 32, 32)))
    # the same as the printed diff would make, and nothing left to do
    assert main(["fix", "cnn.py:Net", "-i", "B,3,32,32"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "Net has no lazy modules" in err


def test_comments_and_formatting_are_kept(tmp_path, monkeypatch, capsys):
    path = _copy(tmp_path, monkeypatch, "cnn.py")
    before = path.read_text().splitlines()
    assert main(["fix", "cnn.py:Net", "-i", "B,3,32,32", "--write"]) == 0
    after = path.read_text().splitlines()
    removed = [line for line in before if line not in after]
    assert removed and all("Lazy" in line for line in removed)  # only the lazy calls and their import changed
    assert "            nn.Conv2d(3, 32, 3, stride=2),  # halves the resolution" in after
    assert after[after.index("            torch.nn.Conv2d(") + 1:][:5] == [
        "                in_channels=32,",
        "                out_channels=64,",
        "                kernel_size=3,",
        "                padding=1,  # keeps the size",
        "            ),",
    ]
    assert "        # two heads on the same features: one call builds both" in after


def test_call_forms(tmp_path, monkeypatch, capsys):
    _copy(tmp_path, monkeypatch, "cnn.py")
    assert main(["fix", "cnn.py:Net", "-i", "B,3,32,32"]) == 0
    added = [line[1:].strip() for line in capsys.readouterr().out.splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    assert "self.fc = Linear(in_features=112, out_features=64, bias=False)" in added  # keyword stays keyword
    assert "nn.BatchNorm2d(32)," in added  # no arguments: the size alone
    assert "self.up = nn.ConvTranspose2d(64, 16, 2, stride=2)" in added
    assert "from torch.nn import BatchNorm1d, Linear, ReLU" in added  # the eager names imported
    # LazyInstanceNorm's defaults (affine, running stats) are not InstanceNorm's: written out
    assert "nn.InstanceNorm2d(64, affine=True, track_running_stats=True)," in added


def test_import_styles_aliases_local_imports_and_unicode(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "styles.py").write_text(
        "import torch\n"
        "from torch.nn import (\n"
        "    LazyLinear as LL,\n"
        "    ReLU,\n"
        ")\n"
        "from torch.nn import LazyConv1d\n"
        "\n"
        "\n"
        "def make():\n"
        "    from torch.nn import LazyBatchNorm1d\n"
        '    label = "café"; m = torch.nn.Sequential(LazyConv1d(4, 3), LazyBatchNorm1d(), torch.nn.Flatten(), '
        "LL(3), ReLU())\n"
        "    assert isinstance(m[0], (LazyConv1d, torch.nn.Conv1d))  # still names the lazy class\n"
        "    return m\n"
    )
    assert main(["fix", "styles.py:make", "-i", "B,2,10", "--write"]) == 0
    text = (tmp_path / "styles.py").read_text()
    assert "from torch.nn import (\n    Linear,\n    ReLU,\n)\n" in text
    assert "from torch.nn import LazyConv1d, Conv1d\n" in text  # still used: kept, and Conv1d added
    assert "    from torch.nn import BatchNorm1d\n" in text
    assert ('label = "café"; m = torch.nn.Sequential(Conv1d(2, 4, 3), BatchNorm1d(4), torch.nn.Flatten(), '
            "Linear(32, 3), ReLU())") in text
    model = _import(tmp_path / "styles.py", "_fix_styles").make()
    assert [type(m).__name__ for m in model] == ["Conv1d", "BatchNorm1d", "Flatten", "Linear", "ReLU"]


def test_a_call_on_one_argument_per_line_stays_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lines.py").write_text(
        "import torch.nn as nn\n"
        "model = nn.Sequential(\n"
        "    nn.LazyLinear(\n"
        "        4,\n"
        "    ),\n"
        "    nn.LazyInstanceNorm1d(\n"
        "        eps=1e-3,\n"
        "    ),\n"
        ")\n"
    )
    assert main(["fix", "lines.py:model", "-i", "B,3,7", "--write"]) == 0
    assert (tmp_path / "lines.py").read_text() == (
        "import torch.nn as nn\n"
        "model = nn.Sequential(\n"
        "    nn.Linear(\n"
        "        7,\n"
        "        4,\n"
        "    ),\n"
        "    nn.InstanceNorm1d(\n"
        "        3,\n"
        "        eps=1e-3,\n"
        "        affine=True,\n"
        "        track_running_stats=True,\n"
        "    ),\n"
        ")\n"
    )


# -- refusals -----------------------------------------------------------------------------------


def test_symbol_dependent_arguments_are_refused_with_the_formula(tmp_path, monkeypatch, capsys):
    shutil.copy(pathlib.Path(lazyfx.__file__).parent / "demo.py", tmp_path / "demo.py")
    monkeypatch.chdir(tmp_path)
    assert main(["fix", "demo.py:Net", "-i", "B,3,H,W"]) == 1
    out, err = capsys.readouterr()
    assert "+            nn.Conv2d(3, 32, 3, stride=2)," in out  # what can be rewritten still is
    assert "-        self.head" not in out  # left lazy
    assert ("demo.py:21:21: LFX040 lazy module 'head' (LazyLinear) needs "
            "in_features = 64*((H - 9)//4 + 1)*((W - 9)//4 + 1), which depends on H, W") in err
    assert "pin H, W to concrete sizes" in err
    # with the sizes pinned, it resolves
    assert main(["fix", "demo.py:Net", "-i", "B,3,32,32", "--write"]) == 0
    assert "self.head = nn.Linear(2304, num_classes)" in (tmp_path / "demo.py").read_text()


def test_calls_that_cannot_be_rewritten_are_refused_clearly(tmp_path, monkeypatch, capsys):
    path = _copy(tmp_path, monkeypatch, "refused.py")
    assert main(["fix", "refused.py:Net", "-i", "B,3,16,16", "--write"]) == 1
    out, err = capsys.readouterr()
    assert out == "rewrote refused.py: 1 call (1 lazy module)\n"
    assert "        self.out = nn.Linear(10, 4)\n" in path.read_text()
    lines = [line for line in err.splitlines() if not line.startswith("    note:")]
    assert lines == [
        "refused.py:35:24: this LazyConv2d(...) call builds several modules that need different arguments "
        "('features.0' in_channels=3, 'features.2' in_channels=16); one call cannot be rewritten for all",
        "refused.py:36:48: 'features.4' (LazyScale) is not one of PyTorch's built-in lazy classes; "
        "lazyfx fix rewrites only those",
        "refused.py:38:23: this LazyLinear(...) call passes *sizes, so lazyfx fix cannot tell where "
        "in_features=4608 goes",
        "refused.py:39:21: Lazy stands for LazyLinear but is not bound by `from torch.nn import LazyLinear` in "
        "this file, so lazyfx fix cannot import Linear next to it",
        "refused.py:41:22: LFX042 lazy module 'spare' (LazyLinear) is never called in forward, so nothing "
        "determines its parameters",
        "lazyfx fix: 5 lazy constructor calls left as they were",
    ]
    assert "note: write nn.Linear(4608, ...) by hand" in err


def test_a_name_that_means_something_else_is_not_shadowed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clash.py").write_text(
        "import torch.nn as nn\n"
        "from torch.nn import LazyLinear\n"
        "Linear = 'my own Linear'\n"
        "model = nn.Sequential(LazyLinear(4))\n"
    )
    assert main(["fix", "clash.py:model", "-i", "B,3"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "clash.py:4:23: the name Linear means 'my own Linear' here, not torch.nn.Linear" in err


def test_exit_codes_for_usage_errors_and_shape_errors(capsys):
    assert main(["fix", "missing/file.py:Net", "-i", "B"]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = str(pathlib.Path(__file__).parent / "data" / "cli_models.py") + ":Broken"
    assert main(["fix", broken, "-i", "B,3,32,32"]) == 1
    assert "LFX030" in capsys.readouterr().err


# -- the parts ----------------------------------------------------------------------------------


def test_each_eager_constructor_takes_the_argument_then_the_lazy_ones():
    for lazy, descriptor in LAZY_CLASSES.items():  # tests/test_lazy_classes.py: every one torch.nn defines
        eager, argument = descriptor.eager, descriptor.argument
        lazy_params = [p.name for p in inspect.signature(lazy).parameters.values()]
        eager_params = [p.name for p in inspect.signature(eager).parameters.values()]
        assert eager_params == [argument, *lazy_params], lazy.__name__


def test_recording_finds_the_call_and_restores_the_constructor():
    original = LazyModuleMixin.__init__
    with pytest.raises(RuntimeError), fix.recording() as constructions:
        layer = nn.LazyLinear(3); line = inspect.currentframe().f_lineno
        raise RuntimeError
    assert LazyModuleMixin.__init__ is original
    site = constructions[id(layer)].site
    assert (site.file, site.line) == (__file__, line)
    if sys.version_info >= (3, 11):
        text = pathlib.Path(__file__).read_text().splitlines()[line - 1]
        assert text[site.column:site.end_column] == "nn.LazyLinear(3)"


def test_a_site_with_a_line_only_is_matched_by_the_class_name():
    source = "import torch.nn as nn\nm = nn.Sequential(nn.ReLU(), nn.LazyLinear(4))\n"
    rewrite = fix.Rewrite(fix.Site("m.py", 2), nn.LazyLinear, nn.Linear, "in_features", 7, ["1"],
                          {"nn": nn})
    after, done, refused = fix.rewrite_source(source, [rewrite])
    assert after == "import torch.nn as nn\nm = nn.Sequential(nn.ReLU(), nn.Linear(7, 4))\n"
    assert done == [rewrite] and refused == []


def test_line_endings_are_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crlf.py").write_bytes(b"import torch.nn as nn\r\nm = nn.Sequential(nn.LazyLinear(4),  # c\r\n"
                                       b"    nn.ReLU())\r\n")
    assert main(["fix", "crlf.py:m", "-i", "B,3", "--write"]) == 0
    assert (tmp_path / "crlf.py").read_bytes() == (b"import torch.nn as nn\r\nm = nn.Sequential(nn.Linear(3, 4),  "
                                                   b"# c\r\n    nn.ReLU())\r\n")
