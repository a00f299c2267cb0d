"""Exporters: hand a materialized model to an exporter, and verify what it wrote.

``lazyfx.export(model, *inputs, format=..., path=...)`` (:func:`lazyfx.api.export`) analyses
and materializes the model, and this module exports it (:func:`export_eager`). It supports

* ``"torchscript"`` (``torch.jit.script``) and ``"torchscript-trace"``
  (``torch.jit.trace`` on example inputs);
* ``"exported-program"`` (``torch.export.export``): each input symbol becomes a
  ``torch.export.Dim`` with the symbol's name and the range (and step, as a
  derived dim) that lazyfx's domain proves;
* ``"onnx"`` (``torch.onnx.export`` on top of ``torch.export``, else the
  TorchScript-based exporter): each input symbol becomes a dynamic axis named
  after it.

Example inputs are zero tensors at sizes inside the model's input domain.
Every artifact is verified before it is moved into place: it runs at the
example sizes and at a second valid input that moves every symbol, and its
outputs must have the eager model's shapes and values (onnxruntime runs an
ONNX file). A size an exporter baked in is LFX051, or with
``on_static="pin"`` a warning and an artifact that keeps it static. The
user's model is never modified (a materialized copy is exported), and a
failed export leaves no partial file at ``path``.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import sympy
import torch
import torch.nn as nn
import torch.utils._pytree as pytree

from lazyfx.core.diagnostics import EXPORT_STATIC_SIZE, PACKAGE_DIR, display_path, first_line
from lazyfx.errors import LazyFXError, MaterializeError, SpecError

if TYPE_CHECKING:
    from lazyfx.outputs.report import Report
from lazyfx.core.symbolic import free_symbols, substitute
from lazyfx.core.values import TensorMeta, map_values

FORMATS = ("torchscript", "torchscript-trace", "exported-program", "onnx")
ON_STATIC = ("error", "pin")


def format_name(format: object) -> str:
    """The export format ``format`` names: one of ``FORMATS``, written with hyphens or with
    underscores (``"exported_program"``, as a Python name would be).

    Raises:
        SpecError: A name that is no format; the message lists them.

    Examples:
        >>> from lazyfx.build.exporters import format_name
        >>> format_name("exported_program"), format_name("torchscript-trace")
        ('exported-program', 'torchscript-trace')
        >>> format_name("tflite")
        Traceback (most recent call last):
            ...
        lazyfx.errors.SpecError: LFX002 unknown export format 'tflite'; choose one of torchscript, torchscript-trace, exported-program, onnx
    """
    name = format.replace("_", "-") if isinstance(format, str) else format
    if name not in FORMATS:
        raise SpecError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    return name


class StaticAxisWarning(UserWarning):
    """``export(..., on_static="pin")`` wrote an artifact that keeps an input size static."""

_CANDIDATES = (8, 16, 32, 64, 128, 224, 256, 512, 3, 4, 5, 6, 7, 2)


def check_request(format: object, path: Union[str, os.PathLike, None], on_static: str) -> str:
    """The format of an export request :func:`export_eager` can carry out (:func:`format_name`),
    checked before the model is analysed: a known ``format`` and ``on_static``, a ``path`` for
    ONNX, and the ONNX packages installed."""
    format = format_name(format)
    if on_static not in ON_STATIC:
        raise SpecError(f"unknown on_static={on_static!r}; choose one of {', '.join(map(repr, ON_STATIC))}")
    if format == "onnx" and path is None:
        raise SpecError("ONNX export needs a path")
    if format == "onnx":
        _require_onnx_packages()
    return format


def export_eager(eager: nn.Module, report: Report, *, name: str, format: str,
                 path: Union[str, os.PathLike, None], device, dtype: Optional[torch.dtype], opset: Optional[int],
                 on_static: str) -> Any:
    """Hand ``eager``, the model materialized from ``report``, to the ``format``'s exporter in
    eval mode, with example inputs inside the report's domain, and verify the artifact before
    it is written (see ``lazyfx.export``, which checks the request with :func:`check_request`)."""
    eager.eval()
    job = _Job(name, format, eager, report, example_sizes(report), device, dtype, opset, path)
    try:
        return _EXPORTERS[format](job, on_static)
    except LazyFXError:
        raise
    except Exception as exc:
        raise MaterializeError(
            f"exporting {job.name} as {format} failed: {type(exc).__name__}: {first_line(exc)}",
            notes=_torch_explanation(exc) + [job.unchanged],
        ) from exc


# torch.onnx.export(dynamo=True) imports these lazily, deep inside the export, and verification
# runs the file in onnxruntime; checking first turns a ModuleNotFoundError after the analysis
# into an instruction before it.
_ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def _require_onnx_packages() -> None:
    missing = [name for name in _ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise MaterializeError(
            f"ONNX export needs the packages {', '.join(missing)}, which are not installed",
            notes=["install the extra: python3 -m pip install \"lazyfx[onnx]\" (onnx, onnxscript and onnxruntime)",
                   "the given model is unchanged; nothing was written to the path"],
        )


def example_sizes(report: Report) -> dict[sympy.Symbol, int]:
    """A size for every input symbol inside the model's domain (distinct where possible,
    so that exporters do not mistake two symbols for one)."""
    names = report.domain.symbols
    if not names:
        return {}
    solved = report.domain.solved()
    for base in _CANDIDATES:
        sizes = {}
        for i, name in enumerate(names):
            info = report.domain.constraints.info(name)
            value = max(base + i, info.min)
            value = -(-value // info.multiple_of) * info.multiple_of
            if info.max is not None and value > info.max:
                value = info.max - info.max % info.multiple_of
            if solved.get(name) is not None:  # the first valid size from there (H % 4 == 0: 9 -> 12)
                value = next((v for v in itertools.islice(solved[name].values(), 100_000) if v >= value), value)
            sizes[name] = value
        if report.domain.contains(**sizes):
            return {sympy.Symbol(n, integer=True, positive=True): v for n, v in sizes.items()}
    raise SpecError(f"no example sizes found inside the model's input domain ({report.domain}); pin the sizes")


def _examples(report: Report, sizes: dict, device, dtype, random: bool = False) -> tuple[tuple, dict]:
    """Inputs at ``sizes``: zeros, or (``random``, for verification) seeded normal floats; tensors
    of other dtypes are zeros, a valid index into any embedding."""
    generator = torch.Generator().manual_seed(0)

    def tensor(value):
        if isinstance(value, TensorMeta):
            shape = tuple(int(substitute(d, sizes)) for d in value.shape)
            wanted = dtype if dtype is not None and value.dtype.is_floating_point else value.dtype
            if random and wanted.is_floating_point:
                return torch.randn(shape, generator=generator).to(device=device, dtype=wanted)
            return torch.zeros(shape, dtype=wanted, device=device)
        return value

    return tuple(map_values(tensor, v) for v in report.inputs.values()), {}


def _fixed(report: Report) -> set[str]:
    """The symbols with a single valid size: exported static, as the domain says they are."""
    fixed = set()
    solved = report.domain.solved()
    for name, info in report.domain.bounds().items():
        sizes = solved.get(name)
        if (info.max is not None and info.max <= info.min) or (
                sizes is not None and len(list(itertools.islice(sizes.values(), 2))) == 1):
            fixed.add(name)
    return fixed


def _dim_range(name: str, report: Report) -> tuple[int, Optional[int], int, int]:
    """What lazyfx's domain proves of a symbol, as torch.export can say it: ``(min, max, step,
    offset)``, the sizes ``min <= step*k + offset <= max``. ``min`` is at least 2 (torch.export
    specializes sizes 0 and 1), and so is ``k`` where ``step > 1``."""
    info = report.domain.bounds()[name]
    sizes = report.domain.solved().get(name)
    low, high, step, offset = info.min, info.max, info.multiple_of, 0
    if sizes is not None and not sizes.explicit and sizes.start is not None:
        low = max(low, sizes.smallest() or low)
        if sizes.stop is not None:
            high = sizes.stop if high is None else min(high, sizes.stop)
        if sizes.modulus > 1 and len(sizes.residues) == 1:
            step, offset = sizes.modulus, next(iter(sizes.residues))
    if step > 1:
        low = step * max(2, -(-(low - offset) // step)) + offset
    return max(2, low), high, step, offset


def _torch_dim(name: str, report: Report):
    """The torch.export Dim for a symbol, with the range and step lazyfx's domain proves: the
    tightest bounds, and ``H % 32 == 0`` (or ``== r``) as the derived dim ``32*H_k (+ r)``."""
    low, high, step, offset = _dim_range(name, report)
    if step == 1:
        return torch.export.Dim(name, min=low, **({"max": high} if high is not None else {}))
    root = torch.export.Dim(f"{name}_k", min=(low - offset) // step,
                            **({"max": (high - offset) // step} if high is not None else {}))
    return step * root + offset if offset else step * root


def _dims(value: TensorMeta, report: Report, static: set, shared: dict) -> Optional[dict]:
    axes = {}
    for axis, d in enumerate(value.shape):
        symbols = free_symbols(d)
        if len(symbols) == 1 and d == next(iter(symbols)):
            (sym,) = symbols
            if sym.name not in static:
                if sym.name not in shared:
                    shared[sym.name] = _torch_dim(sym.name, report)
                axes[axis] = shared[sym.name]
        elif symbols:
            raise SpecError(f"torch.export needs each dynamic dim to be a plain symbol, got the formula {d}")
    return axes or None


def _dynamic_shapes(report: Report, static: set = frozenset()) -> tuple:
    """torch.export's ``dynamic_shapes``: a Dim for each input symbol not in ``static`` (nor
    fixed by the domain), the same object wherever the symbol appears."""
    shared: dict[str, Any] = {}
    static = set(static) | _fixed(report)

    def spec(value):
        return _dims(value, report, static, shared) if isinstance(value, TensorMeta) else None

    return tuple(map_values(spec, v) for v in report.inputs.values())


def _onnx_axes(report: Report, static: set = frozenset()) -> tuple[list[str], dict]:
    names, axes = [], {}
    static = set(static) | _fixed(report)
    for name, value in report.inputs.items():
        if not isinstance(value, TensorMeta):
            continue
        names.append(name)
        dynamic = {axis: str(d) for axis, d in enumerate(value.shape)
                   if free_symbols(d) and not {s.name for s in free_symbols(d)} <= static}
        if dynamic:
            axes[name] = dynamic
    return names, axes


# protobuf caps a message at 2 GiB; bigger ONNX models keep their weights in NAME.data
ONNX_SINGLE_FILE_LIMIT = 1 << 30


def _needs_external_data(model: nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) >= ONNX_SINGLE_FILE_LIMIT


class _Staged:
    """A temporary folder beside ``path`` to write the artifact into under its final name: on
    ``commit`` what was written moves into place, the file itself last; otherwise it goes, so a
    failure leaves nothing behind, and files that refer to each other by name (an ONNX model
    and its external weights, ``NAME.data``) keep their names."""

    def __init__(self, path) -> None:
        self.path = None if path is None else os.path.abspath(os.fspath(path))
        self.folder = self.file = None

    def __enter__(self) -> "_Staged":
        if self.path is not None:
            folder, name = os.path.split(self.path)
            self.folder = tempfile.mkdtemp(dir=folder, prefix=".lazyfx-")
            self.file = os.path.join(self.folder, name)
        return self

    def commit(self) -> None:
        if self.path is None:
            return
        folder, name = os.path.split(self.path)
        for produced in sorted(os.listdir(self.folder), key=lambda n: n == name):
            os.replace(os.path.join(self.folder, produced), os.path.join(folder, produced))

    def __exit__(self, *exc) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


# -- the exporters: each writes, verifies, and only then commits ------------------------------


@dataclass
class _Job:
    name: str
    format: str
    eager: nn.Module
    report: Report
    example: dict  # sympy.Symbol -> int
    device: Any
    dtype: Optional[torch.dtype]
    opset: Optional[int]
    path: Any

    @property
    def sizes(self) -> dict[str, int]:
        return {s.name: v for s, v in self.example.items()}

    @property
    def unchanged(self) -> str:
        return "the given model is unchanged" + ("; nothing was written to the path" if self.path else "")

    def args(self, sizes: Optional[dict[str, int]] = None, random: bool = False) -> tuple:
        sizes = self.sizes if sizes is None else sizes
        return _examples(self.report, {sympy.Symbol(n, integer=True, positive=True): v for n, v in sizes.items()},
                         self.device, self.dtype, random=random)[0]


def _export_script(job: _Job, on_static: str) -> Any:
    scripted = torch.jit.script(job.eager)
    return _finish_torchscript(job, scripted, on_static, "torch.jit.script")


def _export_trace(job: _Job, on_static: str) -> Any:
    # check_trace re-runs the model and compares graphs, which fails for modules that pick
    # a fast path by grad mode (nn.MultiheadAttention in eval); verification compares outputs.
    traced = torch.jit.trace(job.eager, job.args(), check_trace=False)
    return _finish_torchscript(job, traced, on_static, "torch.jit.trace")


def _finish_torchscript(job: _Job, module, on_static: str, exporter: str) -> Any:
    with _Staged(job.path) as staged:
        if staged.file:
            module.save(staged.file)
            module = torch.jit.load(staged.file, map_location=job.device)
        baked = _verify(job, module, set())
        if baked is not None:
            # a TorchScript module has no axes to mark: pinned, it is valid at those sizes only
            pinned = _static_or_raise(job, [(exporter, baked)], on_static, pinned=baked.symbols)
            again = _verify(job, module, set(pinned))
            if again is not None:
                _static_or_raise(job, [(exporter, again)], "error", pinned=again.symbols)
        staged.commit()
    return module


def _export_program(job: _Job, on_static: str) -> Any:
    static: set[str] = set()
    for _ in range(len(job.sizes) + 1):  # each round pins more symbols, or raises
        try:
            program = _torch_export(job, static)
        except Exception as exc:
            violated = sorted(set(_violated_symbols(exc, job.sizes)) - static)
            if not violated:
                raise
            baked = _Baked(violated, None, f"torch.export cannot keep {', '.join(violated)} dynamic", None,
                           explanation=_torch_explanation(exc))
            static |= set(_static_or_raise(job, [("torch.export.export", baked)], on_static, pinned=violated))
            continue
        with _Staged(job.path) as staged:
            if staged.file:
                torch.export.save(program, staged.file)
                program = torch.export.load(staged.file)
            baked = _verify(job, program.module(), static, low=True)
            if baked is None:
                staged.commit()
                return program
        static |= set(_static_or_raise(job, [("torch.export.export", baked)], on_static, pinned=baked.symbols))
    raise MaterializeError(f"exporting {job.name} as exported-program: no Dims torch.export keeps",
                           code=EXPORT_STATIC_SIZE, notes=[job.unchanged])  # pragma: no cover - a bound


def _torch_export(job: _Job, static: set):
    """``torch.export.export`` with lazyfx's Dims. Where torch refuses a range the domain proves
    only because an intermediate size could be 1 (a kernel-5 conv over ``W >= 5``: torch guards
    ``W - 4 != 1``), export again reasoning size-obliviously; verification then runs the program
    at the smallest sizes too."""
    args, shapes = job.args(), _dynamic_shapes(job.report, static)
    try:
        return torch.export.export(job.eager, args, dynamic_shapes=shapes)
    except Exception as exc:
        if not _violated_symbols(exc, job.sizes) or _size_oblivious() is None:
            raise
        try:
            with _size_oblivious():
                return torch.export.export(job.eager, args, dynamic_shapes=shapes)
        except Exception:
            raise exc from None


def _size_oblivious():
    """torch's switch for size-oblivious guards (private: None where this torch has none)."""
    try:
        from torch.fx.experimental import _config
    except ImportError:  # pragma: no cover - another torch
        return None
    return _config.patch(backed_size_oblivious=True) if hasattr(_config, "backed_size_oblivious") else None


def _onnx_dynamo(job: _Job, file: str, static: set) -> None:
    names, _ = _onnx_axes(job.report, static)
    torch.onnx.export(job.eager, job.args(), file, input_names=names,
                      dynamic_shapes=_dynamic_shapes(job.report, static), opset_version=job.opset, dynamo=True,
                      verbose=False, external_data=_needs_external_data(job.eager))


def _onnx_torchscript(job: _Job, file: str, static: set) -> None:
    names, axes = _onnx_axes(job.report, static)
    # lazyfx chose this exporter (after the dynamo one baked a size in); its deprecation warning
    # says nothing the user can act on, and under `-W error` it would stop the export
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript-based ONNX")
        torch.onnx.export(job.eager, job.args(), file, input_names=names, dynamic_axes=axes,
                          opset_version=job.opset, dynamo=False, verbose=False)


_ONNX_EXPORTERS = (("torch.onnx.export(dynamo=True)", _onnx_dynamo),
                   ("the TorchScript-based torch.onnx.export(dynamo=False, dynamic_axes=...)", _onnx_torchscript))


def _export_onnx(job: _Job, on_static: str) -> str:
    """Each ONNX exporter in turn until one writes a model that runs, in onnxruntime, at every
    size it claims: torch.export's (dynamo) first, then the TorchScript-based one, which keeps
    recurrent layers (GRU, LSTM) dynamic where torch.export unrolls them."""
    failures = []
    for exporter, write in _ONNX_EXPORTERS:
        baked = _try_onnx(job, write, set(), exporter)
        if baked is None:
            return os.fspath(job.path)
        failures.append((exporter, baked))
    candidates = [b.symbols for _, b in failures if b.symbols]
    if not candidates:  # no exporter wrote a model at all
        raise MaterializeError(f"exporting {job.name} as onnx failed: no ONNX exporter wrote a model that runs "
                               f"as the model does",
                               notes=[f"{exporter}: {baked.text()}" for exporter, baked in failures]
                               + [n for _, baked in failures for n in baked.explanation] + [job.unchanged])
    pinned = _static_or_raise(job, failures, on_static, pinned=min(candidates, key=len))
    for exporter, write in _ONNX_EXPORTERS:
        if _try_onnx(job, write, set(pinned), exporter, quiet=True) is None:
            return os.fspath(job.path)
    _static_or_raise(job, failures, "error", pinned=pinned)


def _try_onnx(job: _Job, write, static: set, exporter: str, quiet: bool = False) -> Optional["_Baked"]:
    """Export with one exporter and verify; None when the model was verified and moved into place."""
    with _Staged(job.path) as staged:
        try:
            write(job, staged.file, static)
        except LazyFXError:
            raise
        except Exception as exc:
            return _Baked([], None, f"the export fails: {type(exc).__name__}: {first_line(exc)}", None,
                          explanation=_torch_explanation(exc))
        try:
            baked = _verify(job, _ort_runner(staged.file), static)
        except MaterializeError as exc:  # wrong at the example itself: the next exporter may do better
            return _Baked([], None, exc.message, None)
        if baked is None:
            staged.commit()
        return baked


_EXPORTERS = {"torchscript": _export_script, "torchscript-trace": _export_trace,
              "exported-program": _export_program, "onnx": _export_onnx}


def _ort_runner(file: str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # a failing node is reported in the exception, not on stderr
    session = onnxruntime.InferenceSession(file, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*args):
        tensors = [t for t in pytree.tree_leaves(args) if isinstance(t, torch.Tensor)]
        if len(tensors) != len(names):
            raise RuntimeError(f"the ONNX model takes {len(names)} inputs, the model {len(tensors)} tensors")
        return session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, tensors)})

    return run


# -- verification: run the artifact where the model is valid, compare with the model --------------


@dataclass
class _Baked:
    """A size the artifact fixed: the symbols whose moving breaks it, and how it broke."""

    symbols: list
    sizes: Optional[dict]
    reason: str
    where: Optional[str]
    explanation: list = field(default_factory=list)

    def text(self) -> str:
        at = "" if self.sizes is None else f"at {_fmt_sizes(self.sizes)} "
        return f"{at}{self.reason}" + (f" {self.where}" if self.where else "")


def _verify(job: _Job, run, static: set, low: bool = False) -> Optional[_Baked]:
    """Run the artifact at the example sizes and at a second point of the domain that moves every
    symbol not in ``static`` (and, with ``low``, at the smallest sizes its Dims admit); on a
    difference, find which symbols' moving breaks it."""
    example = job.sizes
    if low:
        smallest = _smallest_dims(job.report, example, static)
        problem = smallest and _compare_at(job, run, smallest)
        if problem:
            return _Baked([n for n in smallest if smallest[n] != example[n]], smallest, *problem)
    problem = _compare_at(job, run, example)
    if problem is not None:
        reason, where = problem
        raise MaterializeError(
            f"the {job.format} export of {job.name} differs from the model at the example sizes "
            f"({_fmt_sizes(example) or 'no symbols'}): {reason}" + (f" {where}" if where else ""),
            notes=[job.unchanged])
    movable = [n for n in example if n not in static and n not in _fixed(job.report)]
    if not movable:
        return None
    second = second_sizes(job.report, example, movable)
    if second is None:
        raise MaterializeError(
            f"cannot verify the {job.format} export of {job.name}: no size inside the domain moves "
            f"{', '.join(movable)} from the example ({_fmt_sizes(example)})",
            code=EXPORT_STATIC_SIZE, notes=[f"pin {', '.join(movable)} in the input spec", job.unchanged])
    problem = _compare_at(job, run, second)
    if problem is None:
        return None
    blamed = []
    for name in movable:  # which symbol, moved alone, breaks it
        alone = second_sizes(job.report, example, [name])
        if alone is not None and _compare_at(job, run, alone) is not None:
            blamed.append(name)
    return _Baked(blamed or movable, second, *problem)


def _compare_at(job: _Job, run, sizes: dict) -> Optional[tuple[str, Optional[str]]]:
    args = job.args(sizes, random=True)
    with torch.no_grad():
        expected = job.eager(*args)
        try:
            got = run(*args)
        except Exception as exc:
            return f"it fails: {_reason(exc)}", _where(exc)
    difference = _difference(got, expected, job.device)
    return None if difference is None else (difference, None)


def _difference(got, expected, device) -> Optional[str]:
    """How the artifact's outputs differ from the model's: count, exact shapes, values."""
    def tensors(value):
        return [torch.as_tensor(t) for t in pytree.tree_leaves(value) if isinstance(t, (torch.Tensor, np.ndarray))]

    got, expected = tensors(got), tensors(expected)
    if len(got) != len(expected):
        return f"it returns {len(got)} tensors where the model returns {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        if tuple(g.shape) != tuple(e.shape):
            return f"output {i} has shape {tuple(g.shape)} where the model's has {tuple(e.shape)}"
        if e.device.type == "meta" or g.device.type == "meta":
            continue  # shapes only: a meta model has no values
        g, e = g.detach().cpu(), e.detach().cpu()
        if e.is_floating_point() or e.is_complex():
            rtol, atol = _TOLERANCES.get(e.dtype, (1e-3, 1e-4))
            if not torch.allclose(g.to(e.dtype), e, rtol=rtol, atol=atol, equal_nan=True):
                worst = (g.to(e.dtype) - e).abs().max().item()
                return f"output {i} differs from the model's by up to {worst:.3g}"
        elif not torch.equal(g.to(e.dtype), e):
            return f"output {i} differs from the model's"
    return None


_TOLERANCES = {torch.float64: (1e-5, 1e-6), torch.float32: (1e-3, 1e-4),
               torch.float16: (2e-2, 2e-2), torch.bfloat16: (5e-2, 5e-2)}


def second_sizes(report: Report, example: dict[str, int], move: list[str]) -> Optional[dict[str, int]]:
    """A valid input that changes every symbol in ``move`` from its example size (and keeps the
    others), each to a size other than 1 and, where possible, other than every other symbol's:
    the second point an export is verified at."""
    domain = report.domain
    keep = max(2, int(4000 ** (1 / max(1, len(move)))))  # at most a few thousand combinations
    options = {name: _moves(report, name, example[name])[:keep] if name in move else [example[name]]
               for name in example}
    names = list(options)
    ranked = sorted(itertools.product(*(range(len(options[n])) for n in names)), key=lambda ix: (sum(ix), ix))
    fallback = None
    for index in ranked:
        point = {n: options[n][i] for n, i in zip(names, index)}
        if domain.contains(**point):
            if len(set(point.values())) == len(point) and not set(point.values()) & set(example.values()) - {
                    example[n] for n in names if n not in move}:
                return point
            fallback = fallback or point
    return fallback


def _moves(report: Report, name: str, value: int) -> list[int]:
    """Sizes to move a symbol to, best first: a few steps up (past the example's neighbours,
    so that floor divisions change too), then down to 2, then the neighbours."""
    sizes = report.domain.solved().get(name)
    info = report.domain.bounds()[name]

    def valid(v):
        return v >= 2 and info.admits(v) and (sizes is None or sizes.contains(v))

    up = [v for v in range(value + 3, value + 3 + 64 * max(1, info.multiple_of)) if valid(v)][:4]
    down = [v for v in range(value - 3, 1, -1) if valid(v)][:2]
    near = [v for v in (value + 1, value + 2, value - 1, value - 2) if valid(v)]
    return up + down + near


def _smallest_dims(report: Report, example: dict[str, int], static: set) -> Optional[dict[str, int]]:
    """Each dynamic symbol at the smallest size its torch.export Dim admits, when that is a valid
    input and not the example."""
    fixed = _fixed(report) | set(static)
    point = {}
    for name, value in example.items():
        point[name] = value if name in fixed else _dim_range(name, report)[0]
    return point if point != example and report.domain.contains(**point) else None


def _fmt_sizes(sizes: dict) -> str:
    return ", ".join(f"{n}={v}" for n, v in sizes.items())


def _static_or_raise(job: _Job, failures: list, on_static: str, pinned: list) -> list:
    """Raise the baked-size error (LFX051), or with ``on_static="pin"`` warn that ``pinned`` stay
    static at their example sizes and return them."""
    pinned = sorted(pinned)
    at = _fmt_sizes({n: job.sizes[n] for n in pinned})
    notes = []
    for exporter, baked in failures:
        keeps = f"keeps {', '.join(baked.symbols)} static: " if baked.symbols else ""
        notes.append(f"{exporter} {keeps}{baked.text()}")
        notes += baked.explanation
    if on_static == "pin" and pinned:
        warnings.warn(f"the {job.format} export of {job.name} has {at} static (the example size"
                      f"{'s' if len(pinned) > 1 else ''}): it is valid only there. " + "; ".join(notes),
                      StaticAxisWarning, stacklevel=_callers_level())
        return pinned
    what = ", ".join(pinned) or "a size"
    fix = [f'pass on_static="pin" (lazyfx export --allow-static) to write it with {at} static'] if pinned else []
    recurrent = sorted({type(m).__name__ for m in job.eager.modules() if isinstance(m, nn.RNNBase)})
    if recurrent and job.format == "exported-program":
        fix.insert(0, f"torch.export unrolls {', '.join(recurrent)} over the sequence; format='onnx' (through the "
                      "TorchScript-based exporter) and format='torchscript' keep its length dynamic")
    if all(baked.sizes is None for _, baked in failures):  # torch refused before writing anything
        message = (f"torch.export cannot keep {what} dynamic for every size lazyfx's domain allows "
                   f"({job.report.domain}), exporting {job.name} as {job.format}")
    else:
        message = (f"the {job.format} export of {job.name} keeps {what} static ({at or 'at the example'}), "
                   f"where the input spec leaves {'them' if len(pinned) > 1 else 'it'} dynamic")
    raise MaterializeError(message, code=EXPORT_STATIC_SIZE, notes=notes + fix + [job.unchanged])


def _callers_level() -> int:
    """The ``stacklevel`` of the first frame outside lazyfx, for a warning raised below here."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level



# -- reading exceptions -----------------------------------------------------------------------


def _violated_symbols(exc: BaseException, symbols) -> list[str]:
    """The Dims torch.export refused to keep dynamic: ``Constraints violated (T)!``."""
    found = re.search(r"Constraints violated \(([^)]*)\)", str(exc))
    if not found:
        return []
    names = set()
    for dim in found.group(1).split(","):  # a Dim's name, or a derived one's, 32*H_k
        names |= {m.group(1) for m in re.finditer(r"([A-Za-z_]\w*?)(?:_k)?\b", dim)} & set(symbols)
    return sorted(names)


def _torch_explanation(exc: BaseException) -> list[str]:
    """torch.export's explanation of a refusal, one note per line: the guards it could not
    prove and its suggested fixes (its first line is the error's message)."""
    text = str(exc).strip()
    if "Constraints violated" not in text and "Suggested fixes" not in text:
        return []
    lines = [line.strip() for line in text.splitlines()[1:]]
    return ["torch.export: " + line for line in lines
            if line and not line.startswith("The error above occurred")]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if "Status Message:" in text:  # onnxruntime: node, then the kernel's message
        text = text.split("Status Message:", 1)[1].splitlines()[0]
        text = text.split(" was false. ", 1)[-1].strip()
    elif "Traceback of TorchScript" in text:  # the error itself is the last line
        text = [line for line in text.splitlines() if line.strip()][-1].strip()
    else:
        text = first_line(exc)
    return f"{type(exc).__name__}: {text[:300]}"


def _where(exc: BaseException) -> Optional[str]:
    """Where the artifact failed, when the runtime says: an ONNX node, or the line of the user's
    code a TorchScript operation came from."""
    text = str(exc)
    node = re.search(r"running (\w+) node\. Name:'([^']+)'", text)
    if node:
        return f"(ONNX {node.group(1)} node {node.group(2)!r})"
    frames = [m for m in re.finditer(r"^\s*(\S+\.py)\((\d+)\): (\w+)", text, re.M)
              if not m.group(1).startswith(os.path.dirname(torch.__file__))]
    if frames:
        return f"(at {display_path(frames[-1].group(1))}:{frames[-1].group(2)}, in {frames[-1].group(3)})"
    return None
