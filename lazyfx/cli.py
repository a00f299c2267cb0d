"""The ``lazyfx`` command line.

``main(argv) -> int`` returns the exit code: 0 clean, 1 findings (the model
has shape errors), 2 usage errors (a bad target or spec). torch is imported
only once a command runs, so ``lazyfx --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional, Sequence

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line itself (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lazyfx",
        description="Static shape inference for PyTorch lazy modules: every shape as a formula, "
        "every lazy parameter resolved, without a dry run.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    show = sub.add_parser(
        "show",
        help="print the per-layer shape table of a model",
        description="Trace TARGET with symbolic inputs and print every node's shapes, each lazy "
        "module's resolution and the input domain.",
    )
    _add_target_arguments(show)
    show.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    show.set_defaults(run=_run_show)
    return parser


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="TARGET",
        help="path/to/file.py:NAME or package.module:NAME, where NAME is an nn.Module subclass "
        "(constructed without arguments), a factory function, or a module instance",
    )
    parser.add_argument(
        "-i",
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="SPEC",
        help="an input spec such as 'B,3,224,224' or 'B,T:int64'; repeat for several inputs; "
        "'name=SPEC' gives a keyword input",
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"lazyfx: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader went away (`lazyfx show ... | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _run_show(args: argparse.Namespace) -> int:
    from lazyfx.errors import LazyFXError, SpecError

    model = load_target(args.target)
    positional, keyword = split_inputs(args.inputs)
    import lazyfx

    try:
        report = lazyfx.infer(model, *positional, **keyword)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    except LazyFXError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FINDINGS
    print(report.to_json() if args.json else report)
    return EXIT_OK


def split_inputs(specs: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``["B,3,H,W", "mask=B,T:bool"]`` -> positional and keyword input specs."""
    positional: list[str] = []
    keyword: dict[str, str] = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and name.strip().isidentifier():
            keyword[name.strip()] = rest
        elif keyword:
            raise UsageError(f"positional input {spec!r} after a keyword input")
        else:
            positional.append(spec)
    return positional, keyword


def load_target(target: str) -> Any:
    """Import ``file.py:NAME`` or ``package.module:NAME`` and turn it into a model."""
    import importlib
    import importlib.util
    import os

    import torch.nn as nn

    location, sep, name = target.rpartition(":")
    if not sep or not location or not name:
        raise UsageError(f"target {target!r} must look like path/to/file.py:NAME or package.module:NAME")
    try:
        if location.endswith(".py") or os.sep in location:
            if not os.path.isfile(location):
                raise UsageError(f"no such file: {location}")
            module_name = "_lazyfx_target_" + os.path.splitext(os.path.basename(location))[0]
            spec = importlib.util.spec_from_file_location(module_name, location)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            directory = os.path.dirname(os.path.abspath(location))
            sys.path.insert(0, directory)
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(directory)
        else:
            module = importlib.import_module(location)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot import {location}: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, name):
        raise UsageError(f"{location} has no attribute {name!r}")
    obj = getattr(module, name)
    if isinstance(obj, nn.Module):
        return obj
    if callable(obj):
        try:
            model = obj()
        except Exception as exc:
            raise UsageError(f"calling {name}() to build the model failed: {type(exc).__name__}: {exc}") from None
        if isinstance(model, nn.Module):
            return model
        raise UsageError(f"{name}() returned {type(model).__name__}, not an nn.Module")
    raise UsageError(f"{name} is a {type(obj).__name__}, not an nn.Module, a module class or a factory")
