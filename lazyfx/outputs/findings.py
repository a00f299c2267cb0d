"""Findings: diagnostics as a linter reports them (``path:line:col: LFXnnn message``),
in text, JSON, GitHub-annotation or SARIF form.

Every form prints paths as :func:`~lazyfx.core.diagnostics.display_path` gives them: relative
to the project's root while ``lazyfx check`` runs (the folder of its ``pyproject.toml``).
"""

from __future__ import annotations

import json
import linecache
import os
import pathlib
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Optional

from lazyfx.core import VERSION
from lazyfx.core.diagnostics import CODES, Diagnostic, ErrorCode, Severity, display_path

FORMS = ("text", "json", "github", "sarif")
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
HOME = "https://github.com/lazyfx/lazyfx"


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    severity: str = "error"  # a Severity's value
    path: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None
    model: Optional[str] = None
    notes: tuple[str, ...] = ()

    def where(self) -> str:
        if self.path is None:
            return ""
        return f"{display_path(self.path)}:{self.line or 1}:{self.column or 1}: "

    def text(self) -> str:
        model = f" [{self.model}]" if self.model else ""
        lines = [f"{self.where()}{self.code} {self.message}{model}"]
        lines += [f"    note: {note}" for note in self.notes]
        return "\n".join(lines)

    def github(self) -> str:
        level = "error" if self.severity == "error" else "warning"
        place = f" file={display_path(self.path)},line={self.line or 1},col={self.column or 1}," if self.path else " "
        message = (self.message + "".join(f"\n{n}" for n in self.notes)).replace("%", "%25").replace("\n", "%0A")
        return f"::{level}{place}title={self.code}::{message}"

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data, its path as stored (absolute)."""
        return {**asdict(self), "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: Any) -> "Finding":
        """The finding ``to_dict`` gave; a ValueError for anything else (a field missing, extra,
        or of another type, an unknown code or severity): stored data is checked, not trusted."""
        if not isinstance(data, dict) or set(data) != _FIELDS:
            raise ValueError(f"not a finding: {data!r:.80}")
        optional = {"path": str, "line": int, "column": int, "model": str}
        ok = (isinstance(data["code"], str) and data["code"] in CODES and isinstance(data["message"], str)
              and data["severity"] in {s.value for s in Severity}
              and all(data[k] is None or (type(data[k]) is t) for k, t in optional.items())
              and isinstance(data["notes"], list) and all(isinstance(n, str) for n in data["notes"]))
        if not ok:
            raise ValueError(f"not a finding: {data!r:.80}")
        return cls(**{**data, "notes": tuple(data["notes"])})


_FIELDS = set(Finding.__dataclass_fields__)


def column_of(path: Optional[str], line: Optional[int]) -> Optional[int]:
    """The column of the first code on a line (where a linter would point)."""
    if not path or not line:
        return None
    text = linecache.getline(path, line)
    return len(text) - len(text.lstrip()) + 1 if text.strip() else 1


def from_diagnostic(diag: Diagnostic, model: Optional[str], severity: Optional[str] = None) -> Finding:
    where = diag.where()
    message = diag.message + (f" ({where})" if where else "")
    location = diag.location
    return Finding(
        code=diag.code.code,
        message=message,
        severity=severity or diag.severity,
        path=location.file if location else None,
        line=location.line if location else None,
        column=column_of(location.file, location.line) if location else None,
        model=model,
        notes=tuple(diag.notes),
    )


def located(finding: Finding, path: str, line: Optional[int]) -> Finding:
    """``finding`` at ``path:line`` when it points nowhere (a model's table in pyproject.toml:
    a linter's finding always has a place, and SARIF consumers drop results without one)."""
    return finding if finding.path else replace(finding, path=path, line=line, column=1 if line else None)


def render(findings: Iterable[Finding], form: str, root: Optional[str] = None) -> str:
    """The findings in one of ``FORMS``; ``root`` (the project's folder) is the base SARIF's
    relative paths are given against (default: the working directory)."""
    findings = list(findings)
    if form == "json":
        return json.dumps([{**f.to_dict(), "path": display_path(f.path) if f.path else None} for f in findings],
                          indent=2)
    if form == "github":
        return "\n".join(f.github() for f in findings)
    if form == "sarif":
        return json.dumps(sarif(findings, root or "."), indent=2)
    return "\n".join(f.text() for f in findings)


def sarif(findings: list[Finding], root: str) -> dict[str, Any]:
    """The findings as a SARIF 2.1.0 log of one run, which GitHub code scanning shows on the pull
    request's lines: a rule per code of the code table (its name, description, category and
    default severity), a result per finding, each path relative to ``root`` (``%SRCROOT%``).

    Examples:
        >>> from lazyfx.outputs.findings import Finding, sarif
        >>> log = sarif([Finding("LFX030", "Linear has in_features=100", path="models/cnn.py", line=21,
        ...                      column=9)], ".")
        >>> log["version"], log["runs"][0]["tool"]["driver"]["name"]
        ('2.1.0', 'lazyfx')
        >>> result = log["runs"][0]["results"][0]
        >>> result["ruleId"], result["level"], result["locations"][0]["physicalLocation"]["artifactLocation"]
        ('LFX030', 'error', {'uri': 'models/cnn.py', 'uriBaseId': '%SRCROOT%'})
    """
    rules = [_rule(code) for code in sorted(CODES.values(), key=lambda c: c.code)]
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results = []
    for finding in findings:
        text = finding.message + "".join(f"\nnote: {note}" for note in finding.notes)
        result: dict[str, Any] = {"ruleId": finding.code, "level": _level(finding.severity), "message": {"text": text}}
        if finding.code in index:
            result["ruleIndex"] = index[finding.code]
        if finding.path:
            region = {"startLine": finding.line or 1, "startColumn": finding.column or 1}
            result["locations"] = [{"physicalLocation": {"artifactLocation": _artifact(finding.path, root),
                                                         "region": region}}]
        if finding.model:
            result["properties"] = {"model": finding.model}
        results.append(result)
    base = pathlib.Path(root).absolute().as_uri().rstrip("/") + "/"
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "lazyfx", "version": VERSION, "informationUri": HOME, "rules": rules}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": base}},
            "results": results,
        }],
    }


def _level(severity: str) -> str:
    return "error" if severity == Severity.ERROR.value else "warning"


def _rule(code: ErrorCode) -> dict[str, Any]:
    return {
        "id": code.code,
        "name": code.name,
        "shortDescription": {"text": code.name.replace("-", " ")},
        "fullDescription": {"text": code.description},
        "defaultConfiguration": {"level": _level(code.severity.value)},
        "properties": {"category": code.category.value},
    }


def _artifact(path: str, root: str) -> dict[str, str]:
    """A file relative to the project's root (``%SRCROOT%``), or an absolute file URI for one
    outside it."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute, os.path.abspath(root))
    except ValueError:  # another drive on Windows
        relative = os.pardir
    if relative.startswith(os.pardir):
        return {"uri": pathlib.Path(absolute).as_uri()}
    return {"uri": pathlib.PurePath(relative).as_posix(), "uriBaseId": "%SRCROOT%"}
