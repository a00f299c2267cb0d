"""Export in one call: materialize a lazy model and hand it to an exporter.

``lazyfx.export(model, *inputs, format=..., path=...)`` supports

* ``"torchscript"`` (``torch.jit.script``) and ``"torchscript-trace"``
  (``torch.jit.trace`` on example inputs);
* ``"exported-program"`` (``torch.export.export``): each input symbol becomes a
  ``torch.export.Dim`` with the symbol's name and its ``Dim(min=, max=)``;
* ``"onnx"`` (``torch.onnx.export`` on top of ``torch.export``): each input
  symbol becomes a dynamic axis named after it.

Example inputs are zero tensors at sizes inside the model's input domain.
The user's model is never modified (a materialized copy is exported), and a
failed export leaves no partial file at ``path``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Optional, Union

import sympy
import torch
import torch.nn as nn

from lazyfx.errors import LazyFXError, MaterializeError, SpecError
from lazyfx.report import Report
from lazyfx.symbolic import free_symbols, substitute
from lazyfx.values import TensorMeta, map_values

FORMATS = ("torchscript", "torchscript-trace", "exported-program", "onnx")

_CANDIDATES = (8, 16, 32, 64, 128, 224, 256, 512, 3, 4, 5, 6, 7, 2)


def export(
    model: nn.Module,
    *inputs: Any,
    format: str,
    path: Union[str, os.PathLike, None] = None,
    device=None,
    dtype: Optional[torch.dtype] = None,
    seed: Optional[int] = None,
    opset: Optional[int] = None,
    **kw_inputs: Any,
) -> Any:
    """Materialize ``model`` for ``inputs`` and export it; the input symbols become the
    exported program's dynamic dimensions.

    >>> lazyfx.export(model, ("B", 3, 224, 224), format="onnx", path="model.onnx")

    Returns the ``ScriptModule``, the ``ExportedProgram``, or (for ONNX) ``path``.
    """
    from lazyfx.api import _analyze, materialize

    if format not in FORMATS:
        raise SpecError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "onnx" and path is None:
        raise SpecError("ONNX export needs a path")
    report = _analyze(model, inputs, kw_inputs)
    eager = materialize(model, *inputs, device=device, dtype=dtype, seed=seed, **kw_inputs)
    eager.eval()
    sizes = example_sizes(report)
    args, kwargs = _examples(report, sizes, device, dtype)
    try:
        if format == "torchscript":
            result = torch.jit.script(eager)
            _save(path, lambda p: result.save(p))
        elif format == "torchscript-trace":
            # check_trace re-runs the model and compares graphs, which fails for modules that pick
            # a fast path by grad mode (nn.MultiheadAttention in eval); the tests compare outputs.
            result = torch.jit.trace(eager, args, example_kwarg_inputs=kwargs or None, check_trace=False)
            _save(path, lambda p: result.save(p))
        elif format == "exported-program":
            result = torch.export.export(eager, args, kwargs, dynamic_shapes=_dynamic_shapes(report))
            _save(path, lambda p: torch.export.save(result, p))
        else:
            names, _ = _onnx_axes(report)
            _save(path, lambda p: torch.onnx.export(
                eager, args, p, kwargs=kwargs or None, input_names=names, dynamic_shapes=_dynamic_shapes(report),
                opset_version=opset, dynamo=True, verbose=False,
            ))
            result = os.fspath(path)
    except LazyFXError:
        raise
    except Exception as exc:
        raise MaterializeError(
            f"exporting {type(model).__name__} as {format} failed: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
            notes=["the given model is unchanged" + ("; nothing was written to the path" if path else "")],
        ) from exc
    return result


def example_sizes(report: Report) -> dict[sympy.Symbol, int]:
    """A size for every input symbol inside the model's domain (distinct where possible,
    so that exporters do not mistake two symbols for one)."""
    names = report.domain.symbols
    if not names:
        return {}
    for base in _CANDIDATES:
        sizes = {}
        for i, name in enumerate(names):
            info = report.domain.constraints.info(name)
            value = max(base + i, info.min)
            value = -(-value // info.multiple_of) * info.multiple_of
            if info.max is not None and value > info.max:
                value = info.max - info.max % info.multiple_of
            sizes[name] = value
        if report.domain.contains(**sizes):
            return {sympy.Symbol(n, integer=True, positive=True): v for n, v in sizes.items()}
    raise SpecError(f"no example sizes found inside the model's input domain ({report.domain}); pin the sizes")


def _examples(report: Report, sizes: dict, device, dtype) -> tuple[tuple, dict]:
    def tensor(value):
        if isinstance(value, TensorMeta):
            shape = tuple(substitute(d, sizes) for d in value.shape)
            wanted = dtype if dtype is not None and value.dtype.is_floating_point else value.dtype
            return torch.zeros(shape, dtype=wanted, device=device)
        return value

    return tuple(map_values(tensor, v) for v in report.inputs.values()), {}


def _dims(value: TensorMeta, report: Report) -> Optional[dict]:
    axes = {}
    for axis, d in enumerate(value.shape):
        symbols = free_symbols(d)
        if len(symbols) == 1 and d == next(iter(symbols)):
            (sym,) = symbols
            info = report.domain.bounds()[sym.name]
            limits = {"min": max(2, info.min)} | ({"max": info.max} if info.max is not None else {})
            axes[axis] = torch.export.Dim(sym.name, **limits)
        elif symbols:
            raise SpecError(f"torch.export needs each dynamic dim to be a plain symbol, got the formula {d}")
    return axes or None


def _dynamic_shapes(report: Report) -> tuple:
    shared: dict[str, Any] = {}

    def spec(value):
        if not isinstance(value, TensorMeta):
            return None
        axes = _dims(value, report)
        if axes is None:
            return None
        return {axis: shared.setdefault(dim.__name__, dim) for axis, dim in axes.items()}

    return tuple(map_values(spec, v) for v in report.inputs.values())


def _onnx_axes(report: Report) -> tuple[list[str], dict]:
    names, axes = [], {}
    for name, value in report.inputs.items():
        if not isinstance(value, TensorMeta):
            continue
        names.append(name)
        dynamic = {axis: str(d) for axis, d in enumerate(value.shape) if free_symbols(d)}
        if dynamic:
            axes[name] = dynamic
    return names, axes


def _save(path, write) -> None:
    """Write through a temporary file in the same folder, so a failure leaves nothing behind."""
    if path is None:
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".lazyfx-", suffix=os.path.splitext(path)[1])
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
