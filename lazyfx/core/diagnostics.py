"""What lazyfx tells users: error codes as data, source locations, diagnostics.

Every diagnostic points at the user's code: the first frame outside torch and
lazyfx, taken from the stack traces torch.fx records while tracing or from the
traceback of an exception raised in the user's ``forward``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import functools
import io
import linecache
import os
import re
import sys
import tokenize
import traceback
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional


class Severity(str, enum.Enum):
    """What ``lazyfx check`` makes of a finding: an error fails the check; a warning is printed
    and fails it only under ``--strict``."""

    ERROR = "error"
    WARNING = "warning"


class Category(str, enum.Enum):
    """The part of the analysis a code belongs to (docs/errors.md groups the codes by it)."""

    INPUT = "input"  # the input specs
    TRACE = "trace"  # following forward's Python
    COVERAGE = "coverage"  # what shapes alone cannot tell, or no rule covers
    SHAPE = "shape"  # sizes the model rejects
    LAZY = "lazy"  # resolving the lazy modules
    BUILD = "build"  # materializing and exporting
    EXPECTATION = "expectation"  # what the configuration expects of the model
    CONFIG = "config"  # the configuration and the suppression comments


@dataclass(frozen=True)
class ErrorCode:
    """A diagnostic kind: a stable code users can select and silence, a short name, the part of
    the analysis it belongs to, the severity ``lazyfx check`` gives it, and a description.

    A diagnostic of a report (the analysis went through, ``report.diagnostics``) is an error or a
    warning of ``lazyfx check`` by its code's ``severity``; a raised error (the analysis stopped
    there) is always an error.
    """

    code: str
    name: str
    category: Category
    severity: Severity
    description: str


CODES: dict[str, ErrorCode] = {}


def _code(code: str, name: str, category: Category, severity: Severity, description: str) -> ErrorCode:
    error_code = ErrorCode(code, name, Category(category), Severity(severity), description)
    if code in CODES:  # pragma: no cover - guards the table below
        raise ValueError(f"duplicate error code {code}")
    CODES[code] = error_code
    return error_code


SPEC_SYNTAX = _code(
    "LFX001",
    "spec-syntax",
    Category.INPUT,
    Severity.ERROR,
    "An input spec string could not be parsed.",
)
SPEC_INVALID = _code(
    "LFX002",
    "spec-invalid",
    Category.INPUT,
    Severity.ERROR,
    "An input spec is well-formed but unusable: a bad dim, conflicting Dim constraints, "
    "a missing or unexpected input.",
)
TRACE_FAILED = _code(
    "LFX010",
    "trace-failed",
    Category.TRACE,
    Severity.ERROR,
    "torch.fx could not trace the model's forward.",
)
UNDECIDED_CONDITION = _code(
    "LFX011",
    "undecided-condition",
    Category.TRACE,
    Severity.ERROR,
    "Python control flow in forward depends on a symbolic size, and the input spec does not decide it.",
)
HOOK_NOT_FOLLOWED = _code(
    "LFX013",
    "hook-not-followed",
    Category.TRACE,
    Severity.ERROR,
    "A forward hook or pre-hook on a module cannot be followed from shapes (it uses tensor values, or a "
    "pre-hook changes a lazy module's input after the module's own initialization has read it), so lazyfx "
    "cannot tell what a dry run would do.",
)
UNSUPPORTED_OP = _code(
    "LFX020",
    "unsupported-op",
    Category.COVERAGE,
    Severity.ERROR,
    "An operation has no shape rule (and no fallback could handle it).",
)
RULE_FAILED = _code(
    "LFX021",
    "rule-failed",
    Category.COVERAGE,
    Severity.ERROR,
    "A shape rule could not be applied to the arguments it was given.",
)
DATA_DEPENDENT = _code(
    "LFX022",
    "data-dependent-shape",
    Category.COVERAGE,
    Severity.ERROR,
    "An operation's output shape depends on tensor values (nonzero, boolean masks, unique, .item()), "
    "which shape inference cannot know.",
)
META_SPECIALIZED = _code(
    "LFX023",
    "meta-kernel-specialized",
    Category.COVERAGE,
    Severity.WARNING,
    "PyTorch's meta kernel (the fallback for an operation without a shape rule) fixed a symbolic size "
    "to its representative value; shapes after that operation hold only for that size.",
)
INIT_READS_VALUES = _code(
    "LFX024",
    "init-reads-values",
    Category.COVERAGE,
    Severity.ERROR,
    "A lazy module's own initialization reads its input's values (not only its sizes), so its parameters "
    "cannot be known without data: a dry run's values depend on the batch it ran on.",
)
RANDOM_BEFORE_INIT = _code(
    "LFX025",
    "random-before-init",
    Category.COVERAGE,
    Severity.WARNING,
    "Forward draws random numbers (dropout in training mode, torch.randn, ...) before a lazy module's first "
    "call, so a dry run initializes that module from a generator state that depends on those draws.",
)
PYTHON_WARNING = _code(
    "LFX026",
    "python-warning",
    Category.TRACE,
    Severity.WARNING,
    "A Python warning was raised while lazyfx analysed the model, by PyTorch or by the model's own code (a "
    "dry run raises it too): `lazyfx show` lists it with the report, at the line that raised it, instead of "
    "printing it over the output.",
)
SHAPE_MISMATCH = _code(
    "LFX030",
    "shape-mismatch",
    Category.SHAPE,
    Severity.ERROR,
    "An operation rejects the shapes it receives, as PyTorch would.",
)
DECLARED_SIZE_REJECTED = _code(
    "LFX031",
    "declared-size-rejected",
    Category.SHAPE,
    Severity.ERROR,
    "The model rejects an input size the spec declares valid (a Dim bound, a configured constraint or "
    "--where): the finding gives the smallest declared size that fails and the condition it violates.",
)
SIZE_NOT_FREE = _code(
    "LFX032",
    "size-not-free",
    Category.SHAPE,
    Severity.ERROR,
    "A symbol declared without bounds cannot vary: the model accepts only finitely many sizes of it, "
    "or ties it to another symbol. Declare the sizes it takes, or allow fixed sizes for the model.",
)
FORWARD_RAISES = _code(
    "LFX033",
    "forward-raises",
    Category.SHAPE,
    Severity.ERROR,
    "The model's own code raises an exception (a `raise` in forward or a submodule) for the inputs the spec "
    "gives, at every size lazyfx tried.",
)
DECLARED_SIZE_UNDECIDED = _code(
    "LFX034",
    "declared-size-undecided",
    Category.SHAPE,
    Severity.WARNING,
    "lazyfx can neither prove that every declared input size satisfies a condition relating several "
    "symbols nor find a declared size that violates it (among the smallest combinations it tries).",
)
SYMBOLIC_PARAMETER = _code(
    "LFX040",
    "symbolic-parameter",
    Category.LAZY,
    Severity.ERROR,
    "A lazy parameter's size depends on an input symbol, so it cannot be materialized "
    "until that symbol is pinned.",
)
CONFLICTING_CALLS = _code(
    "LFX041",
    "conflicting-calls",
    Category.LAZY,
    Severity.ERROR,
    "A lazy module is called at two sites with inputs that resolve it differently.",
)
LAZY_NOT_CALLED = _code(
    "LFX042",
    "lazy-not-called",
    Category.LAZY,
    Severity.ERROR,
    "A lazy module is never called in forward, so nothing determines its parameters.",
)
LAZY_NOT_REGISTERED = _code(
    "LFX043",
    "lazy-not-registered",
    Category.LAZY,
    Severity.ERROR,
    "Forward calls a lazy module that is not a submodule of the model (it is held in a plain list, dict or "
    "tuple, or in a closure), so its parameters are not part of the model to materialize.",
)
FOREIGN_LAZY_PROTOCOL = _code(
    "LFX044",
    "foreign-lazy-protocol",
    Category.LAZY,
    Severity.ERROR,
    "A module is lazy by another library's own protocol (pytorch-pfn-extras' LazyInitializationMixin: its "
    "forward creates the parameters, which stand in as that library's UninitializedParameter), not by "
    "PyTorch's, which lazyfx resolves.",
)
UNEXPECTED_OUTPUT = _code(
    "LFX070",
    "unexpected-output",
    Category.EXPECTATION,
    Severity.ERROR,
    "The model's output shape differs from the expected output configured for it.",
)
CONFIG_INVALID = _code(
    "LFX080",
    "config-invalid",
    Category.CONFIG,
    Severity.ERROR,
    "A [tool.lazyfx] entry in pyproject.toml is malformed or its target cannot be loaded.",
)
UNUSED_SUPPRESSION = _code(
    "LFX081",
    "unused-suppression",
    Category.CONFIG,
    Severity.WARNING,
    "A `# lazyfx: ignore[...]` comment silences no finding: the code is not reported on that line (or for "
    "the model defined there), or the comment names no code. Reported under `lazyfx check --strict`.",
)
MODEL_CODE_RAISED = _code(
    "LFX082",
    "model-code-raised",
    Category.CONFIG,
    Severity.ERROR,
    "The model's own code raised an exception while lazyfx loaded the target (importing its module, building "
    "the model) or analysed it; the finding is at the line that raised.",
)
MATERIALIZE_FAILED = _code(
    "LFX050",
    "materialize-failed",
    Category.BUILD,
    Severity.ERROR,
    "Creating the eager model failed; the given model is unchanged.",
)
META_WITHOUT_VALUES = _code(
    "LFX052",
    "meta-without-values",
    Category.BUILD,
    Severity.ERROR,
    "An eager module built on the meta device has parameters or buffers without values and no "
    "reset_parameters() to initialize them on the target device, and no state_dict provides them.",
)
RANKS_DISAGREE = _code(
    "LFX053",
    "ranks-disagree",
    Category.BUILD,
    Severity.ERROR,
    "The ranks of a sharded materialize(mesh=...) were called with different arguments (or resolved the model "
    "differently): every rank raises this before anything is sharded, instead of waiting in a collective.",
)
EXPORT_STATIC_SIZE = _code(
    "LFX051",
    "export-static-size",
    Category.BUILD,
    Severity.ERROR,
    "An exporter fixed a size the input spec leaves dynamic: the artifact fails, or differs from the model, "
    "at another size inside the domain. Nothing is written, unless export(on_static=\"pin\") writes it with "
    "that size static.",
)

@dataclass(frozen=True)
class Selection:
    """One level of code selection: ``[tool.lazyfx]``, a model's table, or the command line.

    Each entry is a code (``"LFX040"``) or a prefix of codes (``"LFX04"``: LFX040 to LFX044).
    The levels apply in that order, as ruff applies its own: ``select`` replaces what the levels
    above enabled, ``extend_select`` adds to it, ``ignore`` removes from it; where a selecting and
    an ignoring entry of one level both match a code, the longer one decides, the ignore on a tie.
    """

    select: Optional[tuple[str, ...]] = None  # None: what the levels above enabled
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()


def matching(selector: str) -> list[str]:
    """The codes a selector names: the code itself, or every code it is a prefix of.

    Examples:
        >>> from lazyfx.core.diagnostics import matching
        >>> matching("LFX04")
        ['LFX040', 'LFX041', 'LFX042', 'LFX043', 'LFX044']
        >>> matching("lfx030"), matching("LFX9")
        (['LFX030'], [])
    """
    prefix = selector.strip().upper()
    return sorted(code for code in CODES if prefix and code.startswith(prefix))


def enabled_codes(levels: Iterable[Selection]) -> frozenset[str]:
    """The codes reported once every level of selection is applied (see :class:`Selection`),
    starting from all of them.

    Examples:
        >>> from lazyfx.core.diagnostics import Selection, enabled_codes
        >>> sorted(enabled_codes([Selection(select=("LFX04",), ignore=("LFX042",))]))
        ['LFX040', 'LFX041', 'LFX043', 'LFX044']
        >>> enabled = enabled_codes([Selection(ignore=("LFX04",)), Selection(extend_select=("LFX040",))])
        >>> "LFX040" in enabled, "LFX041" in enabled, "LFX030" in enabled
        (True, False, True)
    """
    enabled = set(CODES)
    for level in levels:
        selecting = (level.select or ()) + level.extend_select
        for code in CODES:
            plus = max((len(s.strip()) for s in selecting if code.startswith(s.strip().upper())), default=-1)
            minus = max((len(s.strip()) for s in level.ignore if code.startswith(s.strip().upper())), default=-1)
            if plus > minus:
                enabled.add(code)
            elif minus >= 0 or level.select is not None:
                enabled.discard(code)
    return frozenset(enabled)


@dataclass(frozen=True)
class SourceLocation:
    """A place in the user's code."""

    file: str
    line: int
    function: Optional[str] = None
    code: Optional[str] = None

    def __str__(self) -> str:
        return f"{display_path(self.file)}:{self.line}"

    def short(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message ('' when it has none): PyTorch's messages go on
    with stack traces and hints that do not belong in a one-line diagnostic."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


_DISPLAY_ROOT: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("display_root", default=None)


def display_path(path: str) -> str:
    """A path relative to the working directory when it lies below it, as linters print them
    (below the project's root instead, inside :func:`paths_relative_to`)."""
    root = _DISPLAY_ROOT.get()
    try:
        relative = os.path.relpath(path, root) if root else os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative


@contextlib.contextmanager
def paths_relative_to(root: str) -> Iterator[None]:
    """Within the block, :func:`display_path` (and so every printed ``path:line``) is relative to
    ``root``, the project's folder, wherever lazyfx runs from: ``lazyfx check`` prints paths as
    GitHub and editors resolve them from the repository's root."""
    token = _DISPLAY_ROOT.set(os.path.abspath(root))
    try:
        yield
    finally:
        _DISPLAY_ROOT.reset(token)


PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package, above core/
_USER_CODE_IN_LAZYFX = {os.path.join(PACKAGE_DIR, "demo.py")}  # the bundled example model is user code
_TORCH_DIR: Optional[str] = None


@functools.lru_cache(maxsize=4096)
def _is_internal(filename: str) -> bool:
    """Frames of torch, lazyfx and fx-generated code are not the user's."""
    global _TORCH_DIR
    if _TORCH_DIR is None:
        import torch

        _TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))
    if filename.startswith("<eval_with_key>"):
        return True
    path = os.path.abspath(filename)
    if path in _USER_CODE_IN_LAZYFX:
        return False
    return path.startswith(PACKAGE_DIR + os.sep) or path.startswith(_TORCH_DIR + os.sep)


def is_internal(filename: str) -> bool:
    """Whether a frame's file is torch's, lazyfx's or fx-generated code (not the user's)."""
    return _is_internal(filename)


def _last_user_frame(frames: Iterable[tuple[str, int, str, Optional[str]]]) -> Optional[SourceLocation]:
    found = None
    for filename, line, function, code in frames:
        if not _is_internal(filename):
            found = SourceLocation(filename, line, function, code)
    return found


def caller_location() -> Optional[SourceLocation]:
    """The innermost user frame of the current call stack (cheap: no source is read).

    While tracing, this is the line of the user's ``forward`` that made the call."""
    return _user_frame_from(sys._getframe(1))


def _user_frame_from(frame) -> Optional[SourceLocation]:
    """The innermost user frame at or above ``frame``."""
    stop, above = _WALK_STOP.get()
    while frame is not None:
        if frame is stop:  # (asked for every traced node: the walk above it was made once)
            return above
        code = frame.f_code
        if not _is_internal(code.co_filename):
            return SourceLocation(code.co_filename, frame.f_lineno, code.co_name)
        frame = frame.f_back
    return None


# A frame that stays on the stack while many locations are asked (tracing's own), with the user
# frame above it: found once, as every walk from below would find it (the frames above a running
# one do not move). Per thread and task.
_WALK_STOP: contextvars.ContextVar[tuple] = contextvars.ContextVar("lazyfx_walk_stop", default=(None, None))


@contextlib.contextmanager
def locations_found_once_above(frame) -> Iterator[None]:
    """Within the block, :func:`caller_location` stops its walk at ``frame``, a frame below
    which the block runs, with the user frame above it found now."""
    token = _WALK_STOP.set((frame, _user_frame_from(frame)))
    try:
        yield
    finally:
        _WALK_STOP.reset(token)


_FRAME_RE = re.compile(r'File "(?P<file>.+?)", line (?P<line>\d+), in (?P<func>\S+)(?:\n\s+(?P<code>.*))?')


def location_from_stack_trace(stack_trace: Optional[str]) -> Optional[SourceLocation]:
    """The user's frame in a stack trace that torch.fx recorded on a node."""
    if not stack_trace:
        return None
    frames = [
        (m["file"], int(m["line"]), m["func"], (m["code"] or "").strip() or None)
        for m in _FRAME_RE.finditer(stack_trace)
    ]
    return _last_user_frame(frames)


def location_from_traceback(exc: BaseException) -> Optional[SourceLocation]:
    """The innermost user frame in the traceback of ``exc``."""
    frames = [
        (f.filename, f.lineno or 0, f.name, f.line) for f in traceback.extract_tb(exc.__traceback__)
    ]
    return _last_user_frame(frames)


@dataclass(frozen=True)
class Diagnostic:
    """One finding, with everything needed to point at its cause.

    Errors carry them in ``error.diagnostics``, reports carry warnings in
    ``report.diagnostics``. ``str(diagnostic)`` is the line lazyfx prints:
    ``path:line: CODE message (in module 'path' at Op)``, then one
    ``note:`` line per note.

    Attributes:
        code: The kind of finding: ``code.code`` (``"LFX040"``), ``code.name``
            (``"symbolic-parameter"``) and ``code.description``. The codes are
            stable: select and silence them by code.
        message: What is wrong, in one sentence.
        severity: ``"error"`` or ``"warning"``.
        module_path: The path of the module at fault (``""`` for the model
            itself); None when not in a module.
        op: The operation at fault, as the report names it (``"Linear"``,
            ``"torch.cat"``).
        node: The name of the graph node at fault.
        location: The line of your code at fault, with ``file``, ``line`` and
            ``function`` (``str()`` gives ``path:line``, relative to the
            working directory where it lies below it); None when unknown.
        notes: Hints on how to fix it.

    Examples:
        >>> report = lazyfx.infer(Net(), ("B", 3, "H", "W"))
        >>> warning = report.diagnostics[0]
        >>> warning.code.code, warning.code.name, warning.severity
        ('LFX040', 'symbolic-parameter', 'warning')
        >>> warning.module_path, warning.location.line
        ('head', 25)
        >>> print(warning)
        lazyfx/demo.py:25: LFX040 lazy module 'head' (LazyLinear) needs in_features = 64*((H - 9)//4 + 1)*((W - 9)//4 + 1), which depends on H, W (in module 'head')
            note: pin H, W to concrete sizes in the input spec, or make the size independent of them (e.g. an adaptive pooling layer before a flatten)
    """

    code: ErrorCode
    message: str
    severity: str = "error"  # "error" | "warning" | "info"
    module_path: Optional[str] = None
    op: Optional[str] = None
    node: Optional[str] = None
    location: Optional[SourceLocation] = None
    notes: tuple[str, ...] = field(default=())

    def with_context(self, callers: tuple[str, ...] = (), **context) -> "Diagnostic":
        """Fill in the context fields that are still empty; ``callers`` (notes naming the
        submodule calls that led to the node) are added once, after the other notes."""
        missing = {k: v for k, v in context.items() if getattr(self, k) in (None, ()) and v is not None}
        if callers and not any(note.startswith("called as ") for note in self.notes):
            missing["notes"] = tuple(self.notes) + tuple(callers)
        return dataclasses.replace(self, **missing) if missing else self

    def where(self) -> str:
        """The module and operation at fault, as printed after the message.

        Returns:
            ``"in module 'path' at Op"``, either part left out when unknown
                (``'<root>'`` for the model itself); empty when both are.

        Examples:
            >>> model = nn.Sequential(nn.LazyConv2d(8, 3), nn.Flatten(), nn.Linear(128, 10))
            >>> try:
            ...     lazyfx.infer(model, ("B", 3, 32, 32))
            ... except lazyfx.ShapeError as error:
            ...     print(error.diagnostics[0].where())
            in module '2' at Linear
        """
        parts = []
        if self.module_path is not None:
            parts.append(f"in module '{self.module_path or '<root>'}'")
        if self.op:
            parts.append(f"at {self.op}")
        return " ".join(parts)

    def __str__(self) -> str:
        prefix = f"{self.location}: " if self.location else ""
        where = self.where()
        text = f"{prefix}{self.code.code} {self.message}" + (f" ({where})" if where else "")
        for note in self.notes:
            text += f"\n    note: {note}"
        return text

    def to_dict(self) -> dict:
        """The diagnostic as JSON-ready data, as ``report.to_dict()`` gives it.

        Returns:
            ``code``, ``name``, ``severity``, ``message``, ``module_path``,
                ``op``, ``node``, ``file`` (the absolute path), ``line`` and
                ``notes``.

        Examples:
            >>> warning = lazyfx.infer(Net(), ("B", 3, "H", "W")).diagnostics[0]
            >>> data = warning.to_dict()
            >>> data["code"], data["name"], data["line"], data["file"].endswith("demo.py")
            ('LFX040', 'symbolic-parameter', 25, True)
        """
        return {
            "code": self.code.code,
            "name": self.code.name,
            "severity": self.severity,
            "message": self.message,
            "module_path": self.module_path,
            "op": self.op,
            "node": self.node,
            "file": self.location.file if self.location else None,
            "line": self.location.line if self.location else None,
            "notes": list(self.notes),
        }


def source_line(location) -> Optional[str]:
    """The source line at ``location``, without its trailing comment."""
    if location is None:
        return None
    return _without_comment(linecache.getline(location.file, location.line).strip())


@functools.lru_cache(maxsize=1024)  # tokenizing is slow, and a line in a loop is decided at every pass
def _without_comment(line: str) -> Optional[str]:
    try:
        for token in tokenize.generate_tokens(io.StringIO(line).readline):
            if token.type == tokenize.COMMENT:
                return line[: token.start[1]].rstrip() or None
    except (tokenize.TokenError, SyntaxError):  # a line that continues on the next one
        pass
    return line or None
