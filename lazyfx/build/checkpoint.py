"""Lazy models and checkpoints: resolve lazy shapes from a state_dict, or check them against it.

A checkpoint saved from the eager model (``torch.save(eager.state_dict())``,
loaded back with ``torch.load(..., weights_only=True)``) determines every
lazy parameter's shape without any input: ``LazyLinear`` reads
``in_features`` from ``weight.shape[1]``, convolutions ``in_channels`` from
the weight, norms ``num_features`` from their per-channel tensors. Given
inputs as well, the inferred shapes must match the checkpoint's (every
mismatch names the key, the shape the inputs imply and the shape found),
and where they are symbolic, :func:`fit` solves for the input sizes the
checkpoint fits.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import torch
import torch.nn as nn
from torch.nn.parameter import is_lazy

import lazyfx.rules.all  # noqa: F401  (registers every rule)
from lazyfx.analysis.resolve import LazyModuleRecord
from lazyfx.core import diagnostics
from lazyfx.core.checks import Condition
from lazyfx.core.diagnostics import Diagnostic
from lazyfx.core.symbolic import fmt, is_concrete
from lazyfx.domain.domain import Domain
from lazyfx.domain.solve import solve
from lazyfx.errors import ResolutionError, ShapeError, SpecError
from lazyfx.rules.lazy import LazyClass, Resolution, is_lazy_module, lazy_class


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def checked(state_dict: Any) -> Mapping[str, torch.Tensor]:
    """``state_dict`` if it is a mapping of string keys to tensors, else a SpecError naming the
    key (a path given instead of the loaded checkpoint says how to load it)."""
    if isinstance(state_dict, (str, bytes, os.PathLike)):
        raise SpecError(
            f"state_dict must be the loaded checkpoint, not the path {str(state_dict)!r}: load it with "
            f"torch.load({str(state_dict)!r}, weights_only=True) and pass the result"
        )
    if not isinstance(state_dict, Mapping):
        raise SpecError(f"state_dict must be a mapping of names to tensors (model.state_dict()), "
                        f"got {type(state_dict).__name__}")
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise SpecError(f"state_dict key {key!r} is not a string: a state_dict maps parameter names to tensors")
        if not isinstance(value, torch.Tensor):
            raise SpecError(f"state_dict entry '{key}' is a {type(value).__name__}, not a tensor")
    return state_dict


def _lazy_tensors(module: nn.Module) -> list[str]:
    return [n for n, t in list(module._parameters.items()) + list(module._buffers.items()) if t is not None and is_lazy(t)]


def _check_own_shapes(path: str, module: nn.Module, descriptor: Optional[LazyClass], arguments: dict,
                      shapes: dict) -> list[Diagnostic]:
    """The checkpoint's shapes must be those the module's own options imply (a LazyLinear(7)
    cannot take a weight with 10 rows)."""
    if descriptor is None or not arguments:
        return []
    expected = descriptor.parameter_shapes(module, arguments)
    return [
        Diagnostic(diagnostics.SHAPE_MISMATCH,
                   f"checkpoint key '{_key(path, name)}' has shape {fmt(shape)}, but {type(module).__name__} "
                   f"'{path}' with its options expects {fmt(expected[name])}", module_path=path)
        for name, shape in shapes.items() if name in expected and tuple(expected[name]) != shape
    ]


def from_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, LazyModuleRecord]:
    """Every lazy module of ``model`` resolved from a checkpoint (in registration order)."""
    state_dict = checked(state_dict)
    records: dict[str, LazyModuleRecord] = {}
    missing, problems = [], []
    for path, module in model.named_modules():
        if not is_lazy_module(module):
            continue
        descriptor = lazy_class(module)
        shapes = {}
        for name in _lazy_tensors(module):
            key = _key(path, name)
            if key not in state_dict:
                missing.append(key)
                continue
            shape = tuple(state_dict[key].shape)
            rank = descriptor.ranks.get(name) if descriptor else None
            if rank is not None and len(shape) != rank:
                problems.append(Diagnostic(
                    diagnostics.SHAPE_MISMATCH,
                    f"checkpoint key '{key}' has shape {fmt(shape)}, but {name} of {type(module).__name__} "
                    f"'{path}' has {rank} dim{'s' if rank != 1 else ''}", module_path=path))
                continue
            shapes[name] = shape
        if problems:
            continue
        resolution = Resolution(descriptor.arguments_from(module, shapes) if descriptor else {}, shapes)
        problems += _check_own_shapes(path, module, descriptor, resolution.arguments, shapes)
        eager = getattr(module, "cls_to_become", None) or type(module)
        records[path] = LazyModuleRecord(path, type(module).__name__, eager.__name__, resolution)
    if problems:
        raise ShapeError(diagnostics=problems)
    if missing:
        raise ResolutionError(
            f"the checkpoint has no entry for the lazy tensors {', '.join(missing)}, so their shapes are unknown",
            code=diagnostics.SYMBOLIC_PARAMETER,
        )
    return records


def prepare(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool,
            report=None) -> tuple[dict[str, LazyModuleRecord], "Loader"]:
    """What ``materialize(state_dict=...)`` builds from: every lazy module's record and the
    loader that puts the checkpoint's values in. Without ``report`` the shapes come from the
    checkpoint alone; with ``report`` (the analysis of the inputs) the checkpoint must fit it
    (:func:`fit`) and settles the sizes the inputs leave open."""
    if report is None:
        records = from_state_dict(model, state_dict)
    else:
        fit(report, state_dict)
        from_checkpoint = from_state_dict(model, state_dict)
        records = {path: record if record.materializable else from_checkpoint[path]
                   for path, record in report.lazy.items()}
    return records, Loader(state_dict, strict)


class Loader:
    """Loads a checkpoint into the materialized model (the rewrite's last step); ``keys`` are
    the names it brings values for."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor], strict: bool) -> None:
        self.state_dict, self.strict = state_dict, strict
        self.keys = frozenset(state_dict)

    def load(self, target: nn.Module) -> None:
        load(target, self.state_dict, self.strict)


def load(target: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool) -> None:
    """Load the checkpoint's values into the materialized model (device/dtype as the model's)."""
    result = target.load_state_dict(state_dict, strict=strict)
    if strict and (result.missing_keys or result.unexpected_keys):  # pragma: no cover - load_state_dict raises
        raise ShapeError(f"checkpoint mismatch: {result}")



def fit(report, state_dict: Mapping[str, torch.Tensor]):
    """The input sizes for which the lazy shapes equal the checkpoint's: the report's domain
    with each symbolic lazy size set equal to the size found in the checkpoint."""

    state_dict = checked(state_dict)
    extra = []
    mismatches = []
    keys = []  # (module path, key, found, expected, conditions) of the shapes with symbolic sizes
    for record in report.lazy.values():
        if record.resolution is None:
            continue
        for name, expected in record.resolution.parameter_shapes.items():
            key = _key(record.path, name)
            if key not in state_dict:
                continue
            found, expected = tuple(state_dict[key].shape), tuple(expected)
            conditions = _equalities(expected, found, report.domain.constraints)
            if conditions is None:
                mismatches.append(Diagnostic(
                    diagnostics.SHAPE_MISMATCH,
                    f"checkpoint key '{key}' has shape {fmt(found)}, but the inputs resolve it to {fmt(expected)}"
                    + _no_size_reaches(expected, found),
                    module_path=record.path,
                ))
                continue
            fitted = [Condition(c, f"checkpoint '{key}' has size {f} where the model has {fmt(d)}")
                      for c, d, f in conditions]
            extra += fitted
            if fitted:
                keys.append((record.path, key, found, expected, fitted))
    if mismatches:
        raise ShapeError(diagnostics=mismatches)
    base = report.domain.requirements + report.domain.assumptions
    domain = Domain(report.domain.constraints, base + extra)
    if domain.is_empty:
        alone = [entry for entry in keys if Domain(report.domain.constraints, base + entry[4]).is_empty]
        raise ShapeError(diagnostics=[
            Diagnostic(diagnostics.SHAPE_MISMATCH,
                       f"checkpoint key '{key}' has shape {fmt(found)}, but the inputs resolve it to {fmt(expected)}"
                       + (" (no input size gives " if alone else " (no input size gives it together with the other "
                          "keys: ") + ", ".join(f"{fmt(c.expr.lhs)} = {fmt(c.expr.rhs)}" for c in fitted) + ")",
                       module_path=path)
            for path, key, found, expected, fitted in (alone or keys)
        ])
    return domain


def _equalities(expected: tuple, found: tuple, constraints) -> Optional[list]:
    """``[(Eq(d, f), d, f)]`` for the symbolic dims, or None when the shapes cannot be equal at
    any input size: another rank, a concrete dim that differs, or a formula that never takes
    the checkpoint's size (``64*k**2`` is never 7; each is decided for one symbol exactly)."""
    import sympy

    if len(expected) != len(found):
        return None
    conditions = []
    for d, f in zip(expected, found):
        if is_concrete(d):
            if d != f:
                return None
            continue
        condition = sympy.Eq(d, f)
        if condition is sympy.false:
            return None
        if condition is sympy.true:
            continue
        symbols = list(condition.free_symbols)
        if len(symbols) == 1:
            sizes = solve(symbols[0], [condition], constraints.info(symbols[0].name))
            if sizes is not None and sizes.is_empty:
                return None
        conditions.append((condition, d, f))
    return conditions


def _no_size_reaches(expected: tuple, found: tuple) -> str:
    if len(expected) != len(found) or not all(d == f for d, f in zip(expected, found) if is_concrete(d)):
        return ""
    return " (no input size gives " + ", ".join(f"{fmt(d)} = {f}" for d, f in zip(expected, found)
                                                if not is_concrete(d)) + ")"
