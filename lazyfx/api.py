"""``lazyfx.infer``, ``lazyfx.materialize`` and ``lazyfx.export``: the stages, run in order."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import os
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import sympy
import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy

from lazyfx.analysis.propagate import Propagator, propagate
from lazyfx.analysis.randomness import draws_in_graph
from lazyfx.analysis.records import call_notes
from lazyfx.analysis.resolve import LazyModuleRecord, resolve
from lazyfx.analysis.trace import patches_restored, recursion_room, trace
from lazyfx.build import checkpoint, exporters
from lazyfx.build import agree
from lazyfx.build import shard as sharding
from lazyfx.build.rewrite import materialize_model
from lazyfx.core import diagnostics
from lazyfx.core.checks import Condition
from lazyfx.core.constraints import simplify_condition
from lazyfx.core.diagnostics import Diagnostic
from lazyfx.core.journal import Journal
from lazyfx.core.symbolic import fmt
from lazyfx.core.target import target_device
from lazyfx.core.values import TensorMeta, analysis_dtype
from lazyfx.domain.domain import Domain, declared_rejections
from lazyfx.errors import LazyFXError, ResolutionError, ShapeError, SpecError
from lazyfx.inputs.bind import bind_values, with_defaults
from lazyfx.inputs.spec import SymbolTable, calls_in, to_value
from lazyfx.outputs.report import Report
from lazyfx.rules.lazy import foreign_lazy_tensors


def infer(model: nn.Module, *inputs: Any, expect_output: Any = None, **kw_inputs: Any) -> Report:
    """Infer every shape in a model for the given input specs, without running it.

    lazyfx traces ``model.forward`` with torch.fx on symbolic inputs and works out
    every node's output shape as a formula in the input symbols, how each lazy
    module resolves (its constructor arguments and parameter shapes), and the
    input domain: the conditions on the symbols under which the model works. No
    tensor data is created.

    ``model`` is left exactly as it was, on success and on failure, whatever
    forward does to ``self`` while it is analysed (a counter, a buffer updated
    in place or reassigned, a cache grown, an attribute set to ``x.shape``, a
    submodule registered): every module's state (class, attributes,
    parameters, buffers and their values, submodules, hooks) is snapshotted
    before and restored after, rather than the model copied, which costs a
    copy of each module's dicts and of the buffers (about a millisecond for a
    ResNet-50, snapshot and restore together) and works for lazy modules
    ``copy.deepcopy`` rejects.
    What forward does outside the model (prints, files,
    ``torch.set_default_dtype``) is your code running, and happens. One
    analysis runs at a time in a process: calls from several threads take
    turns on a process-wide lock (torch.fx patches ``nn.Module`` globally while
    it traces), and every patch is undone whatever is raised, Ctrl-C included.

    A check that holds for some inputs only (a kernel must fit, two sizes must
    agree) becomes a condition in ``report.domain``; an error is raised only when
    the model cannot work for any input the specs allow.

    Args:
        model: The model to analyse: any ``nn.Module``, with lazy submodules or
            without; a bare lazy module (``nn.LazyLinear(10)``) works too.
        *inputs: One input spec per positional parameter of ``model.forward``.
            A spec is any of: a shape tuple (``("B", 3, 224, 224)``: ints are
            sizes; strings, ``sympy.Symbol``s and [`Dim`][lazyfx.Dim]s are
            symbols); a string shorthand (``"B,3,H,W"``, ``"B,T:int64"``,
            ``"(B,):bool"``); a ``torch.Tensor``, meta tensors included (only its
            shape and dtype are read); a [`TensorSpec`][lazyfx.TensorSpec]; a
            tuple, list or dict of specs, for forwards that take containers; or
            a constant (``None``, ``True``, ``0.5``), passed as it is. A symbol is
            a positive integer, and the same name in two specs is the same size.
            The dtype defaults to float32. Or one [`Call`][lazyfx.Call] holding
            them all.
        expect_output: A spec of the single tensor forward must return, such as
            ``"B,10"`` (its symbols are the inputs'). When given, the output must
            have this shape for every input the specs allow.
        **kw_inputs: Input specs by forward's parameter names. Parameters given
            neither way take their defaults, and forward follows the branch
            those defaults select (``mask=None`` takes ``if mask is None``).

    Returns:
        A report of every node's shapes, each lazy module's resolution, the
            input domain and the warnings.

    Raises:
        SpecError: A spec is malformed (LFX001) or unusable (LFX002): a bad dim,
            conflicting `Dim` constraints, a missing or unexpected input, or
            ``model`` is not an ``nn.Module``.
        TraceError: forward cannot be followed (LFX010): a Python operation on
            traced values fails whatever the sizes (``len()`` of a 0-d
            tensor), or the model nests modules deeper than the analysis's
            recursion limit. Other code torch.fx cannot trace is analysed by
            abstract execution.
        UndecidedConditionError: Python control flow in forward depends on a
            symbolic size the specs leave open (LFX011).
        UnsupportedOpError: An operation has no shape rule and PyTorch's meta
            kernel cannot evaluate it either (LFX020), or a rule cannot handle
            its arguments (LFX021).
        DataDependentError: An output size depends on tensor values (LFX022):
            ``nonzero``, boolean-mask indexing, ``.tolist()``.
        ShapeError: An operation rejects its input shapes for every input the
            specs allow, or an ``assert`` in forward fails (LFX030); or the output
            is not ``expect_output`` (LFX070).
        ResolutionError: A lazy module is called at two sites that resolve it
            differently (LFX041).

    Examples:
        >>> report = lazyfx.infer(Net(), ("B", 3, "H", "W"))
        >>> report.output
        TensorMeta(shape=(B, 10), dtype=torch.float32)
        >>> print(report.domain)
        H >= 9 and W >= 9
        >>> report.lazy["features.0"].resolution.arguments
        {'in_channels': 3}

        Specs by parameter name, and a forward's default arguments:

        >>> class Masked(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.proj = nn.LazyLinear(8)
        ...
        ...     def forward(self, tokens, mask=None):
        ...         x = self.proj(tokens)
        ...         return x if mask is None else x * mask
        >>> lazyfx.infer(Masked(), "B,T,16").inputs
        {'tokens': TensorMeta(shape=(B, T, 16), dtype=torch.float32), 'mask': None}
        >>> print(lazyfx.infer(Masked(), tokens="B,T,16", mask="B,T,1").output)
        (B, T, 8)

        Requiring an output shape:

        >>> lazyfx.infer(Net(), ("B", 3, 32, 32), expect_output="B,5")
        Traceback (most recent call last):
            ...
        lazyfx.errors.ShapeError: ...LFX070 the output has shape (B, 10), expected (B, 5) for every input the spec allows
    """
    calls = calls_in(inputs, kw_inputs)
    if calls is not None:
        if len(calls) != 1:
            raise SpecError(f"infer analyses one call of forward, got {len(calls)} lazyfx.Call(...)s: call infer once "
                            f"per Call (each report shows the lazy modules that call reaches), or give them all to "
                            f"materialize")
        inputs, kw_inputs = calls[0].inputs, calls[0].kw_inputs
    report = _analyze(model, inputs, kw_inputs)
    if expect_output is not None:
        check_output(report, expect_output)
    return report


def check_output(report: Report, expected: Any) -> None:
    """The output must equal ``expected`` (a spec, symbols shared with the inputs') for every
    input the domain admits."""
    import sympy

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


def _exclusive(fn):
    """``fn`` under the process-wide analysis lock, with every patch undone on the way out
    (:func:`~lazyfx.analysis.trace.patches_restored`)."""
    @functools.wraps(fn)
    def exclusive(*args, **kwargs):
        with patches_restored(), recursion_room():
            return fn(*args, **kwargs)

    return exclusive


@_exclusive
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
    mesh: Any = None,
    shard: Optional[Callable[[str, nn.Module], bool]] = None,
    fsdp_kwargs: Optional[Mapping[str, Any]] = None,
    **kw_inputs: Any,
) -> nn.Module:
    """Build the eager equivalent of a lazy model, with its parameters created on a device.

    The result has the same class as ``model``, with its forward, methods and
    eager submodules intact; every lazy submodule is now its eager class
    (``LazyLinear`` becomes ``Linear`` with ``in_features`` filled in), built with
    the same options and the arguments [`infer`][lazyfx.infer] resolves. A bare
    lazy module given as the model becomes its eager class. No
    ``UninitializedParameter``, ``UninitializedBuffer`` or lazy hook remains.

    Parameter values are bit-identical to a dry run in eval mode on the same
    device under the same RNG state: lazy modules are initialized in the order a
    forward first calls them, with their own ``reset_parameters()``. The given
    model is copied and left untouched unless ``inplace=True`` (the analysis
    undoes what forward does to it, as in [`infer`][lazyfx.infer], before the
    copy is made); a failure leaves it exactly as it was, a KeyboardInterrupt
    or SystemExit included, and with ``state_dict`` the eager tensors a load
    had already written are put back. Calls from several threads take turns on
    the lock [`infer`][lazyfx.infer] uses.

    Args:
        model: The lazy model (or a bare lazy module).
        *inputs: Input specs, one per positional parameter of forward, in any
            form [`infer`][lazyfx.infer] takes. Every lazy parameter must then
            be concrete: pin the symbols it depends on. Or several
            [`Call`][lazyfx.Call]s, one per call of forward, for a model whose
            calls reach different lazy modules: the values are those of a dry
            run making the calls in that order.
        device: Where parameters and buffers are created (``"cpu"``, ``"cuda"``,
            a ``torch.device``). ``"meta"`` allocates nothing and gives a model
            ready for ``to_empty(device=...)`` and ``reset_parameters()``. Eager
            parameters and buffers move there too. None keeps the devices as
            they are.
        dtype: A floating-point dtype: the model is analysed and built as a dry
            run after ``model.to(dtype)`` would (``m = build(); m.to(dtype);
            m(x)``, from the same RNG state). Floating-point parameters and
            buffers are in ``dtype`` (integer buffers such as
            ``num_batches_tracked`` keep theirs); inputs whose spec names no
            dtype are in ``dtype``; lazy modules are initialized in ``dtype``,
            eager ones in their own dtype and then converted.
        seed: Seed the RNG for the initialization, in a forked scope: your
            global RNG state is left as it was. None uses the current RNG state.
            The model exists already (its eager layers initialized by their
            constructors), so the values are those of ``m = build();
            torch.manual_seed(s); m(x)``; for ``torch.manual_seed(s); m = build();
            m(x)``, seed before building and pass none. A model built on meta
            has its eager layers initialized from the seed too.
        inplace: Convert ``model`` itself instead of a copy (the copy works for
            lazy batch norms, which ``copy.deepcopy`` rejects). On failure,
            or an interrupt, every change is rolled back.
        state_dict: A checkpoint saved from the eager model (read back with
            ``torch.load(..., weights_only=True)``, say). Without inputs, the
            lazy shapes come from the checkpoint; with inputs, the checkpoint
            must fit them (see [`Report.fit`][lazyfx.outputs.report.Report.fit]) and
            settles the sizes they leave symbolic. The values are the
            checkpoint's. With ``mesh``, every rank may pass the full
            checkpoint and keeps only its shards of it, or a
            ``torch.distributed.checkpoint`` directory (its path): the shapes
            come from its metadata and each rank reads its own shards.
        strict: With ``state_dict``, whether every key must match, as in
            ``load_state_dict(strict=...)``.
        init_order: ``"dry-run"`` (the default) initializes the lazy modules as
            a dry run would. ``"registration"`` initializes every module (eager
            ones too) again from ``seed``, children before parents, in
            registration order: the values then equal those of a hand-written
            eager twin constructed after ``torch.manual_seed(seed)``, as long as
            its modules initialize in ``reset_parameters``, not elsewhere in
            ``__init__``.
        mesh: A ``torch.distributed.device_mesh.DeviceMesh``: build the model
            straight into FSDP2 on it. Every rank of the mesh calls
            ``materialize`` with the same arguments; each allocates only its
            shards (and the buffers) on ``device`` (by default the mesh's
            device type at the current index), plus the tensors of the module
            being initialized. The gathered state is bit-identical to the
            single-process model on that device type, whatever the world size.
            The ranks compare their arguments first, in one ``all_gather``:
            an error on one rank, or ranks called differently (LFX053), is
            raised on every rank, before anything is sharded.
        shard: With ``mesh``, ``shard(path, module) -> bool`` picks the
            submodules of the eager model that become FSDP units
            (``fully_shard`` on each, bottom-up, then on the root). None shards
            the root only.
        fsdp_kwargs: With ``mesh``, keyword arguments for every
            ``fully_shard`` call (``mp_policy``, ``reshard_after_forward``...).
        **kw_inputs: Input specs by forward's parameter names.

    Returns:
        The eager model: ``model`` itself when ``inplace=True``, else a new
            module of the same class (of the eager class for a bare lazy module);
            with ``mesh``, that module as an ``FSDPModule`` whose parameters are
            ``DTensor``s sharded on the mesh.

    Raises:
        SpecError: A spec is unusable (LFX001, LFX002), ``device`` is invalid or
            unavailable, ``dtype`` is not a floating-point dtype, or
            ``init_order`` is neither ``"dry-run"`` nor ``"registration"``
            (LFX002); ``Call``s are mixed with specs, or given with
            ``state_dict`` (LFX002); ``state_dict`` is a path (load it with
            ``torch.load(path, weights_only=True)``) or holds a value that
            is not a tensor (LFX002); ``shard`` or ``fsdp_kwargs`` without
            ``mesh``, or with it: ``inplace=True``, ``init_order="registration"``,
            a ``device`` of another type than the mesh's, an option
            ``fully_shard`` does not take, a tied tensor split over two FSDP
            units (LFX002); the ranks were called differently (LFX053).
        ResolutionError: A lazy parameter depends on an input symbol (LFX040);
            a lazy module is resolved from a meta kernel specialized to one size
            (LFX023), called at two sites or by two ``Call``s that disagree
            (LFX041) or never called (LFX042); forward draws random numbers
            before a lazy module's first call (LFX025; not with
            ``init_order="registration"``); or ``state_dict`` has no entry for
            a lazy tensor (LFX040).
        ShapeError: The inputs fail as in [`infer`][lazyfx.infer] (LFX030), or
            a ``state_dict`` shape does not fit them (LFX030).
        MaterializeError: Copying the model or building the eager modules
            failed (LFX050); an eager module built on meta has no
            ``reset_parameters()`` to initialize it on ``device`` and no
            ``state_dict`` value (LFX052). The given model is unchanged.

    Any error [`infer`][lazyfx.infer] raises for the inputs is raised too.

    Examples:
        >>> eager = lazyfx.materialize(Net(), ("B", 3, 32, 32), device="cpu")
        >>> eager.head
        Linear(in_features=2304, out_features=10, bias=True)
        >>> type(eager).__name__, type(lazyfx.materialize(nn.LazyLinear(4), ("B", 6)))
        ('Net', <class 'torch.nn.modules.linear.Linear'>)

        The same values as a dry run under the same seed, without touching
        the global RNG state:

        >>> _ = torch.manual_seed(0)
        >>> dry = Net().eval()
        >>> _ = dry(torch.zeros(1, 3, 32, 32))
        >>> eager = lazyfx.materialize(Net(), ("B", 3, 32, 32), seed=0)
        >>> all(torch.equal(a, b) for a, b in zip(dry.state_dict().values(), eager.state_dict().values()))
        True

        On the meta device, in bfloat16, or from a checkpoint alone:

        >>> lazyfx.materialize(Net(), ("B", 3, 32, 32), device="meta").head.weight.device
        device(type='meta')
        >>> lazyfx.materialize(Net(), ("B", 3, 32, 32), dtype=torch.bfloat16).head.weight.dtype
        torch.bfloat16
        >>> restored = lazyfx.materialize(Net(), state_dict=eager.state_dict())
        >>> torch.equal(restored.head.weight, eager.head.weight)
        True

        A lazy size that depends on a symbol is never guessed:

        >>> lazyfx.materialize(Net(), ("B", 3, "H", "W"))
        Traceback (most recent call last):
            ...
        lazyfx.errors.ResolutionError: ...LFX040 lazy module 'head' (LazyLinear) needs in_features = 64*((H - 9)//4 + 1)*((W - 9)//4 + 1), which depends on H, W (in module 'head')
            note: pin H, W to concrete sizes in the input spec, or make the size independent of them (e.g. an adaptive pooling layer before a flatten)
    """
    if mesh is not None:
        return _materialize_sharded(model, inputs, kw_inputs, device=device, dtype=dtype, seed=seed, inplace=inplace,
                                    state_dict=state_dict, strict=strict, init_order=init_order, mesh=mesh,
                                    shard=shard, fsdp_kwargs=fsdp_kwargs)
    if shard is not None or fsdp_kwargs is not None:
        raise SpecError("shard= and fsdp_kwargs= shard the model with FSDP2 on a device mesh: give mesh= too")
    device, dtype = _checked_target(device, dtype, init_order)
    records, loader = _lazy_records(model, inputs, kw_inputs, device, dtype, state_dict, strict, init_order)
    return materialize_model(model, records, device=device, dtype=dtype, seed=seed, inplace=inplace,
                             initialize=loader is None, checkpoint=loader, init_order=init_order)


def _checked_target(device, dtype,
                    init_order: str = "dry-run") -> tuple[Optional[torch.device], Optional[torch.dtype]]:
    if init_order not in ("dry-run", "registration"):
        raise SpecError(f"init_order must be 'dry-run' or 'registration', got {init_order!r}")
    device = _device(device)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and (dtype.is_floating_point or dtype.is_complex)):
        raise SpecError(f"materialize(dtype=...) takes a floating point dtype, as module.to does; got {dtype!r}")
    return device, dtype


def _lazy_records(model: nn.Module, inputs: tuple, kw_inputs: dict, device, dtype, state_dict, strict: bool,
                  init_order: str) -> tuple[dict[str, LazyModuleRecord], Optional[checkpoint.Loader]]:
    """Every lazy module resolved, in the order a dry run initializes them, and the loader of the
    checkpoint that gives their values (None without one): from the inputs, from the
    checkpoint, or from the inputs fitted to the checkpoint."""
    calls = calls_in(inputs, kw_inputs)
    if calls is not None and len(calls) == 1:
        (call,), calls = calls, None
        inputs, kw_inputs = call.inputs, call.kw_inputs
    if calls is not None and state_dict is not None:
        raise SpecError("materialize fits a state_dict to the inputs of one call; give one lazyfx.Call, or none")
    if calls is not None:
        with target_device(device or "cpu"):
            reports, initialized = [], frozenset()
            for index, call in enumerate(calls):
                reports.append(_analyze(model, call.inputs, call.kw_inputs, another_call_follows=index < len(calls) - 1,
                                        initialized=initialized))
                initialized |= {path for path, record in reports[-1].lazy.items() if record.called}
        return _lazy_of_calls(reports, calls, check_draws=init_order == "dry-run"), None
    if state_dict is None:
        return _buildable(analyze(model, *inputs, device=device, dtype=dtype, **kw_inputs), init_order), None
    # the shapes from the checkpoint alone, or from the inputs with the checkpoint fitted to them
    report = analyze(model, *inputs, device=device, dtype=dtype, **kw_inputs) if inputs or kw_inputs else None
    return checkpoint.prepare(model, state_dict, strict, report)


def _buildable(report: Report, init_order: str) -> dict[str, LazyModuleRecord]:
    """The report's lazy modules, once each is resolved to concrete parameters (from shapes that hold
    for every input the spec allows) and, in dry-run order, no random draw before a first call
    stands in the way of a dry run's values."""
    _require_resolved(report)
    if init_order == "dry-run":
        _require_dry_run_order(report)
    return report.lazy


def export(
    model: nn.Module,
    *inputs: Any,
    format: str,
    path: Union[str, os.PathLike, None] = None,
    device=None,
    dtype: Optional[torch.dtype] = None,
    seed: Optional[int] = None,
    opset: Optional[int] = None,
    on_static: str = "error",
    **kw_inputs: Any,
) -> Any:
    """Materialize a lazy model for the given inputs and export it in one call.

    The model is materialized as by [`materialize`][lazyfx.materialize] (a copy:
    ``model`` is never modified), put in eval mode, and handed to the exporter
    with example inputs: zero tensors at sizes inside the model's input domain.
    The input symbols become the exported program's dynamic dimensions, under
    their own names.

    Before anything is written to ``path`` the artifact (as saved and loaded
    back) runs at the example sizes and at a second valid input that moves
    every symbol (``torch.export`` programs also at the smallest sizes their
    Dims admit), on seeded random floats, and must match the eager model:
    the same output shapes, values within ``rtol=1e-3, atol=1e-4`` (float32).
    An exporter that bakes a size in (an unrolled loop over ``T`` in a trace,
    a ``Reshape`` to the example's ``T`` in ONNX) is an error naming the
    symbol and, where the runtime says, the operation.

    Args:
        model: The lazy model.
        *inputs: Input specs, one per positional parameter of forward, in any
            form [`infer`][lazyfx.infer] takes. Symbols a lazy parameter depends
            on must be pinned; the others stay dynamic.
        format: ``"torchscript"`` (``torch.jit.script``),
            ``"torchscript-trace"`` (``torch.jit.trace`` on the example inputs),
            ``"exported-program"`` (``torch.export.export``: each input symbol
            becomes a ``torch.export.Dim`` with the symbol's name and the range
            lazyfx's domain proves, the minimum at least 2 as torch.export
            requires; ``H % 32 == 0`` becomes the derived dim ``32*H_k``) or
            ``"onnx"`` (``torch.onnx.export`` on top of torch.export, else the
            TorchScript-based exporter: each input symbol becomes a dynamic axis
            named after it; needs the ``onnx`` extra: ``pip install lazyfx[onnx]``).
            Underscores work as hyphens (``"exported_program"``); any other
            name is a ``SpecError`` that lists the formats.
        path (str | os.PathLike | None): Where to save the result (required
            for ONNX). The file is written through a temporary file in the
            same folder, so a failed export leaves no partial file at ``path``.
        device (str | torch.device | None): Where the parameters and example
            inputs are created, as in [`materialize`][lazyfx.materialize].
        dtype: Floating-point dtype for the parameters and the floating-point
            example inputs, as in [`materialize`][lazyfx.materialize].
        seed: RNG seed for the parameters' initialization.
        opset: The ONNX opset version (None: the exporter's default).
        on_static: What to do when an exporter cannot keep a symbol dynamic:
            ``"error"`` (the default: LFX051, nothing written) or ``"pin"``
            (write the artifact with that size static at its example value, and
            warn with a ``lazyfx.build.exporters.StaticAxisWarning``
            that names it; the other symbols stay dynamic and verified). For
            ONNX, ``torch.onnx.export(dynamo=True)`` is tried first and the
            TorchScript-based exporter (``dynamo=False``, ``dynamic_axes``,
            which keeps GRU/LSTM sequence lengths dynamic) second; the first
            one that verifies is written.
        **kw_inputs: Input specs by forward's parameter names.

    Returns:
        The ``torch.jit.ScriptModule`` (both TorchScript formats), the
            ``torch.export.ExportedProgram``, or, for ONNX, ``path``.

    Raises:
        SpecError: ``format`` is unknown, ONNX is asked for without a ``path``,
            the inputs are several [`Call`][lazyfx.Call]s (one is exported), a dynamic dim of an input is a formula rather than a plain symbol
            (torch.export), or no example sizes inside the input domain are
            found (LFX002).
        MaterializeError: The exporter failed, or its artifact differs from the
            model at the example sizes (LFX050); or it keeps a symbol static
            (LFX051: the message names the symbol and its example size, the
            notes each exporter tried, where it failed, and torch.export's own
            explanation of a refusal: the guard and its suggested fixes). The
            model is unchanged and nothing was written to ``path``.

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
    calls = calls_in(inputs, kw_inputs)
    if calls is not None:
        if len(calls) != 1:
            raise SpecError(f"export exports one call of forward, got {len(calls)} lazyfx.Call(...)s: materialize "
                            f"with them all first, then export the eager model with the inputs of the call to export")
        inputs, kw_inputs = calls[0].inputs, calls[0].kw_inputs
    format = exporters.check_request(format, path, on_static)
    # one analysis, of the model as materialize builds it (on device, after .to(dtype)), for both
    # the eager model and the example sizes
    report = analyze(model, *inputs, device=device, dtype=dtype, **kw_inputs)
    eager = materialize_from(model, report, device=device, dtype=dtype, seed=seed)
    return exporters.export_eager(eager, report, name=type(model).__name__, format=format, path=path, device=device,
                                  dtype=dtype, opset=opset, on_static=on_static)


def analyze(model: nn.Module, *inputs: Any, device: Union[str, torch.device, None] = None,
            dtype: Optional[torch.dtype] = None, **kw_inputs: Any) -> Report:
    """The analysis [`materialize`][lazyfx.materialize] builds from: [`infer`][lazyfx.infer]'s,
    with forward run as a dry run on ``device`` after ``model.to(dtype)`` would run it.

    Pass the report to [`materialize_from`][lazyfx.api.materialize_from] (with the same
    ``device`` and ``dtype``) to build the eager model without analysing it again, as
    [`export`][lazyfx.export] does. Without ``device`` and ``dtype`` it is the report
    ``infer`` gives.

    Args:
        model: The lazy model.
        *inputs: Input specs for one call of forward, as [`infer`][lazyfx.infer] takes them.
        device: The device the model is built on, as in [`materialize`][lazyfx.materialize].
        dtype: The floating-point dtype, as in [`materialize`][lazyfx.materialize].
        **kw_inputs: Input specs by forward's parameter names.

    Returns:
        The [`Report`][lazyfx.Report].

    Raises:
        SpecError: A spec, ``device`` or ``dtype`` is unusable (LFX001, LFX002).

    Any error [`infer`][lazyfx.infer] raises for the inputs is raised too.

    Examples:
        >>> report = lazyfx.api.analyze(Net(), ("B", 3, 32, 32), dtype=torch.bfloat16)
        >>> report.output
        TensorMeta(shape=(B, 10), dtype=torch.bfloat16)
        >>> lazyfx.api.analyze(Net(), ("B", 3, 32, 32)).to_dict() == lazyfx.infer(Net(), ("B", 3, 32, 32)).to_dict()
        True
    """
    device, dtype = _checked_target(device, dtype)
    with target_device(device or "cpu"), analysis_dtype(dtype):
        return _analyze(model, inputs, kw_inputs)


@_exclusive
def materialize_from(model: nn.Module, report: Report, *, device: Union[str, torch.device, None] = None,
                     dtype: Optional[torch.dtype] = None, seed: Optional[int] = None, inplace: bool = False,
                     init_order: str = "dry-run") -> nn.Module:
    """The eager model built from ``report``, an [`analyze`][lazyfx.api.analyze] of ``model``
    with the same ``device`` and ``dtype``: what [`materialize`][lazyfx.materialize] returns
    for those inputs, without analysing the model again.

    Args:
        model: The lazy model the report analyses.
        report: Its analysis.
        device: As in [`materialize`][lazyfx.materialize].
        dtype: As in [`materialize`][lazyfx.materialize].
        seed: As in [`materialize`][lazyfx.materialize].
        inplace: As in [`materialize`][lazyfx.materialize].
        init_order: As in [`materialize`][lazyfx.materialize].

    Returns:
        The eager model, as [`materialize`][lazyfx.materialize] returns it.

    Raises:
        ResolutionError: A lazy module the report leaves unresolved (LFX040, LFX023,
            LFX041, LFX042), or random draws before a lazy module's first call (LFX025), as
            in [`materialize`][lazyfx.materialize].
        MaterializeError: Building the eager modules failed (LFX050, LFX052); the given
            model is unchanged.

    Examples:
        >>> report = lazyfx.api.analyze(Net(), ("B", 3, 32, 32))
        >>> eager = lazyfx.api.materialize_from(Net(), report, seed=0)
        >>> torch.equal(eager.head.weight, lazyfx.materialize(Net(), ("B", 3, 32, 32), seed=0).head.weight)
        True
    """
    device, dtype = _checked_target(device, dtype, init_order)
    return materialize_model(model, _buildable(report, init_order), device=device, dtype=dtype, seed=seed,
                             inplace=inplace, init_order=init_order)


def _materialize_sharded(model: nn.Module, inputs: tuple, kw_inputs: dict, *, device, dtype, seed, inplace,
                         state_dict, strict, init_order, mesh, shard, fsdp_kwargs) -> nn.Module:
    """``materialize(mesh=...)``: every rank checks and analyses, the ranks agree (one
    all_gather, reached whatever failed), then each builds its shards (lazyfx.build.shard)."""
    mesh = sharding.checked_mesh(mesh)
    with agree.agreed(mesh) as agreement:
        device, dtype = _checked_target(device, dtype, init_order)
        device = sharding.mesh_device(mesh, device)
        fsdp_kwargs = sharding.check_options(shard, fsdp_kwargs, inplace, init_order, device)
        directory = state_dict if sharding.is_checkpoint_dir(state_dict) else None
        if directory is not None:
            sharding.mesh_group(mesh)  # a mesh the checkpoint can be loaded on
        shapes = sharding.checkpoint_shapes(directory) if directory is not None else state_dict
        if shapes is not None:
            shapes = checkpoint.checked(shapes)
        records, _ = _lazy_records(model, inputs, kw_inputs, device, dtype, shapes, strict, init_order)
        plan = sharding.plan(model, records, dtype, shard, shapes, strict)
        agreement.fingerprint = agree.fingerprint(
            model=agree.model_layout(model), inputs=(inputs, kw_inputs), device=device.type, dtype=dtype,
            seed=seed, rng=agree.rng_state(seed, device), strict=strict, shard=plan.units,
            fsdp_kwargs=fsdp_kwargs,
            resolved=agree.resolved_layout(records, shapes))
    return sharding.build(model, records, plan, mesh=mesh, device=device, dtype=dtype, seed=seed,
                          fsdp_kwargs=fsdp_kwargs, state_dict=None if directory is not None else shapes,
                          checkpoint_dir=directory, strict=strict)


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


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one analysis. Its full collections rescan every
    object the analysis has built so far (graph nodes, formulas, records), so their cost grows
    with the model: a 10,000-layer MLP took 111 us per node with it and 62 without
    (`python -m benchmarks`, scaling). What the analysis leaves behind is collected as soon as
    it is back on."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _analyze(model: nn.Module, inputs: tuple, kw_inputs: dict, another_call_follows: bool = False,
             initialized: frozenset = frozenset()) -> Report:
    with patches_restored(), recursion_room(), _cyclic_gc_paused(), _rng_restored(), _restored(model) as snapshot:
        return _analyze_model(model, inputs, kw_inputs, snapshot, another_call_follows, initialized)


@contextlib.contextmanager
def _rng_restored() -> Iterator[None]:
    """torch's CPU random state as it was, however the analysis ends: random ops that abstract
    execution or a generic layer's initialization runs on shape-only copies draw from it, and
    neither the user's next random numbers nor ``materialize``'s initialization may depend on
    the analysis."""
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[Optional[Journal]]:
    """``model`` put back exactly as it was however the block ends: whatever forward did to
    ``self`` while it was traced or executed abstractly (a counter, a buffer updated or
    reassigned, a submodule registered, an attribute set to an fx Proxy, fx's
    ``_tensor_constant0``) is undone. A snapshot rather than a copy: it costs a few dict copies
    per module and a copy of the buffers, works for lazy modules ``copy.deepcopy`` rejects, and
    the analysis keeps reading the user's own modules (their paths and identities)."""
    if not isinstance(model, nn.Module):
        yield None
        return
    snapshot = Journal.of_model(model)
    try:
        yield snapshot
    finally:
        snapshot.rollback()
        snapshot.clear()  # its copies freed now, not scanned by the garbage collector as it resumes


def _analyze_model(model: nn.Module, inputs: tuple, kw_inputs: dict, snapshot: Optional[Journal] = None,
                   another_call_follows: bool = False, initialized: frozenset = frozenset()) -> Report:
    if not isinstance(model, nn.Module):
        raise SpecError(f"lazyfx needs an nn.Module, got {type(model).__name__}")
    _refuse_foreign_lazy_protocols(model)
    constraints, bound, program, propagation = _propagated(model, inputs, kw_inputs, snapshot)
    records = resolve(model, propagation, program.graph)
    checked_at = {}
    if any(r.specialized_by for r in records.values()):
        checked_at = _independent_of_specializations(records, propagation.fallback, model, inputs, kw_inputs,
                                                     snapshot)
    domain = Domain(constraints, propagation.recorder.conditions, checked_at)
    if domain.is_empty:
        raise _no_valid_input(domain, propagation)
    if domain.assumptions:  # the results hold under the assumptions: together they must admit an input
        assumed = [dataclasses.replace(c, kind="requires") for c in propagation.recorder.conditions]
        if Domain(constraints, assumed).is_empty:
            raise _no_valid_input(Domain(constraints, assumed), propagation, assumptions=domain.assumptions)
    _mark_reached_in_the_other_mode(records, model, inputs, kw_inputs, snapshot)
    _mark_used_through_others(records, model, propagation)
    warnings = [d for r in records.values() if (d := _unresolved_diagnostic(r)) is not None]
    warnings += _specialization_diagnostics(propagation)
    warnings += _random_draw_diagnostics(model, program.graph, propagation, records, another_call_follows, initialized)
    warnings += _declared_size_diagnostics(domain, propagation)
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


def _propagated(model: nn.Module, inputs: tuple, kw_inputs: dict, snapshot: Optional[Journal],
                hints: Optional[dict[str, int]] = None) -> tuple:
    """(constraints, bound inputs, traced program, propagation) of one analysis; ``hints``:
    representative sizes for the meta-kernel fallback other than its usual ones."""
    table = SymbolTable()
    bound = bind_values(model, inputs, kw_inputs, table)
    constraints = table.constraints()
    propagator = Propagator(model, constraints, hints)
    try:
        program = trace(model, bound, propagator, restore=snapshot.rollback if snapshot else None)
        propagation = propagate(program, propagator)
    finally:  # nothing of the analysis (ShapeEnv, FakeTensorMode) outlives the call
        propagator.release()
    return constraints, bound, program, propagation


def _refuse_foreign_lazy_protocols(model: nn.Module) -> None:
    """A layer lazy by another library's protocol, named before its forward is traced (which
    would fail on the stand-in parameter's empty shape, blaming the model)."""
    for path, module in model.named_modules():
        names = foreign_lazy_tensors(module)
        if not names:
            continue
        cls = type(module)
        library = cls.__module__.split(".")[0].replace("_", "-")
        owner = f"{library}'" if library.endswith("s") else f"{library}'s"
        parameter = type(module._parameters[names[0]])
        listed = ", ".join(f"'{n}'" for n in names)
        eager_twin = getattr(nn, cls.__name__, None)
        instead = (f"use PyTorch's own nn.{cls.__name__} (the same arguments, without the size it infers), which "
                   f"lazyfx resolves exactly; " if isinstance(eager_twin, type) and issubclass(eager_twin, LazyModuleMixin)
                   else "use a PyTorch lazy module (torch.nn.Lazy*, or LazyModuleMixin with initialize_parameters); ")
        raise ResolutionError(
            f"'{path or '<root>'}' ({owner} {cls.__name__}) is lazy by {owner} own protocol: {listed} "
            f"{'is' if len(names) == 1 else 'are'} {parameter.__module__}.{parameter.__name__}, which its forward "
            f"replaces on the first call; lazyfx resolves PyTorch's lazy protocol only",
            code=diagnostics.FOREIGN_LAZY_PROTOCOL, module_path=path,
            notes=(f"{instead}or run the model once on an example before lazyfx sees it",),
        )


def _mark_used_through_others(records: dict[str, LazyModuleRecord], model: nn.Module, propagation) -> None:
    """For a lazy module forward never calls, set ``used_through`` to the module called with its
    lazy parameters swapped in (torch.func.functional_call, tensordict's to_module)."""
    for record in records.values():
        if record.called:
            continue
        module = model.get_submodule(record.path)
        own = {id(t) for t in (*module._parameters.values(), *module._buffers.values()) if t is not None and is_lazy(t)}
        record.used_through = next((c.path for c in propagation.lazy_calls if c.path != record.path and own & c.held),
                                   None)


def _mark_reached_in_the_other_mode(records: dict[str, LazyModuleRecord], model: nn.Module, inputs: tuple,
                              kw_inputs: dict, snapshot: Optional[Journal]) -> None:
    """For a model with lazy modules forward never calls, set ``reached_in_training`` on those it
    calls in training mode (an auxiliary classifier behind ``if self.training``) where some
    module is in eval mode, else ``reached_in_eval`` on those it calls in eval mode (a head
    behind ``if not self.training``): the analysis runs once more with every module in the
    other mode, then puts the modes back."""
    uncalled = [r for r in records.values() if not r.called]
    if not uncalled:
        return
    modes = [(m, m.training) for m in model.modules()]
    to_training = not all(training for _, training in modes)
    try:
        model.train(to_training)
        _, _, _, propagation = _propagated(model, inputs, kw_inputs, snapshot)
    except Exception:  # the other mode fails on its own (BatchNorm on one value): nothing more to say
        return
    finally:
        for module, training in modes:
            module.training = training
    reached = {call.path for call in propagation.lazy_calls}
    for record in uncalled:
        if to_training:
            record.reached_in_training = record.path in reached
        else:
            record.reached_in_eval = record.path in reached


def _independent_of_specializations(records: dict[str, LazyModuleRecord], fallback, model: nn.Module,
                                    inputs: tuple, kw_inputs: dict, snapshot: Optional[Journal]) -> dict:
    """Clear ``specialized_by`` of each lazy module whose resolution does not depend on the
    sizes a meta kernel fixed: the analysis runs again with each such symbol at other
    sizes (a step, doubled, halved...: a floor division hides a change of one, as for
    generic lazy layers; and the smallest sizes, where ``min(B, 16)`` differs), and a
    module that every run reaching it resolves the same way, in at least one run, is taken
    as independent of them. The others stay refused (LFX023). That is sampled: the result
    gives, for each symbol a cleared module depended on, the sizes it was checked at (the
    domain admits no other)."""
    names = sorted({name for _, _, pinned in fallback.specialized for name in pinned})
    suspects = {path: record for path, record in records.items() if record.specialized_by and record.is_concrete}
    agreed: dict[str, int] = dict.fromkeys(suspects, 0)
    tried: dict[str, list[int]] = {}
    for name in names:
        symbol = sympy.Symbol(name, integer=True, positive=True)
        tried[name] = [fallback.hint(symbol)]
        for value in _specialization_checks(fallback, symbol):
            if snapshot is not None:
                snapshot.rollback()  # the model as it was before the first analysis
            try:
                propagation = _propagated(model, inputs, kw_inputs, snapshot, hints={name: value})[3]
            except LazyFXError:  # the model rejects that size: it tells nothing
                continue
            tried[name].append(value)
            again = {}
            for call in propagation.lazy_calls:
                again.setdefault(call.path, call.resolution)
            for path in list(suspects):
                other = again.get(path)
                if other is None:
                    continue
                record = suspects[path]
                if (other.arguments, other.parameter_shapes) == _sizes(record):
                    agreed[path] += 1
                else:  # the evidence, for the refusal
                    hint = fallback.hint(symbol)
                    record.specialized_by = record.specialized_by + [
                        f"resolved as {_arguments(record.resolution)} at {name}={hint} but as {_arguments(other)} "
                        f"at {name}={value}"]
                    del suspects[path]
            if not suspects:
                return {}
    cleared = [record for path, record in suspects.items() if agreed[path]]
    for record in cleared:
        record.specialized_by = []
    return {name: tuple(sorted(set(sizes))) for name, sizes in tried.items()} if cleared else {}


def _specialization_checks(fallback, symbol: sympy.Symbol) -> list[int]:
    """The sizes of ``symbol`` to run the analysis at again: the fallback's perturbations, then
    the smallest admitted sizes and the powers of two below the representative size (a size
    capped at a constant, ``min(B, 16)``, agrees above the cap)."""
    hint = fallback.hint(symbol)
    info = fallback.constraints.info(symbol.name)
    low, high = fallback.constraints.range_of(symbol)
    step = info.multiple_of
    out = list(fallback.perturbations(symbol, hint))
    smallest = -(-max(low, 1) // step) * step
    powers = [2 ** k for k in range(1, max(hint, 2).bit_length())]
    for value in [smallest, smallest + step, *powers]:
        value = -(-value // step) * step
        if value != hint and value >= low and (high is None or value <= high) and value not in out:
            out.append(value)
    return out


def _no_valid_input(domain: Domain, propagation, assumptions: Sequence[Condition] = ()) -> ShapeError:
    """The error for a model no input fits although each check alone could hold: blames the
    first condition that, with those before it, leaves no valid input. With ``assumptions``,
    the domain holds them too (as requirements): the model's requirements contradict what the
    analysis had to assume (a broadcast taken as between sizes != 1, say)."""
    conditions = domain.requirements
    for count in range(1, len(conditions) + 1):
        if Domain(domain.constraints, conditions[:count]).is_empty:
            break
    culprit = conditions[count - 1]
    earlier = Domain(domain.constraints, conditions[: count - 1])
    node = next((n for n in propagation.nodes if n.name == culprit.node), None)
    notes = call_notes(node.callers) if node else ()
    if assumptions:
        notes = (f"the shapes were worked out assuming {', '.join(dict.fromkeys(c.message for c in assumptions))}; "
                 f"with that, the model's requirements leave no valid input",) + notes
    return ShapeError(
        f"{culprit.message}: no input sizes satisfy {fmt(culprit.expr)}"
        + (f" together with {earlier}" if earlier.describe() else ""),
        location=node.location if node else None,
        module_path=node.module_path if node else None,
        notes=notes,
    )


def _declared_size_diagnostics(domain: Domain, propagation) -> list[Diagnostic]:
    """Warnings for declared sizes the model rejects and for undeclared symbols it does not
    let vary (``lazyfx check`` reports them as errors)."""
    rejections = declared_rejections(domain)
    if not rejections:
        return []
    by_name = {n.name: n for n in propagation.nodes}
    out = []
    for rejection in rejections:
        condition = rejection.condition
        node = by_name.get(condition.node)
        formula = fmt(simplify_condition(condition.expr))
        if rejection.kind == "rejects":
            code = diagnostics.DECLARED_SIZE_REJECTED
            message = f"the declared input size {rejection.sizes_text()} fails: {condition.message}"
            declared = " and ".join(fmt(c) for n in rejection.sizes
                                    for c in (domain.constraints.info(n).conditions() or [f"{n} >= 1"]))
            notes = (f"the sizes are declared as {declared}, and the model needs {formula}",
                     f"the model is valid for: {domain}")
        elif rejection.kind == "undecided":
            code = diagnostics.DECLARED_SIZE_UNDECIDED
            message = (f"cannot decide whether every declared input size satisfies {formula} "
                       f"({condition.message}); no counterexample was found among the smallest sizes")
            notes = ("pin the sizes, or declare tighter bounds that decide it",)
        else:
            code = diagnostics.SIZE_NOT_FREE
            names = ", ".join(rejection.symbols)
            one = len(rejection.symbols) == 1
            how = (f"accepts only {rejection.accepted}" if rejection.kind == "fixed"
                   else f"ties {'it' if one else 'them'}: {rejection.accepted}")
            message = (f"{names} {'is' if one else 'are'} declared as {'a size' if one else 'sizes'} that "
                       f"{'varies' if one else 'vary'}, but the model {how} ({condition.message})")
            notes = (f"declare the sizes {names} {'takes' if one else 'take'} (a Dim bound, a constraint such as "
                     f"'{rejection.symbols[0]}==...', or one symbol for sizes that must be equal), or allow fixed "
                     f"sizes for this model",)
        out.append(Diagnostic(
            code, message, severity="warning", node=condition.node,
            module_path=node.module_path if node else None, op=node.target if node else None,
            location=node.location if node else None,
            notes=notes + (call_notes(node.callers) if node else ()),
        ))
    return out


def _random_draw_diagnostics(model: nn.Module, graph, propagation, records,
                             another_call_follows: bool = False, initialized: frozenset = frozenset()) -> list[Diagnostic]:
    """Random draws in forward before a lazy module's first call move the generator a dry run
    initializes it from: each is given to the record of the module first called after it, to
    be replayed before it is initialized; one that cannot be replayed is a warning (LFX025).
    With ``another_call_follows``, a draw after them all is a warning too (without a module
    path): the next call of forward may initialize lazy modules of its own. ``initialized``:
    the lazy modules earlier calls (``lazyfx.Call``) initialized; a draw before them only
    matters for the modules initialized after it."""
    first_calls, called, upto = [], set(), {}
    for call in propagation.lazy_calls:
        if call.path not in called:  # (a set beside the list: 10,000 lazy layers made the list's test quadratic)
            called.add(call.path)
            first_calls.append(call.path)
        upto[call.node] = len(first_calls)
    if not first_calls and not another_call_follows:
        return []
    draws = draws_in_graph(graph, model, upto, propagation.opaque_draws, {n.name: n for n in propagation.nodes},
                           propagation.real_draws, propagation.seeded_nodes)
    before = [d for d in draws if d.after < len(first_calls)]  # after the last first call: no effect here
    for draw in before:
        records[first_calls[draw.after]].draws_before.append(draw)
    new = lambda d: [p for p in first_calls[d.after:] if p not in initialized]  # noqa: E731 - initialized after d
    blocked = next((d for d in before if d.replay is None and new(d)), None)
    if blocked is None:
        after = [d for d in draws if d.after >= len(first_calls) or (d.replay is None and not new(d))]
        return [_draw_before_next_call(after[0])] if another_call_follows and after else []
    path, *later = new(blocked)
    return [Diagnostic(
        diagnostics.RANDOM_BEFORE_INIT,
        f"forward draws random numbers ({blocked.what}) before it first calls the lazy module '{path}', so a "
        f"dry run initializes '{path}'{f' and the {len(later)} after it' if later else ''} from a generator those "
        f"draws moved, and lazyfx cannot replay them: {blocked.obstacle}",
        severity="warning", module_path=path, location=blocked.location,
        notes=("put the model in eval mode if the draws are dropout's (F.dropout needs training=self.training), "
               "draw after the lazy modules' first calls, or materialize with init_order='registration' (every "
               "module initialized in registration order, as an eager twin would be)",),
    )]


def _draw_before_next_call(draw) -> Diagnostic:
    return Diagnostic(
        diagnostics.RANDOM_BEFORE_INIT,
        f"forward draws random numbers ({draw.what}), so a dry run making another call after this one "
        f"initializes the lazy modules that call reaches first from a generator those draws moved; lazyfx cannot "
        f"give those values",
        severity="warning", location=draw.location,
        notes=("draw after every lazy module's first call, or materialize with init_order='registration'",),
    )


def _specialization_diagnostics(propagation) -> list[Diagnostic]:
    """Warnings for sizes PyTorch's meta kernels fixed to a representative value."""
    if propagation.fallback is None:
        return []
    by_name = {n.name: n for n in propagation.nodes}
    out = []
    for message, node_name, _ in propagation.fallback.specialized:
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
    if not record.called and record.used_through:
        return Diagnostic(
            diagnostics.LAZY_NOT_CALLED,
            f"lazy module '{record.path}' ({record.lazy_class}) is never called itself, but its parameters are: "
            f"forward swaps them into '{record.used_through}' and calls that (torch.func.functional_call, "
            f"tensordict's to_module); lazyfx resolves a lazy module from its own calls, and a dry run would leave "
            f"'{record.used_through}' with its own parameters uninitialized",
            severity="warning",
            module_path=record.path,
            notes=(f"call '{record.path}' itself, or build '{record.used_through}' eager (or on the meta device, "
                   f"as a stateless template) so that only '{record.path}' is lazy",),
        )
    mode = "training" if record.reached_in_training else "eval" if record.reached_in_eval else None
    if not record.called and mode is not None:  # reached in the other mode than the model is in now
        current, switch, back = (("eval", "model.train()", "model.eval()") if mode == "training"
                                 else ("training", "model.eval()", "model.train()"))
        return Diagnostic(
            diagnostics.LAZY_NOT_CALLED,
            f"lazy module '{record.path}' ({record.lazy_class}) is called only in {mode} mode (forward reaches "
            f"it when the model is in {mode} mode, not in {current} mode as now), so nothing determines its "
            f"parameters; a dry run in {current} mode leaves it lazy too",
            severity="warning",
            module_path=record.path,
            notes=(f"materialize the model in {mode} mode ({switch}, then {back} afterwards if needed): "
                   f"forward then calls it, and the values are those of a dry run in {mode} mode",),
        )
    if not record.called:
        return Diagnostic(
            diagnostics.LAZY_NOT_CALLED,
            f"lazy module '{record.path}' ({record.lazy_class}) is never called in forward, so nothing "
            f"determines its parameters",
            severity="warning",
            module_path=record.path,
            notes=("call it in forward, remove it, or replace it with its eager class; if forward reaches it with "
                   "other inputs (another branch), give every call's inputs: materialize(model, lazyfx.Call(...), "
                   "lazyfx.Call(...))",),
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
    args = record.resolution.needs()
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


def _require_dry_run_order(report: Report) -> None:
    """A dry run's values must not depend on random draws forward makes before a first call."""
    draws = [d for d in report.diagnostics if d.code == diagnostics.RANDOM_BEFORE_INIT]
    if draws:
        raise ResolutionError(diagnostics=[dataclasses.replace(d, severity="error") for d in draws])


def _lazy_of_calls(reports: Sequence[Report], calls: Sequence[Any], check_draws: bool) -> dict[str, LazyModuleRecord]:
    """The lazy modules of several calls of forward, as a dry run making the calls in order
    initializes them: each by the first call that reaches it, in that order. Every call that
    reaches one must resolve it to the same concrete sizes (else that dry run fails there).
    A call's random draws before a module an earlier call initialized are replayed before
    the next module initialized after them. With ``check_draws``, a call's random draws (LFX025) are an error where that call, or
    for a draw after its lazy modules' first calls a later one, initializes a lazy module."""
    records: dict[str, LazyModuleRecord] = {}
    first: dict[str, int] = {}
    problems: list[Diagnostic] = []
    pending: list = []  # draws before a module an earlier call initialized: replayed before the next new one
    for index, report in enumerate(reports):
        which = f"call {index + 1}, {calls[index]!r}"
        for path, record in report.lazy.items():
            if not record.called:
                continue
            if not record.materializable:
                problem = _unresolved_diagnostic(record)
                problems.append(dataclasses.replace(problem, severity="error", notes=(f"in {which}",) + problem.notes))
            elif path not in records:
                records[path], first[path] = dataclasses.replace(record, draws_before=pending + record.draws_before), index
                pending = []
            elif _sizes(records[path]) == _sizes(record):
                pending += record.draws_before
            else:
                known = f"call {first[path] + 1}, {calls[first[path]]!r}"
                problems.append(Diagnostic(
                    diagnostics.CONFLICTING_CALLS,
                    f"lazy module '{path}' ({record.lazy_class}) is resolved as {_arguments(records[path].resolution)} "
                    f"by {known}, but as {_arguments(record.resolution)} by {which}",
                    severity="error", module_path=path, location=record.call_sites[0] if record.call_sites else None,
                    notes=("a dry run making these calls would initialize it at the first and fail at the second",),
                ))
    for path, record in reports[0].lazy.items():
        if path not in records and not any(path in r.lazy and r.lazy[path].called for r in reports):
            problem = _unresolved_diagnostic(record)
            problems.append(dataclasses.replace(
                problem, severity="error",
                message=problem.message.replace("never called in forward", f"never called by any of the {len(calls)} "
                                                                           f"calls")))
    if check_draws and not problems:
        last = max(first.values(), default=-1)  # the last call that initializes a lazy module
        for index, report in enumerate(reports):
            problems += [dataclasses.replace(d, severity="error", notes=(f"in call {index + 1}, {calls[index]!r}",)
                                             + d.notes)
                         for d in report.diagnostics if d.code == diagnostics.RANDOM_BEFORE_INIT
                         and (index < last if d.module_path is None else index <= last)]
    if problems:
        raise ResolutionError(diagnostics=problems)
    return records


def _sizes(record: LazyModuleRecord) -> tuple:
    return record.resolution.arguments, record.resolution.parameter_shapes


def _arguments(resolution) -> str:
    sizes = resolution.arguments or resolution.parameter_shapes
    return ", ".join(f"{k}={fmt(v)}" for k, v in sizes.items())


def _require_resolved(report: Report) -> None:
    """Every lazy module must resolve to concrete parameters before anything is built, from
    shapes that hold for every input the spec allows (not for a specialized size)."""
    problems = [_unresolved_diagnostic(r) for r in report.lazy.values() if not r.materializable]
    if problems:
        raise ResolutionError(diagnostics=[dataclasses.replace(d, severity="error") for d in problems])
