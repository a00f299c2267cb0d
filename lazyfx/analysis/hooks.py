"""Forward hooks and pre-hooks on the modules torch.fx keeps as leaves.

torch.fx replaces ``nn.Module.__call__`` while it traces, so a leaf module
(a PyTorch layer, a lazy module) becomes one graph node and its hooks never
run. :func:`call_with_hooks` runs them as ``nn.Module.__call__`` would, in
the same order (global pre-hooks, the module's own, forward, global forward
hooks, the module's own), on the traced values: their bodies are traced like
forward, so a hook that slices the output (``out[..., :3]``) is a node
whose shape is propagated. A lazy module's own initialization pre-hook is
not a user hook: the module node stands for it. A pre-hook that runs after
it and changes the input's shape is refused (LFX013): the dry run then
initializes the module from one input and calls it on another. The nodes of
the pre-hooks that run after it are marked, so that a random number one of
them draws counts after the module's initialization, as in a dry run (the
constructor registers it first; ``prepend=True`` puts a hook before it).
"""

from __future__ import annotations

from typing import Any, Callable

import torch.fx as fx
import torch.nn as nn
from torch.nn.modules import module as _module
from torch.nn.parameter import is_lazy

from lazyfx.analysis.randomness import AFTER_INITIALIZATION_OF
from lazyfx.analysis.untraceable import untraceable, untraceable_reason
from lazyfx.core import diagnostics
from lazyfx.core.values import describe
from lazyfx.errors import LazyFXError, TraceError


def _forward_hooks(m: nn.Module) -> list[tuple[Any, Callable, bool]]:
    return [(i, hook, i in m._forward_hooks_with_kwargs or i in _module._global_forward_hooks_with_kwargs)
            for i, hook in (*_module._global_forward_hooks.items(), *m._forward_hooks.items())]


def _pre_hooks(m: nn.Module) -> list[tuple[Any, Callable, bool]]:
    return [(i, hook, i in m._forward_pre_hooks_with_kwargs)
            for i, hook in (*_module._global_forward_pre_hooks.items(), *m._forward_pre_hooks.items())]


def _initialization_hooks(m: nn.Module) -> set:
    """The ids of ``m``'s own initialization pre-hooks: a LazyModuleMixin's ``_initialize_hook``,
    and for a third-party lazy layer (an ``UninitializedParameter`` with a pre-hook of its own, as
    PyTorch Geometric's ``Linear(-1, out)``) the pre-hooks that are its own bound methods."""
    ids = set()
    handle = m.__dict__.get("_initialize_hook")  # (not getattr: torch.fx patches a module's __getattr__)
    if handle is not None:
        ids.add(handle.id)
    if any(is_lazy(t) for t in (*m._parameters.values(), *m._buffers.values()) if t is not None):
        ids |= {i for i, hook in m._forward_pre_hooks.items() if getattr(hook, "__self__", None) is m}
    return ids


def has_user_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or _module._global_forward_hooks) or has_pre_hooks(m)


def has_pre_hooks(m: nn.Module) -> bool:
    own = m._forward_pre_hooks
    if not _module._global_forward_pre_hooks:  # asked at every module call: the common cases cheaply
        if not own:
            return False
        handle = m.__dict__.get("_initialize_hook")
        if len(own) == 1 and handle is not None and handle.id in own:  # a lazy module's own only
            return False
    init = _initialization_hooks(m)
    return any(i not in init for i, _, _ in _pre_hooks(m))


def call_with_hooks(tracer, m: nn.Module, path: str, call: Callable[[tuple, dict], Any],
                    args: tuple, kwargs: dict) -> Any:
    """``call(args, kwargs)`` (the leaf's node) with ``m``'s hooks traced around it."""
    init = _initialization_hooks(m)
    at_init = None
    hooked_after_init = None  # the last node before the pre-hooks that run after the initialization
    for hook_id, hook, with_kwargs in _pre_hooks(m):
        if hook_id in init:
            if at_init is None:
                at_init = (args, kwargs)
                hooked_after_init = _last_node(tracer)
            continue
        previous, tracer.initializing = tracer.initializing, path if at_init is not None else tracer.initializing
        try:
            if with_kwargs:
                result = _run(hook, "forward pre-hook", path, m, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise TraceError(f"the forward pre-hook {_name(hook)} of '{path}' must return None or "
                                         f"(args, kwargs), as nn.Module requires; it returned {type(result).__name__}",
                                         code=diagnostics.HOOK_NOT_FOLLOWED, module_path=path)
                    args, kwargs = result
            else:
                result = _run(hook, "forward pre-hook", path, m, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        finally:
            tracer.initializing = previous
    if at_init is not None and (args, kwargs) is not at_init:
        _check_same_input(tracer, m, path, at_init, (args, kwargs))
    out = call(args, kwargs)
    if hooked_after_init is not None and isinstance(out, fx.Proxy) and out.node.op == "call_module":
        _mark_after_initialization(tracer, hooked_after_init, out.node)
    for _, hook, with_kwargs in _forward_hooks(m):
        result = _run(hook, "forward hook", path, m, args, kwargs, out) if with_kwargs else \
            _run(hook, "forward hook", path, m, args, out)
        if result is not None:
            out = result
    return out


def _last_node(tracer) -> Any:
    return next(reversed(tracer.graph.nodes), None)


def _mark_after_initialization(tracer, last: Any, module_node: fx.Node) -> None:
    """Mark the nodes traced after ``last`` up to ``module_node`` (the pre-hooks that a dry run
    runs after the lazy module's own initialization) so that their random draws count after
    that initialization (:func:`lazyfx.analysis.randomness.draws_in_graph`)."""
    node = last.next if last is not None else next(iter(tracer.graph.nodes), None)
    while node is not None and node is not module_node and node.op != "root":
        node.meta[AFTER_INITIALIZATION_OF] = module_node.name
        node = node.next


def _run(hook: Callable, kind: str, path: str, *args: Any) -> Any:
    try:
        return hook(*args)
    except LazyFXError as exc:
        if not untraceable(exc):
            raise
        reason = exc.message
    except Exception as exc:
        if not untraceable(exc):
            raise
        reason = untraceable_reason(exc)
    raise TraceError(
        f"lazyfx cannot follow the {kind} {_name(hook)} of '{path}' ({type(args[0]).__name__}) from shapes: "
        f"{reason}", code=diagnostics.HOOK_NOT_FOLLOWED, module_path=path,
        notes=["a hook's body is traced like forward: it may change shapes, but not branch on or read tensor "
               "values; remove the hook while analysing, or register it after materialize"],
    ) from None


def _check_same_input(tracer, m: nn.Module, path: str, before: tuple, after: tuple) -> None:
    """A pre-hook after a lazy module's own initialization must keep the input's shapes: a dry
    run initializes from the input before the hook, then calls forward on the hook's result."""
    value = tracer.propagator.value

    def shapes(v):
        return fx.node.map_aggregate(v, lambda a: value(a.node) if isinstance(a, fx.Proxy) else a)

    if not getattr(m, "has_uninitialized_params", lambda: False)():
        return
    old, new = shapes(before), shapes(after)
    if old != new:
        raise TraceError(
            f"a forward pre-hook of the lazy module '{path}' ({type(m).__name__}) changes its input after the "
            f"module's own initialization has read it: a dry run initializes '{path}' from {_describe(old)} and then "
            f"calls its forward on {_describe(new)}",
            code=diagnostics.HOOK_NOT_FOLLOWED, module_path=path,
            notes=["register the hook on the module before it (as a forward hook), or use "
                   "register_forward_pre_hook(..., prepend=True) so that it runs before the initialization"],
        )


def _describe(value: Any) -> str:
    args, kwargs = value
    return ", ".join([describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()])


def _name(hook: Callable) -> str:
    code = getattr(hook, "__code__", None)
    name = getattr(hook, "__qualname__", None) or type(hook).__name__
    return f"{name} ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})" if code else name
