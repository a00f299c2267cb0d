"""``# lazyfx: ignore[LFX040]``: silencing a finding, by code, where it is reported.

A suppression comment on the line a finding points at silences the codes it names on that line;
on the line that defines a model's class or factory (the ``NAME`` of its target) it silences them
for every finding of that model. Several codes are separated by commas
(``# lazyfx: ignore[LFX040, LFX042]``). Comments are read with :mod:`tokenize`, so text inside a
string is never one. A comment that silences nothing (a code not reported there, or no code at
all) is itself a finding under ``lazyfx check --strict`` (LFX081).
"""

from __future__ import annotations

import io
import os
import re
import tokenize
from dataclasses import dataclass, field
from typing import Iterable, Optional

from lazyfx.core.diagnostics import UNUSED_SUPPRESSION
from lazyfx.outputs.findings import Finding

_COMMENT = re.compile(r"#\s*lazyfx\s*:\s*ignore\b(?:\[(?P<codes>[^\]]*)\])?", re.IGNORECASE)


@dataclass
class Suppression:
    """One ``# lazyfx: ignore[...]`` comment, and the codes it has silenced so far."""

    path: str
    line: int
    column: int
    codes: tuple[str, ...]  # upper case, as written; empty for a comment without [CODES]
    used: set[str] = field(default_factory=set)


def comments(path: str) -> list[Suppression]:
    """The suppression comments of a Python file (none when it cannot be read or tokenized).

    Examples:
        >>> import pathlib, tempfile
        >>> from lazyfx.outputs.suppression import comments
        >>> source = pathlib.Path(tempfile.mkdtemp()) / "model.py"
        >>> _ = source.write_text('x = 1  # lazyfx: ignore[LFX040, lfx042]\\ny = "# lazyfx: ignore[LFX030]"\\n')
        >>> [(c.line, c.codes) for c in comments(str(source))]
        [(1, ('LFX040', 'LFX042'))]
    """
    try:
        with open(path, encoding="utf-8") as f:
            tokens = list(tokenize.generate_tokens(io.StringIO(f.read()).readline))
    except (OSError, UnicodeDecodeError, SyntaxError, tokenize.TokenError):
        return []
    out = []
    for token in tokens:
        match = _COMMENT.search(token.string) if token.type == tokenize.COMMENT else None
        if match is not None:
            codes = tuple(c.strip().upper() for c in (match["codes"] or "").split(",") if c.strip())
            out.append(Suppression(os.path.abspath(path), token.start[0], token.start[1] + match.start() + 1, codes))
    return out


class Suppressions:
    """The suppression comments of the files a check reads, read once each."""

    def __init__(self) -> None:
        self._by_file: dict[str, dict[int, Suppression]] = {}

    def of(self, path: str) -> dict[int, Suppression]:
        """A file's comments by line."""
        path = os.path.abspath(path)
        if path not in self._by_file:
            self._by_file[path] = {c.line: c for c in comments(path)}
        return self._by_file[path]

    def at(self, path: Optional[str], line: Optional[int]) -> Optional[Suppression]:
        return self.of(path).get(line) if path and line else None

    def silenced(self, finding: Finding, definition: Optional[tuple[str, int]]) -> bool:
        """Whether a comment on the finding's line, or on the line ``definition`` (the model's
        class or factory), names the finding's code; the comment that does is marked used."""
        for comment in (self.at(finding.path, finding.line), self.at(*definition) if definition else None):
            if comment is not None and finding.code in comment.codes:
                comment.used.add(finding.code)
                return True
        return False

    def unused(self, files: Iterable[str]) -> list[Finding]:
        """A finding (LFX081) for each comment in ``files`` that silenced nothing, naming the codes
        it names in vain."""
        out = []
        for path in sorted({os.path.abspath(f) for f in files}):
            for comment in self.of(path).values():
                idle = [code for code in comment.codes if code not in comment.used]
                if comment.codes and not idle:
                    continue
                if not comment.codes:
                    message = "`# lazyfx: ignore` names no code, so it silences nothing: write # lazyfx: ignore[LFXnnn]"
                else:
                    message = (f"`# lazyfx: ignore[{', '.join(comment.codes)}]` silences nothing for "
                               f"{', '.join(idle)}: no such finding is reported on this line (or for a model defined here)")
                out.append(Finding(UNUSED_SUPPRESSION.code, message, UNUSED_SUPPRESSION.severity.value,
                                   path, comment.line, comment.column))
        return out
