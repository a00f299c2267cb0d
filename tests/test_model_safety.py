"""The user's model and process are never harmed (issue 13, points 1-3).

``infer`` and ``materialize`` (copy mode) leave the given model exactly as it
was, whatever its forward does to ``self``, on success and on failure;
concurrent calls from several threads give the sequential results and leave
no patch behind; an interrupt (KeyboardInterrupt, SystemExit) at any point
rolls ``materialize(inplace=True)`` back and leaves nothing patched.
"""

from __future__ import annotations

import functools
import math
import threading

import pytest
import torch
import torch.fx._symbolic_trace as fx_trace
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import lazyfx
from lazyfx.errors import LazyFXError
from dryrun import assert_same_model, dry_run

ORIGINALS = {
    (nn.Module, "__call__"): nn.Module.__call__,
    (nn.Module, "__getattr__"): nn.Module.__getattr__,
    (nn.Module, "__setattr__"): nn.Module.__setattr__,
    (torch.Tensor, "__bool__"): torch.Tensor.__bool__,
}


# torch.fx also patches the math functions it wraps, in the math module and in forward's globals
MATH = dict(vars(math))


def assert_nothing_patched() -> None:
    for (owner, name), original in ORIGINALS.items():
        assert getattr(owner, name) is original, f"{owner.__name__}.{name} is left patched"
    assert fx_trace.CURRENT_PATCHER is None
    assert [name for name, value in vars(math).items() if MATH.get(name) is not value] == []


# -- the model's fingerprint -------------------------------------------------------------


def _value(value):
    if isinstance(value, torch.Tensor):
        if isinstance(value, nn.parameter.UninitializedTensorMixin):
            return ("lazy", id(value), type(value).__name__)
        return ("tensor", id(value), type(value).__name__, value.device.type, value.dtype, tuple(value.shape),
                value.detach().clone() if value.device.type != "meta" else None)
    if isinstance(value, dict):
        return ("dict", id(value), {k: _value(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, id(value), [_value(v) for v in value])
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, id(value), sorted(map(repr, value)))
    if isinstance(value, (int, float, str, bool, type(None), torch.Size, torch.dtype, torch.device)):
        return ("plain", type(value).__name__, value)
    return ("object", id(value), type(value).__name__)


def fingerprint(model: nn.Module) -> list:
    """Everything about a model the analysis could touch: each module's class, every entry of
    its ``__dict__`` (the containers and hook dicts with their contents), by identity and value."""
    return [(name, type(module), id(module), {k: _value(v) for k, v in vars(module).items()})
            for name, module in model.named_modules(remove_duplicate=False)]


def assert_same(before: list, model: nn.Module) -> None:
    after = fingerprint(model)
    assert [row[:3] for row in after] == [row[:3] for row in before]
    for (name, _, _, was), (_, _, _, now) in zip(before, after):
        assert now.keys() == was.keys(), f"{name or '<root>'}: attributes {sorted(now.keys() ^ was.keys())} changed"
        for key in was:
            assert _equal(now[key], was[key]), f"{name or '<root>'}.{key} changed"


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def analyse(how: str, model: nn.Module, *inputs):
    if how == "infer":
        return lazyfx.infer(model, *inputs)
    return lazyfx.materialize(model, *inputs)


def unchanged_after(how: str, model: nn.Module, *inputs, raises=None):
    before = fingerprint(model)
    if raises is None:
        result = analyse(how, model, *inputs)
    else:
        with pytest.raises(raises):
            analyse(how, model, *inputs)
        result = None
    assert_same(before, model)
    assert_nothing_patched()
    return result


HOW = pytest.mark.parametrize("how", ["infer", "materialize"])


# -- forwards with side effects on self (the repros) --------------------------------


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x)


@HOW
def test_counter(how):
    model = Counter()
    unchanged_after(how, model, (2, 8))
    assert model.calls == 0


class BufferInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.mask = torch.ones(3)  # a plain tensor attribute, not a buffer

    def forward(self, x):
        self.steps += 1
        self.steps.add_(1)
        self.mask.mul_(2)  # runs on the real tensor while torch.fx traces
        return self.fc(x)


class BufferReassigned(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x):
        self.steps = self.steps + 1
        return self.fc(x)


@HOW
@pytest.mark.parametrize("cls", [BufferInPlace, BufferReassigned])
def test_buffers(how, cls):
    model = cls()
    unchanged_after(how, model, (2, 8))
    assert int(model.steps) == 0
    model(torch.zeros(2, 8))  # still runs as a dry run


class RegistersSubmodule(nn.Module):
    def __init__(self, fail: bool = False):
        super().__init__()
        self.fc = nn.LazyLinear(4)
        self.fail = fail

    def forward(self, x):
        if not hasattr(self, "extra"):
            self.extra = nn.Linear(4, 4)
        self.register_module("more", nn.ReLU())
        y = self.extra(self.fc(x))
        if self.fail:
            y = y.view(-1, 5)  # 4 columns cannot be viewed as 5
        return y


@HOW
def test_submodule_registered_in_forward(how):
    model = RegistersSubmodule()
    unchanged_after(how, model, (2, 8))
    assert not hasattr(model, "extra") and "more" not in model._modules


@HOW
def test_submodule_registered_then_tracing_fails(how):
    model = RegistersSubmodule(fail=True)
    unchanged_after(how, model, (2, 8), raises=LazyFXError)
    assert not hasattr(model, "extra")


class RemembersShape(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)

    def forward(self, x):
        self.seen = x.shape
        self.width = x.size(-1)
        return self.fc(x)


@HOW
def test_attribute_set_to_a_shape(how):
    model = RemembersShape()
    unchanged_after(how, model, ("B", 8))
    assert not hasattr(model, "seen")
    import copy

    copy.deepcopy(model)  # no fx Proxy left in it
    eager = lazyfx.materialize(model, ("B", 8))
    assert eager.fc.in_features == 8 and not hasattr(eager, "seen")


class Rotary(nn.Module):
    """LLaMA-style rotary embedding whose cache grows in forward."""

    def __init__(self, dim: int = 8, cached: int = 4):
        super().__init__()
        self.dim = dim
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)), persistent=False)
        self._set_cache(cached)

    def _set_cache(self, seq_len):
        self.max_seq_len_cached = seq_len
        t = torch.arange(seq_len, dtype=self.inv_freq.dtype, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self, x):
        seq_len = x.shape[1]
        if seq_len > self.max_seq_len_cached:
            self._set_cache(seq_len)
        return x * self.cos_cached[:seq_len] + x * self.sin_cached[:seq_len]


class RotaryNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rope = Rotary()
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        return self.fc(self.rope(x))


@HOW
def test_rotary_cache_grown_in_forward(how):
    model = RotaryNet()
    cos = model.rope.cos_cached
    unchanged_after(how, model, (2, 16, 8))
    assert model.rope.cos_cached is cos and model.rope.max_seq_len_cached == 4
    model(torch.zeros(2, 16, 8))  # the user's model still runs


class ChangesChild(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.head = nn.LazyLinear(2)

    def forward(self, x):
        self.fc.out_features = 7
        return self.head(self.fc(x))


@HOW
def test_child_attribute_changed_in_forward(how):
    model = ChangesChild()
    unchanged_after(how, model, (2, 8))
    assert model.fc.out_features == 4


class MakesConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)

    def forward(self, x):
        return self.fc(x) + torch.tensor([1.0, 2.0, 3.0, 4.0])


@HOW
def test_constant_tensor_in_forward(how):
    model = MakesConstant()
    unchanged_after(how, model, (2, 8))
    assert not any(name.startswith("_tensor_constant") for name in vars(model))


class Untraceable(nn.Module):
    """Goes to abstract execution (control flow on tensor values), after side effects."""

    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(4)
        self.calls = 0
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        self.seen = x.shape
        self.steps += 1
        if x.sum() > 0:
            x = x * 2
        return self.fc(x)


@HOW
def test_side_effects_before_abstract_execution(how):
    model = Untraceable()
    unchanged_after(how, model, ("B", 8))
    assert model.calls == 0 and int(model.steps) == 0


def test_materialized_copy_has_no_side_effects_of_analysis():
    eager = lazyfx.materialize(Counter(), (2, 8))
    assert eager.calls == 0 and eager.fc.in_features == 8


# -- modules also reached from outside the module tree -------------------------------------


class _Applier:
    def __init__(self, head, norm):
        self.head, self.norm = head, norm

    def run(self, x):
        return self.head(self.norm(x))


class HeldOutside(nn.Module):
    """The head and a LayerNorm reached through a closure, a lambda's default, a partial, a plain
    list, a bound method and a forward hook, besides their registration."""

    def __init__(self, how: str):
        super().__init__()
        self.norm = nn.LayerNorm(5)
        self.head = nn.LazyLinear(3)
        self.how = how
        norm, head = self.norm, self.head
        if how == "closure":
            self.call = lambda x: head(norm(x))
        elif how == "default":
            self.call = lambda x, head=head, norm=norm: head(norm(x))
        elif how == "partial":
            self.call = functools.partial(lambda h, n, x: h(n(x)), head, norm)
        elif how == "list":
            self.layers = [norm, head]
        elif how == "method":
            self.call = _Applier(head, norm).run
        self.seen = []
        if how == "hook":
            head.register_forward_hook(lambda module, args, out: self.seen.append(norm.weight.dtype))

    def forward(self, x):
        if self.how == "list":
            return self.layers[1](self.layers[0](x))
        if self.how in ("hook", "plain"):
            return self.head(self.norm(x))
        return self.call(x)


OUTSIDE = ["closure", "default", "partial", "list", "method", "hook", "plain"]


@pytest.mark.parametrize("dtype", [None, torch.float64])
@pytest.mark.parametrize("how", OUTSIDE)
def test_copy_calls_its_own_modules_through_references_outside_the_tree(how, dtype):
    # deepcopy keeps functions as they are: the copy's closure called the user's lazy head, which
    # initialized it with fresh values, and with dtype= the user's float32 LayerNorm
    torch.manual_seed(0)
    model = HeldOutside(how).eval()
    before = fingerprint(model)
    eager = lazyfx.materialize(model, ("B", 5), seed=0, **({"dtype": dtype} if dtype else {}))
    expected = dry_run(lambda: HeldOutside(how).to(dtype or torch.float32), (2, 5), dtype=dtype or torch.float32)
    assert_same_model(expected, eager)
    x = torch.randn(4, 5, dtype=dtype or torch.float32)
    with torch.no_grad():
        assert torch.equal(eager(x), expected(x))
        assert torch.equal(eager(x), eager.head(eager.norm(x)))
    assert_same(before, model)  # the user's head is still lazy, its LayerNorm float32
    assert isinstance(model.head, nn.LazyLinear) and model.norm.weight.dtype == torch.float32
    if how == "hook":
        assert eager.seen and all(d == (dtype or torch.float32) for d in eager.seen) and not model.seen


def test_copy_of_a_function_with_an_unassigned_cell_and_one_reaching_nothing():
    # the counterpart: functions that hold none of the model's modules stay the very same objects
    scale = 2.0

    def later():
        return missing  # noqa: F821  (its cell is empty: the name is assigned below)

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.LazyLinear(3)
            self.f = lambda x: x * scale
            self.g = later

        def forward(self, x):
            return self.head(self.f(x))

    model = Holder()
    eager = lazyfx.materialize(model, ("B", 5), seed=0)
    assert eager.f is model.f and eager.g is later
    with torch.no_grad():
        assert torch.equal(eager(torch.ones(1, 5)), eager.head(torch.full((1, 5), 2.0)))
    missing = 1  # noqa: F841


# -- Ctrl-C and other BaseExceptions ------------------------------------------------------


def _interrupting(exc_type, after: int = 0):
    calls = []

    def reset_parameters(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise exc_type()

    return reset_parameters


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_inplace_rollback_on_interrupt(exc_type, monkeypatch):
    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2))
    monkeypatch.setattr(model[2], "reset_parameters", _interrupting(exc_type))
    before = fingerprint(model)
    with pytest.raises(exc_type):
        lazyfx.materialize(model, (2, 8), inplace=True)
    assert_same(before, model)
    assert [type(m) for m in model] == [nn.LazyLinear, nn.ReLU, nn.LazyLinear]
    assert_nothing_patched()
    monkeypatch.undo()
    lazyfx.materialize(model, (2, 8), inplace=True)  # and it still works
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]


@pytest.mark.parametrize("init_order", ["dry-run", "registration"])
def test_inplace_rollback_on_interrupt_in_registration_order(init_order, monkeypatch):
    model = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2))
    monkeypatch.setattr(model[3], "reset_parameters", _interrupting(KeyboardInterrupt))
    before = fingerprint(model)
    with pytest.raises(KeyboardInterrupt):
        lazyfx.materialize(model, (2, 8), inplace=True, seed=0, init_order=init_order, dtype=torch.float64)
    assert_same(before, model)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("how", ["infer", "materialize", "inplace"])
def test_interrupt_in_forward_while_tracing(exc_type, how):
    class Interrupted(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            x = self.fc(x)
            raise exc_type()

    model = Interrupted()
    before = fingerprint(model)
    with pytest.raises(exc_type):
        if how == "inplace":
            lazyfx.materialize(model, (2, 8), inplace=True)
        else:
            analyse(how, model, (2, 8))
    assert_same(before, model)
    assert_nothing_patched()
    nn.Linear(2, 2)(torch.zeros(1, 2))  # plain modules still work


def test_interrupt_while_torch_fx_reverts_its_patches(monkeypatch):
    """The window torch.fx's own patcher leaves: an interrupt while it reverts nn.Module's
    methods would keep its module_call_wrapper as nn.Module.__call__."""
    calls = {"n": 0}
    revert = fx_trace._PatchedFnSetAttr.revert

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt()
        revert(self)

    monkeypatch.setattr(fx_trace._PatchedFnSetAttr, "revert", interrupted)
    model = Counter()
    before = fingerprint(model)
    with pytest.raises(KeyboardInterrupt):
        lazyfx.infer(model, ("B", 8))
    monkeypatch.undo()
    assert calls["n"] > 1  # interrupted once, then reverted by lazyfx
    assert_same(before, model)
    assert_nothing_patched()
    nn.Linear(2, 2)(torch.zeros(1, 2))


def test_interrupt_at_every_step_of_the_analysis(monkeypatch):
    """A KeyboardInterrupt at the n-th node the propagator computes, for every n: nothing is
    left patched and the model is unchanged."""
    from lazyfx.analysis import propagate

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU())
            self.head = nn.LazyLinear(2)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            x = self.body(x)
            if x.sum() > 0:  # abstract execution for the root
                x = x + 1
            return self.head(x.flatten(1))

    original = propagate.Propagator.step
    count = 0
    while True:
        counter = {"n": 0}

        def step(self, node, _limit=count):
            counter["n"] += 1
            if counter["n"] > _limit:
                raise KeyboardInterrupt()
            return original(self, node)

        monkeypatch.setattr(propagate.Propagator, "step", step)
        model = Net()
        before = fingerprint(model)
        try:
            lazyfx.infer(model, (2, 3, 8, 8))
            finished = True
        except KeyboardInterrupt:
            finished = False
        assert_same(before, model)
        assert_nothing_patched()
        if finished or count > 60:
            break
        count += 1
    monkeypatch.undo()
    assert finished


# -- checkpoints --------------------------------------------------------------------------


def test_inplace_checkpoint_with_unexpected_key_leaves_model_unchanged():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.LazyLinear(2))
    twin = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    state = {**twin.state_dict(), "unexpected.weight": torch.zeros(1)}
    before = fingerprint(model)
    with pytest.raises(LazyFXError, match="unchanged"):
        lazyfx.materialize(model, (2, 8), inplace=True, state_dict=state)
    assert_same(before, model)
    assert not torch.equal(model[0].weight, twin[0].weight)
    with pytest.raises(LazyFXError):
        lazyfx.materialize(model, inplace=True, state_dict=state)
    assert_same(before, model)


def test_inplace_checkpoint_interrupted_while_loading(monkeypatch):
    from lazyfx.build import checkpoint

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.LazyLinear(2))
    twin = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    real_load = checkpoint.load

    def load(target, state_dict, strict):
        real_load(target, state_dict, strict)
        raise KeyboardInterrupt()

    monkeypatch.setattr(checkpoint, "load", load)
    before = fingerprint(model)
    with pytest.raises(KeyboardInterrupt):
        lazyfx.materialize(model, (2, 8), inplace=True, state_dict=twin.state_dict())
    assert_same(before, model)


# -- threads ------------------------------------------------------------------------------


def _models():
    return [
        ("conv", lambda: nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)),
         (("B", 3, 10, 10),)),
        ("counter", Counter, (("B", 8),)),
        ("rotary", RotaryNet, ((2, 16, 8),)),
        ("untraceable", Untraceable, (("B", 8),)),
        ("mlp", lambda: nn.Sequential(nn.LazyLinear(6), nn.ReLU(), nn.LazyLinear(2)), (("B", 5),)),
        ("norm", lambda: nn.Sequential(nn.LazyBatchNorm1d(), nn.LazyLinear(2)), (("B", 7),)),
        ("shape", RemembersShape, (("B", 8),)),
        ("child", ChangesChild, ((2, 8),)),
    ]


def _summary(how, factory, inputs):
    model = factory()
    before = fingerprint(model)
    if how == "infer":
        out = str(lazyfx.infer(model, *inputs))
    else:
        eager = lazyfx.materialize(model, *inputs, seed=0)  # no thread touches the global RNG meanwhile
        out = (repr(eager), [(k, v.clone()) for k, v in eager.state_dict().items()])
    assert_same(before, model)
    return out


def _same(a, b) -> bool:
    if isinstance(a, str):
        return a == b
    return a[0] == b[0] and all(ka == kb and torch.equal(va, vb) for (ka, va), (kb, vb) in zip(a[1], b[1]))


def test_threads_give_sequential_results_and_leave_no_patch():
    jobs = [(how, name, factory, inputs) for name, factory, inputs in _models() for how in ("infer", "materialize")
            if how == "infer" or name in ("mlp", "norm", "counter", "rotary", "child")]
    expected = {(how, name): _summary(how, factory, inputs) for how, name, factory, inputs in jobs}
    errors: list = []
    results: dict = {}
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for round_ in range(3):
                how, name, factory, inputs = jobs[(index + round_) % len(jobs)]
                results[(index, round_)] = ((how, name), _summary(how, factory, inputs))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == 24
    for key, got in results.values():
        assert _same(got, expected[key]), key
    assert_nothing_patched()
    nn.Linear(2, 2)(torch.zeros(1, 2))


# -- generated forwards with side effects -------------------------------------------------

EFFECTS = ["counter", "buffer_inplace", "buffer_reassigned", "attribute_shape", "cache", "submodule",
           "constant", "child_attribute", "tensor_attribute", "hook", "nonpersistent_buffer", "list_append"]


class Generated(nn.Module):
    """A small lazy architecture whose forward does ``effects`` to ``self`` before the layer
    ``at``, and, with ``untraceable``, branches on a tensor's values (abstract execution)."""

    def __init__(self, widths, effects, at, untraceable, fail, interrupt=None):
        super().__init__()
        self.interrupt = interrupt
        self.layers = nn.ModuleList()
        for i, width in enumerate(widths):
            self.layers.append(nn.LazyLinear(width))
            if i % 2:
                self.layers.append(nn.ReLU())
        self.effects, self.at, self.untraceable, self.fail = effects, at, untraceable, fail
        self.calls = 0
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("cache", torch.zeros(2, 3))
        self.plain = torch.ones(2)
        self.history = []

    def _effects(self, x):
        for effect in self.effects:
            if effect == "counter":
                self.calls += 1
            elif effect == "buffer_inplace":
                self.steps += 1
            elif effect == "buffer_reassigned":
                self.steps = self.steps + 1
            elif effect == "attribute_shape":
                self.seen = x.shape
            elif effect == "cache":
                if x.shape[-1] > self.cache.shape[0]:
                    self.register_buffer("cache", torch.zeros(x.shape[-1], 3) + x.sum())
            elif effect == "submodule":
                self.register_module(f"extra{len(self._modules)}", nn.Identity())
            elif effect == "constant":
                x = x + torch.tensor(1.0)
            elif effect == "child_attribute":
                self.layers[0].out_features = 99
            elif effect == "tensor_attribute":
                self.plain.add_(1)
            elif effect == "hook":
                self.layers[-1].register_forward_hook(lambda module, args, out: None)
            elif effect == "nonpersistent_buffer":
                self.register_buffer(f"scratch{len(self._buffers)}", torch.zeros(3), persistent=False)
            elif effect == "list_append":
                self.history.append(len(self.history))
        return x

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            if i == self.at:
                x = self._effects(x)
                if self.untraceable and x.sum() > 0:
                    x = x * 2
                if self.interrupt == "forward":
                    raise KeyboardInterrupt()
            x = layer(x)
        if self.fail:
            x = x.view(-1, 1000003)
        return x


@settings(deadline=None)  # examples: the profile's (25 in CI); HYPOTHESIS_PROFILE=thorough for 400
@given(
    widths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    effects=st.lists(st.sampled_from(EFFECTS), min_size=1, max_size=4),
    at=st.integers(0, 5),
    untraceable=st.booleans(),
    fail=st.booleans(),
    batch=st.sampled_from([2, "B"]),
    how=st.sampled_from(["infer", "materialize", "inplace"]),
    interrupt=st.sampled_from([None, None, "forward", "reset"]),
)
def test_generated_side_effects_leave_the_model_unchanged(widths, effects, at, untraceable, fail, batch, how,
                                                          interrupt):
    """After ``infer`` and ``materialize``, and after a failed or interrupted (Ctrl-C in forward
    or in an initialization) ``materialize(inplace=True)``, the model is as it was."""
    model = Generated(widths, effects, at, untraceable, fail, interrupt)
    if interrupt == "reset":
        lazy = [m for m in model.modules() if isinstance(m, nn.LazyLinear)]
        lazy[-1].reset_parameters = _interrupting(KeyboardInterrupt)
    before = fingerprint(model)
    try:
        if how == "inplace":
            lazyfx.materialize(model, (batch, 5), inplace=True)
        else:
            analyse(how, model, (batch, 5))
        failed = False
    except (LazyFXError, KeyboardInterrupt):
        failed = True
    if how != "inplace" or failed:
        assert_same(before, model)
    assert_nothing_patched()


def test_tensors_in_list_dict_and_tuple_attributes_are_put_back():
    class Caches(nn.Module):  # a KV cache as a dict of tensors, updated in place by forward
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)
            self.as_list = [torch.zeros(3)]
            self.as_dict = {"k": torch.zeros(3), "nested": [torch.zeros(2)]}
            self.as_tuple = (torch.zeros(2),)

        def forward(self, x):
            self.as_list[0].add_(1)
            self.as_dict["k"].add_(1)
            self.as_dict["nested"][0].add_(1)
            self.as_tuple[0].add_(1)
            return self.fc(x)

    model = Caches()
    for call in (lambda: lazyfx.infer(model, ("B", 8)), lambda: lazyfx.materialize(model, ("B", 8))):
        call()
        tensors = [model.as_list[0], model.as_dict["k"], model.as_dict["nested"][0], model.as_tuple[0]]
        assert all(torch.count_nonzero(t) == 0 for t in tensors)


def test_the_analysis_leaves_the_global_rng_as_it_was():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)

        def forward(self, x):
            return self.fc(x + torch.rand(8) * 0)

    state = torch.get_rng_state()
    lazyfx.infer(Noisy(), (2, 8))
    assert torch.equal(state, torch.get_rng_state())
