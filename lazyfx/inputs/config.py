"""The ``[tool.lazyfx]`` table of ``pyproject.toml``: the models a team checks.

.. code-block:: toml

    [tool.lazyfx]
    ignore = ["LFX023"]                      # optional: codes (or prefixes) not reported, as ruff's
    select = ["LFX0"]                        #   select / extend-select / ignore
    cache-dir = ".lazyfx_cache"              # optional: where `lazyfx check` keeps results
    cache = true                             # optional: false turns the cache off

    [[tool.lazyfx.models]]
    name = "classifier"                      # optional, defaults to the target
    target = "models/cnn.py:Net"
    inputs = ["B,3,H,W"]                     # or {x = "B,3,H,W", mask = "B,T:bool"}
    constraints = ["H%32==0", "H>=64", "W==H"]
    expect_output = "B,10"
    allow_fixed_sizes = false                # optional: a symbol the model fixes is not a finding
    ignore = ["LFX040"]                      # optional: this model's own selection, after the table's
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from lazyfx.core.diagnostics import CODES, Selection, display_path, matching

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(Exception):
    """A malformed ``[tool.lazyfx]`` table."""


@dataclass
class ModelConfig:
    target: str
    inputs: Union[list[str], dict[str, str]] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    expect_output: Optional[str] = None
    name: Optional[str] = None
    line: Optional[int] = None  # where the entry starts in pyproject.toml
    # a symbol declared without bounds that the model fixes or ties (LFX032) is not a finding;
    # None: as [tool.lazyfx] says (default false)
    allow_fixed_sizes: Optional[bool] = None
    root: Optional[str] = None  # the folder paths in the target are relative to (pyproject.toml's)
    selection: Selection = Selection()  # the model's own select / extend-select / ignore

    @property
    def label(self) -> str:
        return self.name or self.target


@dataclass
class Settings:
    """The ``[tool.lazyfx]`` table: the models, the table's own code selection, and the cache
    (``cache_dir`` absolute, None when ``cache = false``)."""

    models: list[ModelConfig]
    selection: Selection = Selection()
    cache_dir: Optional[str] = None


def find_pyproject(start: str = ".") -> Optional[str]:
    folder = os.path.abspath(start)
    while True:
        candidate = os.path.join(folder, "pyproject.toml")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


# the keys of [tool.lazyfx]; add new settings here. Those borrowed from ruff are spelled as ruff
# spells them (select, extend-select, ignore, cache-dir).
SELECTION_KEYS = {"select", "extend-select", "ignore"}
TOP_LEVEL_KEYS = {"models", "allow_fixed_sizes", "cache", "cache-dir"} | SELECTION_KEYS
MODEL_KEYS = {"target", "inputs", "constraints", "expect_output", "name", "allow_fixed_sizes"} | SELECTION_KEYS
CACHE_FOLDER = ".lazyfx_cache"  # beside pyproject.toml, as ruff keeps .ruff_cache
_MODELS_HEADER = re.compile(r"\s*\[\[\s*tool\s*\.\s*lazyfx\s*\.\s*models\s*\]\]")
_TABLE_HEADER = re.compile(r"\s*\[")
_TARGET_KEY = re.compile(r"\s*target\s*=")


def load(path: str) -> Settings:
    """The ``[tool.lazyfx]`` table of a ``pyproject.toml`` (no models without one)."""
    if os.path.isdir(path):
        raise ConfigError(f"{path} is a folder; --config takes a pyproject.toml file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a 5000-digit int
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    tool = data.get("tool", {})
    table = tool.get("lazyfx", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.lazyfx] must be a table")
    for key in table:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} in [tool.lazyfx]{_did_you_mean(key, TOP_LEVEL_KEYS)}")
    entries = table.get("models", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: [tool.lazyfx] models must be an array of tables ([[tool.lazyfx.models]])")
    allow_fixed = table.get("allow_fixed_sizes", False)
    if not isinstance(allow_fixed, bool):
        raise ConfigError(f"{path}: [tool.lazyfx] allow_fixed_sizes must be true or false")
    root = os.path.dirname(os.path.abspath(path))
    shown = display_path(path)
    lines = entry_lines(text)
    models = []
    for i, entry in enumerate(entries):
        line = lines[i] if len(lines) == len(entries) else _line_of_target(entry, text)
        model = _model(entry, shown, i, line)
        model.root = root
        if model.allow_fixed_sizes is None:
            model.allow_fixed_sizes = allow_fixed
        models.append(model)
    return Settings(models, selection(table, f"{shown}: [tool.lazyfx]"), _cache_dir(table, root, shown))


def _cache_dir(table: dict, root: str, shown: str) -> Optional[str]:
    enabled = table.get("cache", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{shown}: [tool.lazyfx] cache must be true or false")
    folder = table.get("cache-dir", CACHE_FOLDER)
    if not isinstance(folder, str) or not folder.strip():
        raise ConfigError(f"{shown}: [tool.lazyfx] cache-dir must be a folder name, such as \"{CACHE_FOLDER}\"")
    return os.path.join(root, os.path.expanduser(folder)) if enabled else None


def selection(table: dict, where: str) -> Selection:
    """A table's ``select``, ``extend-select`` and ``ignore``: lists of codes or code prefixes,
    each naming at least one code.

    Examples:
        >>> from lazyfx.inputs.config import selection
        >>> selection({"ignore": ["LFX023"], "extend-select": ["LFX04"]}, "[tool.lazyfx]")
        Selection(select=None, extend_select=('LFX04',), ignore=('LFX023',))
        >>> selection({"ignore": ["LFX23"]}, "[tool.lazyfx]")
        Traceback (most recent call last):
            ...
        lazyfx.inputs.config.ConfigError: [tool.lazyfx]: ignore names no code: 'LFX23' (did you mean LFX023?)
    """
    found = {}
    for key in ("select", "extend-select", "ignore"):
        if key not in table:
            continue
        value = table[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key} must be a list of codes such as [\"LFX040\"], got {value!r}")
        check_selectors(value, f"{where}: {key}")
        found[key] = tuple(v.strip().upper() for v in value)
    return Selection(found.get("select"), found.get("extend-select", ()), found.get("ignore", ()))


def check_selectors(selectors: list[str], where: str) -> None:
    """A ConfigError for a selector that names no code, with the closest code."""
    for selector in selectors:
        if not matching(selector):
            close = difflib.get_close_matches(selector.strip().upper(), sorted(CODES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else " (codes look like LFX040; see docs/errors.md)"
            raise ConfigError(f"{where} names no code: {selector!r}{hint}")


def entry_lines(text: str) -> list[int]:
    """The line of each ``[[tool.lazyfx.models]]`` table's ``target`` (or of its header, without
    one), in order: each entry's own line, even when two tables name the same target."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines):
        if not _MODELS_HEADER.match(line):
            continue
        at = number + 1
        for later in range(number + 1, len(lines)):
            if _TABLE_HEADER.match(lines[later]):
                break
            if _TARGET_KEY.match(lines[later]):
                at = later + 1
                break
        found.append(at)
    return found


def _line_of_target(entry: Any, text: str) -> Optional[int]:
    """The first line naming the entry's target, for tables not written as [[tool.lazyfx.models]]
    (``models = [{ target = ... }]``)."""
    target = entry.get("target") if isinstance(entry, dict) else None
    if not isinstance(target, str):
        return None
    return next((i + 1 for i, line in enumerate(text.splitlines()) if target in line), None)


def _did_you_mean(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(sorted(known))})"


def _model(entry: Any, path: str, index: int, line: Optional[int]) -> ModelConfig:
    where = f"{path}:{line}: [[tool.lazyfx.models]] entry {index + 1}" if line else \
        f"{path}: [[tool.lazyfx.models]] entry {index + 1}"
    if not isinstance(entry, dict) or "target" not in entry:
        raise ConfigError(f"{where} needs a target (\"path/to/file.py:NAME\" or \"package.module:NAME\")")
    for key in entry:
        if key not in MODEL_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{_did_you_mean(key, MODEL_KEYS)}")
    for key in ("target", "name", "expect_output"):
        if key in entry and not isinstance(entry[key], str):
            what = "a spec string such as \"B,10\"" if key == "expect_output" else "a string"
            raise ConfigError(f"{where}: {key} must be {what}, got {entry[key]!r}")
    inputs = entry.get("inputs", [])
    if isinstance(inputs, str):
        inputs = [inputs]
    values = inputs.values() if isinstance(inputs, dict) else inputs
    if not isinstance(inputs, (list, dict)) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: inputs must be a list of spec strings such as [\"B,3,H,W\"] or a table of "
                          f"name = \"spec\", got {inputs!r}")
    constraints = entry.get("constraints", [])
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise ConfigError(f"{where}: constraints must be a list of strings such as [\"H%32==0\"], got {constraints!r}")
    allow_fixed = entry.get("allow_fixed_sizes")
    if allow_fixed is not None and not isinstance(allow_fixed, bool):
        raise ConfigError(f"{where}: allow_fixed_sizes must be true or false")
    return ModelConfig(entry["target"], inputs, constraints, entry.get("expect_output"), entry.get("name"), line,
                       allow_fixed, selection=selection(entry, where))
