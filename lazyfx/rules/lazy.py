"""Lazy modules: detection, and exact resolvers for PyTorch's 13 built-in lazy classes.

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

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy

from lazyfx.core.checks import require_divisible
from lazyfx.core.registry import lookup_by_class, resolver
from lazyfx.core.symbolic import DimExpr, floordiv, fmt, is_concrete
from lazyfx.core.values import TensorMeta, analysed_dtype
from lazyfx.errors import ShapeError
from lazyfx.rules._util import expect_ndim, shape_str, tensor_arg


def is_lazy_module(module: nn.Module) -> bool:
    """A module whose own parameters are (or were) lazy: a ``LazyModuleMixin`` not yet
    turned into its eager class, or any module holding an uninitialized parameter or buffer."""
    if isinstance(module, LazyModuleMixin):
        return True
    tensors = list(module._parameters.values()) + list(module._buffers.values())
    return any(is_lazy(t) for t in tensors)


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
        dims = list(self.arguments.values()) + [d for s in self.parameter_shapes.values() for d in s]
        return all(is_concrete(d) for d in dims)

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
    try:
        return object.__getattribute__(module, name)
    except AttributeError:
        return _MODULE_GETATTR(module, name)


def read_analysed(module: nn.Module, name: str) -> Any:
    """``module.name`` as the analysis sees the model: a parameter or buffer in the analysis
    dtype (``materialize(dtype=)``, see :func:`lazyfx.core.values.analysis_dtype`), as a meta stand-in
    where that differs from its own."""
    value = read_attribute(module, name)
    if not isinstance(value, torch.Tensor) or not is_state(module, name):
        return value
    dtype = analysed_dtype(value.dtype)
    if dtype == value.dtype:
        return value
    if isinstance(value, UninitializedParameter):
        return UninitializedParameter(value.requires_grad, "meta", dtype)
    if isinstance(value, UninitializedBuffer):
        return UninitializedBuffer(value.requires_grad, "meta", dtype)
    stand_in = torch.empty(value.shape, dtype=dtype, device="meta")
    return nn.Parameter(stand_in, value.requires_grad) if isinstance(value, nn.Parameter) else stand_in


def is_state(module: nn.Module, name: str) -> bool:
    """Whether ``module.name`` is a parameter or buffer (``module.to()`` converts those, not plain
    tensor attributes)."""
    return name in module._parameters or name in module._buffers


class ModuleView:
    """A read-only view of a module for shape rules: attributes read as nn.Module defines
    them, a lazy module's resolved arguments filled in, and the class it stands for (a
    lazy module's view is its eager class for rules and ``isinstance``)."""

    def __init__(self, module: nn.Module, arguments: Optional[dict[str, Any]] = None,
                 cls: Optional[type] = None) -> None:
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_arguments", arguments or {})
        object.__setattr__(self, "_cls", cls or type(module))

    @property
    def __class__(self) -> type:  # rules see the class the module stands for
        return self._cls

    def __getattr__(self, name: str) -> Any:
        if name in self._arguments:
            return self._arguments[name]
        return read_analysed(self._module, name)

    def __setattr__(self, name: str, value: Any) -> None:  # pragma: no cover - rules are pure
        raise AttributeError("a module view is read-only")


def _present(module: nn.Module, names: tuple[str, ...]) -> list[str]:
    """The names among ``names`` that the module actually holds (bias may be None)."""
    return [n for n in names if module._parameters.get(n) is not None or module._buffers.get(n) is not None]


@resolver(nn.LazyLinear)
def resolve_linear(module: nn.LazyLinear, input: TensorMeta) -> Resolution:
    """``in_features = input.shape[-1]``; weight ``(out_features, in_features)``, bias ``(out_features,)``."""
    x = tensor_arg(input, "LazyLinear input")
    if x.ndim == 0:
        raise ShapeError("LazyLinear: input must have at least 1 dim, got a 0-dim tensor")
    in_features = x.shape[-1]
    shapes = {"weight": (module.out_features, in_features), "bias": (module.out_features,)}
    return Resolution({"in_features": in_features}, {n: shapes[n] for n in _present(module, ("weight", "bias"))})


@resolver(
    nn.LazyConv1d, nn.LazyConv2d, nn.LazyConv3d,
    nn.LazyConvTranspose1d, nn.LazyConvTranspose2d, nn.LazyConvTranspose3d,
)
def resolve_conv(module: nn.Module, input: TensorMeta, *args, **kwargs) -> Resolution:
    """``in_channels`` = dim 1 of a batched input, dim 0 of an unbatched one;
    weight ``(out, in/groups, *kernel)``, transposed ``(in, out/groups, *kernel)``."""
    n = len(module.kernel_size)
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


@resolver(nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)
def resolve_batch_norm(module: nn.Module, input: TensorMeta) -> Resolution:
    """``num_features = input.shape[1]``; weight, bias, running stats ``(num_features,)``."""
    op = type(module).__name__
    x = tensor_arg(input, f"{op} input")
    if x.ndim < 2:
        raise ShapeError(f"{op} expects an input of at least 2 dims (N, C, ...), got size {shape_str(x.shape)}")
    return _norm_resolution(module, x.shape[1])


_INSTANCE_NORM_SPATIAL = {nn.LazyInstanceNorm1d: 1, nn.LazyInstanceNorm2d: 2, nn.LazyInstanceNorm3d: 3}


@resolver(nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d)
def resolve_instance_norm(module: nn.Module, input: TensorMeta) -> Resolution:
    """``num_features`` = the channel dim: 1 for batched inputs, 0 for unbatched ones."""
    op = type(module).__name__
    n = lookup_by_class(_INSTANCE_NORM_SPATIAL, module.__class__)
    x = tensor_arg(input, f"{op} input")
    expect_ndim(x, (n + 1, n + 2), op)
    return _norm_resolution(module, x.shape[x.ndim - n - 1])
