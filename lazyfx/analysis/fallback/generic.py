"""Any lazy module: resolved by running its own initialization on shape-only inputs.

PyTorch's built-in lazy classes have exact resolvers (:mod:`lazyfx.rules.lazy`).
Every other lazy module -- a user's ``LazyModuleMixin`` subclass with its own
``initialize_parameters``, or a third-party layer holding an
``UninitializedParameter`` that its own forward pre-hook materializes (PyTorch
Geometric's ``Linear(-1, out)``) -- is resolved by running that very code on a
copy whose tensors live on the meta device, with meta inputs of the inferred
shape: nothing is allocated and nothing runs on data.

* The parameter shapes and the integer attributes the initialization set
  (``in_channels = 16``) are the resolution; a tuple of ints it set
  (``normalized_shape = (16,)``) is followed size by size like them.
* Where an input size is symbolic, the initialization runs at representative
  sizes, and again per symbol with that size changed (by a step, doubled,
  halved...: a floor division hides a change of one): parameter sizes that
  move with a symbol are reported as depending on it. Sizes that stay put
  under every change are taken as independent of the symbol.
* The output comes from the initialized copy's forward, run by the
  meta-kernel fallback with symbolic sizes; a parameter size that moves with
  one symbol along an affine formula fitting every sample (``in_features =
  F``) takes that formula there, so the output does not tie the symbol to its
  representative size.

``x.device`` answers the target device meanwhile, as in a dry run there.
Limitation: an initialization that reads input *values* (data-dependent
init) cannot be reproduced from shapes (LFX024).
"""

from __future__ import annotations

from typing import Any, Optional

import sympy
import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy

from lazyfx.analysis.device import answering_target_device
from lazyfx.analysis.valueflow import ReadsInputValues, follow_input_values, reads_values_error
from lazyfx.core import diagnostics
from lazyfx.core.copying import copy_module
from lazyfx.core.diagnostics import caller_location, first_line
from lazyfx.core.registry import RULES
from lazyfx.core.symbolic import free_symbols, substitute
from lazyfx.core.values import TensorMeta, analysed_dtype, converted_dtype, map_values, tensors_in
from lazyfx.errors import MaterializeError, ResolutionError, UnsupportedOpError
from lazyfx.rules.lazy import ModuleView, Resolution, is_lazy_module


def resolve_generic(module: nn.Module, path: str, args: tuple, kwargs: dict,
                    fallback) -> tuple[Resolution, Any, Optional[str]]:
    """(resolution, output, the name of the shape rule that gave the output) of a lazy module
    without a built-in resolver. The output comes from the rule of the built-in class the
    initialization turned the module into (``cls_to_become = nn.Bilinear``), else (rule None)
    from the initialized copy's forward through the meta-kernel fallback."""
    symbols = sorted({s for t in tensors_in((args, kwargs)) for d in t.shape for s in free_symbols(d)}, key=str)
    hints = {s: fallback.hint(s) for s in symbols}
    clone, attributes, shapes = _initialize_copy(module, path, args, kwargs, hints)
    depends: dict[tuple, set[str]] = {}
    samples: dict[tuple, dict[sympy.Symbol, list[tuple[int, int]]]] = {}  # key -> symbol -> (value, size)
    unmoved = True  # whether every attribute other than an int stayed put under every change
    for s in symbols:  # which parameter sizes move with which symbol
        for value in fallback.perturbations(s, hints[s]):
            moved_clone, moved_attributes, moved_shapes = _initialize_copy(module, path, args, kwargs,
                                                                           {**hints, s: value})
            unmoved = unmoved and _other_attributes(moved_clone) == _other_attributes(clone)
            moved = _sizes(moved_attributes, moved_shapes)
            for key, size in _sizes(attributes, shapes).items():
                samples.setdefault(key, {}).setdefault(s, [(hints[s], size)]).append((value, moved.get(key)))
                if moved.get(key) != size:
                    depends.setdefault(key, set()).add(s.name)
    init_inputs = (_concrete(args, hints), _concrete(kwargs, hints))
    resolution = sampled_resolution(path, attributes, shapes, depends, init_inputs)
    # A dry run's first call runs the lazy class's forward: nn.Module reads ``self.forward`` before
    # the pre-hook switches the class. Where that is the built-in eager class's own forward
    # (LazyBilinear -> nn.Bilinear), the eager class's shape rule gives the output.
    eager, lazy = type(clone), type(module)
    rule = RULES.get(eager) if eager is not lazy and eager.forward is lazy.forward else None
    view = _initialized_view(clone, attributes, shapes, depends, samples, unmoved) if rule is not None else None
    if view is not None:
        return resolution, rule.fn(view, *args, **kwargs), rule.name
    clone.__class__ = lazy  # the initialized copy, with the first call's forward
    output = fallback.run_module(clone, args, kwargs, type(module).__name__,
                                 shapes=_symbolic_shapes(shapes, depends, samples))
    return resolution, output, None


def resolve_container(module: nn.Module, path: str, args: tuple, kwargs: dict, fallback) -> Resolution:
    """The resolution of a lazy container (:func:`lazyfx.rules.lazy.is_lazy_container`): nothing
    to size, only its own initialization to replay from its input (removing its lazy hooks,
    switching to ``cls_to_become``). Its forward is traced as the module is before that
    initialization, so an initialization that changes the module (an attribute, a submodule, a
    tensor) is refused rather than traced past."""
    symbols = sorted({s for t in tensors_in((args, kwargs)) for d in t.shape for s in free_symbols(d)}, key=str)
    hints = {s: fallback.hint(s) for s in symbols}
    clone, _, _ = _initialize_copy(module, path, args, kwargs, hints)
    changes = _changes(module, clone)
    if changes:
        raise UnsupportedOpError(
            f"the lazy module '{path}' ({type(module).__name__}) has no lazy tensors of its own, so lazyfx traces its "
            f"forward through, but its initialize_parameters {'; '.join(changes)}: the traced forward would not be "
            f"the one a dry run calls",
            module_path=path, location=caller_location(),
            notes=["create the submodules and attributes in __init__, and leave initialize_parameters to size "
                   "the module's own lazy tensors"],
        )
    return Resolution({}, {}, init_inputs=(_concrete(args, hints), _concrete(kwargs, hints)))


# What LazyModuleMixin._infer_parameters itself removes from a module it initializes.
_LAZY_HANDLES = frozenset({"_initialize_hook", "_load_hook"})


def _changes(module: nn.Module, initialized: nn.Module) -> list[str]:
    """What an initialization changed, beyond the lazy hooks and the class, in words: the
    attributes it set, the layers inside it initialized, what it added or removed."""
    def attributes(m: nn.Module) -> dict[str, Any]:
        return {**_other_attributes(m), **size_attributes(m)}  # size_attributes has the size tuples too

    def tensors(m: nn.Module) -> dict[str, bool]:  # name -> still uninitialized
        return {n: is_lazy(t) for n, t in (*m.named_parameters(remove_duplicate=False),
                                           *m.named_buffers(remove_duplicate=False))}

    def layout(m: nn.Module) -> set[str]:
        names = {f"{n} ({type(sub).__name__})" for n, sub in m.named_modules() if sub is not m}
        plain = attributes(m)
        return names | set(tensors(m)) | {f"self.{n}" for n in vars(m) if n not in _LAZY_HANDLES and n not in plain}

    before, after = attributes(module), attributes(initialized)
    found = []
    set_ = sorted(k for k in after.keys() | before.keys() if before.get(k, _ABSENT) != after.get(k, _ABSENT))
    if set_:
        found.append("sets " + ", ".join(f"self.{k}" for k in set_))
    lazy_before, lazy_after = tensors(module), tensors(initialized)
    done = [n for n, lazy in lazy_before.items() if lazy and lazy_after.get(n) is False]
    if done:
        found.append("initializes " + ", ".join(done))
    added, removed = sorted(layout(initialized) - layout(module)), sorted(layout(module) - layout(initialized))
    if added:
        found.append("adds " + ", ".join(added))
    if removed:
        found.append("removes " + ", ".join(removed))
    return found


_ABSENT = object()


def _initialized_view(clone: nn.Module, attributes: dict, shapes: dict, depends: dict, samples: dict,
                      unmoved: bool) -> Optional[ModuleView]:
    """The initialized copy as its eager class's shape rule reads it, each size that moved with
    a symbol as the affine formula fitting every sample (``in1_features = F``). None where a
    moving size fits no formula, or an attribute other than an int moved (a rule would read it
    at the representative size)."""
    if not unmoved:
        return None
    arguments: dict[str, Any] = {}
    for name, value in attributes.items():
        if isinstance(value, tuple):  # normalized_shape = (F,): a rule reads every size of it
            sizes = tuple(fitted_formula(samples[("arg", name, i)]) if ("arg", name, i) in depends else d
                          for i, d in enumerate(value))
            if any(d is None for d in sizes):
                return None
            arguments[name] = sizes
            continue
        arguments[name] = fitted_formula(samples[("arg", name)]) if ("arg", name) in depends else value
    for name, shape in shapes.items():
        dims = tuple(fitted_formula(samples[("param", name, i)]) if ("param", name, i) in depends else d
                     for i, d in enumerate(shape))
        if dims != shape:  # a rule that reads the parameter sees it with the formulas
            arguments[name] = TensorMeta(dims, getattr(clone, name).dtype)
    if any(v is None for v in arguments.values()) or any(d is None for v in arguments.values()
                                                        if isinstance(v, TensorMeta) for d in v.shape):
        return None
    return ModuleView(clone, arguments)


def _symbolic_shapes(shapes: dict, depends: dict, samples: dict) -> dict[str, tuple]:
    """Parameter shapes for evaluating the output, with each size that moves with one symbol
    as the affine formula that reproduces every sample (``in_features = F``). Evaluated at
    the representative size instead, the forward would tie the symbol to it (``F == 64``).
    Only for the output: the resolution keeps such sizes unknown, as the samples suggest a
    formula but do not prove it. A parameter with a size that fits no formula keeps its
    representative shape (and the output its assumption)."""
    out = {}
    for name, shape in shapes.items():
        keys = [("param", name, i) for i in range(len(shape))]
        if not any(key in depends for key in keys):
            continue
        formulas = [fitted_formula(samples[key]) if key in depends else size for key, size in zip(keys, shape)]
        if all(f is not None for f in formulas):
            out[name] = tuple(formulas)
    return out


def fitted_formula(samples: dict[sympy.Symbol, list[tuple[int, int]]]) -> Optional[sympy.Expr]:
    """``a*S + b`` for the one symbol ``S`` a size moves with, if such a formula fits every sample."""
    moving = [(s, points) for s, points in samples.items() if len({size for _, size in points}) > 1]
    if len(moving) != 1:
        return None
    symbol, points = moving[0]
    fit = _affine(points)
    return None if fit is None else fit[0] * symbol + fit[1]


def _affine(points: list[tuple[int, int]]) -> Optional[tuple[int, int]]:
    """``(a, b)`` with ``size == a*value + b`` at every point (at least three), else None."""
    if any(y is None for _, y in points):  # a tuple whose length changed
        return None
    (x0, y0), (x1, y1) = points[0], points[1]
    if len(points) < 3 or x1 == x0 or (y1 - y0) % (x1 - x0):
        return None
    a = (y1 - y0) // (x1 - x0)
    b = y0 - a * x0
    return (a, b) if all(a * x + b == y for x, y in points) else None


def sampled_resolution(path: str, attributes: dict, shapes: dict, depends: dict, init_inputs: tuple) -> Resolution:
    """The resolution an initialization run gave: its integer attributes and parameter shapes,
    with each size that moved with a symbol (``depends``: key -> symbol names) unknown. A tuple
    of sizes is an argument only where it moved, then as one unknown size."""
    arguments: dict[str, Any] = {}
    for k, v in attributes.items():
        if isinstance(v, tuple):
            moved = set().union(*(names for key, names in depends.items() if key[:2] == ("arg", k)))
            if moved:
                arguments[k] = unknown_size(f"{path}.{k}", moved)
        else:
            arguments[k] = unknown_size(f"{path}.{k}", depends[("arg", k)]) if ("arg", k) in depends else v
    return Resolution(
        arguments=arguments,
        parameter_shapes={
            name: tuple(unknown_size(f"{path}.{name}[{i}]", depends[("param", name, i)])
                        if ("param", name, i) in depends else d for i, d in enumerate(shape))
            for name, shape in shapes.items()
        },
        init_inputs=init_inputs,
        depends_on=sorted(set().union(*depends.values())) if depends else [],
    )


class UnknownSize(sympy.Symbol):
    """A parameter size that depends on input symbols in a way only the module's own code
    knows (it changed when they did): reported as depending on them, never materialized."""


def unknown_size(name: str, depends_on: set[str]) -> UnknownSize:
    """A size named ``name`` that depends on the input sizes ``depends_on`` as only the module's code knows."""
    return UnknownSize(f"<{name}: depends on {', '.join(sorted(depends_on))}>", integer=True, positive=True)


def _sizes(attributes: dict, shapes: dict) -> dict:
    out: dict[tuple, int] = {}
    for k, v in attributes.items():
        if isinstance(v, tuple):
            out[("arg", k, "len")] = len(v)
            out.update({("arg", k, i): d for i, d in enumerate(v)})
        else:
            out[("arg", k)] = v
    for name, shape in shapes.items():
        out.update({("param", name, i): d for i, d in enumerate(shape)})
    return out


def _initialize_copy(module: nn.Module, path: str, args, kwargs, hints) -> tuple[nn.Module, dict, dict]:
    """Run the module's own initialization on a meta copy with meta inputs at ``hints``."""
    clone = meta_copy(module)
    before = size_attributes(clone)
    meta_args, meta_kwargs = meta_inputs(args, hints), meta_inputs(kwargs, hints)
    try:
        # x.device answers the target device, as in a dry run there
        with torch.no_grad(), follow_input_values(clone, (meta_args, meta_kwargs)), \
                answering_target_device(onto_meta=True):
            run_initialization(clone, meta_args, meta_kwargs)
    except ReadsInputValues as reads:
        raise reads_values_error(path, module, reads) from None
    except Exception as exc:
        raise UnsupportedOpError(
            f"running the initialization of the lazy module '{path}' ({type(module).__name__}) on shape-only "
            f"inputs failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    left = [n for n, t in own_tensors(clone) if is_lazy(t)]
    if left:
        raise UnsupportedOpError(
            f"the lazy module '{path}' ({type(module).__name__}) still has uninitialized {', '.join(left)} after "
            f"its initialization ran"
        )
    after = size_attributes(clone)
    attributes = {k: v for k, v in after.items() if before.get(k) != v}
    shapes = {n: tuple(int(d) for d in t.shape) for n, t in own_tensors(clone) if is_lazy(getattr(module, n, None))}
    return clone, attributes, shapes


def run_initialization(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """What a dry run's first call does to a lazy module, without its forward: a
    ``LazyModuleMixin`` runs ``_infer_parameters`` (initialize, remove the lazy hooks,
    switch to ``cls_to_become``); any other module runs its forward pre-hooks."""
    if isinstance(module, LazyModuleMixin):
        module._infer_parameters(module, args, kwargs)
        return
    for hook_id, hook in list(module._forward_pre_hooks.items()):
        if hook_id in module._forward_pre_hooks_with_kwargs:
            result = hook(module, args, kwargs)
            if result is not None:
                args, kwargs = result
        else:
            result = hook(module, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)


def meta_copy(module: nn.Module) -> nn.Module:
    """A deep copy of one module with every parameter and buffer on the meta device (no memory),
    in the analysis dtype (see :func:`lazyfx.core.values.analysis_dtype`)."""
    registered = list(module.modules())
    converted = {id(sub) for sub in registered}
    # modules held in plain lists, tuples or dicts are copied too; .to(dtype) does not reach them
    outside = [sub for held in _held_outside(registered) for sub in held.modules()]

    def on_meta(owner: nn.Module, tensor: torch.Tensor, is_parameter: bool) -> torch.Tensor:
        dtype = analysed_dtype(tensor.dtype) if id(owner) in converted else tensor.dtype
        if isinstance(tensor, UninitializedParameter):
            return UninitializedParameter(tensor.requires_grad, "meta", dtype)
        if isinstance(tensor, UninitializedBuffer):
            return UninitializedBuffer(tensor.requires_grad, "meta", dtype)
        if isinstance(tensor, nn.Parameter):
            return nn.Parameter(tensor.detach().to("meta", dtype), tensor.requires_grad)
        return tensor.detach().to("meta", dtype)

    return copy_module(module, on_meta, registered + outside)


def _held_outside(registered: list[nn.Module]) -> list[nn.Module]:
    """The modules the ``registered`` ones hold in plain lists, tuples and dicts (not submodules);
    a lazy one is LFX043, as when it is traced (materialize could not reach it)."""
    known = {id(m) for m in registered}
    found: list[nn.Module] = []

    def visit(value: Any) -> None:
        if isinstance(value, nn.Module):
            if id(value) not in known:
                known.add(id(value))
                found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for module in registered:
        for name, value in vars(module).items():
            if isinstance(value, (list, tuple, dict)) and not name.startswith("_"):
                visit(value)
    for held in found:
        lazy = next((m for m in held.modules() if is_lazy_module(m)), None)
        if lazy is not None:
            raise ResolutionError(
                f"the model holds a lazy {type(lazy).__name__} outside its submodules (in a plain list, dict or "
                f"tuple), for code lazyfx runs by abstract execution: its parameters are not part of the model, so "
                f"neither materialize nor state_dict() and .to() reach them",
                code=diagnostics.LAZY_NOT_REGISTERED,
                notes=["register it: an attribute of the model, nn.ModuleList or nn.ModuleDict"],
            )
    return found


def own_tensors(module: nn.Module):
    """``(name, tensor)`` for the module's own parameters and buffers that are set (not None)."""
    for name, tensor in list(module._parameters.items()) + list(module._buffers.items()):
        if tensor is not None:
            yield name, tensor


def size_attributes(module: nn.Module) -> dict[str, Any]:
    """The int attributes, and the tuples of ints (``normalized_shape``): the sizes an initialization sets."""
    return {k: v for k, v in vars(module).items() if _is_size(v)
            or isinstance(v, tuple) and not hasattr(v, "_fields") and all(_is_size(d) for d in v)}


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_COMPARED_BY_VALUE = (bool, float, complex, str, bytes, tuple, list, dict, type(None), torch.dtype, torch.device)


def _other_attributes(module: nn.Module) -> dict[str, Any]:
    """The plain attributes that are not ints, tensors or modules (``normalized_shape``): values
    of Python's own types as they are, any other object by its class (a copy of it is not equal)."""
    sizes = size_attributes(module)
    return {k: v if isinstance(v, _COMPARED_BY_VALUE) else type(v) for k, v in vars(module).items()
            if not k.startswith("_") and k not in sizes and not isinstance(v, (torch.Tensor, nn.Module))}


def meta_inputs(value: Any, hints: dict, device: str = "meta") -> Any:
    """``value`` with each TensorMeta an empty tensor on ``device``, its sizes at ``hints``."""
    def convert(v):
        if isinstance(v, TensorMeta):
            return torch.empty(tuple(substitute(d, hints) for d in v.shape), dtype=v.dtype, device=device)
        return v

    return map_values(convert, value)


def _concrete(value: Any, hints: dict) -> Any:
    """Abstract inputs at the representative sizes (used to replay the initialization)."""
    def convert(v):
        if isinstance(v, TensorMeta):
            return TensorMeta(tuple(substitute(d, hints) for d in v.shape), v.dtype)
        return v

    return map_values(convert, value)


def materialize_generic(module: nn.Module, resolution: Resolution, device: Optional[torch.device], path: str,
                        dtype: Optional[torch.dtype] = None) -> None:
    """Initialize a lazy module in place with its own code, its tensors created on ``device`` (and in
    ``dtype`` where floating-point, as after ``module.to(dtype)``)."""
    target = device
    for container in (module._parameters, module._buffers):
        for name, tensor in list(container.items()):
            if tensor is not None and is_lazy(tensor):
                target = device if device is not None else tensor.device
                cls = UninitializedParameter if isinstance(tensor, UninitializedParameter) else UninitializedBuffer
                container[name] = cls(tensor.requires_grad, target, converted_dtype(tensor.dtype, dtype))
    args, kwargs = resolution.init_inputs
    # the inputs are shape-only (meta); x.device answers where the tensors are created
    with torch.no_grad(), answering_target_device(target):
        run_initialization(module, meta_inputs(args, {}), meta_inputs(kwargs, {}))
    for name, tensor in own_tensors(module):
        if is_lazy(tensor):
            raise MaterializeError(f"'{path}.{name}' is still uninitialized after the module's own initialization")
        if device is not None and device.type != "meta" and tensor.device.type == "meta":
            raise MaterializeError(
                f"'{path}.{name}' was created on the meta device: the initialization of {type(module).__name__} "
                f"follows its input's device, and lazyfx initializes from shape-only (meta) inputs"
            )

