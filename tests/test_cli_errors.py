"""Issue 12 points 4, 8 and 9: every subcommand exits 2 (usage) or 1 (findings) with one clear
line and no traceback; constraints on symbols no input has are usage errors; aliases tie every
name; import and factory errors point at the user's line; interrupts raised by a model's
forward are findings, a real Ctrl-C aborts."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from lazyfx.cli import main

ROOT = pathlib.Path(__file__).parent.parent
NET = "lazyfx.demo:Net"

GOOD_MODEL = textwrap.dedent("""
    import torch.nn as nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(8, 3)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.LazyLinear(10)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x)).flatten(1))
""")


def usage_error(capsys, *fragments) -> str:
    err = capsys.readouterr().err
    assert err.startswith("lazyfx: error: "), err
    assert err.count("\n") == 1, err  # one line
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with models.py; write(pyproject_text) writes its pyproject.toml."""
    (tmp_path / "models.py").write_text(GOOD_MODEL)
    monkeypatch.chdir(tmp_path)

    def write(text: str) -> pathlib.Path:
        path = tmp_path / "pyproject.toml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


ENTRY = '[[tool.lazyfx.models]]\ntarget = "models.py:Net"\ninputs = ["B,3,H,W"]\n'


# -- point 4: constraints ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["show", "check", "fix", "materialize"])
def test_a_constraint_on_a_symbol_no_input_has_is_a_usage_error(command, capsys, tmp_path):
    extra = ["-o", str(tmp_path / "x.pt")] if command == "materialize" else []
    assert main([command, NET, "-i", "B,3,H,W", "--where", "Q>=3", *extra]) == 2
    usage_error(capsys, "constraint 'Q>=3'", "no input has a symbol Q")


def test_did_you_mean(capsys):
    assert main(["show", NET, "-i", "B,3,H,W", "--where", "h>=32"]) == 2
    usage_error(capsys, "constraint 'h>=32'", "did you mean H?")
    assert main(["show", NET, "-i", "B,3,H,W", "--where", "W==Hh"]) == 2
    usage_error(capsys, "no input has a symbol Hh", "did you mean H?")


def test_a_constraint_on_an_unknown_symbol_in_the_config(project, capsys):
    project(ENTRY + 'constraints = ["h>=32"]\n')
    assert main(["check"]) == 2
    usage_error(capsys, "pyproject.toml:2:", "constraint 'h>=32'", "did you mean H?")


def test_a_constraint_on_a_real_symbol_is_accepted(project, capsys):
    project(ENTRY + 'constraints = ["H>=32", "W==H"]\n')
    assert main(["check"]) == 0
    assert main(["show", NET, "-i", "B,3,H,W", "--where", "H>=32", "--where", "W==H"]) == 0


def test_keyword_inputs_have_symbols_too(capsys):
    assert main(["show", NET, "-i", "x=B,3,H,W", "--where", "H>=32", "--where", "W==H"]) == 0
    assert "valid for" not in capsys.readouterr().err


def test_alias_chains_tie_every_name(capsys):
    assert main(["show", NET, "-i", "B,C,H,W", "-w", "H==C", "-w", "W==H", "-w", "C==32"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("Net(x: (B, C, C, C))")


def test_alias_chain_reaches_the_root():
    from lazyfx.inputs.spec import constrain, parse_constraints

    dims, aliases = parse_constraints(["H==C", "W==H"])
    assert constrain("B,C,H,W", dims, aliases).shape == ("B", "C", "C", "C")
    dims, aliases = parse_constraints(["W==H", "H==C"])  # in either order
    assert constrain("B,C,H,W", dims, aliases).shape == ("B", "C", "C", "C")


def test_bounds_on_an_alias_are_kept():
    import lazyfx
    from lazyfx.inputs.spec import constrain, parse_constraints

    dims, aliases = parse_constraints(["W==H", "W>=32"])
    spec = constrain("B,3,H,W", dims, aliases)
    assert spec.shape[2] == spec.shape[3] == lazyfx.Dim("H", min=32)
    dims, aliases = parse_constraints(["W>=32", "W==H", "H<=64", "H%4==0", "W%6==0"])
    (h,) = set(constrain("H,W", dims, aliases).shape)
    assert h == lazyfx.Dim("H", min=32, max=64, multiple_of=12)


@pytest.mark.parametrize("constraints, message", [
    (["H>=10", "H<=5"], "no size of H satisfies H>=10, H<=5"),
    (["H==10", "H==12"], "no size of H satisfies H==10, H==12"),
    (["W==H", "H>=10", "W<=5"], r"no size of H \(tied to W\) satisfies H>=10, W<=5"),
    (["W==H", "H==C", "C>=10", "W<=5"], r"no size of C \(tied to H, W\) satisfies C>=10, W<=5"),
    (["H%32==0", "H>=33", "H<=63"], "no size of H satisfies"),
    (["H<1"], "no size of H satisfies H<1"),
    (["H%0==0"], "constraint 'H%0==0'"),
])
def test_contradictory_constraints_are_an_error(constraints, message, capsys):
    import lazyfx
    from lazyfx.inputs.spec import parse_constraints

    with pytest.raises(lazyfx.SpecError, match=message):
        parse_constraints(constraints)
    where = [a for c in constraints for a in ("-w", c)]
    assert main(["show", NET, "-i", "B,3,H,W", *where]) == 2
    assert re.search(message, usage_error(capsys))


@pytest.mark.parametrize("where", ["H>=99999999999999999999999999", "H<=" + "9" * 5000, "H%" + "7" * 5000 + "==0",
                                   "H==" + "1" * 30])
def test_integers_too_long_in_constraints(where, capsys):
    assert main(["show", NET, "-i", "B,3,H,W", "-w", where]) == 2
    usage_error(capsys, "too large")


@pytest.mark.parametrize("command", ["show", "check"])
@pytest.mark.parametrize("spec", ["B,3," + "9" * 30 + ",32", "B,3," + "9" * 5000 + ",32"])
def test_integers_too_long_in_inputs(command, spec, capsys):
    assert main([command, NET, "-i", spec]) == 2
    usage_error(capsys, "too large")


# -- point 8: shape tuples, import and factory errors ------------------------------------------------


@pytest.mark.parametrize("spec", [("B", 3.0, 8), (True, 3), ("B", None, 8), [2, 3.5], ("B", False)])
def test_a_float_bool_or_none_in_a_shape_tuple_is_a_spec_error(spec):
    import torch.nn as nn

    import lazyfx

    with pytest.raises(lazyfx.SpecError, match=r"entry \d+ of the shape .* is (the float|the bool|None)"):
        lazyfx.infer(nn.Sequential(nn.LazyLinear(4)), spec)


def test_containers_of_constants_are_still_containers():
    import torch

    from lazyfx.inputs.spec import SymbolTable, to_value
    from lazyfx.core.values import TensorMeta

    table = SymbolTable()
    assert to_value(("B,3", None), table)[1] is None
    assert to_value((None, 0.5, True, 3, torch.float16), table) == (None, 0.5, True, 3, torch.float16)
    assert to_value(((2, 3), 0.5), table) == (TensorMeta((2, 3)), 0.5)


def _write(path: pathlib.Path, text: str) -> str:
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


@pytest.mark.parametrize("body, line, what", [
    ("import torch.nn as nn\n\nx = 1\nraise RuntimeError('bad import')\n", 4, "RuntimeError: bad import"),
    ("import torch.nn as nn\n\ndef f(:\n    pass\n", 3, "SyntaxError"),
    ("import torch.nn as nn\nimport json\n\njson.loads('{')\n", 4, "JSONDecodeError"),
    ("import torch.nn as nn\nimport no_such_module_xyz\n", 2, "ModuleNotFoundError"),
    ("import torch.nn as nn\n\ndef Net():\n    x = 1\n    raise ValueError('factory')\n", 5,
     "calling Net() to build the model failed: ValueError: factory"),
    ("import sys\n\ndef Net():\n    sys.exit(3)\n", 4, "SystemExit: 3"),
])
def test_import_and_factory_errors_carry_the_users_line(body, line, what, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "bad_target.py", body)
    assert main(["show", "bad_target.py:Net", "-i", "B,3"]) == 2
    usage_error(capsys, f"bad_target.py:{line}: ", what)
    (tmp_path / "pyproject.toml").write_text('[[tool.lazyfx.models]]\ntarget = "bad_target.py:Net"\ninputs = ["B,3"]\n')
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert re.match(rf"bad_target.py:{line}:\d+: LFX082 ", out), out  # model-code-raised, not config-invalid
    assert what in out


def test_a_target_naming_no_module_is_config_invalid_but_a_missing_import_inside_it_is_not(tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg_ok").mkdir()
    (tmp_path / "pkg_ok" / "__init__.py").write_text("")
    (tmp_path / "pkg_ok" / "broken.py").write_text("import torch.nn as nn\nimport no_such_module_xyz\n")
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.lazyfx.models]]\ntarget = "pkg_ok.nothing_here:Net"\ninputs = ["B,3"]\n\n'
        '[[tool.lazyfx.models]]\ntarget = "pkg_ok.broken:Net"\ninputs = ["B,3"]\n')
    assert main(["check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("pyproject.toml:2:1: LFX080 cannot import pkg_ok.nothing_here: ModuleNotFoundError"), lines
    assert re.match(r"pkg_ok/broken.py:2:\d+: LFX082 cannot import pkg_ok.broken: ModuleNotFoundError", lines[1]), lines


def test_model_code_raising_while_analysed_is_a_finding_at_its_line(project, capsys):
    project(ENTRY.replace("models.py", "odd.py"))
    _write(pathlib.Path("odd.py"), """
        import torch.nn as nn


        class Net(nn.Module):
            def named_modules(self, *args, **kwargs):
                raise RuntimeError("no modules today")

            def forward(self, x):
                return x
    """)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert re.match(r"odd.py:6:\d+: LFX082 analysing odd.py:Net failed: RuntimeError: no modules today", out), out


# -- point 9: exit codes ------------------------------------------------------------------------------


def test_a_malformed_input_in_check_exits_2_as_in_show(capsys):
    assert main(["show", NET, "-i", "B,3,,32"]) == 2
    usage_error(capsys, "malformed input spec 'B,3,,32'")
    assert main(["check", NET, "-i", "B,3,,32"]) == 2
    usage_error(capsys, "malformed input spec 'B,3,,32'")
    assert main(["check", NET, "-i", "B,3,32,32"]) == 0


def test_a_bad_command_line_target_in_check_exits_2_as_in_show(capsys):
    assert main(["check", "lazyfx.demo:Nope", "-i", "B"]) == 2
    usage_error(capsys, "lazyfx.demo has no attribute 'Nope'")


def test_check_config_missing_or_a_folder(tmp_path, capsys):
    assert main(["check", "--config", str(tmp_path / "nope.toml")]) == 2
    usage_error(capsys, "nope.toml", "no such file")
    assert main(["check", "--config", str(tmp_path)]) == 2
    usage_error(capsys, "is a folder")


@pytest.mark.parametrize("text, message", [
    (ENTRY + "expect_output = 10\n", "expect_output must be a spec string such as \"B,10\", got 10"),
    ('[[tool.lazyfx.models]]\ntarget = "models.py:Net"\ninputs = [1, 2]\n', "inputs must be"),
    ('[[tool.lazyfx.models]]\ntarget = "models.py:Net"\ninputs = {x = 1}\n', "inputs must be"),
    ('[[tool.lazyfx.models]]\ntarget = "models.py:Net"\ninputs = 5\n', "inputs must be"),
    (ENTRY + "name = 3\n", "name must be a string"),
    ('[[tool.lazyfx.models]]\ntarget = 3\ninputs = ["B,3,H,W"]\n', "target must be a string"),
    (ENTRY + 'constraints = "H>=3"\n', "constraints must be a list of strings"),
    (ENTRY + 'allow_fixed_sizes = "yes"\n', "allow_fixed_sizes must be true or false"),
    ('[tool.lazyfx]\nmodel = []\n' + ENTRY, "unknown key 'model' in [tool.lazyfx] (did you mean models?)"),
    ('[tool.lazyfx]\nstrict = true\n' + ENTRY, "unknown key 'strict' in [tool.lazyfx]"),
    (ENTRY + "input = []\n", "unknown key 'input' (did you mean inputs?)"),
    ('[tool]\nlazyfx = 3\n', "[tool.lazyfx] must be a table"),
    (ENTRY + 'inputs_ = ["B,3,,W"]\n', "unknown key"),
    ('[[tool.lazyfx.models]]\ntarget = "models.py:Net"\ninputs = ["B,3,,W"]\n', "malformed input spec 'B,3,,W'"),
    (ENTRY + 'expect_output = "B,,10"\n', "malformed input spec 'B,,10'"),
    (ENTRY + 'constraints = ["H>="]\n', "malformed constraint 'H>='"),
])
def test_wrong_types_and_keys_in_the_config_exit_2(text, message, project, capsys):
    project(text)
    assert main(["check"]) == 2
    err = usage_error(capsys, message)
    assert "pyproject.toml" in err


def test_a_correct_config_passes(project, capsys):
    project('[tool.lazyfx]\nallow_fixed_sizes = false\n\n' + ENTRY + 'name = "net"\nexpect_output = "B,10"\n'
            'constraints = ["H>=3", "W>=3"]\nallow_fixed_sizes = true\n')
    assert main(["check"]) == 0
    assert capsys.readouterr().err == "lazyfx: 1 model checked, no findings\n"


def test_keys_other_parts_of_lazyfx_know_are_accepted():
    from lazyfx.inputs import config

    assert {"models", "allow_fixed_sizes"} <= config.TOP_LEVEL_KEYS
    assert {"target", "inputs", "constraints", "expect_output", "name", "allow_fixed_sizes"} <= config.MODEL_KEYS


def test_materialize_into_a_missing_folder(tmp_path, capsys):
    assert main(["materialize", NET, "-i", "B,3,32,32", "-o", str(tmp_path / "no" / "net.pt")]) == 2
    usage_error(capsys, "cannot write", "no such folder")
    assert main(["materialize", NET, "-i", "B,3,32,32", "-o", str(tmp_path)]) == 2
    usage_error(capsys, "cannot write", "is a folder")
    assert main(["materialize", NET, "-i", "B,3,32,32", "-o", str(tmp_path / "net.pt")]) == 0


TWO_FILES_BLOCK = """
import torch.nn as nn


def block():
    return nn.Sequential(nn.LazyLinear(8), nn.ReLU())
"""

TWO_FILES_MODEL = """
import torch.nn as nn

from {block} import block


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = block()
        self.head = nn.LazyLinear(2)

    def forward(self, x):
        return self.head(self.body(x))
"""


@pytest.fixture
def two_files(tmp_path, monkeypatch, request):
    name = f"blk_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    block = _write(tmp_path / f"{name}.py", TWO_FILES_BLOCK)
    model = _write(tmp_path / "two.py", TWO_FILES_MODEL.format(block=name))
    yield model, block
    sys.modules.pop(name, None)


def test_fix_write_is_all_or_nothing(two_files, capsys, monkeypatch):
    _, block = two_files
    before = {p: pathlib.Path(p).read_text() for p in two_files}
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == block and mode == os.W_OK
                        else real_access(p, mode, **kw))
    assert main(["fix", "two.py:Net", "-i", "B,4", "--write"]) == 2
    usage_error(capsys, "cannot write", os.path.basename(block), "no file was changed")
    assert {p: pathlib.Path(p).read_text() for p in two_files} == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes read-only files")
def test_fix_write_on_a_read_only_file(two_files, capsys):
    _, block = two_files
    before = {p: pathlib.Path(p).read_text() for p in two_files}
    os.chmod(block, 0o444)
    try:
        assert main(["fix", "two.py:Net", "-i", "B,4", "--write"]) == 2
    finally:
        os.chmod(block, 0o644)
    usage_error(capsys, "cannot write", "no file was changed")
    assert {p: pathlib.Path(p).read_text() for p in two_files} == before


def test_fix_write_rewrites_both_files(two_files, capsys):
    model, block = two_files
    assert main(["fix", "two.py:Net", "-i", "B,4", "--write"]) == 0
    assert "nn.Linear(4, 8)" in pathlib.Path(block).read_text()
    assert "nn.Linear(8, 2)" in pathlib.Path(model).read_text()


def test_fix_write_restores_the_files_when_a_write_fails(two_files, monkeypatch):
    from lazyfx.outputs import fix

    before = {p: pathlib.Path(p).read_text() for p in two_files}
    fixes = [fix.FileFix(path, text, text + "# changed\n", []) for path, text in before.items()]
    real_open = open
    calls = {"n": 0}

    def failing_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(fix.WriteError, match="No space left on device"):
        fix.write(fixes)
    monkeypatch.undo()
    assert {p: pathlib.Path(p).read_text() for p in two_files} == before


# -- interrupts inside check ---------------------------------------------------------------------------

INTERRUPTING = textwrap.dedent("""
    import sys

    import torch.nn as nn


    class Exits(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)

        def forward(self, x):
            sys.exit("forward gave up")


    class Interrupts(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)

        def forward(self, x):
            raise KeyboardInterrupt("from the model")


    class Fine(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)

        def forward(self, x):
            return self.fc(x)
""")


@pytest.fixture(autouse=True)
def _default_sigint():
    """Ctrl-C as in a terminal: a shell starts background jobs (``pytest &``) with SIGINT ignored,
    and lazyfx then rightly counts every KeyboardInterrupt as real."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python then installs its KeyboardInterrupt handler


def test_system_exit_and_keyboard_interrupt_in_forward_are_findings(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "intr.py").write_text(INTERRUPTING)
    (tmp_path / "pyproject.toml").write_text("".join(
        f'[[tool.lazyfx.models]]\ntarget = "intr.py:{name}"\ninputs = ["B,3"]\n\n'
        for name in ("Exits", "Interrupts", "Fine")))
    assert main(["check"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    exit_line = INTERRUPTING.splitlines().index('        sys.exit("forward gave up")') + 1
    raise_line = INTERRUPTING.splitlines().index('        raise KeyboardInterrupt("from the model")') + 1
    assert lines[0].startswith(f"intr.py:{exit_line}:9: LFX033 "), lines
    assert "SystemExit: forward gave up" in lines[0] and lines[0].endswith("[intr.py:Exits]")
    assert lines[1].startswith(f"intr.py:{raise_line}:9: LFX033 ")
    assert "KeyboardInterrupt: from the model" in lines[1]
    assert captured.err == "lazyfx: 3 models checked: 2 errors\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


@pytest.mark.parametrize("command", ["show", "fix"])
def test_system_exit_in_forward_outside_check_is_a_finding_too(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "intr.py").write_text(INTERRUPTING)
    assert main([command, "intr.py:Exits", "-i", "B,3"]) == 1
    exit_line = INTERRUPTING.splitlines().index('        sys.exit("forward gave up")') + 1
    err = capsys.readouterr().err
    assert err == f"intr.py:{exit_line}: LFX033 the model's code raises SystemExit: forward gave up\n"


SLOW = textwrap.dedent("""
    import time

    import torch.nn as nn


    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)

        def forward(self, x):
            print("started", flush=True)
            time.sleep(60)
            return self.fc(x)
""")


def test_a_real_ctrl_c_still_aborts_check(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW)
    (tmp_path / "pyproject.toml").write_text('[[tool.lazyfx.models]]\ntarget = "slow.py:Slow"\ninputs = ["B,3"]\n'
                                             '[[tool.lazyfx.models]]\ntarget = "slow.py:Slow"\ninputs = ["B,4"]\n')
    proc = subprocess.Popen([sys.executable, "-m", "lazyfx", "check"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            preexec_fn=_sigint_as_in_a_terminal)
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "started" not in out  # the second model was not checked
    assert err.strip() == "lazyfx: interrupted"


# -- targets relative to pyproject.toml, duplicated targets ------------------------------------------


def test_targets_resolve_relative_to_pyproject(project, tmp_path, capsys, monkeypatch):
    project(ENTRY + 'constraints = ["H>=3", "W>=3"]\n')
    sub = tmp_path / "sub" / "deeper"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert main(["check"]) == 0
    monkeypatch.chdir("/")
    assert main(["check", "--config", str(tmp_path / "pyproject.toml")]) == 0
    assert main(["check", "--config", str(tmp_path / "pyproject.toml"), str(tmp_path / "models.py")]) == 0
    assert capsys.readouterr().err.count("1 model checked, no findings") == 3


def test_dotted_targets_resolve_from_the_pyproject_folder(project, tmp_path, capsys, monkeypatch):
    package = tmp_path / "lfx_dotted_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "net.py").write_text(GOOD_MODEL)
    project(ENTRY.replace("models.py:Net", "lfx_dotted_pkg.net:Net") + 'constraints = ["H>=3", "W>=3"]\n')
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        assert main(["check", "../lfx_dotted_pkg/net.py"]) == 0  # pre-commit's changed-file filter finds it
        assert capsys.readouterr().err == "lazyfx: 1 model checked, no findings\n"
        assert main(["check"]) == 0
    finally:
        for name in ("lfx_dotted_pkg", "lfx_dotted_pkg.net"):
            sys.modules.pop(name, None)


def test_a_duplicated_target_is_reported_at_its_own_line(project, capsys):
    project('[[tool.lazyfx.models]]\ntarget = "models.py:Net"\ninputs = ["B,3,H,W"]\n'
            'constraints = ["H>=3", "W>=3"]\n\n'
            '[[tool.lazyfx.models]]\nname = "second"\ninputs = ["B,3,H,W"]\ntarget = "models.py:Net"\n'
            'constraints = ["h>=3"]\n')
    assert main(["check"]) == 2
    usage_error(capsys, "pyproject.toml:9:")


def test_findings_of_a_duplicated_target_are_at_each_entry(project, capsys):
    project('[[tool.lazyfx.models]]\ntarget = "missing.py:Net"\ninputs = ["B,3"]\n\n'
            '[[tool.lazyfx.models]]\nname = "again"\ninputs = ["B,4"]\ntarget = "missing.py:Net"\n')
    assert main(["check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["pyproject.toml:2:1:", "pyproject.toml:8:1:"]


def test_a_huge_integer_in_the_toml_is_a_usage_error(project, capsys):
    project(ENTRY + "expect_output = " + "9" * 5000 + "\n")
    assert main(["check"]) == 2
    usage_error(capsys, "cannot parse")


def test_a_keyboard_interrupt_while_importing_a_target_is_a_finding(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imp.py").write_text("import torch.nn as nn\n\nraise KeyboardInterrupt('at import')\n")
    (tmp_path / "pyproject.toml").write_text(ENTRY.replace("models.py", "imp.py") + "\n" + ENTRY)
    (tmp_path / "models.py").write_text(GOOD_MODEL)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("imp.py:3:1: LFX082 loading imp.py:Net raises KeyboardInterrupt: at import"), out
    assert out.count("\n") == 1


def test_inline_model_tables_are_found_by_their_target(project, capsys):
    project('[tool.lazyfx]\nmodels = [\n  { target = "missing.py:Net", inputs = ["B,3"] },\n]\n')
    assert main(["check"]) == 1
    assert capsys.readouterr().out.startswith("pyproject.toml:3:1: LFX080 no such file: missing.py")


def test_model_lines_follow_each_table():
    from lazyfx.inputs import config

    text = ('[project]\nname = "x"  # models.py:Net\n\n[[tool.lazyfx.models]]\ntarget = "models.py:Net"\n'
            '\n[[tool.lazyfx.models]]\ntarget = "models.py:Net"\n')
    assert config.entry_lines(text) == [5, 8]
