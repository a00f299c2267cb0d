"""Random numbers forward draws before a lazy module's first call.

A dry run initializes each lazy module from the random number generator when forward first
calls it; whatever forward draws before that (dropout in training mode, ``torch.randn`` for
noise, ``F.dropout(x, p)``, whose ``training`` defaults to True) moves the generator, so the
module's values depend on those draws, and on how many numbers they take (the size of the
tensor they fill). lazyfx creates the parameters without running forward, so it cannot give
those values: it finds such draws and says so (``LFX025``), rather than materializing values
that silently differ from a dry run's.

Draws are found in the traced graph by operation (:func:`draws_in_graph`) and, in code
analysed by abstract execution, by watching every ATen operation its forward runs for
PyTorch's ``nondeterministic_seeded`` tag (:class:`DrawWatcher`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from lazyfx.diagnostics import SourceLocation, caller_location


@dataclass(frozen=True)
class Draw:
    """Forward draws random numbers: ``what`` at ``location``, after ``after`` first calls of
    lazy modules (in first-call order)."""

    what: str
    location: Optional[SourceLocation]
    after: int


# Factories and in-place fills that always draw.
_DRAWING_FUNCTIONS = {torch.rand, torch.randn, torch.randint, torch.randperm, torch.rand_like, torch.randn_like,
                      torch.randint_like, torch.normal, torch.bernoulli, torch.multinomial, torch.poisson,
                      F.gumbel_softmax}
_DRAWING_METHODS = {"normal_", "uniform_", "bernoulli_", "bernoulli", "random_", "exponential_", "geometric_",
                    "cauchy_", "log_normal_", "multinomial"}
# Functions that draw in training mode only: the position and default of their ``training``
# argument (F.dropout's is True: it drops even when the model is in eval mode).
_TRAINING_FUNCTIONS = {F.dropout: (2, True), F.dropout1d: (2, True), F.dropout2d: (2, True),
                       F.dropout3d: (2, True), F.alpha_dropout: (2, False), F.feature_alpha_dropout: (2, False),
                       torch.dropout: (2, False), F.rrelu: (3, False)}
_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _probability(value) -> bool:
    """Whether a dropout probability draws: PyTorch skips the draw at 0 and at 1."""
    return not isinstance(value, (int, float)) or 0 < value < 1


def function_draws(function, args: tuple, kwargs: dict) -> bool:
    """Whether a traced call of ``function`` draws random numbers."""
    if function in _DRAWING_FUNCTIONS:
        return True
    if function in _TRAINING_FUNCTIONS:
        position, default = _TRAINING_FUNCTIONS[function]
        training = kwargs.get("training", kwargs.get("train", args[position] if len(args) > position else default))
        if function is F.rrelu:
            return bool(training)
        p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
        return bool(training) and _probability(p)
    if function is F.scaled_dot_product_attention:
        p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
        return _probability(p) and p != 0
    return False


def module_draws(module: nn.Module) -> Optional[str]:
    """What draws random numbers when ``module`` (a leaf of the graph) runs, or None."""
    for name, sub in module.named_modules():
        if not sub.training:
            continue
        if isinstance(sub, _DROPOUT_MODULES) and _probability(sub.p):
            return f"{type(sub).__name__}(p={sub.p}) in training mode" + (f" ('{name}')" if name else "")
        if isinstance(sub, nn.RReLU):
            return "RReLU in training mode" + (f" ('{name}')" if name else "")
        if isinstance(sub, nn.MultiheadAttention) and sub.dropout > 0:
            return f"MultiheadAttention(dropout={sub.dropout}) in training mode" + (f" ('{name}')" if name else "")
    return None


def draws_in_graph(graph, root: nn.Module, lazy_nodes: dict[str, int], opaque: dict[str, list[Draw]],
                   locations: dict[str, Optional[SourceLocation]]) -> list[Draw]:
    """The draws of a traced graph, in order. ``lazy_nodes``: node name -> how many lazy
    modules are first called up to and including that node (a draw at a lazy module's own
    node is its forward, after its initialization); ``opaque``: the draws abstract execution
    found in an untraceable node, counted from the first calls before it."""
    found: list[Draw] = []
    before = 0
    for node in graph.nodes:
        location = locations.get(node.name)
        if node.name in opaque:
            found += [Draw(d.what, d.location, before + d.after) for d in opaque[node.name]]
        elif node.op == "call_function":
            args = tuple(_literal(a) for a in node.args)
            kwargs = {k: _literal(v) for k, v in node.kwargs.items()}
            if function_draws(node.target, args, kwargs):
                found.append(Draw(getattr(node.target, "__name__", str(node.target)), location, before))
        elif node.op == "call_method" and node.target in _DRAWING_METHODS:
            found.append(Draw(f".{node.target}()", location, before))
        elif node.op == "call_module" and node.name not in lazy_nodes:
            what = module_draws(root.get_submodule(node.target))
            if what is not None:
                found.append(Draw(f"'{node.target}': {what}", location, before))
        before = lazy_nodes.get(node.name, before)
    return found


def _literal(value):
    """A graph argument as a Python value where it is one (a node stands for a tensor or size)."""
    return value if isinstance(value, (bool, int, float, type(None))) else object()


class DrawWatcher(TorchDispatchMode):
    """Records the ATen operations that draw random numbers while forward runs (abstract
    execution), with how many lazy modules had been first called by then (``calls()``).
    Draws inside a lazy module's own call (its initialization) are its initialization's."""

    def __init__(self, calls) -> None:
        super().__init__()
        self.calls = calls
        self.draws: list[Draw] = []
        self.inside_lazy = 0

    def enter_lazy(self, *_) -> None:
        self.inside_lazy += 1

    def leave_lazy(self, *_) -> None:
        self.inside_lazy -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.inside_lazy and torch.Tag.nondeterministic_seeded in func.tags:
            self.draws.append(Draw(func.__name__.split(".")[0], caller_location(), self.calls()))
        return func(*args, **(kwargs or {}))
