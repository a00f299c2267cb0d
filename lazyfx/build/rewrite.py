"""Rewrite: the eager model, with parameters created on the target device.

Each lazy module becomes its eager class the way PyTorch's own lazy
initialization does it (``LazyModuleMixin._infer_parameters``): resolved
arguments are set, parameters are created with their inferred shapes,
``reset_parameters()`` initializes them, the lazy hooks are removed and the
class is switched. Modules are initialized in first-call order, so the
random number generator is consumed exactly as in a dry run and the values
are bit-identical. Nothing runs on data; the only memory allocated is the
final parameters, on ``device``.

Without ``inplace`` the model is copied first (a copy that works for
``LazyBatchNorm``, whose ``UninitializedBuffer`` ``copy.deepcopy`` rejects),
moving non-lazy tensors straight to ``device``/``dtype``. With ``inplace``,
every change is journaled and rolled back if anything fails.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, ContextManager, Iterable, Iterator, Optional

import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy

from lazyfx.analysis.fallback.generic import materialize_generic
from lazyfx.analysis.resolve import LazyModuleRecord
from lazyfx.build.checkpoint import Loader
from lazyfx.core import diagnostics
from lazyfx.core.copying import copy_module
from lazyfx.core.diagnostics import first_line
from lazyfx.core.journal import MODULE_INTERNALS, SAVED_AS_IS, Journal
from lazyfx.core.symbolic import fmt
from lazyfx.core.values import converted_dtype
from lazyfx.errors import LazyFXError, MaterializeError, ShapeError
from lazyfx.rules.lazy import Resolution


def materialize_model(
    model: nn.Module,
    records: dict[str, LazyModuleRecord],
    *,
    device: Optional[torch.device],
    dtype: Optional[torch.dtype],
    seed: Optional[int],
    inplace: bool,
    initialize: bool = True,
    checkpoint: Optional[Loader] = None,
    init_order: str = "dry-run",
) -> nn.Module:
    """The eager twin of ``model`` (``model`` itself when ``inplace``), in four steps: copy the
    model (unless ``inplace``); create the lazy modules' tensors, and the eager ones built on
    meta, in the order a dry run does (:func:`initialize_in_order`); move every tensor to
    ``device``/``dtype``; load the ``checkpoint``. ``initialize=False`` creates the tensors
    without initializing them (a checkpoint's values go in). With ``inplace`` every change is
    journaled, and a failure of any step undoes them all (:func:`undone_on_failure`)."""
    meta_eager = meta_eager_modules(model, device, records)
    given: set[int] = set()  # the given model's eager tensors, which a checkpoint overwrites in place
    if inplace and checkpoint is not None:
        given = {id(t) for t in model.state_dict(keep_vars=True).values() if not is_lazy(t)}
    target = model if inplace else _copied(model, device, dtype)
    journal = Journal() if inplace else None
    with undone_on_failure(model, journal):
        provided = checkpoint.keys.__contains__ if checkpoint is not None else _nothing_provided
        initialize_in_order(target, records, meta_eager, device=device, dtype=dtype, seed=seed, journal=journal,
                            provided=provided, initialize=initialize, init_order=init_order)
        convert_tensors(target.modules(), device, dtype, journal)
        if checkpoint is not None:
            if journal:  # the load writes into the given model's eager tensors in place
                for tensor in target.state_dict(keep_vars=True).values():
                    if id(tensor) in given:
                        journal.save_values(tensor)
            checkpoint.load(target)
    return target


def _nothing_provided(key: str) -> bool:
    return False


def _copied(model: nn.Module, device, dtype) -> nn.Module:
    """``model`` copied for materialize (:func:`copy_model`), or a MaterializeError saying why not."""
    try:
        return copy_model(model, device, dtype)
    except Exception as exc:
        holder = _lazy_outside_modules(model) if "uninitialized" in str(exc) else None
        if holder is not None:
            raise MaterializeError(
                f"could not copy {type(model).__name__} (materialize copies the model unless inplace=True): its "
                f"attribute '{holder[0]}' ({holder[1]}) holds lazy parameters outside the modules' own, and copying "
                f"it reads them while they are uninitialized: {type(exc).__name__}: {first_line(exc)}",
                notes=[f"this is how tensordict's from_module/to_module keep a module's parameters; materialize with "
                       f"inplace=True: lazyfx initializes the lazy parameters in place, as a dry run does, so "
                       f"'{holder[0]}' holds the initialized ones"],
            ) from exc
        raise MaterializeError(
            f"could not copy {type(model).__name__} (materialize copies the model unless inplace=True): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


@contextlib.contextmanager
def undone_on_failure(model: nn.Module, journal: Optional[Journal]) -> Iterator[None]:
    """What materialize undoes when it fails: every change ``journal`` recorded to the given
    ``model`` (None for a copy, which is dropped), on any exception, KeyboardInterrupt and
    SystemExit included. An exception that is not a LazyFXError becomes a MaterializeError."""
    try:
        yield
    except BaseException as exc:
        if journal:
            journal.rollback()
        if isinstance(exc, LazyFXError) or not isinstance(exc, Exception):
            raise
        raise MaterializeError(
            f"materializing {type(model).__name__} failed: {type(exc).__name__}: {exc}",
            notes=["the given model is unchanged" if journal else "the given model was not modified"],
        ) from exc


def _no_step(path: str) -> ContextManager:
    return contextlib.nullcontext()


def initialize_in_order(target: nn.Module, records: dict[str, LazyModuleRecord], meta_eager: list, *, device,
                        dtype: Optional[torch.dtype], seed: Optional[int], journal: Optional[Journal],
                        provided: Callable[[str], bool], initialize: bool = True, init_order: str = "dry-run",
                        around: Optional[Callable[[str], ContextManager]] = None) -> None:
    """Create and initialize the lazy modules of ``target`` (and its eager modules built on meta,
    ``meta_eager``) on ``device``, consuming the RNG as a dry run does: the eager modules on meta
    first, children before their parent, then the lazy ones in first-call order, each after the
    random draws forward makes before it. ``around(path)``, when given, is entered around each
    module's step (the sharded build creates the tensors a step touches on entry and keeps only
    their shards on exit)."""
    around = around or _no_step
    registration = init_order == "registration" and initialize
    # In registration order the lazy modules are only created here (their own initialization, if
    # any, on a discarded RNG stream) and every module is then initialized again from the seed;
    # otherwise they are created from the seed's stream (or the caller's), as a dry run.
    creation_rng = torch.random.fork_rng(devices=[]) if registration else rng_scope(seed, device)
    with creation_rng:
        # eager layers built on meta first, as their constructors would have on the device
        initialize_off_meta(target, meta_eager, device, journal, provided, around)
        for path, record in records.items():  # first-call order, as a dry run initializes them
            with around(path):
                _create_lazy(target.get_submodule(path), path, record, device, dtype, journal,
                             initialize=initialize, registration=registration)
    if registration:
        with rng_scope(seed, device):
            reinitialize_in_registration_order(target, journal)


def _create_lazy(module: nn.Module, path: str, record: LazyModuleRecord, device, dtype: Optional[torch.dtype],
                 journal: Optional[Journal], *, initialize: bool, registration: bool) -> None:
    """One lazy module made eager: initialized as a dry run does at its first call (after replaying the
    draws before it), or, in registration order, created with their own initialization on
    the discarded stream and in their own dtype (converted with the rest afterwards)."""
    if journal:
        journal.save_module(module)
    as_dry_run = initialize and not registration
    if as_dry_run:  # the generator as a dry run left it
        for draw in record.draws_before:
            draw.replay(device)
    if _meta_tensors(module):  # a LazyBatchNorm's step counter, built on meta
        convert_tensors([module], device, None, journal)
    # created in the target dtype, as a dry run after model.to(dtype) creates them
    created_dtype = None if registration else dtype
    if record.resolution.init_inputs is not None and initialize:
        materialize_generic(module, record.resolution, device, path, created_dtype)
    else:
        materialize_module(module, record.resolution, device, path, as_dry_run, dtype=created_dtype, journal=journal)
    if not registration:  # converting right away keeps at most one module in two dtypes
        convert_tensors([module], device, dtype, journal)


def materialize_module(module: nn.Module, resolution: Resolution, device, path: str, initialize: bool = True,
                       dtype: Optional[torch.dtype] = None, journal: Optional[Journal] = None) -> None:
    """Turn one lazy module into its eager class, as ``LazyModuleMixin._infer_parameters`` would,
    its floating-point tensors created in ``dtype`` (as after ``module.to(dtype)``) when given."""
    created = False
    with torch.no_grad():
        for name, shape in resolution.parameter_shapes.items():
            old = module._parameters[name] if name in module._parameters else module._buffers[name]
            shape = tuple(int(d) for d in shape)
            if not is_lazy(old):
                if tuple(old.shape) != shape:
                    raise ShapeError(
                        f"'{_key(path, name)}' already has shape {fmt(tuple(old.shape))} (loaded from a checkpoint?) "
                        f"but the input resolves it to {fmt(shape)}",
                        code=diagnostics.SHAPE_MISMATCH,
                        module_path=path,
                    )
                continue
            tensor = torch.empty(shape, device=device if device is not None else old.device,
                                 dtype=converted_dtype(old.dtype, dtype))
            if torch._has_compatible_shallow_copy_type(old, tensor):
                # In place, as PyTorch's own initialization does: whatever else holds the lazy tensor
                # (a TensorDict made by tensordict's from_module) sees the initialized one.
                if journal:
                    journal.save_lazy(old)
                old.data = tensor
                old.__class__ = old.cls_to_become
            else:  # another device: its data cannot be set, so the object swaps contents with the new tensor
                new = nn.Parameter(tensor, requires_grad=old.requires_grad) if name in module._parameters else tensor
                try:
                    torch.utils.swap_tensors(old, new)
                except Exception as exc:
                    if journal:  # what else holds the lazy tensor (a TensorDict) would keep it: refuse
                        raise MaterializeError(
                            f"could not initialize '{_key(path, name)}' in place on {tensor.device}: "
                            f"{type(exc).__name__}: {first_line(exc)}", module_path=path,
                            notes=["materialize with inplace=False, or on the device the lazy parameters are on"],
                        ) from exc
                    (module._parameters if name in module._parameters else module._buffers)[name] = new
                else:
                    if journal:
                        journal.save_swap(old, new)
            created = True
        for name, value in resolution.arguments.items():
            setattr(module, name, int(value))
        if created and initialize:
            module.reset_parameters()
    if isinstance(module, LazyModuleMixin):
        module._initialize_hook.remove()
        module._load_hook.remove()
        del module._initialize_hook
        del module._load_hook
        if module.cls_to_become is not None:
            module.__class__ = module.cls_to_become


def reinitialize_in_registration_order(model: nn.Module, journal: Optional[Journal]) -> None:
    """Initialize every module again, as a hand-written eager twin's constructors would:
    children before their parent (constructors build their submodules first and reset their
    own parameters last), siblings in registration order."""
    def visit(module: nn.Module) -> None:
        for child in module.children():
            visit(child)
        reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
        if callable(reset):
            if journal:
                for tensor in list(module._parameters.values()) + list(module._buffers.values()):
                    if tensor is not None:
                        journal.save_data(tensor)
                        tensor.data = tensor.data.clone()
            with torch.no_grad():
                reset()

    visit(model)


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def converted(tensor: torch.Tensor, device, dtype, *, copy: bool) -> torch.Tensor:
    """``tensor`` as ``module.to(device, dtype)`` would make it: dtype only for floating-point and
    complex ones. A meta tensor has no values to move: it becomes an empty one on ``device``, in its own dtype
    (its module's ``reset_parameters()`` fills it, and the dtype follows, as for the lazy ones)."""
    if tensor.is_meta and device is not None and torch.device(device).type != "meta":
        return torch.empty_like(tensor, device=device)
    new_dtype = converted_dtype(tensor.dtype, dtype)
    return tensor.detach().to(device=device, dtype=new_dtype, copy=copy)


def _meta_tensors(module: nn.Module) -> list[str]:
    """The module's own eager tensors that are on meta (no values)."""
    return [n for n, t in (*module._parameters.items(), *module._buffers.items())
            if t is not None and not is_lazy(t) and t.is_meta]


def meta_eager_modules(model: nn.Module, device, lazy: Iterable[str]) -> list[tuple[str, list[str]]]:
    """The eager modules with tensors on meta, when they are to leave it, as (path, the tensors'
    names), children before their parent (constructors build their submodules first), in
    registration order."""
    if device is None or torch.device(device).type == "meta":
        return []
    skip, order = set(lazy), []

    def visit(module: nn.Module, path: str) -> None:
        for name, child in module.named_children():
            visit(child, f"{path}.{name}" if path else name)
        if path not in skip and _meta_tensors(module):
            order.append((path, _meta_tensors(module)))

    visit(model, "")
    return order


def initialize_off_meta(target: nn.Module, paths: list[tuple[str, list[str]]], device,
                        journal: Optional[Journal], provided: Callable[[str], bool],
                        around: Optional[Callable[[str], ContextManager]] = None) -> None:
    """Create the meta tensors of the modules at ``paths`` on ``device`` and initialize them
    with the module's own ``reset_parameters()``, in order, as building the model on ``device``
    would have. A module without one needs every such tensor from the checkpoint
    (``provided(key)``). ``around(path)`` is entered around each module's step."""
    for path, names in paths:
        with (around or _no_step)(path):
            _initialize_one_off_meta(target, path, names, device, journal, provided)


def _initialize_one_off_meta(target: nn.Module, path: str, names: list[str], device, journal: Optional[Journal],
                             provided: Callable[[str], bool]) -> None:
    module = target.get_submodule(path)
    convert_tensors([module], device, None, journal)
    if all(provided(_key(path, n)) for n in names):
        return  # the checkpoint's values go in
    reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
    if callable(reset):
        with torch.no_grad():
            reset()
        return
    missing = [n for n in names if not provided(_key(path, n))]
    if missing:
        listed = ", ".join(f"'{_key(path, n)}'" for n in missing)
        raise MaterializeError(
            f"{type(module).__name__} '{path or type(target).__name__}' was built on the meta device, so "
            f"{listed} {'has' if len(missing) == 1 else 'have'} no values, and it has no reset_parameters() "
            f"to initialize {'it' if len(missing) == 1 else 'them'} on {torch.device(device)}",
            code=diagnostics.META_WITHOUT_VALUES, module_path=path,
            notes=["build the model on the target device, give materialize a state_dict with those values, "
                   "or add a reset_parameters() method that initializes them"],
        )


def _lazy_outside_modules(model: nn.Module) -> Optional[tuple[str, str]]:
    """(path, type) of a module attribute, other than parameters, buffers and submodules, that
    cannot be copied while it holds lazy tensors (a TensorDict of the model's parameters)."""
    for path, module in model.named_modules():
        for name, value in vars(module).items():
            if name in MODULE_INTERNALS or isinstance(value, (torch.Tensor, nn.Module)) or type(value) in SAVED_AS_IS:
                continue
            try:
                copy.deepcopy(value)
            except Exception as exc:
                if "uninitialized" in str(exc):
                    return _key(path, name), type(value).__name__
    return None


def copy_model(model: nn.Module, device, dtype) -> nn.Module:
    """A deep copy whose tensors are created directly on ``device``/``dtype``."""
    def on_device(module: nn.Module, tensor: torch.Tensor, is_parameter: bool) -> Optional[torch.Tensor]:
        if is_lazy(tensor):
            if is_parameter:
                return UninitializedParameter(tensor.requires_grad, tensor.device, tensor.dtype)
            return UninitializedBuffer(tensor.requires_grad, tensor.device, tensor.dtype,
                                       persistent=getattr(tensor, "persistent", True))
        if type(tensor) is (nn.Parameter if is_parameter else torch.Tensor):
            new = converted(tensor, device, dtype, copy=True)
            return nn.Parameter(new, tensor.requires_grad) if is_parameter else new
        return None  # a tensor subclass: deep-copied as it is

    return copy_module(model, on_device)


def convert_tensors(modules: Iterable[nn.Module], device, dtype, journal: Optional[Journal]) -> None:
    """Move the modules' own tensors that are not yet on ``device``/``dtype``, in place,
    as ``module.to`` does."""
    if device is None and dtype is None:
        return
    for module in modules:
        saved = False
        for container in (module._parameters, module._buffers):
            for name, tensor in list(container.items()):
                if tensor is None or is_lazy(tensor):
                    continue
                new = converted(tensor, device, dtype, copy=False)
                if new.device == tensor.device and new.dtype == tensor.dtype:
                    continue
                if torch._has_compatible_shallow_copy_type(tensor, new):
                    if journal:
                        journal.save_data(tensor)
                    tensor.data = new
                    continue
                # a new tensor object where the old cannot hold the data (cpu -> meta), as module.to does
                if journal and not saved:
                    journal.save_module(module)
                    saved = True
                is_param = isinstance(tensor, nn.Parameter)
                container[name] = nn.Parameter(new, tensor.requires_grad) if is_param else new


@contextlib.contextmanager
def rng_scope(seed: Optional[int], device) -> Iterator[None]:
    """With a seed: a forked RNG seeded with it (the caller's RNG state is left alone)."""
    if seed is None:
        yield
        return
    device_type = torch.device(device).type if device is not None else "cpu"
    devices: list[int] = []
    if device_type == "cuda":
        index = torch.device(device).index
        devices = [index if index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices, device_type=device_type if devices else "cuda"):
        torch.manual_seed(seed)
        yield
