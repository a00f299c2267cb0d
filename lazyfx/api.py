"""``lazyfx.infer`` and ``lazyfx.materialize``: the passes, run in order."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Union

import torch
import torch.nn as nn

from lazyfx import checkpoint, diagnostics
from lazyfx.diagnostics import Diagnostic
from lazyfx.domain import Domain
from lazyfx.errors import ResolutionError, ShapeError, SpecError
from lazyfx.passes.propagate import Propagator, propagate
from lazyfx.passes.resolve import LazyModuleRecord, resolve
from lazyfx.passes.rewrite import materialize_model
from lazyfx.passes.trace import bind_inputs, trace, with_defaults
from lazyfx.report import Report
from lazyfx.spec import SymbolTable, to_value
from lazyfx.symbolic import fmt


def infer(model: nn.Module, *inputs: Any, expect_output: Any = None, **kw_inputs: Any) -> Report:
    """Infer every shape in ``model`` for the given input specs, without running it.

    >>> report = lazyfx.infer(Net(), ("B", 3, 32, 32))
    >>> print(report)

    Inputs are shape tuples (``("B", 3, 224, 224)``), strings (``"B,T:int64"``),
    tensors (meta ones too), :class:`~lazyfx.TensorSpec`, or containers of them,
    positional or by forward's parameter names. ``model`` is never modified.
    Raises a :class:`~lazyfx.LazyFXError` subclass when the model cannot work
    for any input the specs allow. With ``expect_output`` (a spec such as
    ``"B,10"``), the output must have that shape for every input the spec
    allows, else :class:`~lazyfx.ShapeError` (LFX070).
    """
    report = _analyze(model, inputs, kw_inputs)
    if expect_output is not None:
        check_output(report, expect_output)
    return report


def check_output(report: Report, expected: Any) -> None:
    """The output must equal ``expected`` (a spec, symbols shared with the inputs') for every
    input the domain admits."""
    import sympy

    from lazyfx.values import TensorMeta

    want = to_value(expected, SymbolTable())
    got = report.output
    last = next((n for n in reversed(report.nodes) if n.op != "output"), None)
    context = dict(code=diagnostics.UNEXPECTED_OUTPUT, location=last.location if last else None)
    if not isinstance(want, TensorMeta):
        raise SpecError(f"expect_output must describe one tensor, got {expected!r}")
    if not isinstance(got, TensorMeta):
        raise ShapeError(f"the output is {type(got).__name__}, expected one tensor {fmt(want.shape)}", **context)
    decide = report.domain.constraints.decide
    if len(got.shape) != len(want.shape) or not all(decide(sympy.Eq(a, b)) is True for a, b in zip(got.shape, want.shape)):
        raise ShapeError(f"the output has shape {fmt(got.shape)}, expected {fmt(want.shape)} for every input the "
                         f"spec allows", **context)


def materialize(
    model: nn.Module,
    *inputs: Any,
    device: Union[str, torch.device, None] = None,
    dtype: Optional[torch.dtype] = None,
    seed: Optional[int] = None,
    inplace: bool = False,
    state_dict: Optional[Mapping[str, torch.Tensor]] = None,
    strict: bool = True,
    init_order: str = "dry-run",
    **kw_inputs: Any,
) -> nn.Module:
    """The eager equivalent of a lazy ``model``, with parameters created on ``device``.

    >>> eager = lazyfx.materialize(Net(), ("B", 3, 32, 32), device="cpu")

    Returns a module of the same class (a bare lazy module becomes its eager
    class) in which every lazy submodule is its eager class, built with the
    same options and the inferred arguments. Parameter values are bit-identical
    to a dry run in eval mode under the same RNG state, or under ``seed`` (the
    caller's RNG state is then left alone). ``dtype`` converts floating-point
    tensors as ``module.to(dtype)`` does. The given model is copied unless
    ``inplace=True``; on failure it is left exactly as it was.

    With ``state_dict`` (e.g. saved from the eager model and read back with
    ``torch.load(..., weights_only=True)``), the lazy shapes come from the
    checkpoint when no inputs are given; given inputs, the checkpoint must fit
    them (``report.fit``) and settles the sizes they leave symbolic. The values
    are the checkpoint's (``strict`` as ``load_state_dict``).

    ``init_order="registration"`` initializes every module (eager ones too) again from
    ``seed``, children before parents, in registration order: the values then equal those
    of a hand-written eager twin constructed after ``torch.manual_seed(seed)`` (as long as
    its modules initialize in ``reset_parameters``, not elsewhere in ``__init__``).
    """
    if init_order not in ("dry-run", "registration"):
        raise SpecError(f"init_order must be 'dry-run' or 'registration', got {init_order!r}")
    device = _device(device)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and (dtype.is_floating_point or dtype.is_complex)):
        raise SpecError(f"materialize(dtype=...) takes a floating point dtype, as module.to does; got {dtype!r}")
    if state_dict is not None and not inputs and not kw_inputs:
        records = checkpoint.from_state_dict(model, state_dict)
    else:
        report = _analyze(model, inputs, kw_inputs)
        if state_dict is None:
            _require_resolved(report)
            records = report.lazy
        else:  # the checkpoint must fit the inputs; it settles what they leave open
            report.fit(state_dict)
            from_checkpoint = checkpoint.from_state_dict(model, state_dict)
            records = {path: record if record.materializable else from_checkpoint[path]
                       for path, record in report.lazy.items()}
    finish = None if state_dict is None else (lambda target: checkpoint.load(target, state_dict, strict))
    return materialize_model(model, records, device=device, dtype=dtype, seed=seed, inplace=inplace,
                             initialize=state_dict is None, finish=finish, init_order=init_order)


def _device(device: Union[str, torch.device, None]) -> Optional[torch.device]:
    """The target device, checked before anything is analysed or copied."""
    if device is None:
        return None
    try:
        device = torch.device(device)
        torch.empty(0, device=device)  # an unavailable device fails here, not halfway through
    except (RuntimeError, TypeError, AssertionError) as exc:
        raise SpecError(f"invalid device {str(device)!r}: {str(exc).splitlines()[0]}") from None
    return device


def _analyze(model: nn.Module, inputs: tuple, kw_inputs: dict) -> Report:
    if not isinstance(model, nn.Module):
        raise SpecError(f"lazyfx needs an nn.Module, got {type(model).__name__}")
    table = SymbolTable()
    args = tuple(to_value(spec, table) for spec in inputs)
    kwargs = {name: to_value(spec, table) for name, spec in kw_inputs.items()}
    bound = bind_inputs(model, args, kwargs)
    constraints = table.constraints()
    propagator = Propagator(model, constraints)
    program = trace(model, bound, propagator)
    propagation = propagate(program, propagator)
    records = resolve(model, propagation, program.graph)
    domain = Domain(constraints, propagation.recorder.conditions)
    warnings = [d for r in records.values() if (d := _unresolved_diagnostic(r)) is not None]
    warnings += _specialization_diagnostics(propagation)
    return Report(
        model=type(model).__name__,
        inputs=with_defaults(bound),
        nodes=propagation.nodes,
        lazy=records,
        output=propagation.output,
        domain=domain,
        diagnostics=warnings,
        decisions=propagation.decisions,
        opaque=propagation.opaque,
    )


def _specialization_diagnostics(propagation) -> list[Diagnostic]:
    """Warnings for sizes PyTorch's meta kernels fixed to a representative value."""
    if propagation.fallback is None:
        return []
    by_name = {n.name: n for n in propagation.nodes}
    out = []
    for message, node_name in propagation.fallback.specialized:
        node = by_name.get(node_name)
        out.append(Diagnostic(
            diagnostics.META_SPECIALIZED,
            f"{message}; the shapes that depend on it hold only for that size",
            severity="warning",
            node=node_name,
            module_path=node.module_path if node else None,
            location=node.location if node else None,
            notes=("pin the symbol to a concrete size in the input spec, or add a shape rule for the operation",),
        ))
    return out


def _unresolved_diagnostic(record: LazyModuleRecord) -> Optional[Diagnostic]:
    if not record.called:
        return Diagnostic(
            diagnostics.LAZY_NOT_CALLED,
            f"lazy module '{record.path}' ({record.lazy_class}) is never called in forward, so nothing "
            f"determines its parameters",
            severity="warning",
            module_path=record.path,
            notes=("call it in forward, remove it, or replace it with its eager class",),
        )
    if record.is_concrete and record.specialized_by:
        return Diagnostic(
            diagnostics.META_SPECIALIZED,
            f"lazy module '{record.path}' ({record.lazy_class}) is resolved from shapes that hold for one input "
            f"size only: {'; '.join(record.specialized_by)}",
            severity="warning",
            module_path=record.path,
            location=record.call_sites[0] if record.call_sites else None,
            notes=("pin those symbols to concrete sizes in the input spec, or add a shape rule for the operation",),
        )
    if record.is_concrete:
        return None
    args = ", ".join(f"{k} = {fmt(v)}" for k, v in record.resolution.arguments.items())
    symbols = ", ".join(record.symbols())
    return Diagnostic(
        diagnostics.SYMBOLIC_PARAMETER,
        f"lazy module '{record.path}' ({record.lazy_class}) needs {args}, which depends on {symbols}",
        severity="warning",
        module_path=record.path,
        location=record.call_sites[0] if record.call_sites else None,
        notes=(
            f"pin {symbols} to concrete sizes in the input spec, or make the size independent of "
            f"{'it' if len(record.symbols()) == 1 else 'them'} (e.g. an adaptive pooling layer before a flatten)",
        ),
    )


def _require_resolved(report: Report) -> None:
    """Every lazy module must resolve to concrete parameters before anything is built, from
    shapes that hold for every input the spec allows (not for a specialized size)."""
    problems = [_unresolved_diagnostic(r) for r in report.lazy.values() if not r.materializable]
    if problems:
        raise ResolutionError(diagnostics=[dataclasses.replace(d, severity="error") for d in problems])
