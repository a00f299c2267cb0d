"""Targets: ``path/to/file.py:NAME`` or ``package.module:NAME`` -> an ``nn.Module``.

``NAME`` is an ``nn.Module`` subclass (constructed without arguments), a
factory function returning a module, or a module instance. Every failure
(a missing file or attribute, an import error or an exception inside the
user's code) is a :class:`TargetError` with a clear message.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from typing import Any, Optional

from lazyfx.core.diagnostics import SourceLocation, is_internal, location_from_traceback


class TargetError(Exception):
    """A target that cannot be loaded or built; ``location`` is the line of the user's code that
    raised (a ``SourceLocation``), when the failure happened there."""

    def __init__(self, message: str, location=None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


def split(target: str) -> tuple[str, str]:
    location, sep, name = target.rpartition(":")
    if not sep or not location or not name:
        raise TargetError(f"target {target!r} must look like path/to/file.py:NAME or package.module:NAME")
    return location, name


def is_path(location: str) -> bool:
    return location.endswith(".py") or os.sep in location or "/" in location


def resolve(location: str, root: Optional[str]) -> str:
    """A file location relative to ``root`` (the folder of the pyproject.toml that names it)."""
    return os.path.join(root, location) if root and is_path(location) and not os.path.isabs(location) else location


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.abspath(paths[k]) + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)


def user_location(exc: BaseException):
    """Where the user's code raised ``exc``: the innermost frame outside torch, lazyfx, the
    standard library, installed packages and the import machinery (the file and line of a
    SyntaxError)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return SourceLocation(exc.filename, exc.lineno)
    libraries = _library_dirs()
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if name.startswith("<") or is_internal(name) or os.path.abspath(name).startswith(libraries):
            continue
        found = SourceLocation(name, frame.lineno or 0, frame.name, frame.line)
    return found or location_from_traceback(exc)


def load_module(location: str, root: Optional[str] = None):
    """Import the target's module (a file path or a dotted name); file paths and imports are
    relative to ``root`` (default: the working directory)."""
    project = os.path.abspath(root) if root else os.getcwd()
    try:
        if is_path(location):
            path = resolve(location, root)
            if not os.path.isfile(path):
                raise TargetError(f"no such file: {location}" + (f" (in {project})" if root else ""))
            name = "_lazyfx_target_" + os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            # the file's own folder and the project root, as `python file.py` and `python -m`
            # would see them, so that the model's own imports resolve
            folders = [os.path.dirname(os.path.abspath(path)), project]
            sys.path[:0] = folders
            try:
                spec.loader.exec_module(module)
            finally:
                for folder in folders:
                    sys.path.remove(folder)
            return module
        if project not in sys.path:
            sys.path.insert(0, project)
        return importlib.import_module(location)
    except (TargetError, KeyboardInterrupt):  # Ctrl-C is the caller's to handle
        raise
    except BaseException as exc:  # user code may raise anything while importing, even SystemExit
        raise TargetError(f"cannot import {location}: {_describe(exc)}", user_location(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def load(target: str, root: Optional[str] = None) -> Any:
    """Import ``target`` and build the model it names (file paths relative to ``root``)."""
    import torch.nn as nn

    location, name = split(target)
    module = load_module(location, root)
    if not hasattr(module, name):
        raise TargetError(f"{location} has no attribute {name!r}")
    obj = getattr(module, name)
    if isinstance(obj, nn.Module):
        return obj
    if callable(obj):
        try:
            model = obj()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            raise TargetError(f"calling {name}() to build the model failed: {_describe(exc)}",
                              user_location(exc)) from None
        if isinstance(model, nn.Module):
            return model
        raise TargetError(f"{name}() returned {type(model).__name__}, not an nn.Module")
    raise TargetError(f"{name} is a {type(obj).__name__}, not an nn.Module, a module class or a factory")


def source_files(target: str, root: str) -> set[str]:
    """The target's own file and the project files it imports (transitively), found by
    reading imports (nothing is executed): the files whose change can change the model."""
    location, _ = split(target)
    start = os.path.abspath(resolve(location, root)) if is_path(location) else _module_file(location, root)
    found: set[str] = set()
    pending = [start] if start else []
    while pending:
        path = pending.pop()
        if path in found or not path.startswith(os.path.abspath(root)):
            continue
        found.add(path)
        pending += _imported_files(path, root)
    return found


def _module_file(dotted: str, root: str) -> Optional[str]:
    folder = os.path.abspath(root)
    sys.path.insert(0, folder)  # the project's own packages, as load() sees them
    try:
        spec = importlib.util.find_spec(dotted)
    except (ImportError, ValueError):
        return None
    finally:
        sys.path.remove(folder)
    return os.path.abspath(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imported_files(path: str, root: str) -> list[str]:
    try:
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
    except (OSError, SyntaxError, ValueError):
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's folder
                folder = os.path.dirname(path)
                for _ in range(node.level - 1):
                    folder = os.path.dirname(folder)
                candidate = os.path.join(folder, *base.split(".")) if base else folder
                names += [_relative(candidate, a.name) for a in node.names]
                continue
            names += [base] + [f"{base}.{a.name}" for a in node.names]
    files = []
    for name in names:
        if name is None:
            continue
        if os.path.isabs(name):
            files += [p for p in (name + ".py", os.path.join(name, "__init__.py")) if os.path.isfile(p)]
            continue
        for base in (root, os.path.dirname(path)):
            candidate = os.path.join(base, *name.split("."))
            files += [os.path.abspath(p) for p in (candidate + ".py", os.path.join(candidate, "__init__.py"))
                      if os.path.isfile(p)]
    return files


def _relative(folder: str, name: str) -> str:
    return os.path.join(folder, name)
