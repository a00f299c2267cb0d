"""`lazyfx check` selects and silences findings by code: `# lazyfx: ignore[...]` comments, the
select / extend-select / ignore keys of [tool.lazyfx] and of a model's table, --select and
--ignore; under --strict a comment that silences nothing is a finding. Each check has a twin
that must stay quiet (or loud)."""

import json
import textwrap

import pytest

from lazyfx.cli import main
from lazyfx.core.diagnostics import CODES, Category, Selection, Severity, enabled_codes, matching

MODELS = textwrap.dedent("""\
    import torch.nn as nn


    class Symbolic(nn.Module):{class_comment}
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(4, 3)
            self.head = nn.LazyLinear(10)

        def forward(self, x):
            return self.head(self.conv(x).flatten(1)){head_comment}


    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(8, 3)
            self.fc = nn.Linear(100, 10)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1)){fc_comment}


    def make_broken():{factory_comment}
        return Broken()
""")
HEAD_LINE, FC_LINE, FACTORY_LINE = 11, 21, 24

MODEL_TABLES = """
[[tool.lazyfx.models]]
target = "models.py:Symbolic"
inputs = ["B,3,H,W"]
{symbolic}
[[tool.lazyfx.models]]
target = "models.py:{broken}"
inputs = ["B,3,32,32"]
{broken_table}"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project with two models: Symbolic (LFX040 at its head) and Broken (LFX030 at its fc)."""
    monkeypatch.chdir(tmp_path)

    def write(top="", symbolic="", broken_table="", broken="Broken", **comments):
        fields = dict(class_comment="", head_comment="", fc_comment="", factory_comment="")
        (tmp_path / "models.py").write_text(MODELS.format(**{**fields, **comments}))
        tables = MODEL_TABLES.format(symbolic=symbolic, broken=broken, broken_table=broken_table)
        (tmp_path / "pyproject.toml").write_text(("[tool.lazyfx]\n" + top + "\n" if top else "") + tables)
        return tmp_path

    return write


def codes(capsys) -> list[str]:
    return [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("models.py:")]


def test_every_code_has_a_category_and_a_default_severity():
    for code in CODES.values():
        assert isinstance(code.category, Category) and isinstance(code.severity, Severity)
    assert CODES["LFX040"].severity is Severity.ERROR and CODES["LFX023"].severity is Severity.WARNING
    assert CODES["LFX034"].severity is Severity.WARNING and CODES["LFX031"].severity is Severity.ERROR
    assert CODES["LFX081"].category is Category.CONFIG


def test_both_findings_without_any_selection(project, capsys):
    project()
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX040", "LFX030"]


def test_a_comment_on_the_flagged_line_silences_that_code_there(project, capsys):
    project(head_comment="  # lazyfx: ignore[LFX040]")
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX030"]
    project(fc_comment="  # lazyfx: ignore[LFX040, LFX030]")  # several codes; the other line keeps its finding
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX040"]


def test_a_comment_for_another_code_or_in_a_string_silences_nothing(project, capsys):
    project(head_comment="  # lazyfx: ignore[LFX030]")
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX040", "LFX030"]
    project(head_comment=' if "# lazyfx: ignore[LFX040]" else x')
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX040", "LFX030"]


def test_a_comment_on_the_class_or_factory_line_silences_the_model(project, capsys):
    project(class_comment="  # lazyfx: ignore[LFX040]")
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX030"]
    project(broken="make_broken", factory_comment="  # lazyfx: ignore[LFX030]")
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX040"]
    # the comment belongs to the factory's model only: the class Broken checked directly keeps it
    project(broken="Broken", factory_comment="  # lazyfx: ignore[LFX030]")
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX040", "LFX030"]


def test_a_comment_on_a_target_line_in_pyproject_silences_a_finding_located_there(project, tmp_path, capsys):
    (tmp_path / "spare.py").write_text(textwrap.dedent("""\
        import torch.nn as nn


        class Spare(nn.Module):
            def __init__(self):
                super().__init__()
                self.used, self.spare = nn.LazyLinear(2), nn.LazyLinear(3)

            def forward(self, x):
                return self.used(x)
    """))

    def with_spare(comment: str) -> None:
        pyproject = project() / "pyproject.toml"
        pyproject.write_text(pyproject.read_text() + f'\n[[tool.lazyfx.models]]\ntarget = "spare.py:Spare"{comment}\n'
                             'inputs = ["B,4"]\n')

    with_spare("")
    assert main(["check", "--ignore", "LFX030,LFX040"]) == 1  # the spare layer is never called
    assert "pyproject.toml:11:1: LFX042 lazy module 'spare' (LazyLinear) is never called" in capsys.readouterr().out
    with_spare("  # lazyfx: ignore[LFX042]")
    assert main(["check", "--ignore", "LFX030,LFX040"]) == 0
    assert "LFX042" not in capsys.readouterr().out


def test_silenced_errors_pass_the_check(project, capsys):
    project(class_comment="  # lazyfx: ignore[LFX040]", fc_comment="  # lazyfx: ignore[LFX030]")
    assert main(["check"]) == 0
    assert capsys.readouterr().err == "lazyfx: 2 models checked, no findings\n"


def test_unused_suppressions_are_findings_under_strict(project, capsys):
    project(head_comment="  # lazyfx: ignore[LFX040, LFX042]", fc_comment="  # lazyfx: ignore")
    assert main(["check"]) == 1  # not without --strict
    assert codes(capsys) == ["LFX030"]
    assert main(["check", "--strict"]) == 1
    out = capsys.readouterr().out
    assert (f"models.py:{HEAD_LINE}:52: LFX081 `# lazyfx: ignore[LFX040, LFX042]` silences nothing for LFX042: "
            "no such finding is reported on this line (or for a model defined here)") in out
    assert f"models.py:{FC_LINE}:50: LFX081 `# lazyfx: ignore` names no code" in out
    assert out.count("LFX081") == 2 and "LFX040" not in out.replace("ignore[LFX040", "")
    # every comment used: quiet under --strict too
    project(head_comment="  # lazyfx: ignore[LFX040]", fc_comment="  # lazyfx: ignore[LFX030]")
    assert main(["check", "--strict"]) == 0
    assert "LFX081" not in capsys.readouterr().out


def test_unused_suppressions_are_judged_only_in_files_whose_models_all_ran(project, tmp_path, capsys):
    (tmp_path / "other.py").write_text("import torch.nn as nn\n\n\nclass Net(nn.Linear):  # lazyfx: ignore[LFX030]\n"
                                       "    def __init__(self):\n        super().__init__(4, 2)\n")

    def with_other(**comments):
        pyproject = project(**comments) / "pyproject.toml"
        pyproject.write_text(pyproject.read_text() + '\n[[tool.lazyfx.models]]\ntarget = "other.py:Net"\ninputs = ["B,4"]\n')

    with_other(head_comment="  # lazyfx: ignore[LFX042]")
    assert main(["check", "--strict", "other.py"]) == 1  # only Net ran: its file's idle comment is reported
    out = capsys.readouterr().out
    assert "other.py:4:24: LFX081" in out
    assert "models.py" not in out  # models.py's models did not run: its comments are not judged
    assert main(["check", "--strict"]) == 1  # every model ran: both are
    assert codes(capsys) == ["LFX040", "LFX030", "LFX081"]


def test_select_and_ignore_in_the_configuration(project, capsys):
    project(top='ignore = ["LFX030"]')
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX040"]
    project(top='select = ["LFX03"]')
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX030"]
    project(top='select = ["LFX03"]\nextend-select = ["LFX040"]')
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX040", "LFX030"]
    project(top='ignore = ["LFX0"]')
    assert main(["check"]) == 0
    assert codes(capsys) == []


def test_a_models_own_selection(project, capsys):
    project(symbolic='ignore = ["LFX040"]')
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX030"]
    project(top='ignore = ["LFX040", "LFX030"]', broken_table='select = ["LFX030"]')  # the model's own wins
    assert main(["check"]) == 1
    assert codes(capsys) == ["LFX030"]


def test_select_and_ignore_on_the_command_line(project, capsys):
    project(top='ignore = ["LFX040"]')
    assert main(["check", "--select", "LFX040,LFX030"]) == 1  # replaces the configured selection
    assert codes(capsys) == ["LFX040", "LFX030"]
    assert main(["check", "--ignore", "LFX030"]) == 0
    assert codes(capsys) == []
    assert main(["check", "--ignore", "lfx03", "--extend-select", "LFX040"]) == 1
    assert codes(capsys) == ["LFX040"]


def test_formats_apply_the_same_selection(project, capsys):
    project(head_comment="  # lazyfx: ignore[LFX040]")
    assert main(["check", "--format", "json"]) == 1
    assert [f["code"] for f in json.loads(capsys.readouterr().out)] == ["LFX030"]
    assert main(["check", "--format", "github", "--ignore", "LFX030"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("table, message", [
    ('ignore = ["LFX23"]', "pyproject.toml: [tool.lazyfx]: ignore names no code: 'LFX23' (did you mean LFX023?)"),
    ('select = "LFX040"\nignore = [40]', "ignore must be a list of codes"),
    ('extend_select = ["LFX040"]', "unknown key 'extend_select' in [tool.lazyfx] (did you mean extend-select?)"),
])
def test_a_selection_naming_no_code_is_a_usage_error(project, capsys, table, message):
    project(top=table)
    assert main(["check"]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_code_on_the_command_line_is_a_usage_error(project, capsys):
    project()
    assert main(["check", "--select", "LFX040,XYZ"]) == 2
    assert "lazyfx: error: --select names no code: 'XYZ'" in capsys.readouterr().err
    project(symbolic='ignore = ["LFX99"]')
    assert main(["check"]) == 2
    assert "[[tool.lazyfx.models]] entry 1: ignore names no code: 'LFX99'" in capsys.readouterr().err


def test_selection_resolves_as_ruff_does():
    every = set(CODES)
    assert enabled_codes([]) == every
    assert enabled_codes([Selection(select=("LFX04",), ignore=("LFX040",))]) == set(matching("LFX04")) - {"LFX040"}
    # the longer entry decides within a level, an ignore on a tie
    assert enabled_codes([Selection(select=("LFX040",), ignore=("LFX04",))]) == {"LFX040"}
    assert enabled_codes([Selection(select=("LFX040",), ignore=("LFX040",))]) == set()
    # a later level's select replaces, its extend-select adds back what an earlier one ignored
    assert enabled_codes([Selection(ignore=("LFX0",)), Selection(select=("LFX030",))]) == {"LFX030"}
    assert enabled_codes([Selection(ignore=("LFX04",)), Selection(extend_select=("LFX042",))]) == \
        every - set(matching("LFX04")) | {"LFX042"}
