"""Compare ``lazyfx.materialize`` with a real dry run of the lazy model.

A dry run is what users do today: build the lazy model, put it in eval
mode, run one zero batch through it. Under the same seed, lazyfx must give
the same module types, the same parameter and buffer shapes and dtypes, and
bit-identical values.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.fx
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy

import lazyfx


def dry_run(build: Callable[[], nn.Module], *shapes, dtype=torch.float32, seed: int = 0) -> nn.Module:
    """``dtype``: one for every input, or a tuple with one per input (a graph's float features and
    int64 edge_index)."""
    torch.manual_seed(seed)
    model = build()
    model.eval()
    dtypes = dtype if isinstance(dtype, tuple) else (dtype,) * len(shapes)
    with torch.no_grad():
        model(*(torch.zeros(shape, dtype=d) for shape, d in zip(shapes, dtypes)))
    return model


def dry_run_calls(build: Callable[[], nn.Module], calls, seed: int = 0) -> nn.Module:
    """A dry run that makes several calls in order: ``calls`` is a list of (shapes, keyword
    arguments); each shape becomes a zero tensor, positionally."""
    torch.manual_seed(seed)
    model = build()
    model.eval()
    with torch.no_grad():
        for shapes, kwargs in calls:
            model(*(torch.zeros(shape) for shape in shapes), **kwargs)
    return model


def materialized(build: Callable[[], nn.Module], *specs, seed: int = 0, **options) -> nn.Module:
    torch.manual_seed(seed)
    model = build()
    model.eval()
    return lazyfx.materialize(model, *specs, **options)


def assert_no_laziness(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, LazyModuleMixin):  # allowed only without a class to become, hooks gone
            assert module.cls_to_become is None, f"{name or '<root>'} is still {type(module).__name__}"
            assert not hasattr(module, "_initialize_hook"), f"{name or '<root>'} still has its lazy hook"
        hooks = list(module._forward_pre_hooks.values()) + list(module._load_state_dict_pre_hooks.values())
        assert not any("lazy" in repr(h).lower() or "_infer_parameters" in repr(h) for h in hooks), name
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        assert not is_lazy(tensor), f"{name} is still uninitialized"


def same_class(a: nn.Module, b: nn.Module) -> bool:
    """The same class; for torch.fx GraphModules (``torch_geometric.nn.to_hetero`` makes one), which
    get a class of their own per instance, the same generated code."""
    if isinstance(a, torch.fx.GraphModule) and isinstance(b, torch.fx.GraphModule):
        return type(a).__mro__[1:] == type(b).__mro__[1:] and a.code == b.code
    return type(a) is type(b)


def assert_same_model(expected: nn.Module, actual: nn.Module) -> None:
    """Same structure and types, same state (shapes, dtypes, devices, bit-identical values)."""
    assert same_class(actual, expected)
    expected_modules = dict(expected.named_modules())
    actual_modules = dict(actual.named_modules())
    assert list(actual_modules) == list(expected_modules)
    for name, module in expected_modules.items():
        assert same_class(actual_modules[name], module), f"{name}: {type(actual_modules[name])} vs {type(module)}"
        for attr in ("in_features", "in_channels", "num_features", "out_features", "out_channels"):
            if attr == "num_features" and getattr(module, attr, None) == 0 and not module.state_dict():
                # PyTorch's lazy norms without affine or running stats never set num_features (it
                # stays 0); lazyfx records the true channel count.
                continue
            if hasattr(module, attr):
                assert getattr(actual_modules[name], attr) == getattr(module, attr), f"{name}.{attr}"
    expected_state, actual_state = expected.state_dict(), actual.state_dict()
    assert list(actual_state) == list(expected_state)
    for key, value in expected_state.items():
        got = actual_state[key]
        assert got.shape == value.shape, f"{key}: {tuple(got.shape)} vs {tuple(value.shape)}"
        assert got.dtype == value.dtype, f"{key}: {got.dtype} vs {value.dtype}"
        assert torch.equal(got, value), f"{key}: values differ"
    assert_no_laziness(actual)
