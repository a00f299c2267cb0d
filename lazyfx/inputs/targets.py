"""Targets: ``path/to/file.py:NAME`` or ``package.module:NAME`` -> an ``nn.Module``.

``NAME`` is an ``nn.Module`` subclass (constructed without arguments), a
factory function returning a module, or a module instance. Every failure
(a missing file or attribute, an import error or an exception inside the
user's code) is a :class:`TargetError` with a clear message, which says whether the
user's code raised.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import traceback
from typing import Any, Optional

from lazyfx.core.diagnostics import SourceLocation, is_internal, location_from_traceback


class TargetError(Exception):
    """A target that cannot be loaded or built; ``location`` is the line of the user's code that
    raised (a ``SourceLocation``), when the failure happened there. ``raised`` tells the two
    kinds apart: True when the user's code raised (importing the target's module, calling its
    factory), False when the target names nothing loadable (no such file, module or name)."""

    def __init__(self, message: str, location=None, raised: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.raised = raised

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
        raised = not _names_missing_module(exc, location)  # else no line of the user's code is at fault
        raise TargetError(f"cannot import {location}: {_describe(exc)}", user_location(exc) if raised else None,
                          raised=raised) from None


def _names_missing_module(exc: BaseException, location: str) -> bool:
    """Whether ``exc`` says the target's own module (or a package above it) does not exist, rather
    than that the code it runs raised (an import inside it included)."""
    if not isinstance(exc, ModuleNotFoundError) or is_path(location) or not exc.name:
        return False
    return location == exc.name or location.startswith(exc.name + ".")


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
                              user_location(exc), raised=True) from None
        if isinstance(model, nn.Module):
            return model
        raise TargetError(f"{name}() returned {type(model).__name__}, not an nn.Module")
    raise TargetError(f"{name} is a {type(obj).__name__}, not an nn.Module, a module class or a factory")


def inside(path: str, root: str) -> bool:
    """Whether ``path`` lies in the folder ``root`` (both absolute)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def dependencies(target: str, root: str) -> tuple[set[str], set[str]]:
    """What the target's module imports, found by reading imports (nothing is imported or
    executed): the project files, transitively (the target's own file among them), and the
    top-level names of the packages outside the project they import (the standard library left
    out; for a dotted target outside the project, its own package)."""
    root = os.path.abspath(root)
    location, _ = split(target)
    packages: set[str] = set()
    if is_path(location):
        start: Optional[str] = os.path.abspath(resolve(location, root))
    else:
        start = module_file(location, root)
        if start is None or not inside(start, root):
            packages.add(location.partition(".")[0])
    files: set[str] = set()
    pending = [start] if start else []
    while pending:
        path = pending.pop()
        if path in files or not inside(path, root):
            continue
        files.add(path)
        imported, external = _imports(path, root)
        pending += imported
        packages |= external
    return files, packages - set(sys.stdlib_module_names)


def source_files(target: str, root: str) -> set[str]:
    """The target's own file and the project files it imports (transitively), found by
    reading imports (nothing is executed): the files whose change can change the model."""
    return dependencies(target, root)[0]


def module_file(dotted: str, root: str) -> Optional[str]:
    """The file of a dotted module name as ``load`` would import it (the project's own packages
    first), found without importing anything: not even the packages above it."""
    folder = os.path.abspath(root)
    parts = dotted.split(".")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: nothing is imported
        for depth in range(2, len(parts) + 1):
            if spec is None or not spec.submodule_search_locations:
                return None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), list(spec.submodule_search_locations))
    except (ImportError, ValueError):
        return None
    finally:
        sys.path.remove(folder)
    return os.path.abspath(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _parse(path: str) -> Optional[ast.Module]:
    try:
        with open(path, encoding="utf-8") as f:
            return ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None


def _imported_names(tree: ast.Module, path: str) -> list[str]:
    """Each module an import statement names: dotted (``a.b``, each package above included) or,
    for a relative import, an absolute path without the extension."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                folder = os.path.dirname(path)
                for _ in range(node.level - 1):
                    folder = os.path.dirname(folder)
                candidate = os.path.join(folder, *base.split(".")) if base else folder
                names += [candidate] + [os.path.join(candidate, a.name) for a in node.names]
                continue
            names += [base] + [f"{base}.{a.name}" for a in node.names]
    dotted = [n for n in names if not os.path.isabs(n)]
    parents = [".".join(n.split(".")[:i]) for n in dotted for i in range(1, n.count(".") + 1)]
    return names + parents


def _module_files(base: str) -> list[str]:
    return [os.path.abspath(p) for p in (base + ".py", os.path.join(base, "__init__.py")) if os.path.isfile(p)]


def _imports(path: str, root: str) -> tuple[list[str], set[str]]:
    """The project files one file imports, and the top-level names of the other packages."""
    tree = _parse(path)
    if tree is None:
        return [], set()
    files: list[str] = []
    external: set[str] = set()
    for name in _imported_names(tree, path):
        if os.path.isabs(name):
            files += _module_files(name)
            continue
        top = name.partition(".")[0]
        local = False
        for base in (root, os.path.dirname(path)):
            files += _module_files(os.path.join(base, *name.split(".")))
            local = local or os.path.exists(os.path.join(base, top)) or os.path.isfile(os.path.join(base, top + ".py"))
        if not local and top:
            external.add(top)
    return files, external


def definition(target: str, root: str) -> Optional[tuple[str, int]]:
    """Where the target's ``NAME`` is defined: the file and line of its ``class``, ``def`` or
    assignment at the top level of its module, following a ``from ... import NAME`` into the
    project's files; None where the source does not say (nothing is imported)."""
    root = os.path.abspath(root)
    location, name = split(target)
    path = os.path.abspath(resolve(location, root)) if is_path(location) else module_file(location, root)
    for _ in range(16):  # a chain of re-exports, not a cycle
        tree = _parse(path) if path else None
        if tree is None:
            return None
        found: Optional[tuple[str, int]] = None
        follow: Optional[tuple[str, str]] = None
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                found, follow = (path, node.lineno), None
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and name in _assigned(node):
                found, follow = (path, node.lineno), None
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        found, follow = None, (_from_module(node, path), alias.name)
        if follow is None:
            return found
        module, name = follow
        candidates = _module_files(module) if os.path.isabs(module) else [
            p for base in (root, os.path.dirname(path)) for p in _module_files(os.path.join(base, *module.split(".")))]
        path = next((p for p in candidates if inside(p, root)), None)
    return None


def _assigned(node) -> set[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {t.id for t in targets if isinstance(t, ast.Name)}


def _from_module(node: ast.ImportFrom, path: str) -> str:
    if not node.level:
        return node.module or ""
    folder = os.path.dirname(path)
    for _ in range(node.level - 1):
        folder = os.path.dirname(folder)
    return os.path.join(folder, *(node.module or "").split(".")) if node.module else folder
