"""Findings: diagnostics as a linter reports them (``path:line:col: LFXnnn message``),
in text, JSON or GitHub-annotation form."""

from __future__ import annotations

import json
import linecache
from dataclasses import asdict, dataclass
from typing import Iterable, Optional

from lazyfx.core.diagnostics import Diagnostic, display_path


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    severity: str = "error"
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


def render(findings: Iterable[Finding], form: str) -> str:
    findings = list(findings)
    if form == "json":
        return json.dumps([asdict(f) for f in findings], indent=2)
    if form == "github":
        return "\n".join(f.github() for f in findings)
    return "\n".join(f.text() for f in findings)
