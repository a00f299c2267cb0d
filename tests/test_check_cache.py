"""`lazyfx check` caches each model's findings: a run where nothing relevant changed prints the
same findings and exit code without importing torch; a change to a file the model imports, to
its table, or to the versions invalidates that model's entry (and only that one); a corrupt or
foreign entry is ignored and rewritten. Timings are measured by benchmarks/precommit.py, not
here."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest
import sympy
import torch

import lazyfx
from lazyfx.cli import main
from lazyfx.outputs import cache as cache_module

ROOT = pathlib.Path(__file__).parent.parent
# the CLI, reporting on stderr whether torch was imported by the time it exits
WRAPPER = ("import sys\nfrom lazyfx.cli import main\ncode = main(sys.argv[1:])\nsys.stdout.flush()\n"
           "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)\n"
           "raise SystemExit(code)\n")

BLOCKS = textwrap.dedent("""\
    import torch.nn as nn


    def features(channels):
        return nn.Sequential(nn.LazyConv2d(channels, 3), nn.ReLU())
""")

CNN = textwrap.dedent("""\
    import pathlib

    import torch.nn as nn

    from cached_models.blocks import features


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features(8)
            self.fc = nn.Linear({in_features}, 10)

        def forward(self, x):
            return self.fc(self.features(x).flatten(1))


    def make():  # leaves a mark each time a model is built: each time it is analysed
        with open(pathlib.Path(__file__).parent.parent / "built.log", "a") as log:
            log.write("cnn\\n")
        return Net()
""")

MLP = textwrap.dedent("""\
    import pathlib

    import torch.nn as nn


    def make():
        with open(pathlib.Path(__file__).parent.parent / "built.log", "a") as log:
            log.write("mlp\\n")
        return nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.LazyLinear(2))
""")

PYPROJECT = """\
[tool.lazyfx]
{top}

[[tool.lazyfx.models]]
name = "cnn"
target = "cached_models/cnn.py:make"
inputs = ["B,3,32,32"]

[[tool.lazyfx.models]]
name = "mlp"
target = "cached_models/mlp.py:make"
inputs = [{mlp_inputs}]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Two models: cnn (an LFX030: 7200 features, not 6272) importing cached_models/blocks.py, and mlp."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cached_models").mkdir()
    (tmp_path / "cached_models" / "__init__.py").write_text("")
    (tmp_path / "cached_models" / "blocks.py").write_text(BLOCKS)
    (tmp_path / "cached_models" / "cnn.py").write_text(CNN.format(in_features=6272))
    (tmp_path / "cached_models" / "mlp.py").write_text(MLP)
    (tmp_path / "other.py").write_text("x = 1\n")
    configure(tmp_path)
    forget_the_package()  # main() in this process imports it: each test's own files
    yield tmp_path
    forget_the_package()


def forget_the_package() -> None:
    for name in [n for n in sys.modules if n == "cached_models" or n.startswith("cached_models.")]:
        del sys.modules[name]


def configure(folder: pathlib.Path, top: str = "", mlp_inputs: str = '"B,5"') -> None:
    (folder / "pyproject.toml").write_text(PYPROJECT.format(top=top, mlp_inputs=mlp_inputs))


def built(folder: pathlib.Path) -> list[str]:
    """The models analysed since the last call."""
    log = folder / "built.log"
    names = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return sorted(names)


def cli(folder: pathlib.Path, *args: str) -> tuple[int, str, str, bool]:
    """Run `lazyfx check ARGS` in a fresh interpreter: exit code, stdout, stderr, torch imported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", WRAPPER, "check", *args], cwd=folder, capture_output=True,
                            text=True, env=env, timeout=300)
    err, _, marker = result.stderr.rstrip("\n").rpartition("\n")
    assert marker in ("torch imported", "torch not imported"), result.stderr
    return result.returncode, result.stdout, err + "\n" if err else "", marker == "torch imported"


def entries(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(folder.glob("*.json"))


def test_an_unchanged_run_repeats_the_findings_without_importing_torch(project, capsys):
    first = cli(project)
    assert first[0] == 1 and "LFX030 Linear has in_features=6272" in first[1] and first[3]
    assert built(project) == ["cnn", "mlp"]
    again = cli(project)
    assert again[:3] == first[:3] and not again[3]  # the same output and exit code, and no torch
    assert built(project) == []
    # a fresh analysis in this process prints what the first run printed (the loop below relies on it)
    assert (main(["check", "--no-cache"]), *capsys.readouterr()) == first[:3] and built(project) == ["cnn", "mlp"]
    for form in ("json", "sarif", "github"):  # every format, from the same entries
        # the fresh analysis in this process (torch is imported here already), the cached run in
        # a fresh interpreter: the one whose torch import is in question
        fresh = main(["check", "--format", form, "--no-cache"]), *capsys.readouterr()
        assert built(project) == ["cnn", "mlp"]  # analysed afresh
        cached = cli(project, "--format", form)
        assert cached[:3] == fresh and not cached[3] and built(project) == []
    # with the changed files pre-commit passes: a file no model imports needs nothing analysed
    assert cli(project, "other.py")[::3] == (0, False)


def test_a_change_to_an_imported_file_invalidates_the_models_importing_it(project):
    cli(project)
    built(project)
    (project / "cached_models" / "blocks.py").write_text(BLOCKS.replace("nn.LazyConv2d(channels, 3)", "nn.LazyConv2d(channels, 7)"))
    code, out, _, torch_imported = cli(project)
    assert code == 1 and "the input's last dim is 5408" in out and torch_imported  # 8*26*26: a fresh answer
    assert built(project) == ["cnn"]  # mlp imports nothing that changed
    (project / "cached_models" / "cnn.py").write_text(CNN.format(in_features=5408))  # the fix
    assert cli(project)[0] == 0 and built(project) == ["cnn"]
    assert cli(project)[::3] == (0, False) and built(project) == []


def test_a_change_to_a_models_table_invalidates_that_model(project, capsys):
    assert main(["check"]) == 1
    assert built(project) == ["cnn", "mlp"]
    configure(project, mlp_inputs='"B,7"')
    assert main(["check"]) == 1
    assert built(project) == ["mlp"]
    # selection is applied to the stored findings: changing it analyses nothing
    configure(project, top='ignore = ["LFX030"]', mlp_inputs='"B,7"')
    capsys.readouterr()
    assert main(["check"]) == 0
    assert built(project) == [] and "LFX030" not in capsys.readouterr().out


def test_the_versions_are_part_of_the_key(project, monkeypatch):
    assert main(["check"]) == 1
    assert built(project) == ["cnn", "mlp"]
    real = cache_module.installed
    upgraded = lambda name: real(name)[:3] + [["torch-99.0.dist-info"]] if name == "torch" else real(name)  # noqa: E731
    monkeypatch.setattr(cache_module, "installed", upgraded)
    assert main(["check"]) == 1
    assert built(project) == ["cnn", "mlp"]
    monkeypatch.setattr(cache_module, "installed", real)
    monkeypatch.setattr(cache_module.sys, "version", "3.99.0 (another interpreter)")
    assert main(["check"]) == 1
    assert built(project) == ["cnn", "mlp"]
    monkeypatch.undo()
    monkeypatch.chdir(project)
    assert main(["check"]) == 1  # back to the first versions: the first entries... rewritten since
    assert built(project) == ["cnn", "mlp"]
    assert main(["check"]) == 1
    assert built(project) == []


def test_a_change_to_lazyfx_itself_is_part_of_the_key(project, monkeypatch, tmp_path_factory):
    first = cache_module.environment()
    assert first == cache_module.environment()
    assert {"python", "lazyfx", "lazyfx files", "torch", "sympy"} <= set(first)
    # read from its installation, whose folder name may drop the local version label (2.13.0+cpu
    # keeps it, PyPI's 2.15.0+cu132 is installed as torch-2.15.0.dist-info)
    versions = {torch.__version__, torch.__version__.split("+")[0]}
    assert first["torch"][3] in [[f"torch-{version}.dist-info"] for version in versions]
    assert first["sympy"][3] == [f"sympy-{sympy.__version__}.dist-info"]
    # a file touched in a copy of the package (copied with its times: the same key), not in the
    # checkout, where a `lazyfx check` running meanwhile (pytest -n) would see the touched time
    package = os.path.dirname(os.path.abspath(lazyfx.__file__))
    assert cache_module.PACKAGE_DIR == package
    copy = tmp_path_factory.mktemp("package") / "lazyfx"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache_module, "PACKAGE_DIR", str(copy))
    assert cache_module.environment() == first
    touched = copy / pathlib.Path(cache_module.__file__).relative_to(package)
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache_module.environment()["lazyfx files"] != first["lazyfx files"]


def test_corrupt_and_foreign_entries_are_ignored_and_rewritten(project, capsys):
    folder = pathlib.Path(os.environ["LAZYFX_CACHE_DIR"])
    assert main(["check"]) == 1
    expected = capsys.readouterr()
    built(project)
    cnn, mlp = sorted(entries(folder), key=lambda p: json.loads(p.read_text())["model"])
    good_cnn, good_mlp = cnn.read_text(), mlp.read_text()

    def rerun(analysed: list[str]) -> None:
        assert main(["check"]) == 1
        assert capsys.readouterr() == expected and built(project) == analysed
        assert main(["check"]) == 1 and built(project) == []  # and rewritten: the next run uses it
        capsys.readouterr()

    cnn.write_text("{not json")
    rerun(["cnn"])
    cnn.write_bytes(b"\xff\xfe\x00garbage")
    rerun(["cnn"])
    cnn.write_text(good_mlp), mlp.write_text(good_cnn)  # each the other's: another key
    rerun(["cnn", "mlp"])
    data = json.loads(cnn.read_text())
    for broken in ({**data, "format": 0},
                   {**data, "findings": [{**data["findings"][0], "line": "21"}]},
                   {**data, "findings": [{**data["findings"][0], "code": "LFX999"}]},
                   {**data, "findings": [{**data["findings"][0], "severity": "fatal"}]},
                   {**data, "findings": [{**data["findings"][0], "extra": 1}]},
                   {**data, "findings": {}},
                   [data]):
        cnn.write_text(json.dumps(broken))
        rerun(["cnn"])
    assert json.loads(cnn.read_text()) == data


BAD_BLOCK = textwrap.dedent("""\
    import torch.nn as nn


    class Features(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.conv = nn.LazyConv2d(channels, 3)
            self.mix = nn.Linear(3, 3)

        def forward(self, x):
            return self.mix(self.conv(x))


    features = Features
""")


def test_a_finding_in_a_file_no_import_names_is_checked_too(project):
    # blocks.py reached by a computed name: not in the import closure, but the finding points there
    (project / "cached_models" / "cnn.py").write_text(
        CNN.format(in_features=6272).replace("from cached_models.blocks import features\n",
                                             "import importlib\n\nfeatures = importlib.import_module('cached_models.' + 'blocks').features\n"))
    (project / "cached_models" / "blocks.py").write_text(BAD_BLOCK)
    code, out, _, _ = cli(project)
    assert code == 1 and "cached_models/blocks.py:11:9: LFX030 Linear has in_features=3" in out
    built(project)
    assert cli(project)[::3] == (1, False)
    (project / "cached_models" / "blocks.py").write_text("\n" + BAD_BLOCK)
    code, out, _, torch_imported = cli(project)
    assert "cached_models/blocks.py:12:9: LFX030" in out and torch_imported and built(project) == ["cnn"]


def test_the_default_folder_beside_pyproject_with_a_gitignore(project, monkeypatch):
    monkeypatch.delenv("LAZYFX_CACHE_DIR")
    monkeypatch.chdir(project / "cached_models")  # from a subfolder: still beside pyproject.toml
    assert main(["check"]) == 1
    folder = project / ".lazyfx_cache"
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    assert (folder / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert len(entries(folder)) == 2
    assert not (project / "cached_models" / ".lazyfx_cache").exists()


def test_no_cache_and_the_configuration_keys(project, monkeypatch, capsys):
    monkeypatch.delenv("LAZYFX_CACHE_DIR")
    assert main(["check", "--no-cache"]) == 1
    assert not (project / ".lazyfx_cache").exists() and built(project) == ["cnn", "mlp"]
    configure(project, top="cache = false")
    assert main(["check"]) == 1 and main(["check"]) == 1
    assert not (project / ".lazyfx_cache").exists() and built(project) == ["cnn", "cnn", "mlp", "mlp"]
    configure(project, top='cache-dir = "build/lazyfx"')
    assert main(["check"]) == 1 and main(["check"]) == 1
    assert len(entries(project / "build" / "lazyfx")) == 2 and built(project) == ["cnn", "mlp"]
    assert not (project / ".lazyfx_cache").exists()
    configure(project, top="cache = 1")
    assert main(["check"]) == 2
    assert "[tool.lazyfx] cache must be true or false" in capsys.readouterr().err


def test_an_entry_a_model_no_longer_has_is_removed(project):
    folder = pathlib.Path(os.environ["LAZYFX_CACHE_DIR"])
    assert main(["check"]) == 1
    before = set(entries(folder))
    configure(project, mlp_inputs='"B,7"')
    assert main(["check", "other.py"]) == 0  # only some models ran: nothing is removed
    assert main(["check"]) == 1
    after = set(entries(folder))
    assert len(after) == 2 and len(after - before) == 1


def test_a_cache_that_cannot_be_written_is_a_warning(project, monkeypatch, capsys):
    (project / "a file").write_text("")
    monkeypatch.setenv("LAZYFX_CACHE_DIR", str(project / "a file"))
    assert main(["check"]) == 1
    captured = capsys.readouterr()
    assert "LFX030" in captured.out
    assert f"lazyfx: warning: cannot write the cache in {project / 'a file'}:" in captured.err
    assert built(project) == ["cnn", "mlp"]
