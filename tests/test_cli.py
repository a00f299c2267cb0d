"""The command line, called as ``main([...])``: exit codes and output."""

import json
import pathlib
import subprocess
import sys

import pytest

import lazyfx
from lazyfx.cli import UsageError, _materialize_options, build_parser, main
from lazyfx.inputs.spec import parse_dtype

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


def test_constant_inputs(capsys):
    assert main(["show", f"{MODELS}:ActorCritic", "-i", "B,5", "-i", "role:=policy", "-i", "scale:=2"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "ActorCritic(states: (B, 5), role: policy, scale: 2) -> (B, 4)"
    assert main(["show", f"{MODELS}:ActorCritic", "-i", "B,5", "-i", "role:='value'"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("-> (B, 1)")
    # without :=, 'policy' is also a spec, which the str annotation makes ambiguous
    assert main(["show", f"{MODELS}:ActorCritic", "-i", "B,5", "-i", "role=policy"]) == 2
    err = capsys.readouterr().err
    assert "pass lazyfx.Const('policy') for the string" in err and "--input role:=policy passes the string" in err


def test_constant_inputs_in_the_configuration(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text(
        f'[[tool.lazyfx.models]]\ntarget = "{MODELS}:ActorCritic"\ninputs = ["B,5", "role:=value"]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 1  # the value role leaves the policy head lazy, as a dry run does
    captured = capsys.readouterr()
    assert "LFX042 lazy module 'policy' (LazyLinear) is never called" in captured.out + captured.err
    assert "'value'" not in captured.out + captured.err


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


# -- check ------------------------------------------------------------------------------

PROJECT = DATA / "project"


def test_check_reports_like_a_linter(capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    assert main(["check"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ("models/cnn.py:21:9: LFX030 Linear has in_features=100 but the input's last dim is 7200 "
                            "(input of size [B, 7200]) (in module 'fc' at Linear) [models/cnn.py:Broken]\n")
    assert captured.err == "lazyfx: 2 models checked: 1 error\n"


def test_check_only_the_models_the_changed_files_touch(capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    assert main(["check", "other.py"]) == 0
    assert capsys.readouterr().err == "lazyfx: no configured model uses the given files\n"
    assert main(["check", "models/blocks.py"]) == 1  # imported by models/cnn.py
    assert capsys.readouterr().out.count("LFX030") == 1
    assert main(["check", "other.py", "pyproject.toml"]) == 1  # a changed configuration: every model
    assert capsys.readouterr().err == "lazyfx: 2 models checked: 1 error\n"


def test_check_formats(capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    assert main(["check", "--format", "github"]) == 1
    assert capsys.readouterr().out.startswith("::error file=models/cnn.py,line=21,col=9,title=LFX030::Linear has")
    assert main(["check", "--format", "json"]) == 1
    (finding,) = json.loads(capsys.readouterr().out)
    assert finding["code"] == "LFX030" and finding["line"] == 21 and finding["model"] == "models/cnn.py:Broken"


def test_check_a_target_with_constraints_and_expected_output(capsys):
    target = f"{PROJECT / 'models' / 'cnn.py'}:Net"
    assert main(["check", target, "-i", "B,3,H,W", "-w", "H>=8", "-w", "W==H", "--expect", "B,10"]) == 0
    assert main(["check", target, "-i", "B,3,H,W", "--expect", "B,12"]) == 1
    assert "LFX070 the output has shape (B, 10), expected (B, 12)" in capsys.readouterr().out


def test_check_configuration_errors_are_findings_or_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 2
    assert "no pyproject.toml with [tool.lazyfx] models" in capsys.readouterr().err
    (tmp_path / "pyproject.toml").write_text('[[tool.lazyfx.models]]\ninputs = ["B"]\n')
    assert main(["check"]) == 2
    assert "needs a target" in capsys.readouterr().err
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.lazyfx.models]]\ntarget = "nowhere.py:Net"\ninputs = ["B"]\n\n'
        '[[tool.lazyfx.models]]\ntarget = "lazyfx.demo:Net"\ninputs = ["B,3,32,32"]\n'
    )
    assert main(["check"]) == 1  # a target that cannot be loaded is a finding; the other model is checked
    captured = capsys.readouterr()
    assert captured.out == f"pyproject.toml:2:1: LFX080 no such file: nowhere.py (in {tmp_path}) [nowhere.py:Net]\n"
    assert captured.err == "lazyfx: 2 models checked: 1 error\n"
    # a malformed spec is a usage error at its entry's line, before any model runs
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.lazyfx.models]]\ntarget = "nowhere.py:Net"\ninputs = ["B"]\n\n'
        '[[tool.lazyfx.models]]\ntarget = "lazyfx.demo:Net"\ninputs = ["B,3,,32"]\n'
    )
    assert main(["check"]) == 2
    assert capsys.readouterr().err.startswith(
        "lazyfx: error: pyproject.toml:6: [[tool.lazyfx.models]] lazyfx.demo:Net: malformed input spec 'B,3,,32'")


def test_check_symbol_dependent_head_is_a_finding(capsys):
    assert main(["check", "lazyfx.demo:Net", "-i", "B,3,H,W"]) == 1
    assert "LFX040 lazy module 'head' (LazyLinear) needs in_features" in capsys.readouterr().out


# -- materialize and export -----------------------------------------------------------------


def test_materialize_writes_a_weights_only_checkpoint(tmp_path, capsys):
    import torch

    out = tmp_path / "net.pt"
    assert main(["materialize", "lazyfx.demo:Net", "-i", "B,3,32,32", "--seed", "0", "--dtype", "float64",
                 "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    state = torch.load(out, weights_only=True)
    assert state["head.weight"].shape == (10, 2304) and state["head.weight"].dtype == torch.float64


def test_export_writes_onnx(tmp_path, capsys):
    out = tmp_path / "net.onnx"
    assert main(["export", "lazyfx.demo:Net", "-i", "B,3,32,32", "--format", "onnx", "-o", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out


def test_export_format_with_underscores(tmp_path, capsys):
    out = tmp_path / "net.pt2"
    assert main(["export", "lazyfx.demo:Net", "-i", "B,3,32,32", "--format", "exported_program", "-o", str(out)]) == 0
    assert out.exists() and "as a torch.export ExportedProgram" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse: exit 2, naming the formats
        main(["export", "lazyfx.demo:Net", "-i", "B,3,32,32", "--format", "exported program", "-o", str(out)])
    assert "invalid choice: 'exported program' (choose from" in capsys.readouterr().err


def test_bad_dtype_is_a_usage_error(capsys):
    assert main(["materialize", "lazyfx.demo:Net", "-i", "B,3,32,32", "--dtype", "float33", "-o", "x.pt"]) == 2
    assert "unknown dtype 'float33'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["float33", "Float16", "torch.float", " bfloat16", "float64"])
def test_dtype_names_are_read_as_in_input_specs(name):
    args = build_parser().parse_args(["materialize", "lazyfx.demo:Net", "-i", "B", "-o", "x.pt", "--dtype", name])
    try:
        expected = parse_dtype(name)
    except lazyfx.SpecError:
        with pytest.raises(UsageError, match=rf"unknown dtype '{name}' \(known: .*bfloat16"):
            _materialize_options(args)
    else:
        assert _materialize_options(args)["dtype"] is expected


@pytest.mark.parametrize("command", ["check", "show", "materialize", "export", "fix"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: lazyfx" in capsys.readouterr().out
