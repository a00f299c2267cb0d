"""`lazyfx check --format sarif` writes SARIF 2.1.0 that validates against the OASIS schema
(tests/data/sarif-schema-2.1.0.json, the errata01 schema as OASIS publishes it), for GitHub code
scanning; every format prints paths relative to the project's root, wherever lazyfx runs."""

import json
import pathlib
import textwrap

import jsonschema
import pytest

from lazyfx.cli import main
from lazyfx.core.diagnostics import CODES

SCHEMA = json.loads((pathlib.Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
VALIDATOR = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)

MODELS = textwrap.dedent("""\
    import torch.nn as nn


    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(8, 3)
            self.fc = nn.Linear(100, 10)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))


    class Spare(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(2)
            self.spare = nn.LazyLinear(3)

        def forward(self, x):
            return self.fc(x)


    class Clean(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(2)

        def forward(self, x):
            return self.fc(x)
""")

PYPROJECT = """\
[[tool.lazyfx.models]]
target = "models/nets.py:Broken"
inputs = ["B,3,32,32"]

[[tool.lazyfx.models]]
target = "models/nets.py:Spare"
inputs = ["B,4"]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "nets.py").write_text(MODELS)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sarif(capsys, *args: str) -> dict:
    assert main(["check", "--format", "sarif", *args]) == 1
    log = json.loads(capsys.readouterr().out)
    VALIDATOR.validate(log)
    return log


def test_sarif_validates_and_points_at_the_lines(project, capsys):
    log = sarif(capsys)
    [run] = log["runs"]
    assert log["version"] == "2.1.0" and run["tool"]["driver"]["name"] == "lazyfx"
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(CODES)  # every code of the table, with its severity
    assert rules[[r["id"] for r in rules].index("LFX023")]["defaultConfiguration"] == {"level": "warning"}
    results = {r["ruleId"]: r for r in run["results"]}
    assert set(results) == {"LFX030", "LFX042"}
    shape = results["LFX030"]
    assert shape["level"] == "error" and shape["message"]["text"].startswith("Linear has in_features=100")
    assert rules[shape["ruleIndex"]]["id"] == "LFX030"
    assert shape["locations"] == [{"physicalLocation": {
        "artifactLocation": {"uri": "models/nets.py", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 11, "startColumn": 9}}}]
    assert shape["properties"] == {"model": "models/nets.py:Broken"}
    # a finding without a line of code points at its model's table in pyproject.toml
    assert results["LFX042"]["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "pyproject.toml", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 6, "startColumn": 1}}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == project.as_uri() + "/"


def test_a_clean_project_is_an_empty_valid_log(project, capsys):
    (project / "pyproject.toml").write_text('[[tool.lazyfx.models]]\ntarget = "models/nets.py:Clean"\ninputs = ["B,4"]\n')
    assert main(["check", "--format", "sarif"]) == 0
    log = json.loads(capsys.readouterr().out)
    VALIDATOR.validate(log)
    assert log["runs"][0]["results"] == []


def test_the_schema_rejects_what_is_not_sarif(project, capsys):
    log = sarif(capsys)
    log["runs"][0]["results"][0]["level"] = "fatal"  # not a SARIF level
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(log)
    del log["version"]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(log)


@pytest.mark.parametrize("form", ["text", "github", "json", "sarif"])
def test_paths_are_relative_to_the_project_root_from_any_folder(project, capsys, monkeypatch, form):
    def output(folder: pathlib.Path) -> str:
        monkeypatch.chdir(folder)
        assert main(["check", "--format", form]) == 1
        return capsys.readouterr().out

    at_root = output(project)
    assert output(project / "models") == at_root
    assert "models/nets.py" in at_root and str(project) not in at_root.replace(project.as_uri(), "")
    assert "../" not in at_root
