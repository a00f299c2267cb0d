"""Random numbers forward draws before a lazy module's first call.

A dry run initializes each lazy module from the random number generator when forward first
calls it; whatever forward draws before that (dropout in training mode, ``torch.randn`` for
noise, ``F.dropout(x, p)``, whose ``training`` defaults to True) moves the generator, so the
module's values depend on those draws, and on how many numbers they take (the size of the
tensor they fill). lazyfx creates the parameters without running forward, so it cannot give
those values without them. Where a draw takes a number of random values that depends only on
concrete sizes (dropout, ``randn_like``, ``normal_``: one tensor's worth), materialize replays
it at its place among the initializations, on a zero tensor of that size on the device (the
only memory it allocates beyond the parameters, freed at once), and the values are a dry
run's. Otherwise (a size that depends on a symbol, RReLU and multinomial, whose draws depend
on values, dropout inside a layer lazyfx does not run) it says so (``LFX025``), rather than
materializing values that silently differ from a dry run's.

Draws are found in the traced graph by operation (:func:`draws_in_graph`) and, in code
analysed by abstract execution, by watching every ATen operation its forward runs for
PyTorch's ``nondeterministic_seeded`` tag (:class:`DrawWatcher`). While forward is traced,
:class:`GeneratorWatcher` watches the same tag: a draw forward's own code makes for real
(only concrete arguments, ``torch.randperm(4)``, ``torch.randn(2, 5)``: no graph node) moves
the global generators, and is replayed as it ran; a drawing operation inside a node's
analysis (a function the meta-kernel fallback runs) marks that node as drawing.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import sympy
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from lazyfx.core.compat import DispatchMode
from lazyfx.core.diagnostics import SourceLocation, caller_location
from lazyfx.core.symbolic import free_symbols
from lazyfx.core.values import TensorMeta, map_values
from lazyfx.rules.lazy import registered_submodule


@dataclass(frozen=True)
class Draw:
    """Forward draws random numbers: ``what`` at ``location``, after ``after`` first calls of
    lazy modules (in first-call order). ``replay(device)`` draws as many numbers again, where
    that depends on concrete sizes only; else ``obstacle`` says why it cannot."""

    what: str
    location: Optional[SourceLocation]
    after: int
    replay: Optional[Callable[[Optional[torch.device]], None]] = field(default=None, compare=False)
    obstacle: Optional[str] = None


def _on(device: Optional[torch.device], value: Any) -> Any:
    """``value`` with each TensorMeta as a zero tensor on ``device`` (the draw reads no values),
    sizes as ints, and the target device where the dry run used the input's."""
    def convert(v):
        if isinstance(v, TensorMeta):
            return torch.zeros(tuple(int(d) for d in v.shape), dtype=v.dtype, device=device)
        if v is _TARGET:
            return device
        if isinstance(v, sympy.Basic) and v.is_Integer:
            return int(v)
        return v

    return map_values(convert, value)


def _symbolic(value: Any) -> list[str]:
    """The symbols the sizes in ``value`` depend on."""
    names: set[str] = set()

    def visit(v):
        dims = v.shape if isinstance(v, TensorMeta) else (v,)
        for d in dims:
            names.update(s.name for s in free_symbols(d))

    map_values(visit, value)
    return sorted(names)


def _symbolic_obstacle(names: list[str]) -> str:
    return (f"it takes as many random numbers as the tensor it fills has elements, which depends on "
            f"{', '.join(names)}: give concrete sizes (the dry run's) to replay it")


def at_representative_sizes(draws: list[Draw], symbols: list[str]) -> list[Draw]:
    """Draws found by running forward at representative sizes of ``symbols``: how many numbers
    a dry run draws depends on its real sizes, so none can be replayed."""
    if not symbols:
        return draws
    return [dataclasses.replace(d, replay=None, obstacle=d.obstacle or _symbolic_obstacle(symbols)) for d in draws]


def _replaying(what: str, location, after: int, call: Callable, args: tuple, kwargs: dict) -> Draw:
    """A draw replayed by ``call(*args, **kwargs)`` with the tensors as zeros on the device."""
    names = _symbolic((args, kwargs))
    if names:
        return Draw(what, location, after, obstacle=_symbolic_obstacle(names))

    def replay(device):
        with torch.no_grad():
            call(*_on(device, args), **_on(device, kwargs))

    return Draw(what, location, after, replay)


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
# Draws whose count depends on tensor values (RReLU draws for the negative inputs only).
_VALUE_DEPENDENT_FUNCTIONS = {torch.multinomial, torch.poisson, F.rrelu}
_VALUE_DEPENDENT_METHODS = {"multinomial"}
_VALUE_DEPENDENT_OPS = {"multinomial", "poisson", "binomial", "_standard_gamma", "_sample_dirichlet",
                        "rrelu_with_noise", "rrelu_with_noise_", "_rrelu_with_noise", "rrelu_with_noise_functional"}
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
    # (checked for every module node: a layer without sublayers, the usual leaf, is all there is)
    for name, sub in module.named_modules() if module._modules else (("", module),):
        if not sub.training:
            continue
        if isinstance(sub, _DROPOUT_MODULES) and _probability(sub.p):
            return f"{type(sub).__name__}(p={sub.p}) in training mode" + (f" ('{name}')" if name else "")
        if isinstance(sub, nn.RReLU):
            return "RReLU in training mode" + (f" ('{name}')" if name else "")
        if isinstance(sub, nn.MultiheadAttention) and sub.dropout > 0:
            return f"MultiheadAttention(dropout={sub.dropout}) in training mode" + (f" ('{name}')" if name else "")
        if isinstance(sub, nn.RNNBase) and sub.dropout > 0 and sub.num_layers > 1:  # between its layers
            return f"{type(sub).__name__}(dropout={sub.dropout}) in training mode" + (f" ('{name}')" if name else "")
    return None


def draws_in_graph(graph, root: nn.Module, lazy_nodes: dict[str, int], opaque: dict[str, list[Draw]],
                   records: dict, real: list[tuple] = (), seeded: Optional[dict[str, str]] = None) -> list[Draw]:
    """The draws of a traced graph, in order. ``lazy_nodes``: node name -> how many lazy
    modules are first called up to and including that node (a draw at a lazy module's own
    node is its forward, after its initialization); ``opaque``: the draws abstract execution
    found in an untraceable node, counted from the first calls before it; ``records``: node
    name -> its NodeRecord (value and location); ``real``: (the node before it, Draw) for each
    draw forward made for real while it was traced (:class:`GeneratorWatcher`), placed right
    after that node; ``seeded``: node -> a drawing ATen operation its analysis ran."""
    seeded = seeded or {}
    after_node: dict[Optional[str], list[Draw]] = {}
    for position, draw in real:
        after_node.setdefault(_live(position), []).append(draw)
    found: list[Draw] = list(after_node.pop(None, ()))
    before = 0
    for node in graph.nodes:
        record = records.get(node.name)
        location = record.location if record else None
        if node.name in opaque:
            found += [dataclasses.replace(d, after=before + d.after) for d in opaque[node.name]]
        elif node.op in ("call_function", "call_method", "call_module") and node.name not in lazy_nodes:
            # a pre-hook that runs after its lazy module's own initialization draws after it (hooks.py)
            initialized = node.meta.get(AFTER_INITIALIZATION_OF)
            at = lazy_nodes.get(initialized, before) if initialized else before
            draw = _node_draw(node, root, records, location, at, seeded.get(node.name))
            if draw is not None:
                found.append(draw)
        before = lazy_nodes.get(node.name, before)
        found += after_node.pop(node.name, ())
    # never expected (_live finds a node of the graph or None): refused rather than misplaced
    found += [dataclasses.replace(d, replay=None, obstacle="lazyfx lost its place among forward's other draws")
              for draws in after_node.values() for d in draws]
    return found


def _live(node: Optional[fx.Node]) -> Optional[str]:
    """The name of ``node``, or of the nearest node before it still in the graph where the trace
    erased it since (an input's unpacking nothing used): the draw's place among the others."""
    while node is not None and getattr(node, "_erased", False):
        node = node.prev
    return None if node is None or node.op == "root" else node.name


# node.meta key: the lazy module node whose own initialization ran before this node (a user
# forward pre-hook registered after the lazy module's initialization pre-hook)
AFTER_INITIALIZATION_OF = "lazyfx_after_initialization_of"


def _node_draw(node: fx.Node, root: nn.Module, records: dict, location, before: int,
               seeded: Optional[str] = None) -> Optional[Draw]:
    """The draw a graph node makes, or None (checked cheaply first: this runs for every node).
    ``seeded``: a drawing ATen operation the node's analysis ran, for a node no list below
    names (a ``torch.fx.wrap``'d function, a layer without a shape rule, run by PyTorch's
    meta kernels): a draw too, which lazyfx does not replay (it would run the node)."""
    target, module = node.target, None
    if _private_generator(node.kwargs):
        return None
    if seeded is not None and not _listed(node, root):
        what = getattr(target, "__name__", str(target))
        return Draw(f"{seeded} in {what}", location, before,
                    obstacle=f"it draws inside {what}, which lazyfx analyses with PyTorch's meta kernels and does "
                             f"not run")
    if node.op == "call_module":
        module = registered_submodule(root, target)
        what = module_draws(module)
        if what is None:
            return None
        what = f"'{target}': {what}"
    elif node.op == "call_method":
        if target not in _DRAWING_METHODS:
            return None
        what = f".{target}()"
    else:
        if target not in _DRAWING_FUNCTIONS and target not in _TRAINING_FUNCTIONS \
                and target is not F.scaled_dot_product_attention:
            return None
        literal = lambda a: a if isinstance(a, (bool, int, float, type(None))) else object()  # noqa: E731
        if not function_draws(target, tuple(literal(a) for a in node.args),
                              {k: literal(v) for k, v in node.kwargs.items()}):
            return None
        what = getattr(target, "__name__", str(target))
    if target in _VALUE_DEPENDENT_FUNCTIONS or target in _VALUE_DEPENDENT_METHODS or isinstance(module, nn.RReLU):
        return Draw(what, location, before, obstacle="how many numbers it draws depends on tensor values")
    if module is not None and not isinstance(module, _DROPOUT_MODULES):  # replaying would mean running it
        return Draw(what, location, before, obstacle="it runs inside a layer that lazyfx does not run")
    value = lambda n: records[n.name].value if n.name in records else None  # noqa: E731
    args, kwargs = fx.node.map_arg(node.args, value), fx.node.map_arg(node.kwargs, value)
    if isinstance(node.kwargs.get("device"), fx.Node):  # device=x.device: the dry run's device
        kwargs = {**kwargs, "device": _TARGET}
    call = module if module is not None else _method(target) if node.op == "call_method" else target
    return _replaying(what, location, before, call, args, kwargs)


def _listed(node: fx.Node, root: nn.Module) -> bool:
    """Whether :func:`_node_draw` knows ``node``'s operation by name (and can replay it)."""
    if node.op == "call_module":
        return module_draws(registered_submodule(root, node.target)) is not None
    if node.op == "call_method":
        return node.target in _DRAWING_METHODS
    return node.target in _DRAWING_FUNCTIONS or node.target in _TRAINING_FUNCTIONS \
        or node.target is F.scaled_dot_product_attention


_TARGET = object()  # stands for the target device in a replayed call (the dry run's device)


def _method(name: str) -> Callable:
    return lambda tensor, *args, **kwargs: getattr(tensor, name)(*args, **kwargs)


def _generator_states() -> list[torch.Tensor]:
    """The global generators' states: the CPU one, and each CUDA device's once CUDA is in use."""
    states = [torch.default_generator.get_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states += torch.cuda.get_rng_state_all()
    return states


def _private_generator(kwargs: dict) -> bool:
    """Whether an operation draws from a torch.Generator of its own (``generator=g``): the
    global ones, which initialize the lazy modules, do not move."""
    generator = kwargs.get("generator")
    return generator is not None and generator is not torch.default_generator \
        and not (torch.cuda.is_available() and generator in torch.cuda.default_generators)


class GeneratorWatcher(DispatchMode):
    """Random draws while forward is traced (see the module's docstring). ``stepping()``: the
    node being analysed, None while forward's own code runs; ``calls()``: how many lazy
    modules forward has first called so far; ``position()``: the last node of the graph.
    A draw forward's own code makes for real is found by the generators moving, which no
    list of drawing functions can miss, and is kept with its arguments (copied before it
    runs, since an in-place draw overwrites its tensor) to run again, on the same devices."""

    def __init__(self, propagation, stepping: Callable[[], Optional[str]], calls: Callable[[], int],
                 position: Callable[[], Optional[fx.Node]]) -> None:
        super().__init__()
        self.propagation, self.stepping, self.calls, self.position = propagation, stepping, calls, position

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.Tag.nondeterministic_seeded not in func.tags or not _draws(func, args, kwargs) \
                or _private_generator(kwargs):
            return func(*args, **kwargs)
        node = self.stepping()
        if node is not None:  # the analysis of a node (on fake or meta tensors): that node draws
            self.propagation.seeded_nodes.setdefault(node, func._schema.name.split("::")[-1])
            return func(*args, **kwargs)
        copied = lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
        saved_args, saved_kwargs = map_values(copied, args), map_values(copied, kwargs)
        before = _generator_states()
        out = func(*args, **kwargs)
        after = _generator_states()  # one more where this draw is the first use of CUDA
        if len(after) != len(before) or any(not torch.equal(a, b) for a, b in zip(before, after)):
            def replay(device, func=func, args=saved_args, kwargs=saved_kwargs):
                with torch.no_grad():
                    func(*map_values(copied, args), **map_values(copied, kwargs))

            draw = Draw(func._schema.name.split("::")[-1], caller_location(), self.calls(), replay)
            self.propagation.real_draws.append((self.position(), draw))
        return out


# Whether the operation running under abstract execution was given a device by forward
# (``device=x.device``): on meta either way, but a dry run's draw is on that device, where one
# given none is on the default device (the CPU, unless torch.set_default_device said otherwise).
_DEVICE_GIVEN: contextvars.ContextVar[bool] = contextvars.ContextVar("lazyfx_device_given", default=False)


@contextlib.contextmanager
def device_given() -> Iterator[None]:
    token = _DEVICE_GIVEN.set(True)
    try:
        yield
    finally:
        _DEVICE_GIVEN.reset(token)


class DrawWatcher(DispatchMode):
    """Records the ATen operations that draw random numbers while forward runs (abstract
    execution), with how many lazy modules had been first called by then (``calls()``).
    Draws inside a lazy module's own call (its initialization) are its initialization's."""

    def __init__(self, calls) -> None:
        super().__init__()
        self.calls = calls
        self.draws: list[Draw] = []
        self.inside_lazy = 0
        self.default_device = torch.get_default_device()  # before forward runs with meta as the default

    def enter_lazy(self, *_) -> None:
        self.inside_lazy += 1

    def leave_lazy(self, *_) -> None:
        self.inside_lazy -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.inside_lazy and torch.Tag.nondeterministic_seeded in func.tags and _draws(func, args, kwargs) \
                and not _private_generator(kwargs):
            self.draws.append(self._draw(func, args, kwargs))
        return func(*args, **kwargs)

    def _draw(self, func, args, kwargs) -> Draw:
        name = func._schema.name.split("::")[-1]
        what, location, after = name, caller_location(), self.calls()
        if name in _VALUE_DEPENDENT_OPS:
            return Draw(what, location, after, obstacle="how many numbers it draws depends on tensor values")
        as_meta = lambda v: TensorMeta(tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else v  # noqa: E731
        args, kwargs = map_values(as_meta, args), map_values(as_meta, kwargs)
        if "device" in kwargs:  # forward ran on meta: a dry run's factory is on the device forward gave, or the default
            kwargs = {**kwargs, "device": _TARGET if _DEVICE_GIVEN.get() else self.default_device}
        return _replaying(what, location, after, func, args, kwargs)


def _draws(func, args: tuple, kwargs: dict) -> bool:
    """Whether a seeded operation draws: not with its ``training``/``train`` flag off (RReLU and
    dropout in eval mode run the same operation)."""
    for i, argument in enumerate(func._schema.arguments):
        if argument.name in ("training", "train"):
            value = args[i] if i < len(args) else kwargs.get(argument.name, argument.default_value)
            return bool(value)
    return True
