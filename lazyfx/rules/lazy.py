"""Lazy modules: detection, and everything lazyfx knows about PyTorch's built-in lazy classes.

:data:`LAZY_CLASSES` holds one :class:`LazyClass` descriptor per built-in lazy
class (every ``LazyModuleMixin`` subclass ``torch.nn`` defines;
tests/test_lazy_classes.py checks that none is missing): its eager class, the
constructor argument its input determines, its resolver, how a checkpoint's
shapes give that argument back, and its input's spatial rank. Propagation,
the checkpoint path (:mod:`lazyfx.build.checkpoint`) and ``lazyfx fix``
(:mod:`lazyfx.outputs.fix`) all read it.

A resolver reads the lazy module's first input and returns the constructor
arguments that input determines (``in_features``, ``in_channels``,
``num_features``) and the shapes of the parameters and buffers the eager
class would create. The eager class's shape rule, applied to a
:class:`ModuleView`, then computes the output and checks the rest.

Two deliberate differences from PyTorch's own lazy initialization, both in
attributes only (parameter values are the same):

* ``LazyInstanceNorm*d`` on an unbatched input reads the channel count from
  dim 0, where PyTorch reads dim 1 and then fails in ``forward`` (or silently
  gets ``num_features`` wrong when ``affine=False``);
* a lazy norm without affine parameters or running statistics gets its true
  ``num_features``; PyTorch leaves it at 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, UninitializedTensorMixin, is_lazy

from lazyfx.core.checks import require_divisible
from lazyfx.core.registry import lookup_by_class, resolver
from lazyfx.core.symbolic import DimExpr, floordiv, fmt, is_concrete
from lazyfx.core.values import ANALYSIS_DTYPE, TensorMeta, analysed_dtype
from lazyfx.errors import ShapeError
from lazyfx.rules._util import expect_ndim, shape_str, tensor_arg


def is_lazy_module(module: nn.Module) -> bool:
    """A module whose own parameters are (or were) lazy: a ``LazyModuleMixin`` not yet
    turned into its eager class, or any module holding an uninitialized parameter or buffer."""
    if isinstance(module, LazyModuleMixin):
        return True
    # (asked several times per module call while tracing: plain loops, no lists)
    for tensor in module._parameters.values():
        if isinstance(tensor, UninitializedTensorMixin):
            return True
    for tensor in module._buffers.values():
        if isinstance(tensor, UninitializedTensorMixin):
            return True
    return False


def is_lazy_container(module: nn.Module) -> bool:
    """A ``LazyModuleMixin`` not yet initialized that holds no lazy tensor of its own, only
    submodules (a lazy ``Sequential`` of lazy layers): traced through like any container, its
    own initialization replayed from its input (:func:`lazyfx.analysis.fallback.generic.resolve_container`)."""
    return (isinstance(module, LazyModuleMixin) and hasattr(module, "_initialize_hook")
            and not module.has_uninitialized_params() and bool(module._modules))


def foreign_lazy_tensors(module: nn.Module) -> list[str]:
    """The module's own parameters that stand in for lazy ones by another library's protocol:
    a parameter class of its own called ``UninitializedParameter`` (pytorch-pfn-extras'
    ``LazyInitializationMixin`` layers create the real one in their forward)."""
    return [name for name, p in module._parameters.items()
            if p is not None and type(p).__name__ == "UninitializedParameter" and not is_lazy(p)]


@dataclass
class Resolution:
    """What a lazy module's input determines: its constructor arguments and parameter shapes.

    Sizes are ints, or sympy formulas in the input symbols where they depend on
    them. A formula evaluates at concrete sizes with ``subs``.

    Attributes:
        arguments: The constructor arguments the input fixes, by name
            (``{"in_features": 2304}``, ``{"in_channels": 3}``,
            ``{"num_features": 32}``).
        parameter_shapes: The shape of each of its lazy parameters and
            buffers, by name.
        init_inputs: For a lazy module without a built-in resolver (your own
            ``LazyModuleMixin`` subclass, a third-party layer whose pre-hook
            materializes its parameters), the concrete inputs its own
            initialization is replayed on; None otherwise.
        depends_on: For such a module, the input symbols its sizes move with.

    Examples:
        >>> report = lazyfx.infer(Net(), ("B", 3, "H", "W"))
        >>> report.lazy["features.0"].resolution.parameter_shapes
        {'weight': (32, 3, 3, 3), 'bias': (32,)}
        >>> in_features = report.lazy["head"].resolution.arguments["in_features"]
        >>> in_features.subs({s: 32 for s in in_features.free_symbols})
        2304
    """

    arguments: dict[str, DimExpr]
    parameter_shapes: dict[str, tuple[DimExpr, ...]] = field(default_factory=dict)
    init_inputs: Optional[tuple[tuple, dict]] = None
    depends_on: list[str] = field(default_factory=list)

    @property
    def is_concrete(self) -> bool:
        """Whether every argument and parameter size is an int.

        Examples:
            >>> report = lazyfx.infer(Net(), ("B", 3, "H", "W"))
            >>> report.lazy["features.0"].resolution.is_concrete, report.lazy["head"].resolution.is_concrete
            (True, False)
        """
        for d in self.arguments.values():
            if not is_concrete(d):
                return False
        for shape in self.parameter_shapes.values():
            for d in shape:
                if not is_concrete(d):
                    return False
        return True

    def needs(self) -> str:
        """The sizes it needs, as messages say them: its arguments, or where it has none (a
        lazy module of your own that sets only its parameters), its parameters' shapes.

        Examples:
            >>> lazyfx.infer(Net(), ("B", 3, "H", "W")).lazy["head"].resolution.needs()
            'in_features = 64*((H - 9)//4 + 1)*((W - 9)//4 + 1)'
        """
        if self.arguments:
            return ", ".join(f"{k} = {fmt(v)}" for k, v in self.arguments.items())
        return ", ".join(f"{name} of shape {fmt(shape)}" for name, shape in self.parameter_shapes.items())


# nn.Module's own attribute lookup (parameters, buffers, submodules), captured before torch.fx
# patches it while tracing: rules read modules through it, so a parameter stays a tensor.
_MODULE_GETATTR = nn.Module.__getattr__


def read_attribute(module: nn.Module, name: str) -> Any:
    """``module.name`` as nn.Module defines it, whatever torch.fx has patched."""
    if name in module.__dict__ or hasattr(type(module), name):  # else (a parameter) no exception to raise
        try:
            return object.__getattribute__(module, name)
        except AttributeError:  # a property that raised it
            pass
    return _MODULE_GETATTR(module, name)


def registered_submodule(root: nn.Module, target: str) -> nn.Module:
    """The submodule at ``target``, a call_module node's path, found through ``_modules``:
    ``get_submodule`` reads each step with ``getattr``, which torch.fx patches while it traces
    (a tenth of analysing an EfficientNet went there)."""
    module = root
    for name in target.split(".") if target else ():
        child = module._modules.get(name)
        if child is None:  # not a registered path: get_submodule says why
            return root.get_submodule(target)
        module = child
    return module


def read_analysed(module: nn.Module, name: str) -> Any:
    """``module.name`` as the analysis sees the model: a parameter or buffer in the analysis
    dtype (``materialize(dtype=)``, see :func:`lazyfx.core.values.analysis_dtype`), as a meta stand-in
    where that differs from its own."""
    value = read_attribute(module, name)
    if ANALYSIS_DTYPE.get() is None or not isinstance(value, torch.Tensor) or not is_state(module, name):
        return value  # (no target dtype: as it is, without reading a parameter's dtype under the tracer's mode)
    dtype = analysed_dtype(value.dtype)
    if dtype == value.dtype:
        return value
    if isinstance(value, UninitializedParameter):
        return UninitializedParameter(value.requires_grad, "meta", dtype)
    if isinstance(value, UninitializedBuffer):
        return UninitializedBuffer(value.requires_grad, "meta", dtype)
    stand_in = torch.empty(value.shape, dtype=dtype, device="meta")
    return nn.Parameter(stand_in, value.requires_grad) if isinstance(value, nn.Parameter) else stand_in


def weight_dtype_of(module: Any) -> Optional[torch.dtype]:
    """The dtype of ``module.weight`` as the analysis sees it (None where it has none).
    Where no target dtype converts the model's tensors, the dtype is read with torch-function
    dispatch off: the tracer's modes and a lazy parameter's own ``__torch_function__`` then
    give it back as it is, and going through them was 40% of a convolution rule's time (a
    py-spy profile of ResNet-50)."""
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and ANALYSIS_DTYPE.get() is None:
        with torch._C.DisableTorchFunction():
            return weight.dtype
    return getattr(weight, "dtype", None)


def is_state(module: nn.Module, name: str) -> bool:
    """Whether ``module.name`` is a parameter or buffer (``module.to()`` converts those, not plain
    tensor attributes)."""
    return name in module._parameters or name in module._buffers


class ModuleView:
    """A read-only view of a module for shape rules: attributes read as nn.Module defines
    them, a lazy module's resolved arguments filled in, and the class it stands for (a
    lazy module's view is its eager class for rules and ``isinstance``)."""

    __slots__ = ("_module", "_cls", "__dict__")

    def __init__(self, module: nn.Module, arguments: Optional[dict[str, Any]] = None,
                 cls: Optional[type] = None) -> None:
        _SET_MODULE(self, module)  # (the slots' own setters: the view refuses every other write)
        _SET_CLASS(self, cls or type(module))
        # The view's attributes are the module's own plain ones: a rule reads most of them (a
        # convolution's kernel size, stride, padding, ...), and a dict answers each read at once,
        # where __getattr__ runs only after a failed lookup (a tenth of analysing a conv stack
        # went to those lookups). Without arguments to fill in, that dict is the module's own
        # (shared, not copied: rules only read, and the view cannot be written to); a name its
        # class answers with a data descriptor first (a property, a slot) is left to
        # __getattr__, as are parameters, buffers, submodules and class attributes.
        shadowed = _shadowed_attributes(type(module))
        if not arguments and not shadowed:
            _SET_DICT(self, module.__dict__)
            return
        attributes = dict(module.__dict__)
        for name in shadowed:
            attributes.pop(name, None)
        attributes.update(arguments or {})
        _SET_DICT(self, attributes)

    @property
    def __class__(self) -> type:  # rules see the class the module stands for
        return self._cls

    def __getattr__(self, name: str) -> Any:
        module = self._module
        if ANALYSIS_DTYPE.get() is None:  # a parameter or buffer as it is, as nn.Module.__getattr__ finds it:
            # no class attribute hides it (register_parameter and register_buffer refuse a name the
            # module already answers), and the view's dict (the module's own attributes) answered first
            parameters = module._parameters
            if name in parameters:
                return parameters[name]
            buffers = module._buffers
            if name in buffers:
                return buffers[name]
        return read_analysed(module, name)

    def __setattr__(self, name: str, value: Any) -> None:  # pragma: no cover - rules are pure
        raise AttributeError("a module view is read-only")


_SET_MODULE, _SET_CLASS = ModuleView._module.__set__, ModuleView._cls.__set__
_SET_DICT = ModuleView.__dict__["__dict__"].__set__


@functools.lru_cache(maxsize=1024)  # (the classes of the models at hand)
def _shadowed_attributes(cls: type) -> tuple[str, ...]:
    """The names a data descriptor of ``cls`` (a property, a slot) answers before an instance's
    own attribute of that name does: a view must not answer those from the module's dict."""
    return tuple(sorted({name for klass in cls.__mro__[:-1] for name, v in vars(klass).items()  # (not object's)
                         if name not in ("__dict__", "__weakref__")
                         and (hasattr(type(v), "__set__") or hasattr(type(v), "__delete__"))}))


def _present(module: nn.Module, names: tuple[str, ...]) -> list[str]:
    """The names among ``names`` that the module actually holds (bias may be None)."""
    return [n for n in names if module._parameters.get(n) is not None or module._buffers.get(n) is not None]


def resolve_linear(module: nn.LazyLinear, input: TensorMeta) -> Resolution:
    """``in_features = input.shape[-1]``; weight ``(out_features, in_features)``, bias ``(out_features,)``."""
    x = tensor_arg(input, "LazyLinear input")
    if x.ndim == 0:
        raise ShapeError("LazyLinear: input must have at least 1 dim, got a 0-dim tensor")
    in_features = x.shape[-1]
    shapes = {"weight": (module.out_features, in_features), "bias": (module.out_features,)}
    return Resolution({"in_features": in_features}, {n: shapes[n] for n in _present(module, ("weight", "bias"))})


def resolve_conv(module: nn.Module, input: TensorMeta, *args, **kwargs) -> Resolution:
    """``in_channels`` = dim 1 of a batched input, dim 0 of an unbatched one;
    weight ``(out, in/groups, *kernel)``, transposed ``(in, out/groups, *kernel)``."""
    n = lazy_class(module).spatial
    op = type(module).__name__
    x = tensor_arg(input, f"{op} input")
    expect_ndim(x, (n + 1, n + 2), op)
    in_channels = x.shape[1] if x.ndim == n + 2 else x.shape[0]
    groups = module.groups
    if groups > 1:
        require_divisible(
            in_channels, groups,
            lambda: f"{op}: in_channels ({fmt(in_channels)}, from the input of size {shape_str(x.shape)}) "
            f"must be divisible by groups={groups}",
        )
    out = module.out_channels
    if module.transposed:
        weight = (in_channels, out // groups, *module.kernel_size)
    else:
        weight = (out, floordiv(in_channels, groups), *module.kernel_size)
    shapes = {"weight": weight, "bias": (out,)}
    return Resolution({"in_channels": in_channels}, {n_: shapes[n_] for n_ in _present(module, ("weight", "bias"))})


_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _norm_resolution(module: nn.Module, channels: DimExpr) -> Resolution:
    names = _present(module, _NORM_TENSORS)
    return Resolution({"num_features": channels}, {n: (channels,) for n in names})


def resolve_batch_norm(module: nn.Module, input: TensorMeta) -> Resolution:
    """``num_features = input.shape[1]``; weight, bias, running stats ``(num_features,)``."""
    op = type(module).__name__
    x = tensor_arg(input, f"{op} input")
    if x.ndim < 2:
        raise ShapeError(f"{op} expects an input of at least 2 dims (N, C, ...), got size {shape_str(x.shape)}")
    return _norm_resolution(module, x.shape[1])


def resolve_instance_norm(module: nn.Module, input: TensorMeta) -> Resolution:
    """``num_features`` = the channel dim: 1 for batched inputs, 0 for unbatched ones."""
    op = type(module).__name__
    n = lazy_class(module).spatial
    x = tensor_arg(input, f"{op} input")
    expect_ndim(x, (n + 1, n + 2), op)
    return _norm_resolution(module, x.shape[x.ndim - n - 1])


# -- the table of built-in lazy classes ---------------------------------------------------------


@dataclass(frozen=True)
class LazyClass:
    """One of PyTorch's built-in lazy classes, as every stage of lazyfx knows it.

    Attributes:
        lazy: The lazy class (``nn.LazyConv2d``).
        eager: The class it becomes (its ``cls_to_become``, ``nn.Conv2d``), whose constructor
            takes ``argument`` first and then exactly the lazy constructor's parameters.
        argument: The constructor argument the input determines (``in_features``,
            ``in_channels``, ``num_features``): what the resolver returns, what a checkpoint
            gives back, what ``lazyfx fix`` writes first into the eager call (by keyword where
            the call passes its required arguments by keyword).
        spatial: How many dims a batched input has after (batch, channel): 2 for
            ``LazyConv2d``, 1 for ``LazyBatchNorm1d`` (whose length dim is optional), 0 for
            ``LazyLinear`` (its input is ``(..., in_features)``).
        resolver: ``resolver(module, input) -> Resolution``: the argument and the parameter
            shapes an input determines (registered in :data:`lazyfx.core.registry.RESOLVERS`).
        ranks: Each parameter and buffer the class may hold lazily, with its rank.
        source: The tensors of a checkpoint that give ``argument`` (the first one the module
            holds), read at dim ``source_dim``.
        source_dim: See ``source``.
        per_group: Whether that dim holds ``argument / groups`` (a convolution's weight
            ``(out, in/groups, *kernel)``).

    Examples:
        >>> conv = LAZY_CLASSES[nn.LazyConv2d]
        >>> conv.eager.__name__, conv.argument, conv.spatial
        ('Conv2d', 'in_channels', 2)
        >>> conv.arguments_from(nn.LazyConv2d(8, 3, groups=2), {"weight": (8, 2, 3, 3)})
        {'in_channels': 4}
    """

    lazy: type
    eager: type
    argument: str
    spatial: int
    resolver: Callable[..., Resolution]
    ranks: Mapping[str, int]
    source: tuple[str, ...]
    source_dim: int
    per_group: bool = False

    def arguments_from(self, module: nn.Module, shapes: Mapping[str, tuple]) -> dict[str, int]:
        """The constructor argument the checkpoint's ``shapes`` (by tensor name) give, or ``{}``
        where they hold none of ``source`` (a norm without affine parameters or running
        statistics has nothing in a checkpoint).

        Examples:
            >>> LAZY_CLASSES[nn.LazyLinear].arguments_from(nn.LazyLinear(10), {"weight": (10, 64)})
            {'in_features': 64}
        """
        for name in self.source:
            if name in shapes:
                size = shapes[name][self.source_dim]
                return {self.argument: size * module.groups if self.per_group else size}
        return {}

    def parameter_shapes(self, module: nn.Module, arguments: Mapping[str, int]) -> dict[str, tuple]:
        """The shapes of the module's lazy tensors given its ``arguments`` and its own options,
        from its resolver (on an input whose channel dim is the argument).

        Examples:
            >>> LAZY_CLASSES[nn.LazyConvTranspose1d].parameter_shapes(nn.LazyConvTranspose1d(4, 3), {"in_channels": 6})
            {'weight': (6, 4, 3), 'bias': (4,)}
        """
        probe = TensorMeta((1, arguments[self.argument], *(1,) * self.spatial))
        return self.resolver(module, probe).parameter_shapes


def _table() -> dict[type, LazyClass]:
    classes = [LazyClass(nn.LazyLinear, nn.Linear, "in_features", 0, resolve_linear,
                         {"weight": 2, "bias": 1}, ("weight",), 1)]
    for n, conv, transposed in ((1, (nn.LazyConv1d, nn.Conv1d), (nn.LazyConvTranspose1d, nn.ConvTranspose1d)),
                                (2, (nn.LazyConv2d, nn.Conv2d), (nn.LazyConvTranspose2d, nn.ConvTranspose2d)),
                                (3, (nn.LazyConv3d, nn.Conv3d), (nn.LazyConvTranspose3d, nn.ConvTranspose3d))):
        ranks = {"weight": n + 2, "bias": 1}
        classes.append(LazyClass(*conv, "in_channels", n, resolve_conv, ranks, ("weight",), 1, per_group=True))
        classes.append(LazyClass(*transposed, "in_channels", n, resolve_conv, ranks, ("weight",), 0))
    norm_ranks = dict.fromkeys(_NORM_TENSORS, 1)
    for n, batch, instance in ((1, (nn.LazyBatchNorm1d, nn.BatchNorm1d), (nn.LazyInstanceNorm1d, nn.InstanceNorm1d)),
                               (2, (nn.LazyBatchNorm2d, nn.BatchNorm2d), (nn.LazyInstanceNorm2d, nn.InstanceNorm2d)),
                               (3, (nn.LazyBatchNorm3d, nn.BatchNorm3d), (nn.LazyInstanceNorm3d, nn.InstanceNorm3d))):
        classes.append(LazyClass(*batch, "num_features", n, resolve_batch_norm, norm_ranks, _NORM_TENSORS, 0))
        classes.append(LazyClass(*instance, "num_features", n, resolve_instance_norm, norm_ranks, _NORM_TENSORS, 0))
    return {c.lazy: c for c in classes}


LAZY_CLASSES: dict[type, LazyClass] = _table()
"""Every built-in lazy class's descriptor, by lazy class."""

for _descriptor in LAZY_CLASSES.values():
    resolver(_descriptor.lazy)(_descriptor.resolver)
del _descriptor


def lazy_class(module: nn.Module) -> Optional[LazyClass]:
    """The descriptor of the built-in lazy class ``module`` is, or derives from (a subclass
    keeps its parameters' layout); None for any other module.

    Examples:
        >>> lazy_class(nn.LazyLinear(3)).eager.__name__, lazy_class(nn.Linear(2, 3))
        ('Linear', None)
    """
    return lookup_by_class(LAZY_CLASSES, type(module))
