"""Several calls of forward (``lazyfx.Call``): a model whose calls reach different lazy
modules (a shared policy/value network called per role) is resolved by the union of the
calls, exactly as a dry run making those calls in order initializes it; a lazy module no
call reaches is refused by name, and the fallback paths leave it alone (issue 19 point 4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import lazyfx
from dryrun import assert_same_model, dry_run_calls
from test_errors import snapshot


class Shared(nn.Module):
    """A trunk shared by a policy head and a value head; forward runs one of them."""

    def __init__(self, on_values: bool = False):
        super().__init__()
        self.on_values = on_values
        self.trunk = nn.LazyLinear(8)
        self.policy = nn.LazyLinear(3)
        self.value = nn.LazyLinear(1)

    def forward(self, x, policy: bool):
        h = self.trunk(x)
        if self.on_values and (h > 0).any():  # a branch on values: the model goes to abstract execution
            h = h.relu()
        return self.policy(h) if policy else self.value(h)


def build(on_values):
    return lambda: Shared(on_values)


def materialized_calls(make, *calls, seed=0, **options):
    torch.manual_seed(seed)
    return lazyfx.materialize(make().eval(), *calls, **options)


@pytest.mark.parametrize("on_values", [False, True], ids=["traced", "abstract"])
def test_a_head_one_call_does_not_reach_is_left_lazy_and_named(on_values):
    model = Shared(on_values)
    before = snapshot(model)
    report = lazyfx.infer(model, "B,5", policy=True)
    assert ("" in report.opaque) == on_values
    assert str(report.output) == "(B, 3)"
    assert report.lazy["policy"].resolution.arguments == {"in_features": 8} and not report.lazy["value"].called
    with pytest.raises(lazyfx.ResolutionError, match="LFX042 lazy module 'value' .* never called") as info:
        lazyfx.materialize(model, "B,5", policy=True)
    assert "lazyfx.Call" in str(info.value)  # how to give the other call
    assert snapshot(model) == before


@pytest.mark.parametrize("on_values", [False, True], ids=["traced", "abstract"])
def test_the_calls_together_resolve_every_lazy_module_as_a_dry_run_making_them(on_values):
    make = build(on_values)
    policy, value = lazyfx.Call("B,5", policy=True), lazyfx.Call("B,5", policy=False)
    expected = dry_run_calls(make, [([(2, 5)], dict(policy=True)), ([(2, 5)], dict(policy=False))])
    assert_same_model(expected, materialized_calls(make, policy, value))
    # the other order initializes the heads in the other order, as that dry run does
    reversed_run = dry_run_calls(make, [([(2, 5)], dict(policy=False)), ([(2, 5)], dict(policy=True))])
    assert_same_model(reversed_run, materialized_calls(make, value, policy))
    assert not torch.equal(reversed_run.policy.weight, expected.policy.weight)


def test_calls_that_need_different_sizes_are_refused_by_name():
    make = build(False)
    with pytest.raises(lazyfx.ResolutionError) as info:
        materialized_calls(make, lazyfx.Call("B,5", policy=True), lazyfx.Call("B,7", policy=False))
    assert info.value.code == "LFX041"
    assert "'trunk'" in str(info.value) and "in_features=5 by call 1" in str(info.value)
    assert "in_features=7 by call 2" in str(info.value)
    # the same sizes in both calls (the batch free in each): accepted
    eager = materialized_calls(make, lazyfx.Call((2, 5), policy=True), lazyfx.Call(("N", 5), policy=False))
    assert eager.value.in_features == 8


def test_a_call_the_specs_leave_unresolved_names_the_call():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.LazyLinear(2)

        def forward(self, x):
            return self.head(x.flatten())

    with pytest.raises(lazyfx.ResolutionError, match="LFX040 lazy module 'head'") as info:
        lazyfx.materialize(Flat(), lazyfx.Call((2, 3)), lazyfx.Call(("B", 3)))
    assert "in call 2, Call(('B', 3))" in str(info.value)


def test_one_call_is_the_same_as_its_specs_and_passes_lazyfx_keyword_names():
    class Seeded(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.LazyLinear(2)

        def forward(self, x, seed: int = 0):
            return self.head(x[:, seed:])

    report = lazyfx.infer(Seeded(), lazyfx.Call("B,6", seed=2))
    assert report.lazy["head"].resolution.arguments == {"in_features": 4}
    expected = dry_run_calls(Seeded, [([(2, 6)], dict(seed=2))])
    assert_same_model(expected, materialized_calls(Seeded, lazyfx.Call("B,6", seed=2)))


def test_calls_and_specs_are_not_mixed():
    with pytest.raises(lazyfx.SpecError, match="either input specs or lazyfx.Call"):
        lazyfx.materialize(Shared(), lazyfx.Call("B,5", policy=True), "B,5")
    with pytest.raises(lazyfx.SpecError, match="either input specs or lazyfx.Call"):
        lazyfx.materialize(Shared(), lazyfx.Call("B,5"), policy=True)
    with pytest.raises(lazyfx.SpecError, match="infer analyses one call"):
        lazyfx.infer(Shared(), lazyfx.Call("B,5", policy=True), lazyfx.Call("B,5", policy=False))
    with pytest.raises(lazyfx.SpecError, match="state_dict"):
        lazyfx.materialize(Shared(), lazyfx.Call("B,5", policy=True), lazyfx.Call("B,5", policy=False), state_dict={})
    assert lazyfx.materialize(Shared(), lazyfx.Call("B,5", policy=True), lazyfx.Call("B,5", policy=False))


class Noisy(nn.Module):
    """The value call adds noise after its head's first call: harmless when it is the last
    call, not before a call that initializes a head of its own."""

    def __init__(self):
        super().__init__()
        self.policy = nn.LazyLinear(3)
        self.value = nn.LazyLinear(1)

    def forward(self, x, policy: bool):
        if policy:
            return self.policy(x)
        out = self.value(x)
        return out + torch.randn(out.shape) * 0.01


def test_a_call_that_draws_random_numbers_before_the_next_calls_initialization_is_refused():
    policy, value = lazyfx.Call("B,5", policy=True), lazyfx.Call("B,5", policy=False)
    with pytest.raises(lazyfx.ResolutionError, match="LFX025 forward draws random numbers") as info:
        materialized_calls(Noisy, value, policy)
    assert "in call 1, Call('B,5', policy=False)" in str(info.value)
    # drawn in the last call, the noise moves nothing lazyfx initializes: accepted, as that dry run gives it
    expected = dry_run_calls(Noisy, [([(2, 5)], dict(policy=True)), ([(2, 5)], dict(policy=False))])
    assert_same_model(expected, materialized_calls(Noisy, policy, value))


class NoisyValue(nn.Module):
    """The value call draws noise of a fixed size before the shared trunk, which the policy
    call initialized: the draw moves the generator the value head is initialized from."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.LazyLinear(8)
        self.policy = nn.LazyLinear(3)
        self.value = nn.LazyLinear(1)

    def forward(self, x, policy: bool):
        if not policy:
            x = x + torch.randn(x.shape)
        h = self.trunk(x)
        return self.policy(h) if policy else self.value(h)


def test_a_draw_before_a_module_an_earlier_call_initialized_is_replayed_before_the_next_new_one():
    calls = [lazyfx.Call((2, 5), policy=True), lazyfx.Call((2, 5), policy=False)]
    expected = dry_run_calls(NoisyValue, [([(2, 5)], dict(policy=True)), ([(2, 5)], dict(policy=False))])
    assert_same_model(expected, materialized_calls(NoisyValue, *calls))


class Role(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.LazyLinear(3)
        self.v = nn.LazyLinear(1)

    def forward(self, x, role: str):
        return self.p(x) if role == "policy" else self.v(x)


def test_a_role_given_as_a_string():
    report = lazyfx.infer(Role(), "B,5", role=lazyfx.Const("policy"))
    assert str(report.output) == "(B, 3)" and not report.lazy["v"].called
    with pytest.raises(lazyfx.ResolutionError, match="LFX042 lazy module 'v'"):
        lazyfx.materialize(Role(), "B,5", role=lazyfx.Const("policy"))
    calls = [lazyfx.Call("B,5", role=lazyfx.Const("policy")), lazyfx.Call("B,5", role=lazyfx.Const("value"))]
    expected = dry_run_calls(Role, [([(2, 5)], dict(role="policy")), ([(2, 5)], dict(role="value"))])
    assert_same_model(expected, materialized_calls(Role, *calls))


def test_export_takes_one_call():
    with pytest.raises(lazyfx.SpecError, match="export exports one call of forward, got 2"):
        lazyfx.export(Shared(), lazyfx.Call("B,5", policy=True), lazyfx.Call("B,5", policy=False), format="exported-program")
    # the eager model the calls give exports for the call it is exported for
    eager = lazyfx.materialize(Shared(), lazyfx.Call("B,5", policy=True), lazyfx.Call("B,5", policy=False))
    program = lazyfx.export(eager, lazyfx.Call("B,5", policy=False), format="exported-program")
    assert tuple(program.module()(torch.zeros(3, 5), False).shape) == (3, 1)  # the value head, a dynamic batch


def test_a_draw_before_a_module_an_earlier_call_initialized_names_the_module_it_precedes():
    """NoisyValue's draw follows B in the second call: not replayable; it precedes 'trunk', which
    the first call initialized, so the module whose values it moves is 'value'."""
    calls = [lazyfx.Call("B,5", policy=True), lazyfx.Call("B,5", policy=False)]
    with pytest.raises(lazyfx.ResolutionError) as info:
        materialized_calls(NoisyValue, *calls)
    message = str(info.value)
    assert "before it first calls the lazy module 'value', so a dry run initializes 'value' from" in message
    assert "'trunk'" not in message and "in call 2" in message
    # counterpart: alone, the second call's draw comes before trunk's initialization, and says so
    (warning,) = [d for d in lazyfx.infer(NoisyValue(), "B,5", policy=False).diagnostics if d.code.code == "LFX025"]
    assert "before it first calls the lazy module 'trunk', so a dry run initializes 'trunk' and the 1 after it" \
        in str(warning)
