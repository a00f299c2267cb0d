"""``lazyfx fix``: rewrite each lazy constructor call in the user's source into the eager call.

``nn.LazyLinear(10)`` becomes ``nn.Linear(6272, 10)``, ``nn.LazyBatchNorm2d()``
becomes ``nn.BatchNorm2d(64)``: the eager class, with the argument lazyfx
inferred put first (as a keyword when the call passes all of its arguments by
keyword). The edit is made with libcst, so comments and formatting stay.

How a module instance is tied to the call that built it: while the target is
loaded, :func:`recording` wraps ``LazyModuleMixin.__init__`` and records, for
every lazy instance created, the caller's ``file:line:col`` range (CPython's
position of the call instruction) and its names (to check that the eager name
will mean the eager class). :func:`plan` groups the report's lazy modules by
that call; :func:`rewrite_source` finds the call in the file by its position.

Only PyTorch's built-in lazy classes are rewritten: their descriptors
(:data:`lazyfx.rules.lazy.LAZY_CLASSES`) name the eager class and the argument
to put first. A call is refused, with the reason, where its argument depends
on an input symbol, where one call built several instances that need
different arguments (a loop), where it passes ``*args``/``**kwargs``, or where
its callee is not written as the lazy class's name; the other calls are still
rewritten.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import difflib
import functools
import inspect
import os
import re
import sys
import sysconfig
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

import libcst as cst
import torch
import torch.nn as nn
from libcst.metadata import MetadataWrapper, PositionProvider
from torch.nn.modules.lazy import LazyModuleMixin

from lazyfx.core import diagnostics
from lazyfx.core.diagnostics import display_path
from lazyfx.rules.lazy import LAZY_CLASSES

# -- where each lazy instance was constructed ---------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A constructor call in a file: 1-based lines, 0-based UTF-8 byte columns (CPython's
    positions; ``column`` is None on Python 3.10, which records lines only)."""

    file: str
    line: int
    end_line: Optional[int] = None
    column: Optional[int] = None
    end_column: Optional[int] = None

    def where(self) -> str:
        return f"{display_path(self.file)}:{self.line}:{_char_column(self.file, self.line, self.column) + 1}"


@dataclass
class Construction:
    """One lazy instance and the call that built it, with the names visible there."""

    module: nn.Module
    site: Site
    namespace: Mapping[str, Any]


@contextlib.contextmanager
def recording() -> Iterator[dict[int, Construction]]:
    """Record where every lazy module constructed inside the block was constructed:
    ``{id(module): Construction}`` (the constructions keep their modules alive)."""
    constructions: dict[int, Construction] = {}
    original = LazyModuleMixin.__init__

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is self:
            frame = frame.f_back  # the constructors of the instance itself (its class and bases)
        if frame is not None and id(self) not in constructions:
            constructions[id(self)] = Construction(self, _site(frame), _namespace(frame))

    LazyModuleMixin.__init__ = init
    try:
        yield constructions
    finally:
        LazyModuleMixin.__init__ = original


def _site(frame) -> Site:
    file = os.path.abspath(frame.f_code.co_filename)
    positions = getattr(frame.f_code, "co_positions", None)
    if positions is None:  # Python 3.10
        return Site(file, frame.f_lineno)
    line, end_line, column, end_column = list(positions())[frame.f_lasti // 2]
    return Site(file, line or frame.f_lineno, end_line, column, end_column)


def _namespace(frame) -> Mapping[str, Any]:
    local = {} if frame.f_locals is frame.f_globals else dict(frame.f_locals)
    return collections.ChainMap(local, frame.f_globals, vars(builtins))


# -- what to rewrite ----------------------------------------------------------------------------


@dataclass
class Refusal:
    """A lazy module ``lazyfx fix`` leaves as it is, and why."""

    message: str
    site: Optional[Site] = None
    code: Optional[str] = None
    notes: tuple[str, ...] = ()

    def order(self) -> tuple:
        site = self.site
        return (0, site.file, site.line, site.column or 0) if site else (1, "", 0, 0)

    def text(self) -> str:
        where = f"{self.site.where()}: " if self.site else ""
        code = f"{self.code} " if self.code else ""
        return "\n".join([f"{where}{code}{self.message}", *(f"    note: {n}" for n in self.notes)])


@dataclass
class Rewrite:
    """One constructor call to rewrite: ``lazy_class(...)`` -> ``eager_class(argument=value, ...)``."""

    site: Site
    lazy_class: type
    eager_class: type
    argument: str
    value: int
    paths: list[str]
    namespace: Mapping[str, Any]


@dataclass
class Plan:
    rewrites: list[Rewrite] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)


def plan(model: nn.Module, report, constructions: Mapping[int, Construction]) -> Plan:
    """The calls to rewrite, one per construction site, and the lazy modules refused."""
    result = Plan()
    by_site: dict[Site, list[tuple[Any, Construction]]] = {}
    for path, record in report.lazy.items():
        module = model.get_submodule(path)
        construction = constructions.get(id(module))
        refusal = _refuse_module(module, record, construction)
        if refusal is not None:
            result.refusals.append(refusal)
        else:
            by_site.setdefault(construction.site, []).append((record, construction))
    for site, group in by_site.items():
        outcome = _rewrite_for_site(site, group)
        (result.refusals if isinstance(outcome, Refusal) else result.rewrites).append(outcome)
    return result


def _refuse_module(module: nn.Module, record, construction: Optional[Construction]) -> Optional[Refusal]:
    name = f"'{record.path or '<root>'}' ({record.lazy_class})"
    site = construction.site if construction else None
    if type(module) not in LAZY_CLASSES:
        return Refusal(f"{name} is not one of PyTorch's built-in lazy classes; lazyfx fix rewrites only those",
                       site, notes=("replace it by hand; `lazyfx show` prints its resolved parameter shapes",))
    if construction is None:
        return Refusal(f"cannot tell where {name} was constructed", _call_site(record), notes=(
            "it was not built by a constructor call while the target loaded (a copy.deepcopy, an instance "
            "imported earlier in this process, or a call outside Python source)",))
    if not _rewritable_file(site.file):
        return Refusal(f"{name} is constructed in {display_path(site.file)}, which lazyfx fix does not rewrite",
                       site, notes=("only the project's own source files are rewritten, not library or generated code",))
    if not record.called:
        return Refusal(f"lazy module {name} is never called in forward, so nothing determines its parameters",
                       site, diagnostics.LAZY_NOT_CALLED.code,
                       ("call it in forward, remove it, or replace it with its eager class",))
    if not record.is_concrete:
        args = record.resolution.needs()
        symbols = ", ".join(record.symbols())
        return Refusal(f"lazy module {name} needs {args}, which depends on {symbols}", site,
                       diagnostics.SYMBOLIC_PARAMETER.code,
                       (f"pin {symbols} to concrete sizes in the input spec, or make the size independent of "
                        f"{'it' if len(record.symbols()) == 1 else 'them'} (e.g. an adaptive pooling layer)",))
    if record.specialized_by:
        return Refusal(f"lazy module {name} is resolved from shapes that hold for one input size only: "
                       f"{'; '.join(record.specialized_by)}", site, diagnostics.META_SPECIALIZED.code,
                       ("pin those symbols to concrete sizes in the input spec",))
    return None


def _rewrite_for_site(site: Site, group: list) -> Rewrite | Refusal:
    """The one rewrite for a call that built every module in ``group``, if they agree."""
    record, construction = group[0]
    lazy_class = type(construction.module)
    descriptor = LAZY_CLASSES[lazy_class]
    eager_class, argument = descriptor.eager, descriptor.argument
    values = {r.path: int(r.resolution.arguments[argument]) for r, _ in group}
    if len(set(values.values())) > 1:
        each = ", ".join(f"'{p}' {argument}={v}" for p, v in list(values.items())[:4])
        more = f" and {len(values) - 4} more" if len(values) > 4 else ""
        return Refusal(f"this {lazy_class.__name__}(...) call builds several modules that need different "
                       f"arguments ({each}{more}); one call cannot be rewritten for all", site, notes=(
                           "compute the argument where the call is made (pass the input size into the block, or "
                           "carry the channel count through the loop), or unroll it",))
    return Rewrite(site, lazy_class, eager_class, argument, values[record.path], list(values), construction.namespace)


def _call_site(record) -> Optional[Site]:
    location = record.call_sites[0] if record.call_sites else None
    return Site(location.file, location.line) if location else None


def _rewritable_file(path: str) -> bool:
    if not os.path.isfile(path) or not path.endswith(".py"):
        return False
    libraries = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    libraries.add(os.path.dirname(torch.__file__))
    return not any(path.startswith(os.path.join(os.path.abspath(d), "")) for d in libraries)


# -- editing the source -------------------------------------------------------------------------


@dataclass
class FileFix:
    path: str
    before: str
    after: str
    rewritten: list[Rewrite]

    def diff(self) -> str:
        """A unified diff; below the working directory its paths are a/... and b/... (``git apply``)."""
        name = display_path(self.path)
        old, new = (name, name) if os.path.isabs(name) else (f"a/{name}", f"b/{name}")
        return "".join(difflib.unified_diff(self.before.splitlines(True), self.after.splitlines(True), old, new))


def apply(fix_plan: Plan) -> tuple[list[FileFix], list[Refusal]]:
    """Rewrite each file's calls (in memory): the changed files and the calls refused on the way."""
    by_file: dict[str, list[Rewrite]] = {}
    for rewrite in fix_plan.rewrites:
        by_file.setdefault(rewrite.site.file, []).append(rewrite)
    fixes, refusals = [], list(fix_plan.refusals)
    for path in sorted(by_file):
        try:
            with open(path, encoding="utf-8", newline="") as f:  # line endings as they are
                before = f.read()
            after, done, refused = rewrite_source(before, by_file[path])
        except (OSError, UnicodeDecodeError, cst.ParserSyntaxError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            refusals += [Refusal(f"cannot rewrite {display_path(path)}: {reason}", r.site) for r in by_file[path]]
            continue
        refusals += refused
        if done:
            fixes.append(FileFix(path, before, after, done))
    return fixes, sorted(refusals, key=Refusal.order)


class WriteError(OSError):
    """A rewritten file could not be written; no file was left changed."""


def write(fixes: list[FileFix]) -> None:
    """Write every rewritten file, or none: each is checked to be writable first, and a write
    that fails anyway (a full disk) puts back the files written before it."""
    for fix in fixes:
        problem = _unwritable(fix.path)
        if problem:
            raise WriteError(f"cannot write {display_path(fix.path)}: {problem}; no file was changed")
    written: list[FileFix] = []
    for fix in fixes:
        try:
            _write_text(fix.path, fix.after)
        except OSError as exc:
            for done in written:
                _write_text(done.path, done.before)
            raise WriteError(f"cannot write {display_path(fix.path)}: {exc.strerror or exc}; "
                             f"no file was changed") from None
        written.append(fix)


def _unwritable(path: str) -> Optional[str]:
    if not os.access(path, os.W_OK):
        return "permission denied" if os.path.exists(path) else "no such file"
    try:
        with open(path, "r+b"):
            pass
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def rewrite_source(source: str, rewrites: list[Rewrite]) -> tuple[str, list[Rewrite], list[Refusal]]:
    """``source`` with the calls rewritten; the rewrites made; the calls refused."""
    wrapper = MetadataWrapper(cst.parse_module(source))
    calls = [(node, span) for node, span in wrapper.resolve(PositionProvider).items() if isinstance(node, cst.Call)]
    lines = _lines(source)
    imported = _imported_from(wrapper.module)
    replacements: dict[cst.Call, cst.Call] = {}
    imports: dict[str, set[str]] = {}  # `from M import LazyLinear`: the lazy name -> eager names to import
    done, refused = [], []
    for rewrite in rewrites:
        call = _find_call(calls, rewrite, lines)
        outcome = _new_call(call, rewrite, imported) if call is not None else Refusal(
            f"cannot find the {rewrite.lazy_class.__name__}(...) call here in the source (was the file edited?)",
            rewrite.site)
        if isinstance(outcome, Refusal):
            refused.append(outcome)
            continue
        replacements[call] = outcome
        done.append(rewrite)
        if isinstance(call.func, cst.Name):
            imports.setdefault(call.func.value, set())
            if rewrite.namespace.get(rewrite.eager_class.__name__) is not rewrite.eager_class:
                imports[call.func.value].add(rewrite.eager_class.__name__)
    module = wrapper.module.visit(_Replace(replacements))
    if imports:
        unused = set(imports) - _names_used(module)
        module = module.visit(_ImportEditor(imports, unused))
    return module.code, done, refused


def _find_call(calls: list, rewrite: Rewrite, lines: list[str]) -> Optional[cst.Call]:
    site = rewrite.site
    if site.column is not None:
        start = (site.line, _char_column_in(lines, site.line, site.column))
        end = (site.end_line, _char_column_in(lines, site.end_line, site.end_column))
        found = [c for c, span in calls if (span.start.line, span.start.column) == start
                 and (span.end.line, span.end.column) == end]
    else:  # a line only (Python 3.10): the one call on it that names the lazy class
        found = [c for c, span in calls if span.start.line <= site.line <= span.end.line
                 and _callee_name(c) == rewrite.lazy_class.__name__]
    return found[0] if len(found) == 1 else None


def _callee_name(call: cst.Call) -> Optional[str]:
    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    return func.value if isinstance(func, cst.Name) else None


def _new_call(call: cst.Call, rewrite: Rewrite, imported: Mapping[str, Any]) -> cst.Call | Refusal:
    starred = [_code(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT)) for arg in call.args if arg.star]
    if starred:
        return Refusal(f"this {rewrite.lazy_class.__name__}(...) call passes {', '.join(starred)}, so lazyfx fix "
                       f"cannot tell where {rewrite.argument}={rewrite.value} goes", rewrite.site,
                       notes=(f"write nn.{rewrite.eager_class.__name__}({rewrite.value}, ...) by hand",))
    func = _new_callee(call.func, rewrite, imported)
    if isinstance(func, Refusal):
        return func
    parameters = list(inspect.signature(rewrite.lazy_class).parameters.values())
    required = tuple(p.name for p in parameters if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD)
    comma = _comma(call)
    args = _with_defaults(list(call.args), _changed_defaults(rewrite, call.args, parameters), comma)
    return call.with_changes(func=func, args=_with_argument(args, rewrite.argument, rewrite.value, required, comma))


def _changed_defaults(rewrite: Rewrite, args, parameters: list[inspect.Parameter]) -> dict[str, Any]:
    """The lazy class's defaults that its eager class does not share, for parameters the call leaves
    out: ``LazyInstanceNorm2d()`` has ``affine=True, track_running_stats=True``, ``InstanceNorm2d`` not."""
    eager = inspect.signature(rewrite.eager_class).parameters
    passed = {a.keyword.value for a in args if a.keyword is not None}
    passed |= {p.name for p, a in zip(parameters, args) if a.keyword is None}
    return {p.name: p.default for p in parameters
            if p.name not in passed and p.name in eager and eager[p.name].default != p.default}


def _with_defaults(args: list[cst.Arg], defaults: Mapping[str, Any], comma: cst.Comma) -> list[cst.Arg]:
    """``args`` and then ``name=default`` for each of ``defaults``, separated by ``comma``."""
    if not defaults:
        return args
    new = [cst.Arg(cst.parse_expression(repr(v)), keyword=cst.Name(k),
                   equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
           for k, v in defaults.items()]
    last = args[-1].comma if args else cst.MaybeSentinel.DEFAULT
    return [a.with_changes(comma=comma) for a in args + new[:-1]] + [new[-1].with_changes(comma=last)]


def _comma(call: cst.Call) -> cst.Comma:
    """The separator the call uses between arguments: the first argument's comma; where the call has
    one argument on a line of its own, a line break; ", " otherwise."""
    args = call.args
    if len(args) > 1 and isinstance(args[0].comma, cst.Comma):
        return args[0].comma
    if isinstance(call.whitespace_before_args, cst.ParenthesizedWhitespace):
        return cst.Comma(whitespace_after=call.whitespace_before_args)
    return cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def _new_callee(func: cst.BaseExpression, rewrite: Rewrite, imported: Mapping[str, Any]) -> cst.BaseExpression | Refusal:
    """``nn.LazyLinear`` -> ``nn.Linear``; ``LazyLinear`` -> ``Linear`` (imported where LazyLinear is)."""
    lazy, eager, cls = rewrite.lazy_class.__name__, rewrite.eager_class.__name__, rewrite.eager_class
    by_hand = (f"write nn.{eager}({rewrite.value}, ...) by hand",)
    if isinstance(func, cst.Attribute) and func.attr.value == lazy:  # nn.LazyLinear, torch.nn.LazyLinear
        if getattr(_resolve(func.value, rewrite.namespace), eager, None) is not cls:
            return Refusal(f"cannot check that {_code(func.value)}.{eager} is torch.nn.{eager}", rewrite.site,
                           notes=by_hand)
        return func.with_changes(attr=cst.Name(eager))
    if isinstance(func, cst.Name) and rewrite.namespace.get(func.value) is rewrite.lazy_class:  # LazyLinear
        bound = rewrite.namespace.get(eager)
        if bound is cls:
            return cst.Name(eager)
        if bound is not None:
            return Refusal(f"the name {eager} means {bound!r} here, not torch.nn.{eager}", rewrite.site,
                           notes=by_hand)
        if getattr(imported.get(func.value), eager, None) is not cls:
            return Refusal(f"{func.value} stands for {lazy} but is not bound by `from torch.nn import {lazy}` in this "
                           f"file, so lazyfx fix cannot import {eager} next to it", rewrite.site, notes=by_hand)
        return cst.Name(eager)
    return Refusal(f"the callee {_code(func)} does not name {lazy}, so lazyfx fix cannot tell what to write "
                   f"instead", rewrite.site, notes=(f"call nn.{lazy}(...) directly, or " + by_hand[0],))


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _resolve(expr: cst.BaseExpression, namespace: Mapping[str, Any]) -> Any:
    """The object a dotted name (``nn``, ``torch.nn``) meant where the call ran, or None."""
    if isinstance(expr, cst.Name):
        return namespace.get(expr.value)
    if isinstance(expr, cst.Attribute):
        return getattr(_resolve(expr.value, namespace), expr.attr.value, None)
    return None


def _with_argument(args: list[cst.Arg], name: str, value: int, required: tuple[str, ...],
                   comma: cst.Comma) -> list[cst.Arg]:
    """The call's arguments with ``value`` put first: by keyword when the call passes its required
    arguments (``out_features``, ``out_channels``) by keyword, positionally otherwise."""
    args = list(args)
    new = cst.Arg(cst.Integer(str(value)))
    keywords = [a for a in args if a.keyword is not None]
    if len(keywords) == len(args) and any(a.keyword.value in required for a in keywords):
        new = new.with_changes(keyword=cst.Name(name), equal=keywords[0].equal)
    return [new.with_changes(comma=comma), *args] if args else [new]


class _Replace(cst.CSTTransformer):
    def __init__(self, replacements: Mapping[cst.Call, cst.Call]) -> None:
        super().__init__()
        self.replacements = replacements

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        return self.replacements.get(original_node, updated_node)


# -- imports: `from torch.nn import LazyLinear` needs Linear now -----------------------------------


def _imported_from(module: cst.Module) -> dict[str, Any]:
    """``from M import X [as Y]`` anywhere in the file: the bound name -> module M (when it was
    imported already: nothing is imported here)."""
    found: dict[str, Any] = {}

    class Imports(cst.CSTVisitor):
        def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
            if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
                return
            source = sys.modules.get(_code(node.module))
            for alias in node.names:
                found.setdefault(alias.evaluated_alias or alias.evaluated_name, source)

    module.visit(Imports())
    return found


def _names_used(module: cst.Module) -> set[str]:
    """The names a module reads, outside its import statements."""
    names: set[str] = set()

    class Names(cst.CSTVisitor):
        def visit_Import(self, node) -> bool:
            return False

        def visit_ImportFrom(self, node) -> bool:
            return False

        def visit_Attribute(self, node: cst.Attribute) -> bool:
            node.value.visit(self)  # `nn.LazyLinear` reads nn, not a name LazyLinear
            return False

        def visit_Name(self, node: cst.Name) -> None:
            names.add(node.value)

    module.visit(Names())
    return names


class _ImportEditor(cst.CSTTransformer):
    """In ``from M import LazyLinear``: adds the eager names, and drops the lazy name once the
    file no longer uses it (``from torch.nn import LazyLinear, ReLU`` -> ``from torch.nn import Linear, ReLU``)."""

    def __init__(self, add: Mapping[str, set[str]], unused: set[str]) -> None:
        super().__init__()
        self.add, self.unused = add, unused

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom):
        if updated_node.relative or isinstance(updated_node.names, cst.ImportStar):
            return updated_node
        present = {a.evaluated_alias or a.evaluated_name for a in updated_node.names}
        names: list[cst.ImportAlias] = []
        for alias in updated_node.names:
            bound = alias.evaluated_alias or alias.evaluated_name
            if bound not in self.unused:
                names.append(alias)
            for eager in sorted(self.add.get(bound, ())):
                if eager not in present:
                    names.append(cst.ImportAlias(cst.Name(eager)))
                    present.add(eager)
        if not names:
            return cst.RemoveFromParent()
        if [a.evaluated_name for a in names] == [a.evaluated_name for a in updated_node.names]:
            return updated_node
        return updated_node.with_changes(names=_separated(names, updated_node.names))


def _separated(names: list[cst.ImportAlias], original) -> list[cst.ImportAlias]:
    """Import aliases separated as the original ones were (a trailing comma kept)."""
    separator = next((a.comma for a in original if isinstance(a.comma, cst.Comma)),
                     cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    last = original[-1].comma
    if isinstance(last, cst.Comma) and len(original) == 1:
        separator = last
    return [a.with_changes(comma=separator if i < len(names) - 1 else last) for i, a in enumerate(names)]


# -- columns ------------------------------------------------------------------------------------


def _char_column_in(lines: list[str], line: int, byte_column: int) -> int:
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return len(text.encode("utf-8")[:byte_column].decode("utf-8", errors="ignore"))


def _char_column(path: str, line: int, byte_column: Optional[int]) -> int:
    if byte_column is None:
        return 0
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = _lines(f.read())
    except (OSError, UnicodeDecodeError):
        return byte_column
    return _char_column_in(lines, line, byte_column)


def _lines(source: str) -> list[str]:
    """The source's lines as Python counts them (``str.splitlines`` also splits at form feeds and more)."""
    return re.split(r"\r\n|\r|\n", source)
