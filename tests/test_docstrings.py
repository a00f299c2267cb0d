"""The API reference is generated from docstrings (docs/api.md, mkdocstrings): every public
name has a docstring with an ``Examples:`` section, and every example is a passing doctest."""

import doctest
import importlib
import inspect
import pathlib
import re

import pytest
import torch
import torch.nn as nn

import lazyfx
from lazyfx.demo import Net

ROOT = pathlib.Path(__file__).parent.parent

# What users get back from lazyfx and use, beyond lazyfx.__all__: the report's domain,
# the records in report.nodes / report.lazy, and the diagnostics of errors and reports.
RESULT_TYPES = {
    "Domain": "lazyfx.domain.domain",
    "NodeRecord": "lazyfx.analysis.propagate",
    "Provenance": "lazyfx.analysis.records",
    "LazyModuleRecord": "lazyfx.analysis.resolve",
    "Resolution": "lazyfx.rules.lazy",
    "Diagnostic": "lazyfx.core.diagnostics",
}
# The two steps of materialize, public in lazyfx.api for tools that read the report first (export).
STEPS = {"analyze": "lazyfx.api", "materialize_from": "lazyfx.api"}

# Public-named methods that are plumbing for lazyfx itself (they return internal types or
# fill in error context while an error propagates); not on the API page, no example needed.
INTERNAL = {"Dim.info", "LazyFXError.with_context", "Diagnostic.with_context"}

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def public_objects() -> dict[str, object]:
    """lazyfx.__all__ (but __version__) and the result types, by name."""
    found = {}
    for name in lazyfx.__all__:
        if name != "__version__":
            found[name] = getattr(lazyfx, name)
            # a submodule named like a public function would replace it once imported
            assert not inspect.ismodule(found[name]), f"lazyfx.{name} is the module {found[name].__name__}"
    for name, module in {**RESULT_TYPES, **STEPS}.items():
        found[name] = getattr(importlib.import_module(module), name)
    return found


def members(cls: type) -> dict[str, object]:
    """The public methods and properties a class defines itself (not inherited ones)."""
    out = {}
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property) or inspect.isfunction(value):
            out[name] = value
    return out


def documented() -> dict[str, object]:
    """Every public object and every public method and property of the public classes."""
    out = {}
    for name, obj in public_objects().items():
        out[name] = obj
        if inspect.isclass(obj):
            out.update({f"{name}.{attr}": value for attr, value in members(obj).items()})
    return out


DOCUMENTED = documented()


def docstring(obj: object) -> str:
    return (obj.fget.__doc__ if isinstance(obj, property) else obj.__doc__) or ""


def globs() -> dict:
    return {"lazyfx": lazyfx, "torch": torch, "nn": nn, "Net": Net}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_examples_pass(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # diagnostics print paths relative to the working directory
    obj = DOCUMENTED[name]
    test = doctest.DocTestParser().get_doctest(docstring(obj), globs(), f"lazyfx.{name}", None, 0)
    assert test.examples or name in INTERNAL, f"lazyfx.{name} has no examples"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    with torch.random.fork_rng(devices=[]):  # examples that seed the RNG leave the suite's alone
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


@pytest.mark.parametrize("name", sorted(n for n in DOCUMENTED if n not in INTERNAL))
def test_every_public_name_has_examples(name):
    text = inspect.cleandoc(docstring(DOCUMENTED[name]))
    assert text, f"lazyfx.{name} has no docstring"
    section = re.search(r"^Examples:\n((?:[ ]{4}.*\n?|\n)+)", text, re.M)
    assert section and ">>>" in section.group(1), f"lazyfx.{name}: no Examples: section with >>> examples"


def test_api_page_shows_every_public_object():
    page = (ROOT / "docs" / "api.md").read_text()
    shown = set(re.findall(r"^::: ([\w.]+)", page, re.M))
    for name, obj in public_objects().items():
        assert f"{obj.__module__}.{obj.__qualname__}" in shown or f"lazyfx.{name}" in shown, name


def test_api_page_lists_only_documented_members():
    """The members: lists on the page name methods that exist and have examples."""
    page = (ROOT / "docs" / "api.md").read_text()
    for target, body in re.findall(r"^::: ([\w.]+)\n((?:[ ]+.*\n)*)", page, re.M):
        listed = re.search(r"members:\n((?:\s+- \w+\n)+)", body)
        if not listed:
            continue
        name = target.rsplit(".", 1)[1]
        for member in re.findall(r"- (\w+)", listed.group(1)):
            assert f"{name}.{member}" in DOCUMENTED and f"{name}.{member}" not in INTERNAL, f"{target}.{member}"
