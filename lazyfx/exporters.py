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

import importlib.util
import os
import shutil
import tempfile
from typing import Any, Optional, Union

import sympy
import torch
import torch.nn as nn

from lazyfx.diagnostics import first_line
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
    """Materialize a lazy model for the given inputs and export it in one call.

    The model is materialized as by [`materialize`][lazyfx.materialize] (a copy:
    ``model`` is never modified), put in eval mode, and handed to the exporter
    with example inputs: zero tensors at sizes inside the model's input domain.
    The input symbols become the exported program's dynamic dimensions, under
    their own names.

    Args:
        model: The lazy model.
        *inputs: Input specs, one per positional parameter of forward, in any
            form [`infer`][lazyfx.infer] takes. Symbols a lazy parameter depends
            on must be pinned; the others stay dynamic.
        format: ``"torchscript"`` (``torch.jit.script``),
            ``"torchscript-trace"`` (``torch.jit.trace`` on the example inputs),
            ``"exported-program"`` (``torch.export.export``: each input symbol
            becomes a ``torch.export.Dim`` with the symbol's name and its
            ``Dim(min=, max=)`` bounds, the minimum at least 2 as torch.export
            requires) or ``"onnx"`` (``torch.onnx.export`` on top of
            torch.export: each input symbol becomes a dynamic axis named after
            it; needs the ``onnx`` extra: ``pip install lazyfx[onnx]``).
        path (str | os.PathLike | None): Where to save the result (required
            for ONNX). The file is written through a temporary file in the
            same folder, so a failed export leaves no partial file at ``path``.
        device (str | torch.device | None): Where the parameters and example
            inputs are created, as in [`materialize`][lazyfx.materialize].
        dtype: Floating-point dtype for the parameters and the floating-point
            example inputs, as in [`materialize`][lazyfx.materialize].
        seed: RNG seed for the parameters' initialization.
        opset: The ONNX opset version (None: the exporter's default).
        **kw_inputs: Input specs by forward's parameter names.

    Returns:
        The ``torch.jit.ScriptModule`` (both TorchScript formats), the
            ``torch.export.ExportedProgram``, or, for ONNX, ``path``.

    Raises:
        SpecError: ``format`` is unknown, ONNX is asked for without a ``path``,
            a dynamic dim of an input is a formula rather than a plain symbol
            (torch.export), or no example sizes inside the input domain are
            found (LFX002).
        MaterializeError: The exporter failed (LFX050); the model is unchanged
            and nothing was written to ``path``.

    Any error [`materialize`][lazyfx.materialize] raises for the inputs is
    raised too, e.g. [`ResolutionError`][lazyfx.ResolutionError] (LFX040)
    when a lazy size depends on a symbol.

    Examples:
        >>> program = lazyfx.export(Net(), ("B", 3, 32, 32), format="exported-program")
        >>> program.module()(torch.zeros(5, 3, 32, 32)).shape
        torch.Size([5, 10])
        >>> scripted = lazyfx.export(Net(), ("B", 3, 32, 32), format="torchscript", seed=0)
        >>> scripted(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])

        ONNX, with ``B`` as a dynamic axis:

        >>> import os, tempfile
        >>> import onnx
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = lazyfx.export(Net(), ("B", 3, 32, 32), format="onnx",
        ...                          path=os.path.join(folder, "net.onnx"))
        ...     graph = onnx.load(path).graph
        >>> [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        ['B', 3, 32, 32]
    """
    from lazyfx.api import _analyze, materialize

    if format not in FORMATS:
        raise SpecError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "onnx" and path is None:
        raise SpecError("ONNX export needs a path")
    if format == "onnx":
        _require_onnx_packages()
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
                opset_version=opset, dynamo=True, verbose=False, external_data=_needs_external_data(eager),
            ))
            result = os.fspath(path)
    except LazyFXError:
        raise
    except Exception as exc:
        raise MaterializeError(
            f"exporting {type(model).__name__} as {format} failed: {type(exc).__name__}: "
            f"{first_line(exc)}",
            notes=["the given model is unchanged" + ("; nothing was written to the path" if path else "")],
        ) from exc
    return result


# torch.onnx.export(dynamo=True) imports these lazily, deep inside the export; checking first
# turns a ModuleNotFoundError after the analysis into an instruction before it.
_ONNX_PACKAGES = ("onnx", "onnxscript")


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


# protobuf caps a message at 2 GiB; bigger ONNX models keep their weights in NAME.data
ONNX_SINGLE_FILE_LIMIT = 1 << 30


def _needs_external_data(model: nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) >= ONNX_SINGLE_FILE_LIMIT


def _save(path, write) -> None:
    """Write into a temporary folder beside ``path`` under the final file name, then move what
    was written into place, the file itself last: a failure leaves nothing behind, and files
    that refer to each other by name (an ONNX model and its external weights, ``NAME.data``)
    keep their names."""
    if path is None:
        return
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    staging = tempfile.mkdtemp(dir=folder, prefix=".lazyfx-")
    try:
        write(os.path.join(staging, name))
        for produced in sorted(os.listdir(staging), key=lambda n: n == name):
            os.replace(os.path.join(staging, produced), os.path.join(folder, produced))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
