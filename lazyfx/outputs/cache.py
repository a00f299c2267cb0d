"""The result cache of ``lazyfx check``: each configured model's findings, kept until something
they depend on changes, so that a commit that changes no model costs no torch import.

An entry holds one model's findings as the analysis gave them (selection and suppression
comments are applied afresh on every run) under a key made of everything lazyfx can see, without
importing torch, that the findings depend on:

* the content (sha256) of every project file the model's target imports, transitively: the
  import closure ``lazyfx check FILE ...`` uses to pick the models a change touches;
* the installation of each other package those files import: its entry file's size and
  modification time and its ``*.dist-info`` folder (its version), found without importing it;
  the standard library aside;
* the model's table in ``pyproject.toml`` (target, inputs, constraints, expected output, name,
  line, ``allow_fixed_sizes``) and the project's folder;
* the versions of Python, lazyfx, torch and sympy (torch's and sympy's read from their
  installation, as above: torch is not imported), and the size and modification time of each
  of lazyfx's own files (a checkout changes without a new version).

An entry also records the hash of any other file a finding points at; a change there
invalidates it too. An entry that cannot be read, belongs to another key or format, or does not
have the expected form is ignored and rewritten: nothing in the cache folder is trusted beyond
its key. What the key cannot see (environment variables, data files the model reads while it is
built, a package imported by a computed name) is what ``lazyfx check --no-cache`` is for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
import tempfile
from typing import Any, Iterable, Optional

from lazyfx.core import VERSION
from lazyfx.core.diagnostics import PACKAGE_DIR
from lazyfx.inputs.config import ModelConfig
from lazyfx.inputs.targets import dependencies
from lazyfx.outputs.findings import Finding

FORMAT = 1  # the layout of an entry: a change makes every older entry foreign
GITIGNORE = "# Automatically created by lazyfx.\n*\n"
CACHEDIR_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This file is a cache directory tag created by lazyfx.\n"
                "# For information about cache directory tags, see https://bford.info/cachedir/\n")


def digest(data: Any) -> str:
    """The sha256 of JSON-ready data, keys sorted."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def file_hash(path: str) -> Optional[str]:
    """The sha256 of a file's bytes; None when it cannot be read (a missing file is a state too)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def installed(name: str) -> Optional[list]:
    """An installed package, by its top-level import name, as the key sees it: its entry file
    with that file's size and modification time, and the ``*.dist-info`` folders beside it that
    carry its name (and so its version: ``torch-2.13.0+cpu.dist-info``). Found without importing
    it, nor importlib.metadata (whose import alone costs more than the rest of a cached run);
    None when it is not installed."""
    try:
        spec = importlib.util.find_spec(name)  # a top-level name: nothing is imported
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    origin = spec.origin if spec.origin and os.path.isfile(spec.origin) else None
    if origin is None:  # a namespace package, or built in
        return [spec.origin, None, None, []]
    stat = os.stat(origin)
    package = os.path.dirname(origin) if spec.submodule_search_locations else origin
    return [origin, stat.st_size, stat.st_mtime_ns, _distributions(os.path.dirname(package), name)]


def _distributions(folder: str, name: str) -> list[str]:
    try:
        listing = sorted(os.listdir(folder))
    except OSError:
        return []
    wanted = re.sub(r"[-_.]+", "_", name).lower()
    return [entry for entry in listing if entry.endswith((".dist-info", ".egg-info"))
            and re.sub(r"[-_.]+", "_", entry.split("-", 1)[0]).lower() == wanted]


def environment() -> dict[str, Any]:
    """What every entry's key includes: Python's version, torch's and sympy's installations (with
    their versions), lazyfx's version and the size and modification time of each of its files."""
    own = []
    for folder, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            stat = os.stat(os.path.join(folder, name))
            own.append([os.path.relpath(os.path.join(folder, name), PACKAGE_DIR), stat.st_size, stat.st_mtime_ns])
    return {"format": FORMAT, "python": sys.version, "lazyfx": VERSION, "lazyfx files": digest(own),
            "torch": installed("torch"), "sympy": installed("sympy")}


class Cache:
    """The cache folder of one project (``.lazyfx_cache`` beside its ``pyproject.toml`` unless
    configured otherwise), created with a ``.gitignore`` (and a ``CACHEDIR.TAG``) on first write.

    Entries are files named after the project and the model's table; :meth:`prune` removes the
    project's entries no model has any more.
    """

    def __init__(self, folder: str, root: str) -> None:
        self.folder = os.path.abspath(folder)
        self.root = os.path.abspath(root)
        self.env = environment()
        self.write_error: Optional[str] = None
        self._project = digest(self.root)[:16]
        self._touched: set[str] = set()
        self._packages: dict[str, Optional[list]] = {}

    def _installed(self, name: str) -> Optional[list]:
        if name not in self._packages:
            self._packages[name] = installed(name)
        return self._packages[name]

    def path(self, model: ModelConfig) -> str:
        """The entry file of a model."""
        entry = digest([model.target, model.name, model.inputs, model.constraints, model.expect_output])[:32]
        return os.path.join(self.folder, f"{self._project}-{entry}.json")

    def key(self, model: ModelConfig) -> tuple[str, set[str]]:
        """The key of a model's entry (see the module's docstring), and the project files in it."""
        files, packages = dependencies(model.target, self.root)
        table = {"target": model.target, "inputs": model.inputs, "constraints": model.constraints,
                 "expect_output": model.expect_output, "name": model.name, "line": model.line,
                 "allow_fixed_sizes": model.allow_fixed_sizes}
        key = digest({
            "environment": self.env, "root": self.root, "model": table,
            "files": {os.path.relpath(f, self.root): file_hash(f) for f in sorted(files)},
            "packages": {name: self._installed(name) for name in sorted(packages - {"torch", "sympy", "lazyfx"})},
        })
        return key, files

    def get(self, model: ModelConfig, key: str) -> Optional[list[Finding]]:
        """The findings stored under ``key``; None when the entry is missing, unreadable, foreign
        (another key or format), malformed, or a file a finding points at has changed."""
        self._touched.add(self.path(model))
        try:
            with open(self.path(model), encoding="utf-8") as f:
                data = json.load(f)
            if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
                return None
            seen, stored = data["files"], data["findings"]
            if not isinstance(seen, dict) or not isinstance(stored, list):
                return None
            if any(file_hash(path) != sha for path, sha in seen.items()):
                return None
            return [Finding.from_dict(item) for item in stored]
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None  # JSONDecodeError and UnicodeDecodeError are ValueErrors

    def put(self, model: ModelConfig, key: str, files: set[str], findings: Iterable[Finding]) -> None:
        """Store a model's findings under ``key``, with the hash of each file they point at outside
        ``files`` (the key's own) and the project's ``pyproject.toml``. A folder that cannot be
        written leaves the cache as it was; ``write_error`` says why."""
        findings = list(findings)
        known = {os.path.abspath(f) for f in files} | {os.path.join(self.root, "pyproject.toml")}
        extra = sorted({os.path.abspath(f.path) for f in findings if f.path} - known)
        data = {"format": FORMAT, "key": key, "model": model.label, "files": {p: file_hash(p) for p in extra},
                "findings": [f.to_dict() for f in findings]}
        try:
            self._create()
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".entry-", suffix=".tmp")
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as f:
                    json.dump(data, f)
                os.chmod(temporary, 0o644)  # mkstemp's 0o600 would hide it from a shared CI cache
                os.replace(temporary, self.path(model))
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as exc:
            self.write_error = f"{exc.strerror or exc}"

    def prune(self) -> None:
        """Remove this project's entries that no model of this run read or wrote (after a run
        over every configured model: a table that changed leaves its old entry behind)."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.folder, name)
            if name.startswith(self._project + "-") and name.endswith(".json") and path not in self._touched:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def _create(self) -> None:
        if os.path.isdir(self.folder) and os.path.isfile(os.path.join(self.folder, ".gitignore")):
            return
        os.makedirs(self.folder, exist_ok=True)
        for name, text in ((".gitignore", GITIGNORE), ("CACHEDIR.TAG", CACHEDIR_TAG)):
            if not os.path.exists(os.path.join(self.folder, name)):
                with open(os.path.join(self.folder, name), "w", encoding="utf-8") as f:
                    f.write(text)
