"""Abstract execution: the fallback for submodules torch.fx cannot trace.

When tracing a submodule fails (control flow on tensor values, Python that
proxies cannot follow), lazyfx keeps it as one opaque node and analyses it by
running its real ``forward`` on a copy whose tensors all live on the meta
device, with meta inputs of the inferred shapes: nothing is allocated and
nothing runs on data. Forward runs as a dry run on the target device would
(cpu unless :func:`target_device` says otherwise): ``x.device`` answers that
device, and a tensor forward creates (``torch.zeros(x.size(0), 16)``,
``device=x.device``, ``.to(x.device)``) lands on meta beside the inputs; one
made from Python data (``torch.tensor(x.shape[-1])``) keeps its values on cpu. The lazy modules inside initialize themselves as in a
dry run (on meta); their parameter shapes, and the inputs they first saw,
are recorded so that materialization can replay their own initialization.

* A branch on tensor values (``if (x > 0).any():``) has no answer without
  data, so every combination of such branches is executed (up to
  ``MAX_RUNS``): the resolution stands only if all agree.
* Symbolic sizes run at representative values, and again per symbol with
  that value changed (a step, doubled, halved: a floor division hides a
  change of one): a parameter size that moves with a symbol is reported as
  depending on it; the output's sizes come from the meta-kernel fallback
  with symbolic sizes, or are marked unknown where they move.
"""

from __future__ import annotations

import contextlib
import contextvars
import operator
import re
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Optional

import torch
import torch.nn as nn
from torch.nn.parameter import is_lazy

from lazyfx.analysis.counts import POLICIES, Counts
from lazyfx.analysis.device import on_meta_as_target
from lazyfx.analysis.fallback.generic import (
    fitted_formula,
    meta_copy,
    meta_inputs,
    own_tensors,
    sampled_resolution,
    size_attributes,
    unknown_size,
)
from lazyfx.analysis.fallback.meta import HINT_SCALES
from lazyfx.analysis.randomness import Draw, DrawWatcher, at_representative_sizes
from lazyfx.analysis.valueflow import ReadsInputValues, follow_input_values, reads_values_error
from lazyfx.core import diagnostics
from lazyfx.core.diagnostics import (
    SourceLocation,
    caller_location,
    first_line,
    is_internal,
    location_from_traceback,
)
from lazyfx.core.symbolic import free_symbols
from lazyfx.core.values import RecordValue, TensorMeta, map_values, tensors_in
from lazyfx.errors import DataDependentError, LazyFXError, ShapeError, UnsupportedOpError
from lazyfx.rules.lazy import Resolution, is_lazy_module

MAX_RUNS = 32  # combinations of value-dependent branches explored per opaque module

@dataclass
class Run:
    """One execution of the module's forward on meta tensors."""

    resolutions: dict[str, Optional[tuple]]  # lazy submodule path -> (arguments, shapes, inputs) or None
    output: Any  # concrete values
    branches: list[tuple[bool, Optional[SourceLocation]]]  # value-dependent decisions, in order
    clone: nn.Module
    sizes: dict = field(default_factory=dict)  # symbol -> the size it ran at
    draws: list[Draw] = field(default_factory=list)  # random draws outside lazy modules, in order


@dataclass
class OpaqueResult:
    output: Any
    lazy: list[tuple[str, nn.Module, Resolution]] = field(default_factory=list)
    branches: int = 0
    rejected: dict = field(default_factory=dict)  # symbol -> Rejection: where the module stops running
    draws: list[Draw] = field(default_factory=list)  # random draws in forward (a dry run's order)


@dataclass(frozen=True)
class Rejection:
    """A module run that fails from ``size`` of a symbol on (the others at ``others``).
    ``by_pytorch``: the model's own code raised at those concrete sizes (PyTorch rejects
    them), rather than lazyfx failing to follow a use of tensor values."""

    size: int
    error: LazyFXError
    others: dict

    @property
    def by_pytorch(self) -> bool:
        return not isinstance(self.error, DataDependentError)


class _Oracle:
    """Answers ``bool(tensor)`` from a prescribed list of decisions (then True), recording them."""

    def __init__(self, prescribed: list[bool]) -> None:
        self.prescribed = prescribed
        self.taken: list[tuple[bool, Optional[SourceLocation]]] = []

    def __call__(self, tensor) -> bool:
        answer = self.prescribed[len(self.taken)] if len(self.taken) < len(self.prescribed) else True
        self.taken.append((answer, caller_location()))
        return answer

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = torch.Tensor.__bool__
        oracle = self
        torch.Tensor.__bool__ = lambda tensor: oracle(tensor)  # type: ignore[method-assign]
        try:
            yield
        finally:
            torch.Tensor.__bool__ = original  # type: ignore[method-assign]


def execute(module: nn.Module, path: str, args: tuple, kwargs: dict, fallback) -> OpaqueResult:
    """Resolve the lazy modules inside ``module`` and its output, without tracing it. Where
    forward needs a count that depends on tensor values (how many elements a mask selects),
    every mask selects all of its elements; runs with fewer selected must then find the same
    lazy sizes and output (:mod:`lazyfx.analysis.counts`)."""
    counts = Counts(POLICIES[0])
    token = _COUNTS.set(counts)
    try:
        symbols = sorted({s for t in tensors_in((args, kwargs)) for d in t.shape for s in free_symbols(d)}, key=str)
        hints, runs, smaller = _explore_at_some_scale(module, path, args, kwargs, fallback, symbols)
        base = runs[0]
        moved: dict[str, list[Run]] = {
            s.name: [run for value in fallback.perturbations(s, hints[s])
                     if (run := _run_or_none(module, path, args, kwargs, {**hints, s: value}, _answers(base)))]
            for s in symbols
        }
    finally:
        _COUNTS.reset(token)
    if counts.asked:
        _check_counts(module, path, args, kwargs, hints, base, counts)
    lazy = [(sub, module.get_submodule(sub), _resolution(path, sub, base, moved))
            for sub, found in base.resolutions.items() if found is not None]
    output = _output(module, path, args, kwargs, fallback, base, moved)
    draws = at_representative_sizes(base.draws, [s.name for s in symbols])
    return OpaqueResult(output, lazy, len(base.branches), smaller, draws)


# The counting policy of the abstract execution in progress (None: counts are not answered).
_COUNTS: contextvars.ContextVar[Optional[Counts]] = contextvars.ContextVar("lazyfx_counts", default=None)


def _check_counts(module: nn.Module, path: str, args, kwargs, hints: dict, base: Run, counts: Counts) -> None:
    """The base run again with masks selecting fewer elements (the other policies): its lazy
    sizes and output must be the base run's, else they depend on the counts (DataDependentError).
    A run that fails is the model's own failure on such data (an empty selection reduced); at
    least one must succeed."""
    where = f"'{path}' ({type(module).__name__})" if path else f"{type(module).__name__}.forward"
    verb = "selects" if len(counts.sites()) == 1 else "select"
    sizes = lambda run: {sub: found[:2] for sub, found in run.resolutions.items() if found}  # noqa: E731
    agreed = 0
    for policy in POLICIES[1:]:
        token = _COUNTS.set(Counts(policy))
        try:
            run = _run(module, path, args, kwargs, hints, _answers(base))
        except (_PathFailed, LazyFXError):
            continue
        finally:
            _COUNTS.reset(token)
        moved = [f"{path}.{sub}" if path else sub for sub, found in sizes(base).items() if sizes(run).get(sub) != found]
        if moved:
            raise DataDependentError(
                f"{where}: the sizes of the lazy module{'s' if len(moved) > 1 else ''} {', '.join(moved)} depend on "
                f"how many elements {counts.where()} {verb}, which only the data decides", final=True)
        if run.output != base.output:
            raise DataDependentError(
                f"{where}: its output shape depends on how many elements {counts.where()} {verb}, which only the "
                f"data decides", final=True)
        agreed += 1
    if not agreed:
        raise DataDependentError(
            f"{where} fails unless masks select all of their elements ({counts.where()}): its shapes cannot be "
            f"established without data", final=True)


def _explore_at_some_scale(module, path, args, kwargs, fallback, symbols) -> tuple[dict, list[Run], dict]:
    """Every value-branch combination at representative sizes; at smaller ones when the model
    rejects the larger (more positions than its position embedding has, say). Returns the
    hints, the runs, and the sizes the model was found to reject (to be assumed away)."""
    rejected: dict = {}
    for scale in HINT_SCALES:
        hints = {s: fallback.hint(s, scale) for s in symbols}
        try:
            runs = _explore(module, path, args, kwargs, hints)
        except UnsupportedOpError:
            if scale == HINT_SCALES[-1]:
                raise
            rejected = dict(hints)
            continue
        except ShapeError as exc:
            if exc.code != diagnostics.FORWARD_RAISES.code or not symbols:
                raise
            raise _with_divisibility_hint(exc, module, path, args, kwargs, fallback, hints) from exc.__cause__
        limits = {s: _first_rejected(module, path, args, kwargs, fallback, hints, s, rejected[s], _answers(runs[0]))
                  for s in rejected}
        return hints, runs, {s: limit for s, limit in limits.items() if limit is not None}
    raise AssertionError("unreachable")  # pragma: no cover


def _with_divisibility_hint(error: ShapeError, module, path, args, kwargs, fallback, hints) -> ShapeError:
    """``error`` (forward raises at every size tried), with a note where one symbol moved to a
    multiple of 2, 3 or 4 makes forward run (an einops pattern that splits ``H`` in two): the
    sizes tried were not multiples of it, so the model may need ``Dim(..., multiple_of=k)``."""
    for symbol, hint in hints.items():
        step = fallback.constraints.info(symbol.name).multiple_of
        for k in (2, 3, 4):
            value = -(-hint // (k * step)) * k * step
            if value == hint:
                continue
            try:
                _explore(module, path, args, kwargs, {**hints, symbol: value})
            except (LazyFXError, _PathFailed):
                continue
            note = (f"forward runs with {symbol} = {value} (the other sizes as tried): if {symbol} must be a multiple "
                    f"of {k * step}, declare it: lazyfx.Dim(\"{symbol}\", multiple_of={k * step})")
            first, *rest = error.diagnostics
            hinted = ShapeError(diagnostics=[replace(first, notes=(*first.notes, note)), *rest])
            hinted.__dict__.update({k_: v for k_, v in error.__dict__.items() if k_ != "diagnostics"})
            return hinted
    return error


def _first_rejected(module, path, args, kwargs, fallback, hints, symbol, rejected, answers) -> Optional[Rejection]:
    """The smallest size of ``symbol`` the model rejects, the others held at ``hints`` (where it
    runs), found by bisection between the size that runs and the one that failed (more
    positions than a position embedding has: ``T`` fails from 33 on). None when the larger
    size was not this symbol's fault (``B``)."""
    def failure_at(value: int) -> Optional[LazyFXError]:
        try:
            _run(module, path, args, kwargs, {**hints, symbol: value}, answers)
            return None
        except _PathFailed as failed:
            return failed.error
        except LazyFXError as exc:
            return exc

    error = failure_at(rejected)
    if error is None:
        return None
    step = fallback.constraints.info(symbol.name).multiple_of
    low, high = hints[symbol], rejected  # runs at low, fails at high
    while high - low > step:
        middle = low + (high - low) // (2 * step) * step
        failed = failure_at(middle)
        low, high, error = (middle, high, error) if failed is None else (low, middle, failed)
    return Rejection(high, error, {s: v for s, v in hints.items() if s != symbol})


class _PathFailed(Exception):
    def __init__(self, error: LazyFXError, answers: list[bool]) -> None:
        super().__init__(str(error))
        self.error, self.answers = error, answers


def _explore(module, path, args, kwargs, hints) -> list[Run]:
    """Run every combination of value-dependent branches (up to ``MAX_RUNS``). Paths on which
    forward raises are the model's own checks on values (``if not torch.isfinite(x).all():
    raise``): they do not count; the others must all resolve alike."""
    pending: list[list[bool]] = [[]]
    runs: list[Run] = []
    failures: list[_PathFailed] = []
    while pending:
        if len(runs) + len(failures) >= MAX_RUNS:
            raise DataDependentError(
                f"'{path}' ({type(module).__name__}) branches on tensor values more often than lazyfx explores "
                f"({MAX_RUNS} combinations); its shapes cannot be established without data"
            )
        prescribed = pending.pop()
        try:
            run = _run(module, path, args, kwargs, hints, prescribed)
            answers = _answers(run)
            runs.append(run)
        except _PathFailed as failed:
            if not failed.answers:  # no value branch involved: a real failure
                raise failed.error from failed.error.__cause__
            answers = failed.answers
            failures.append(failed)
        pending += [answers[:i] + [not answers[i]] for i in range(len(prescribed), len(answers))]
    if not runs:
        raise failures[0].error
    for run in runs[1:]:
        where = ", ".join(str(loc) for _, loc in run.branches if loc) or "in forward"
        if run.resolutions != runs[0].resolutions or run.output != runs[0].output:
            raise DataDependentError(
                f"'{path}' ({type(module).__name__}): which branch a tensor's values select changes the shapes "
                f"({where})"
            )
        if list(run.resolutions) != list(runs[0].resolutions):  # the RNG is drawn in another order
            raise DataDependentError(
                f"'{path}' ({type(module).__name__}): which branch a tensor's values select changes the order in "
                f"which its lazy modules are first called ({where}), so a dry run's values depend on the data"
            )
    return runs


def _run_or_none(module, path, args, kwargs, hints, prescribed) -> Optional[Run]:
    """A run at perturbed sizes; None where the model rejects them (they tell nothing then)."""
    try:
        return _run(module, path, args, kwargs, hints, prescribed)
    except (_PathFailed, LazyFXError):
        return None


def _answers_of(oracle: "_Oracle") -> list[bool]:
    return [answer for answer, _ in oracle.taken]


def _answers(run: Run) -> list[bool]:
    return [answer for answer, _ in run.branches]


def _run(module: nn.Module, path: str, args, kwargs, hints: dict, prescribed: list[bool]) -> Run:
    clone = meta_copy(module)
    seen: dict[str, tuple] = {}
    originals = {name: sub for name, sub in module.named_modules() if is_lazy_module(sub)}
    watcher = DrawWatcher(lambda: len(seen))  # random draws between first calls move a dry run's values
    for name in originals:
        full_path = f"{path}.{name}" if path else name
        _record_initialization(clone.get_submodule(name), _recorder(name, seen), full_path, watcher)
    oracle = _Oracle(prescribed)
    before = {name: size_attributes(clone.get_submodule(name)) for name in originals}
    try:
        meta_args, meta_kwargs = meta_inputs(args, hints), meta_inputs(kwargs, hints)
        counts = _COUNTS.get()
        with torch.no_grad(), oracle.installed(), on_meta_as_target(), watcher, counts or contextlib.nullcontext():
            out = clone(*meta_args, **meta_kwargs)
    except LazyFXError:
        raise
    except Exception as exc:
        error = _failure(module, path, exc, bool(hints))
        error.__cause__ = exc
        raise _PathFailed(error, _answers_of(oracle)) from exc
    # First-call order (``seen`` fills as forward runs), as a dry run initializes them; then the
    # modules forward never reached, in registration order.
    resolutions: dict[str, Optional[tuple]] = {}
    for name in [*seen, *(n for n in originals if n not in seen)]:
        original, sub = originals[name], clone.get_submodule(name)
        if name not in seen:
            resolutions[name] = None
            continue
        arguments = {k: v for k, v in size_attributes(sub).items() if before[name].get(k) != v}
        shapes = {n: tuple(int(d) for d in t.shape) for n, t in own_tensors(sub) if is_lazy(getattr(original, n, None))}
        resolutions[name] = (arguments, shapes, seen[name])
    return Run(resolutions, _values(out), oracle.taken, clone, dict(hints), watcher.draws)


def _record_initialization(module: nn.Module, record, path: str, watcher: DrawWatcher) -> None:
    """``record(module, args, kwargs)`` with the inputs the lazy module's own initialization
    sees: right before its ``_infer_parameters`` pre-hook (after any user pre-hook prepended
    to it), or first of all for a lazy module without one. An initialization that reads those
    inputs' values is an error (LFX024): replaying it on shapes would not give its values.
    ``watcher`` leaves out the initialization's own draws: those of its ``_infer_parameters``
    pre-hook alone, so that a user pre-hook before or after it, and the module's forward, draw
    where a dry run draws; for a lazy module without one, of its whole call."""
    handle = getattr(module, "_initialize_hook", None)
    hooks = module._forward_pre_hooks
    if handle is None or handle.id not in hooks or handle.id not in module._forward_pre_hooks_with_kwargs:
        module.register_forward_pre_hook(record, prepend=True, with_kwargs=True)
        module.register_forward_pre_hook(watcher.enter_lazy, prepend=True)
        module.register_forward_hook(watcher.leave_lazy, always_call=True)
        return
    initialize = hooks[handle.id]

    def recording(mod, args, kwargs):
        record(mod, args, kwargs)
        watcher.enter_lazy()
        try:
            with follow_input_values(mod, (args, kwargs)):
                return initialize(mod, args, kwargs)
        except ReadsInputValues as reads:
            raise reads_values_error(path, mod, reads) from None
        finally:
            watcher.leave_lazy()

    hooks[handle.id] = recording


def _recorder(name: str, seen: dict):
    def record(module, args, kwargs):
        if name not in seen:
            as_meta = lambda v: TensorMeta(tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else v  # noqa: E731
            seen[name] = (map_values(as_meta, args), map_values(as_meta, kwargs))

    return record


def _values(out: Any) -> Any:
    return map_values(lambda v: TensorMeta(tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else v, out)


def _failure(module: nn.Module, path: str, exc: Exception, symbolic: bool) -> LazyFXError:
    text = first_line(exc) or type(exc).__name__
    where = f"'{path}' ({type(module).__name__})" if path else f"{type(module).__name__}.forward"
    location = location_from_traceback(exc)  # the line of the user's forward that failed
    if raised_by_user(exc):
        sizes = " at every size lazyfx tried" if symbolic else ""
        return ShapeError(f"{where} raises{sizes}: {type(exc).__name__}: {text}", location=location,
                          code=diagnostics.FORWARD_RAISES)
    if "meta tensors" in text or "item()" in text or "data-dependent" in text:
        return DataDependentError(f"{where} uses tensor values where a size or number is needed: {text}",
                                  location=location)
    if not symbolic or _signature_error(exc):
        return ShapeError(f"running {where} on shape-only inputs fails: {type(exc).__name__}: {text}",
                          location=location)
    return UnsupportedOpError(
        f"running {where} on shape-only inputs at representative sizes fails, so lazyfx cannot tell for which "
        f"sizes it is valid: {type(exc).__name__}: {text}", location=location,
    )


def raised_by_user(exc: BaseException) -> bool:
    """Whether the user's own code raised ``exc`` with a ``raise`` or an ``assert`` statement
    (its innermost frame is the user's, on a ``raise`` line or failing an assert), rather than
    PyTorch rejecting an operation."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    innermost = frames[-1]
    own = isinstance(exc, AssertionError) or (innermost.line or "").lstrip().startswith("raise")
    return not is_internal(innermost.filename) and own


# A call whose arguments do not fit the function's signature (PyTorch's argument parser or
# Python's own) fails whatever the sizes are.
_SIGNATURE_ERROR = re.compile(
    r"\(\):? (argument '\w+' \(position \d+\) must be|received an invalid combination of arguments|missing \d+ "
    r"required|got an unexpected keyword argument|takes (from )?\d+)"
)


def _signature_error(exc: Exception) -> bool:
    return isinstance(exc, TypeError) and _SIGNATURE_ERROR.search(str(exc)) is not None


def _resolution(path: str, sub: str, base: Run, moved: dict[str, list[Run]]) -> Resolution:
    arguments, shapes, (init_args, init_kwargs) = base.resolutions[sub]
    depends: dict[tuple, set[str]] = {}
    for symbol, run in ((symbol, run) for symbol, runs in moved.items() for run in runs):
        other = run.resolutions.get(sub)
        if other is None:
            continue
        for key, value in arguments.items():
            if other[0].get(key) != value:
                depends.setdefault(("arg", key), set()).add(symbol)
        for name, shape in shapes.items():
            for i, d in enumerate(shape):
                if other[1][name][i] != d:
                    depends.setdefault(("param", name, i), set()).add(symbol)
    return sampled_resolution(f"{path}.{sub}" if path else sub, arguments, shapes, depends, (init_args, init_kwargs))


def _output(module, path, args, kwargs, fallback, base: Run, moved: dict[str, list[Run]]) -> Any:
    """The output with symbolic sizes: the initialized copy's forward through the meta-kernel
    fallback; where that fails, the meta runs' sizes, unknown where they move with a symbol."""
    if moved:
        oracle = _Oracle(_answers(base))
        try:
            with oracle.installed():
                return fallback.run_module(base.clone, args, kwargs, type(module).__name__, own_hooks=True)
        except LazyFXError:
            pass
    samples = {symbol: [(base.sizes[symbol], base.output)] + [(run.sizes[symbol], run.output) for run in runs]
               for symbol, runs in ((s, moved[s.name]) for s in base.sizes)}
    return _merge(base.output, samples, path)


def _merge(value: Any, samples: dict, path: str) -> Any:
    """The output from runs at several sizes (``samples``: symbol -> [(its size, output)]):
    a size that stays put is kept, one that follows a single symbol along an affine formula
    fitting every run becomes that formula (the batch: ``B``), any other is unknown."""
    if isinstance(value, TensorMeta):
        dims = []
        for i, d in enumerate(value.shape):
            points = {symbol: [(size, o.shape[i] if isinstance(o, TensorMeta) and o.ndim == value.ndim else None)
                               for size, o in runs]
                      for symbol, runs in samples.items()}
            if all(dim == d for runs in points.values() for _, dim in runs):
                dims.append(d)
                continue
            comparable = all(dim is not None for runs in points.values() for _, dim in runs)
            formula = fitted_formula(points) if comparable else None
            unknown = formula is None
            dims.append(unknown_size(f"{path or 'output'} size {i}", {"input sizes"}) if unknown else formula)
        return TensorMeta(tuple(dims), value.dtype)
    if isinstance(value, (tuple, list)):
        merged = [_merge(v, _part(samples, i), path) for i, v in enumerate(value)]
        return tuple(merged) if isinstance(value, tuple) else merged
    if isinstance(value, RecordValue):  # a ModelOutput: its fields (None ones too) and keys
        fields = {k: _merge(v, _part(samples, k, RecordValue.field), path) for k, v in value.fields.items()}
        return RecordValue({k: fields[k] if k in fields else _merge(v, _part(samples, k), path)
                            for k, v in value.items()}, value.type_name, fields)
    if isinstance(value, dict):
        return {k: _merge(v, _part(samples, k), path) for k, v in value.items()}
    return value


def _part(samples: dict, key: Any, get=operator.getitem) -> dict:
    return {symbol: [(size, get(output, key)) for size, output in runs] for symbol, runs in samples.items()}

