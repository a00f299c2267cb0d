"""The ``[tool.lazyfx]`` table of ``pyproject.toml``: the models a team checks.

.. code-block:: toml

    [tool.lazyfx]
    [[tool.lazyfx.models]]
    name = "classifier"                      # optional, defaults to the target
    target = "models/cnn.py:Net"
    inputs = ["B,3,H,W"]                     # or {x = "B,3,H,W", mask = "B,T:bool"}
    constraints = ["H%32==0", "H>=64", "W==H"]
    expect_output = "B,10"
    allow_fixed_sizes = false                # optional: a symbol the model fixes is not a finding
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Union

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
    # a symbol declared without bounds that the model fixes or ties (LFX032) is not a finding
    allow_fixed_sizes: bool = False

    @property
    def label(self) -> str:
        return self.name or self.target


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


def load(path: str) -> list[ModelConfig]:
    """The configured models (an empty list without a ``[tool.lazyfx]`` table)."""
    text = open(path, "rb").read()
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    table = data.get("tool", {}).get("lazyfx", {})
    entries = table.get("models", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: [tool.lazyfx] models must be an array of tables ([[tool.lazyfx.models]])")
    lines = text.decode("utf-8").splitlines()
    allow_fixed = table.get("allow_fixed_sizes", False)
    if not isinstance(allow_fixed, bool):
        raise ConfigError(f"{path}: [tool.lazyfx] allow_fixed_sizes must be true or false")
    models = [_model(entry, path, i, lines) for i, entry in enumerate(entries)]
    for model in models:
        model.allow_fixed_sizes = model.allow_fixed_sizes if model.allow_fixed_sizes is not None else allow_fixed
    return models


def _model(entry: Any, path: str, index: int, lines: list[str]) -> ModelConfig:
    where = f"{path}: [[tool.lazyfx.models]] entry {index + 1}"
    if not isinstance(entry, dict) or "target" not in entry:
        raise ConfigError(f"{where} needs a target (\"path/to/file.py:NAME\" or \"package.module:NAME\")")
    unknown = set(entry) - {"target", "inputs", "constraints", "expect_output", "name", "allow_fixed_sizes"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    inputs = entry.get("inputs", [])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, (list, dict)):
        raise ConfigError(f"{where}: inputs must be a list of specs or a table of name = spec")
    constraints = entry.get("constraints", [])
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise ConfigError(f"{where}: constraints must be a list of strings such as \"H%32==0\"")
    line = next((i + 1 for i, text in enumerate(lines) if entry["target"] in text), None)
    allow_fixed = entry.get("allow_fixed_sizes")
    if allow_fixed is not None and not isinstance(allow_fixed, bool):
        raise ConfigError(f"{where}: allow_fixed_sizes must be true or false")
    return ModelConfig(entry["target"], inputs, constraints, entry.get("expect_output"), entry.get("name"), line,
                       allow_fixed)
