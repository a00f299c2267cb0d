"""The ``lazyfx`` command line: ``check``, ``show``, ``materialize``, ``export``, ``fix``.

``main(argv) -> int`` returns the exit code: 0 clean, 1 findings (the model
has shape errors), 2 usage errors (a bad target, spec or configuration).
Nothing ends in a raw traceback. torch is imported only once a command runs,
so ``lazyfx --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any, Optional, Sequence

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXPORT_FORMATS = ("onnx", "torchscript", "torchscript-trace", "exported-program")
FORMAT_LABELS = {"onnx": "ONNX", "torchscript": "TorchScript (scripted)", "torchscript-trace": "TorchScript (traced)",
                 "exported-program": "a torch.export ExportedProgram"}


class UsageError(Exception):
    """A problem with the command line itself (exit code 2)."""


class AnalysisFailed(Exception):
    """The model has findings that stop the command; they are printed already (exit code 1)."""


# -- the parser -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lazyfx",
        description="Static shape inference for PyTorch lazy modules: every shape as a formula, "
        "every lazy parameter resolved, without a dry run.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    check = sub.add_parser(
        "check",
        help="report shape errors like a linter (for pre-commit and CI)",
        description="Check the models configured under [tool.lazyfx] in pyproject.toml (all of them, or with "
        "FILES only those whose source, or a file they import, is among FILES), or the TARGETs given. "
        "One line per finding: path:line:col: LFXnnn message. Exit 0 clean, 1 findings, 2 usage errors.",
    )
    check.add_argument("paths", nargs="*", metavar="FILE_OR_TARGET",
                       help="changed files (as pre-commit passes them) or targets path/to/file.py:NAME")
    _add_inputs(check)
    check.add_argument("--expect", metavar="SPEC", help="expected output, e.g. 'B,10' (with a TARGET)")
    check.add_argument("--config", metavar="PYPROJECT", help="the pyproject.toml to read (default: the nearest)")
    check.add_argument("--format", choices=("text", "json", "github", "sarif"), default="text",
                       help="text (path:line:col: CODE message), json, github (annotations in GitHub Actions) or "
                       "sarif (SARIF 2.1.0, for GitHub code scanning)")
    check.add_argument("--strict", action="store_true",
                       help="warnings are findings too (exit 1), and so is a suppression comment that silences "
                       "nothing (LFX081)")
    check.add_argument("--select", action="append", default=[], metavar="CODES",
                       help="report only these codes or code prefixes, comma-separated (LFX030,LFX04); "
                       "replaces the configured selection")
    check.add_argument("--extend-select", action="append", default=[], metavar="CODES",
                       help="report these codes too, comma-separated")
    check.add_argument("--ignore", action="append", default=[], metavar="CODES",
                       help="do not report these codes or code prefixes, comma-separated")
    check.add_argument("--no-cache", action="store_true",
                       help="analyse every model afresh, and leave the cache folder as it is")
    check.add_argument("--allow-fixed-sizes", action="store_true",
                       help="a symbol declared without bounds that the model fixes to some sizes, or ties to "
                       "another symbol, is not a finding (LFX032)")
    check.set_defaults(run=run_check)

    show = sub.add_parser("show", help="print the per-layer shape table of a model",
                          description="Trace TARGET with symbolic inputs and print every node's shapes, each lazy "
                          "module's resolution, the input domain and warnings.")
    _add_target(show)
    show.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    show.add_argument("--graph", metavar="FILE", help="also draw the dataflow graph: FILE.svg (a picture), "
                      "FILE.html (a page with it), FILE.dot (Graphviz text), FILE.mmd (Mermaid) or FILE.md "
                      "(Markdown with a Mermaid block, as GitHub renders it)")
    show.add_argument("--explain", metavar="NAME", help="instead of the table, explain where the lazy size NAME "
                      "(head.in_features, head.weight) comes from: the chain of operations from the input dims")
    show.add_argument("--all-nodes", action="store_true", help="draw every node as its own box (by default "
                      "size bookkeeping is drawn as part of its consumers, and long chains as one box each)")
    show.set_defaults(run=run_show)

    materialize = sub.add_parser("materialize", help="write the eager model's state_dict (a checkpoint)",
                                 description="Materialize TARGET for the inputs and save its state_dict with "
                                 "torch.save; it loads with torch.load(..., weights_only=True).")
    _add_target(materialize)
    _add_materialize_options(materialize)
    materialize.add_argument("--init-order", choices=("dry-run", "registration"), default="dry-run")
    materialize.add_argument("-o", "--output", required=True, metavar="FILE")
    materialize.set_defaults(run=run_materialize)

    export = sub.add_parser("export", help="materialize and export (ONNX, TorchScript, torch.export)",
                            description="Materialize TARGET and export it; the input symbols become dynamic "
                            "dimensions (ONNX dynamic axes, torch.export Dims).")
    _add_target(export)
    _add_materialize_options(export)
    export.add_argument("--format", choices=EXPORT_FORMATS, required=True,
                        type=lambda name: name.replace("_", "-"))  # exported_program, as lazyfx.export takes it
    export.add_argument("-o", "--output", required=True, metavar="FILE")
    export.add_argument("--allow-static", action="store_true",
                        help="where an exporter cannot keep a symbol dynamic, write the file with that size "
                        "static (a warning says which) instead of failing")
    export.set_defaults(run=run_export)

    fix = sub.add_parser("fix", help="rewrite nn.LazyX(...) calls in the source into their eager classes",
                         description="Replace each lazy constructor call in the target's source with the eager "
                         "call and the inferred argument (nn.LazyLinear(10) -> nn.Linear(6272, 10)), keeping "
                         "comments and formatting. Prints a diff unless --write.")
    _add_target(fix)
    fix.add_argument("--write", action="store_true", help="rewrite the file instead of printing a diff")
    fix.set_defaults(run=run_fix)
    return parser


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i", "--input", dest="inputs", action="append", default=[], metavar="SPEC",
        help="an input spec such as 'B,3,224,224' or 'B,T:int64'; repeat for several inputs; "
        "'name=SPEC' gives a keyword input, 'name:=VALUE' a constant (role:=policy, steps:=4)",
    )
    parser.add_argument(
        "-w", "--where", dest="constraints", action="append", default=[], metavar="CONSTRAINT",
        help="a constraint on a symbol: 'H>=64', 'H<=1024', 'H%%32==0', 'H==224', 'W==H'; repeatable",
    )


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="TARGET",
        help="path/to/file.py:NAME or package.module:NAME, where NAME is an nn.Module subclass "
        "(constructed without arguments), a factory function, or a module instance",
    )
    _add_inputs(parser)


def _add_materialize_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="target device, e.g. cpu, cuda, cuda:1, meta")
    parser.add_argument("--dtype", help="floating point dtype, e.g. float16, bfloat16, float64")
    parser.add_argument("--seed", type=int, help="seed the parameter initialization")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"lazyfx: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AnalysisFailed:
        return EXIT_FINDINGS
    except BrokenPipeError:  # the reader went away (`lazyfx show ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:  # Ctrl-C: stop, without a traceback
        print("lazyfx: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# -- shared steps -------------------------------------------------------------------------


def split_inputs(specs: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """``["B,3,H,W", "mask=B,T:bool", "role:=policy"]`` -> positional and keyword input specs;
    ``name:=VALUE`` is a constant (:func:`constant`)."""
    positional: list[str] = []
    keyword: dict[str, Any] = {}
    for spec in specs:
        name, sep, rest = spec.partition(":=")
        if sep and name.strip().isidentifier():
            keyword[name.strip()] = constant(rest)
            continue
        name, sep, rest = spec.partition("=")
        if sep and name.strip().isidentifier() and not rest.startswith("="):
            keyword[name.strip()] = rest
        elif keyword:
            raise UsageError(f"positional input {spec!r} after a keyword input")
        else:
            positional.append(spec)
    return positional, keyword


def constant(text: str) -> Any:
    """The constant ``--input name:=VALUE`` passes: a Python literal (``3``, ``0.5``, ``True``,
    ``None``, ``'a,b'``, ``(2, 4)``) is that value, any other text the string itself
    (``role:=policy``), as ``lazyfx.Const`` passes it."""
    import ast

    from lazyfx.inputs.spec import Const

    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = text
    return Const(value)


def constrained_inputs(inputs: Any, constraints: Sequence[str], check_symbols: bool = True) -> tuple[list, dict]:
    """Input specs (a list, or a dict of keyword inputs) with the constraints applied; a constraint
    on a symbol none of them has is a SpecError (unless ``check_symbols`` is false)."""
    from lazyfx.inputs.spec import check_constraint_symbols, constrain, parse_constraints, symbol_names

    if isinstance(inputs, dict):
        positional, keyword = [], dict(inputs)
    else:
        positional, keyword = split_inputs(list(inputs))
    dims, aliases = parse_constraints(list(constraints))
    if check_symbols:
        check_constraint_symbols(list(constraints), set().union(*map(symbol_names, [*positional, *keyword.values()])))
    return ([constrain(s, dims, aliases) for s in positional],
            {k: constrain(v, dims, aliases) for k, v in keyword.items()})


def load_model(target: str):
    from lazyfx.inputs.targets import TargetError, load

    try:
        return load(target)
    except TargetError as exc:
        raise UsageError(str(exc)) from None


def prepare(args: argparse.Namespace):
    """The model and its inputs, from a command's TARGET, --input and --where."""
    from lazyfx.errors import SpecError

    model = load_model(args.target)
    try:
        positional, keyword = constrained_inputs(args.inputs, args.constraints)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    return model, positional, keyword


def check_writable(path: str) -> None:
    """A usage error, before any work, when ``path`` cannot be written: its folder is missing, or
    it is a folder."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path}: it is a folder")
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {path}: no such folder {folder}")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: the folder {folder} is not writable")


def diagnostics_first_line(exc: BaseException) -> str:
    from lazyfx.core.diagnostics import first_line

    return first_line(exc) or type(exc).__name__


def _print_error(exc) -> None:
    print(exc, file=sys.stderr)


# -- check ----------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    from lazyfx.core.diagnostics import paths_relative_to
    from lazyfx.inputs import config as cfg
    from lazyfx.inputs import targets

    command_line = _command_line_selection(args)
    target_args = [p for p in args.paths if ":" in p and not os.path.exists(p)]
    files = [p for p in args.paths if p not in target_args]
    if target_args:
        models = [cfg.ModelConfig(t, list(args.inputs), list(args.constraints), args.expect,
                                  allow_fixed_sizes=args.allow_fixed_sizes) for t in target_args]
        source, settings, everything = None, cfg.Settings(models, cache_dir=None), models
        nearest = cfg.find_pyproject()
        root = os.path.dirname(nearest) if nearest else os.getcwd()
    else:
        if args.inputs or args.constraints or args.expect:
            raise UsageError("--input, --where and --expect go with a TARGET (path/to/file.py:NAME)")
        source = args.config or cfg.find_pyproject()
        if source is None:
            raise UsageError("no pyproject.toml with [tool.lazyfx] models found; pass a TARGET or --config")
        try:
            settings = cfg.load(source)
        except cfg.ConfigError as exc:
            raise UsageError(str(exc)) from None
        everything = models = settings.models
        if not models:
            raise UsageError(f"{source} has no [[tool.lazyfx.models]] entries")
        root = os.path.dirname(os.path.abspath(source))
        if files:
            wanted = {os.path.abspath(f) for f in files}
            if os.path.abspath(source) not in wanted:  # a changed configuration checks every model
                models = [m for m in models if targets.source_files(m.target, root) & wanted]
    with paths_relative_to(root):
        results = _results(models, source, _cache(args, settings, source, root), pruning=len(models) == len(everything))
        findings = _reported(args, settings, models, everything, results, command_line, root)
        from lazyfx.outputs.findings import render

        if findings or args.format in ("json", "sarif"):
            print(render(findings, args.format, root))
    failing = [f for f in findings if f.severity == "error" or args.strict]
    if args.format == "text":  # a summary for people; stdout keeps only the findings
        sys.stdout.flush()
        print(f"lazyfx: {_summary(models, findings, files)}", file=sys.stderr)
    return EXIT_FINDINGS if failing else EXIT_OK


def _command_line_selection(args: argparse.Namespace):
    """``--select``, ``--extend-select`` and ``--ignore``: the last level of selection."""
    from lazyfx.core.diagnostics import Selection
    from lazyfx.inputs.config import ConfigError, check_selectors

    def codes(values: list[str], option: str) -> tuple[str, ...]:
        listed = [c.strip().upper() for value in values for c in value.split(",") if c.strip()]
        try:
            check_selectors(listed, option)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        return tuple(listed)

    return Selection(codes(args.select, "--select") if args.select else None,
                     codes(args.extend_select, "--extend-select"), codes(args.ignore, "--ignore"))


def _cache(args: argparse.Namespace, settings, source: Optional[str], root: str):
    """The cache of a configured project (none for TARGETs, with --no-cache or ``cache = false``);
    ``LAZYFX_CACHE_DIR`` moves it, as ``RUFF_CACHE_DIR`` moves ruff's."""
    from lazyfx.outputs.cache import Cache

    if source is None or args.no_cache or settings.cache_dir is None:
        return None
    return Cache(os.environ.get("LAZYFX_CACHE_DIR") or settings.cache_dir, root)


def _results(models: list, source: Optional[str], cache, pruning: bool) -> list[list]:
    """Each model's findings, as the analysis gives them: from the cache where its entry is
    current (nothing imports torch then), else by analysing it, after checking every spec of
    those that need it."""
    results: list[Optional[list]] = [None] * len(models)
    keys: dict[int, tuple] = {}
    for index, model_config in enumerate(models):
        if cache is not None:
            keys[index] = cache.key(model_config)
            results[index] = cache.get(model_config, keys[index][0])
    pending = [i for i, found in enumerate(results) if found is None]
    for index in pending:  # every spec is valid before any model runs
        _validate_specs(models[index], source)
    progress = len(pending) > 1 and sys.stderr.isatty()
    with _SigintWatch() as sigint:
        for number, index in enumerate(pending, 1):
            if progress:
                print(f"\rlazyfx: checking {number}/{len(pending)} {models[index].label}", end="", file=sys.stderr)
            results[index] = check_model(models[index], source, sigint)
            if sigint.received:  # a Ctrl-C the model's code caught and turned into something else
                raise KeyboardInterrupt
            if cache is not None:
                cache.put(models[index], *keys[index], results[index])
    if progress:
        print(file=sys.stderr)
    if cache is not None:
        if pruning:
            cache.prune()
        if cache.write_error:
            print(f"lazyfx: warning: cannot write the cache in {cache.folder}: {cache.write_error}", file=sys.stderr)
    return results


def _reported(args: argparse.Namespace, settings, models: list, everything: list, results: list,
              command_line, root: str) -> list:
    """The findings to print: each model's, of the codes its selection enables, less those a
    ``# lazyfx: ignore[...]`` comment silences; under --strict, also the comments that silence
    nothing, in the files of the models checked (a file that a model left unchecked imports
    too is not judged: the comment may be that model's)."""
    from lazyfx.core.diagnostics import UNUSED_SUPPRESSION, enabled_codes
    from lazyfx.inputs import targets
    from lazyfx.outputs.suppression import Suppressions

    suppressions = Suppressions()
    findings = []
    for model_config, found in zip(models, results):
        enabled = enabled_codes([settings.selection, model_config.selection, command_line])
        definition = targets.definition(model_config.target, model_config.root or root)
        findings += [f for f in found if f.code in enabled and not suppressions.silenced(f, definition)]
    if args.strict and UNUSED_SUPPRESSION.code in enabled_codes([settings.selection, command_line]):
        checked = set().union(*(targets.source_files(m.target, m.root or root) for m in models))
        unchecked = [m for m in everything if m not in models]
        others = set().union(*(targets.source_files(m.target, m.root or root) for m in unchecked))
        findings += suppressions.unused(checked - others)
    return findings


def _summary(models: list, findings: list, files: list) -> str:
    if not models:
        return "no configured model uses the given files" if files else "no models to check"
    checked = f"{len(models)} model{'s' if len(models) != 1 else ''} checked"
    if not findings:
        return f"{checked}, no findings"
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    counts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((errors, "error"), (warnings, "warning")) if n]
    return f"{checked}: {', '.join(counts)}"


def _validate_specs(model_config, source: Optional[str]) -> None:
    """A usage error for a malformed spec, expected output or constraint, or a constraint on a
    symbol no input has: the configuration (or command line) is wrong, whatever the model."""
    from lazyfx.core.diagnostics import display_path
    from lazyfx.errors import SpecError

    try:
        constrained_inputs(model_config.inputs, model_config.constraints)
        if model_config.expect_output is not None:
            constrained_inputs([model_config.expect_output], model_config.constraints, check_symbols=False)
    except SpecError as exc:
        if source is None:  # as `show` says it
            raise UsageError(str(exc)) from None
        where = f"{display_path(source)}:{model_config.line}:" if model_config.line else f"{display_path(source)}:"
        raise UsageError(f"{where} [[tool.lazyfx.models]] {model_config.label}: {exc.message}") from None


class _SigintWatch:
    """While checking, tells a real Ctrl-C (SIGINT from the terminal) from a KeyboardInterrupt a
    model's own code raises: the first aborts the check, the second is a finding for that model.
    Where no handler can be installed (not the main thread, a handler of the program's own), every
    KeyboardInterrupt counts as real."""

    def __init__(self) -> None:
        self.received = False
        self.installed = False
        self.previous: Any = None

    def __enter__(self) -> "_SigintWatch":
        import signal

        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous = signal.signal(signal.SIGINT, self._handle)
                self.installed = True
        except ValueError:  # not the main thread
            pass
        return self

    def _handle(self, signum, frame) -> None:
        self.received = True
        raise KeyboardInterrupt

    def __exit__(self, *exc_info) -> None:
        import signal

        if self.installed:
            signal.signal(signal.SIGINT, self.previous)

    def real(self) -> bool:
        return self.received or not self.installed


def check_model(model_config, source: Optional[str], sigint: Optional[_SigintWatch] = None) -> list:
    """The findings for one configured (or command-line) model. For a command-line target
    (``source`` None), a target that cannot be built or a spec the model refuses is a usage error.
    A configured model's finding that points nowhere in the code points at its table in
    ``pyproject.toml``."""
    from lazyfx.outputs.findings import located

    found = _analysed(model_config, source, sigint)
    return [located(f, source, model_config.line) for f in found] if source else found


def _analysed(model_config, source: Optional[str], sigint: Optional[_SigintWatch]) -> list:
    import lazyfx
    from lazyfx.core import diagnostics
    from lazyfx.errors import LazyFXError
    from lazyfx.inputs.targets import TargetError, load, user_location
    from lazyfx.outputs.findings import Finding, column_of, from_diagnostic

    label = model_config.label

    def config_finding(message: str, code=diagnostics.CONFIG_INVALID, location=None) -> list:
        if location is not None:
            return [Finding(code.code, message, path=location.file, line=location.line,
                            column=column_of(location.file, location.line), model=label)]
        return [Finding(code.code, message, path=source, line=model_config.line if source else None, model=label)]

    def interrupted(exc: BaseException, during: str) -> list:  # raised by the model's own code: a finding
        if isinstance(exc, KeyboardInterrupt) and (sigint is None or sigint.real()):
            raise exc
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        code = diagnostics.FORWARD_RAISES if during == "forward" else diagnostics.MODEL_CODE_RAISED
        return config_finding(f"{during} raises {what}; the other models are still checked", code, user_location(exc))

    try:
        model = load(model_config.target, model_config.root)
    except TargetError as exc:
        if source is None:
            raise UsageError(str(exc)) from None
        code = diagnostics.MODEL_CODE_RAISED if exc.raised else diagnostics.CONFIG_INVALID
        return config_finding(exc.message, code, exc.location)
    except KeyboardInterrupt as exc:
        return interrupted(exc, f"loading {model_config.target}")
    try:
        positional, keyword = constrained_inputs(model_config.inputs, model_config.constraints)
        report = lazyfx.infer(model, *positional, **keyword)
    except lazyfx.SpecError as exc:
        if source is None:
            raise UsageError(str(exc)) from None
        return config_finding(exc.message, exc.diagnostics[0].code)
    except LazyFXError as exc:
        return [from_diagnostic(d, label) for d in exc.diagnostics]
    except (SystemExit, KeyboardInterrupt) as exc:
        return interrupted(exc, "forward")
    except Exception as exc:  # the user's own code failed while lazyfx analysed it
        location = user_location(exc)
        return config_finding(f"analysing {model_config.target} failed: {type(exc).__name__}: {exc}",
                              diagnostics.MODEL_CODE_RAISED if location else diagnostics.CONFIG_INVALID, location)
    findings = []
    for diag in report.diagnostics:
        if diag.code is diagnostics.SIZE_NOT_FREE and model_config.allow_fixed_sizes:
            continue
        findings.append(from_diagnostic(diag, label, diag.code.severity.value))  # as the code table says
    if model_config.expect_output:
        findings += _check_output(report, model_config, label)
    return findings


def _check_output(report, model_config, label: str) -> list:
    import lazyfx
    from lazyfx.api import check_output
    from lazyfx.outputs.findings import from_diagnostic

    (expected,), _ = constrained_inputs([model_config.expect_output], model_config.constraints, check_symbols=False)
    try:
        check_output(report, expected)
    except lazyfx.ShapeError as exc:
        return [from_diagnostic(d, label) for d in exc.diagnostics]
    return []


# -- show, materialize, export --------------------------------------------------------------


def call_api(function, *args, **kwargs):
    """Call the Python API as every command does: a malformed spec is a usage error (exit 2),
    any other lazyfx error is printed as findings (exit 1)."""
    import lazyfx

    try:
        return function(*args, **kwargs)
    except lazyfx.SpecError as exc:
        raise UsageError(str(exc)) from None
    except lazyfx.LazyFXError as exc:
        _print_error(exc)
        raise AnalysisFailed from None
    except SystemExit as exc:  # the model's own code called sys.exit while lazyfx analysed it
        from lazyfx.core import diagnostics
        from lazyfx.inputs.targets import user_location

        what = f"SystemExit: {exc}" if str(exc) else "SystemExit"
        _print_error(diagnostics.Diagnostic(diagnostics.FORWARD_RAISES, f"the model's code raises {what}",
                                            location=user_location(exc)))
        raise AnalysisFailed from None


def analysis_warnings(caught: list) -> list:
    """The Python warnings raised while the model was analysed (PyTorch's, the model's own), as
    report diagnostics (LFX026) at the line that raised each."""
    from lazyfx.core import diagnostics

    return [diagnostics.Diagnostic(diagnostics.PYTHON_WARNING, f"{w.category.__name__}: {diagnostics.first_line(w.message)}",
                                   severity="warning", location=diagnostics.SourceLocation(w.filename, w.lineno))
            for w in caught]


GRAPH_FORMATS = (".svg", ".html", ".dot", ".mmd", ".md")  # lazyfx.outputs.graph.FORMATS, without importing torch


def run_show(args: argparse.Namespace) -> int:
    import lazyfx

    if args.graph and os.path.splitext(args.graph)[1].lower() not in GRAPH_FORMATS:
        raise UsageError(f"--graph {args.graph}: the file must end in {', '.join(GRAPH_FORMATS[:-1])} or "
                         f"{GRAPH_FORMATS[-1]}")
    if args.all_nodes and not args.graph:
        raise UsageError("--all-nodes is an option of --graph FILE")
    model, positional, keyword = prepare(args)
    with warnings.catch_warnings(record=True) as caught:
        report = call_api(lazyfx.infer, model, *positional, **keyword)
    report.diagnostics += analysis_warnings(caught)
    shown: Any = report
    if args.explain:
        try:
            shown = report.explain(args.explain)
        except ValueError as exc:
            raise UsageError(f"--explain {args.explain}: {exc}") from None
    try:
        print(shown.to_json() if args.json else shown, flush=True)
    except BrokenPipeError:  # `lazyfx show ... --graph g.svg | head`: the picture is still wanted
        if not args.graph:
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.graph:
        from lazyfx.outputs import graph

        try:
            graph.write(report, graph.edges(report), args.graph, all_nodes=args.all_nodes)
        except OSError as exc:
            raise UsageError(f"cannot write {args.graph}: {exc.strerror or exc}") from None
        print(f"wrote {args.graph}", file=sys.stderr)
    return EXIT_OK


def _materialize_options(args: argparse.Namespace) -> dict:
    from lazyfx.errors import SpecError
    from lazyfx.inputs.spec import parse_dtype

    options: dict[str, Any] = {"device": args.device, "seed": args.seed}
    if args.dtype:
        try:
            options["dtype"] = parse_dtype(args.dtype)
        except SpecError as exc:
            raise UsageError(str(exc)) from None
    return options


def run_materialize(args: argparse.Namespace) -> int:
    import torch

    import lazyfx

    check_writable(args.output)
    model, positional, keyword = prepare(args)
    eager = call_api(lazyfx.materialize, model, *positional, init_order=args.init_order,
                     **_materialize_options(args), **keyword)
    try:
        torch.save(eager.state_dict(), args.output)
    except (OSError, RuntimeError) as exc:  # torch reports a missing folder as a RuntimeError
        raise UsageError(f"cannot write {args.output}: {diagnostics_first_line(exc)}") from None
    count = sum(p.numel() for p in eager.parameters())
    print(f"wrote {args.output}: the state_dict of {type(eager).__name__} ({count:,} parameters)")
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    import warnings

    import lazyfx
    from lazyfx.build.exporters import StaticAxisWarning

    model, positional, keyword = prepare(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StaticAxisWarning)
        call_api(lazyfx.export, model, *positional, format=args.format, path=args.output,
                 on_static="pin" if args.allow_static else "error", **_materialize_options(args), **keyword)
    for warning in caught:
        if issubclass(warning.category, StaticAxisWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    print(f"wrote {args.output}: {type(model).__name__} as {FORMAT_LABELS[args.format]}")
    return EXIT_OK


def run_fix(args: argparse.Namespace) -> int:
    import lazyfx
    from lazyfx.core.diagnostics import display_path
    from lazyfx.outputs import fix

    with fix.recording() as constructions:  # where each lazy module is constructed, as the target loads
        model, positional, keyword = prepare(args)
    report = call_api(lazyfx.infer, model, *positional, **keyword)
    if not report.lazy:
        print(f"lazyfx fix: {report.model} has no lazy modules", file=sys.stderr)
        return EXIT_OK
    fixes, refusals = fix.apply(fix.plan(model, report, constructions))
    if args.write:
        try:
            fix.write(fixes)
        except fix.WriteError as exc:
            raise UsageError(str(exc)) from None
        for file_fix in fixes:
            calls, modules = len(file_fix.rewritten), sum(len(r.paths) for r in file_fix.rewritten)
            print(f"rewrote {display_path(file_fix.path)}: {calls} call{'s' if calls != 1 else ''} "
                  f"({modules} lazy module{'s' if modules != 1 else ''})")
    else:
        sys.stdout.write("".join(f.diff() for f in fixes))
    for refusal in refusals:
        print(refusal.text(), file=sys.stderr)
    if refusals:
        print(f"lazyfx fix: {len(refusals)} lazy constructor call{'s' if len(refusals) != 1 else ''} left as "
              f"{'they were' if len(refusals) != 1 else 'it was'}", file=sys.stderr)
    return EXIT_FINDINGS if refusals else EXIT_OK
