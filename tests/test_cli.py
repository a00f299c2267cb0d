"""The command line, called as ``main([...])``: exit codes and output."""

import json
import pathlib
import subprocess
import sys

import pytest

from lazyfx.cli import main

DATA = pathlib.Path(__file__).parent / "data"
MODELS = str(DATA / "cli_models.py")
GOLDEN = pathlib.Path(__file__).parent / "golden"
ROOT = pathlib.Path(__file__).parent.parent


def test_show_prints_the_golden_table(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["show", "lazyfx.demo:Net", "--input", "B,3,32,32"]) == 0
    assert capsys.readouterr().out == (GOLDEN / "demo_concrete.txt").read_text()


@pytest.mark.parametrize("name, output", [("make_net", "(B, 3)"), ("instance", "(B, 2)"), ("Net", "(B, 10)")])
def test_targets_by_path_class_factory_and_instance(name, output, capsys):
    spec = "B,3,32,32" if name != "instance" else "B,7"
    assert main(["show", f"{MODELS}:{name}", "-i", spec]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"-> {output}")


def test_json_output(capsys):
    assert main(["show", "lazyfx.demo:Net", "-i", "B,3,32,32", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["output"]["shape"] == ["B", 10]


def test_keyword_inputs(capsys):
    assert main(["show", "lazyfx.demo:Net", "-i", "x=B,3,32,32"]) == 0
    assert "Net(x: (B, 3, 32, 32))" in capsys.readouterr().out


def test_shape_error_is_a_finding(capsys):
    assert main(["show", f"{MODELS}:Broken", "-i", "B,3,32,32"]) == 1
    err = capsys.readouterr().err
    assert "cli_models.py:22: LFX030 Linear has in_features=100 but the input's last dim is 7200" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "target, spec, message",
    [
        ("lazyfx.demo:Nope", "B", "lazyfx.demo has no attribute 'Nope'"),
        ("lazyfx.nonexistent:Net", "B", "cannot import lazyfx.nonexistent: ModuleNotFoundError"),
        ("missing/file.py:Net", "B", "no such file: missing/file.py"),
        ("lazyfx.demo", "B", "must look like path/to/file.py:NAME"),
        (f"{MODELS}:NeedsArgs", "B", "calling NeedsArgs() to build the model failed: TypeError"),
        (f"{MODELS}:not_a_model", "B", "not_a_model() returned int, not an nn.Module"),
        (f"{MODELS}:crashes", "B", "factory exploded"),
        (f"{MODELS}:CONSTANT", "B", "CONSTANT is a int, not an nn.Module"),
        ("lazyfx.demo:Net", "B,3,,32", "malformed input spec 'B,3,,32'"),
        ("lazyfx.demo:Net", "x=B,3,32,32", None),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(target, spec, message, capsys):
    args = ["show", target, "-i", spec] + (["-i", "B,3,32,32"] if message is None else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("lazyfx: error: ")
    assert message is None or message in err
    assert "Traceback" not in err


def test_help_does_not_import_torch():
    code = "import sys; from lazyfx.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "lazyfx", "show", "lazyfx.demo:Net", "-i", "B,3,32,32"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "head: LazyLinear -> Linear(in_features=2304)" in result.stdout
