"""The package's structure: stages import only earlier stages, without hidden cycles, and no module
uses another's private names.

lazyfx's folders are the stages of its data flow (docs/api.md, "How the package is
organised"): core -> inputs -> rules -> analysis -> domain -> build -> outputs, with
``api`` and ``cli`` on top. A module reads what earlier stages made and never reaches
back up; an import inside a function to dodge a cycle hides exactly such a reach. A private
name (``_name``) is its module's own: what another module needs is public where it belongs.
"""

from __future__ import annotations

import ast
import pathlib

import networkx as nx
import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "lazyfx"
STAGES = ("core", "inputs", "rules", "analysis", "domain", "build", "outputs")
TOP = len(STAGES)  # api, cli, __init__, __main__, demo: they may use every stage
# Where a function-local import is the point: ``import lazyfx`` and ``lazyfx --help`` must
# not import torch, so the package's entry and the CLI import what a command needs when it runs.
DEFERRED_IMPORTS = {"lazyfx", "lazyfx.cli"}


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


MODULES = _modules()
# What is still known to break the rule, each with its way out (strict xfail: fixing it fails
# the test until the entry is removed).
KNOWN: dict[str, str] = {}


def _known(modules):
    return [pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=KNOWN[m])) if m in KNOWN else m
            for m in modules]


def _stage(module: str) -> int:
    parts = module.split(".")
    if module == "lazyfx.errors":  # the one exception hierarchy: every stage raises from it
        return 0
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else TOP


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module):
    """(imported module, line, at module level) for each import of lazyfx, outside
    ``if TYPE_CHECKING:`` blocks."""
    skipped = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lazyfx":
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "lazyfx"]
        else:
            continue
        for name in names:
            while name not in MODULES and "." in name:  # `from lazyfx.core import checks` names a module
                name = name.rpartition(".")[0]
            yield name, node.lineno, id(node) in top


def test_every_stage_is_a_package_that_says_what_it_does():
    for stage in STAGES:
        init = MODULES.get(f"lazyfx.{stage}")
        assert init is not None, f"lazyfx/{stage}/ has no __init__.py"
        assert ast.get_docstring(init), f"lazyfx/{stage}/__init__.py has no docstring naming its stage"


@pytest.mark.parametrize("module", _known(sorted(MODULES)))
def test_a_module_imports_only_its_own_and_earlier_stages(module):
    later = [f"line {line}: {name}" for name, line, _ in _imports(MODULES[module]) if _stage(name) > _stage(module)]
    assert not later, f"{module} ({(STAGES + ('top',))[_stage(module)]}) imports a later stage: {later}"


@pytest.mark.parametrize("module", _known(sorted(set(MODULES) - DEFERRED_IMPORTS)))
def test_no_function_local_imports_of_lazyfx(module):
    local = [f"line {line}: {name}" for name, line, at_top in _imports(MODULES[module]) if not at_top]
    assert not local, f"{module} imports inside a function (a hidden cycle?): {local}"


def test_the_modules_import_graph_has_no_cycles():
    graph = nx.DiGraph()
    for module, tree in MODULES.items():
        graph.add_node(module)
        for name, _, _ in _imports(tree):
            if name != module and not module.startswith(name + "."):  # a package's own __init__
                graph.add_edge(module, name)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {sorted(cycles, key=len)[:5]}"


def test_the_checks_have_something_to_catch():
    # the counterpart: a reach back up and a local import are found where they exist
    tree = ast.parse("from lazyfx.outputs.report import Report\ndef f():\n    from lazyfx.core import checks\n")
    found = list(_imports(tree))
    assert found == [("lazyfx.outputs.report", 1, True), ("lazyfx.core.checks", 3, False)]
    assert _stage("lazyfx.outputs.report") > _stage("lazyfx.rules.conv")


def _private_names(module: str, tree: ast.Module):
    """(line, name) for each private name (``_name``) of another lazyfx module that ``module``
    imports (``from lazyfx.x import _name``) or reads from an imported module (``x._name``), and
    for each private module (``lazyfx.rules._util``) imported from outside its package."""
    modules = {}  # local name -> the lazyfx module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lazyfx":
            source = node.module
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    modules[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif alias.name.startswith("_") and source != module:
                    yield node.lineno, f"{source}.{alias.name}"
            imported = [source] + [f"{source}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names if alias.name.split(".")[0] == "lazyfx"]
            modules.update({alias.asname: alias.name for alias in node.names if alias.asname and alias.name in imported})
        else:
            continue
        for name in imported:
            package, _, last = name.rpartition(".")
            if last.startswith("_") and not last.startswith("__") and name in MODULES \
                    and not (module == package or module.startswith(package + ".")):
                yield node.lineno, name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            yield node.lineno, f"{modules[node.value.id]}.{node.attr}"


@pytest.mark.parametrize("module", _known(sorted(MODULES)))
def test_no_module_uses_another_modules_private_names(module):
    found = [f"line {line}: {name}" for line, name in _private_names(module, MODULES[module])]
    assert not found, f"{module} uses private names of other modules (make them public where they belong): {found}"


def test_the_private_name_check_has_something_to_catch():
    tree = ast.parse("from lazyfx.analysis.fallback.generic import _unknown, meta_copy\n"
                     "from lazyfx.core import checks\nchecks._recorder()\nchecks.require\n"
                     "from lazyfx.rules._util import shape_str\n")
    assert list(_private_names("lazyfx.analysis.fallback.abstract", tree)) == [
        (1, "lazyfx.analysis.fallback.generic._unknown"), (5, "lazyfx.rules._util"), (3, "lazyfx.core.checks._recorder")]
    # the counterpart: a package's own private module, and public names, are fine
    assert list(_private_names("lazyfx.rules.pool", tree)) == [
        (1, "lazyfx.analysis.fallback.generic._unknown"), (3, "lazyfx.core.checks._recorder")]
