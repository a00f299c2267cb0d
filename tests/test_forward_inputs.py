"""Models take what real forwards take: several positional inputs, keyword inputs, optional
None inputs, containers in and out, integer token ids -- all resolved like a dry run."""

from typing import Union

import pytest
import torch
import torch.nn as nn
from torch import is_tensor

import lazyfx
from dryrun import assert_same_model, dry_run, materialized


class Multi(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.mix = nn.LazyLinear(6)
        self.side = nn.LazyLinear(6)
        self.out = nn.LazyLinear(2)

    def forward(self, tokens, features, mask=None, *, scale: float = 1.0, extras=None):
        x = self.mix(self.embed(tokens)) * scale
        if mask is not None:
            x = x * mask.unsqueeze(-1)
        if extras is not None:
            x = x + self.side(extras["side"][0])
        y = torch.cat([x, features], -1)
        return {"logits": self.out(y), "hidden": (x, y)}


def build():
    return Multi()


def test_positional_keyword_optional_and_container_inputs():
    report = lazyfx.infer(build(), "B,T:int64", ("B", "T", 3), mask="B,T", extras={"side": [("B", "T", 5)]})
    assert str(report.output["logits"]) == "(B, T, 2)"
    assert [str(t) for t in report.output["hidden"]] == ["(B, T, 6)", "(B, T, 9)"]
    assert report.lazy["side"].resolution.arguments == {"in_features": 5}


def test_optional_inputs_left_out_take_the_none_branch():
    report = lazyfx.infer(build(), "B,T:int64", ("B", "T", 3), scale=0.5)
    assert not report.lazy["side"].called


@pytest.mark.parametrize("with_extras", [False, True])
def test_matches_a_dry_run(with_extras):
    tokens, features = torch.zeros(2, 4, dtype=torch.int64), torch.zeros(2, 4, 3)
    extras = {"side": [torch.zeros(2, 4, 5)]}

    class Wrapped(nn.Module):  # the dry run and lazyfx see the same call
        def __init__(self):
            super().__init__()
            self.m = build()

        def forward(self, t, f, e=None):
            return self.m(t, f, extras=e)

    expected_inputs = (tokens, features, extras) if with_extras else (tokens, features)
    torch.manual_seed(0)
    expected = Wrapped().eval()
    with torch.no_grad():
        expected(*expected_inputs)
    specs = ["B,T:int64", ("B", "T", 3)] + ([{"side": [("B", "T", 5)]}] if with_extras else [])
    if not with_extras:
        with pytest.raises(lazyfx.ResolutionError, match="'m.side' \\(LazyLinear\\) is never called"):
            materialized(Wrapped, *specs)
        return
    assert_same_model(expected, materialized(Wrapped, *specs))


def test_token_ids_must_be_integers():
    with pytest.raises(lazyfx.ShapeError, match="embedding indices must be int64 or int32"):
        lazyfx.infer(build(), ("B", "T"), ("B", "T", 3))


class VarArgs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, *xs):
        return self.fc(torch.cat(xs, -1))


def test_varargs_forward():
    report = lazyfx.infer(VarArgs(), ("B", 2), ("B", 5))
    assert report.lazy["fc"].resolution.arguments == {"in_features": 7}
    assert_same_model(dry_run(VarArgs, (2, 2), (2, 5)), materialized(VarArgs, ("B", 2), ("B", 5)))


def test_tensor_inputs_and_tuple_outputs():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.LazyLinear(2), nn.LazyLinear(3)

        def forward(self, pair):
            left, right = pair
            return self.a(left), self.b(right)

    report = lazyfx.infer(Pair(), (torch.empty(4, 7, device="meta"), ("B", 9)))
    assert [str(t) for t in report.output] == ["(4, 2)", "(B, 3)"]


# -- container inputs are real containers ------------------------------------------------------


def dry_run_with(build, *inputs, seed: int = 0) -> nn.Module:
    """A dry run on the given inputs (containers included), as a user writes it."""
    torch.manual_seed(seed)
    model = build().eval()
    with torch.no_grad():
        model(*inputs)
    return model


class Agent(nn.Module):
    """A critic that takes a dict and looks its optional entry up with ``.get`` (skrl's style)."""

    def __init__(self):
        super().__init__()
        self.state = nn.LazyLinear(8)
        self.joint = nn.LazyLinear(1)

    def forward(self, inputs):
        actions = inputs.get("taken_actions")
        h = torch.relu(self.state(inputs["states"]))
        if actions is None:
            return h
        return self.joint(torch.cat([h, actions], -1))


def test_a_missing_key_is_missing_and_dict_get_answers_none():
    report = lazyfx.infer(Agent(), {"states": "B,5"})
    assert str(report.output) == "(B, 8)" and not report.lazy["joint"].called
    report = lazyfx.infer(Agent(), {"states": "B,5", "taken_actions": "B,2"})
    assert report.lazy["joint"].resolution.arguments == {"in_features": 10}
    expected = dry_run_with(Agent, {"states": torch.zeros(2, 5), "taken_actions": torch.zeros(2, 2)})
    assert_same_model(expected, materialized(Agent, {"states": "B,5", "taken_actions": "B,2"}))


class ByType(nn.Module):
    """Iterates a dict keyed by tuples (PyTorch Geometric's edge types), checks membership in
    another, and returns a dict."""

    def __init__(self):
        super().__init__()
        self.lins = nn.ModuleDict({"paper": nn.LazyLinear(4), "author": nn.LazyLinear(4)})

    def forward(self, x_dict, edge_dict):
        assert len(x_dict) == 2 and set(x_dict.keys()) == {"paper", "author"}
        out = {}
        for edge_type in edge_dict:
            src, _, dst = edge_type
            if src in x_dict and dst in x_dict and "venue" not in x_dict:
                out[dst] = out.get(dst, 0) + self.lins[src](x_dict[src]).sum(0)
        return {key: value for key, value in sorted(out.items())}


def test_dicts_iterate_test_membership_and_come_out_as_dicts():
    x = {"paper": "P,5", "author": "A,3"}
    edges = {("paper", "cites", "paper"): "2,E:int64", ("author", "writes", "paper"): "2,F:int64"}
    report = lazyfx.infer(ByType(), x, edges)
    assert list(report.output) == ["paper"] and str(report.output["paper"]) == "(4,)"
    assert {p: r.resolution.arguments for p, r in report.lazy.items()} == {
        "lins.paper": {"in_features": 5}, "lins.author": {"in_features": 3}}
    real = ({"paper": torch.zeros(6, 5), "author": torch.zeros(2, 3)},
            {k: torch.zeros(2, 4, dtype=torch.int64) for k in edges})
    assert_same_model(dry_run_with(ByType, *real), materialized(ByType, x, edges))


class Pieces(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.LazyLinear(2), nn.LazyLinear(3), nn.LazyLinear(4)

    def forward(self, pair, rest, named):
        left, right = pair
        first, *others = rest
        assert isinstance(pair, tuple) and isinstance(rest, list) and len(others) == 1
        return self.a(left) + self.a(right), self.b(first + others[0]), self.c(named.hidden) * named.scale


def test_tuples_lists_and_named_tuples_unpack_as_in_python():
    from collections import namedtuple

    State = namedtuple("State", "hidden scale")
    report = lazyfx.infer(Pieces(), ("B,6", "B,6"), ["B,7", "B,7"], State("B,9", 0.5))
    assert [str(t) for t in report.output] == ["(B, 2)", "(B, 3)", "(B, 4)"]
    # forward's own unpacking is Python's: no node for the constant 0.5, none for the containers
    assert [n.target for n in report.nodes if n.op == "call_function"].count("operator.getitem") == 5
    real = ((torch.zeros(2, 6), torch.zeros(2, 6)), [torch.zeros(2, 7), torch.zeros(2, 7)],
            State(torch.zeros(2, 9), 0.5))
    assert_same_model(dry_run_with(Pieces, *real),
                      materialized(Pieces, ("B,6", "B,6"), ["B,7", "B,7"], State("B,9", 0.5)))


def test_entries_forward_never_reads_leave_no_node():
    report = lazyfx.infer(Agent(), {"states": "B,5", "unused": "B,3", "flag": True})
    getitems = [n for n in report.nodes if n.target == "operator.getitem"]
    assert len(getitems) == 1 and report.nodes[0].op == "placeholder"


# -- isinstance answers as in a dry run ---------------------------------------------------------


class PairOrTensor(nn.Module):
    """A graph attention layer's check: one tensor, or a pair of (source, target) tensors."""

    def __init__(self):
        super().__init__()
        self.src, self.dst = nn.LazyLinear(4), nn.LazyLinear(4)

    def forward(self, x):
        if isinstance(x, torch.Tensor):
            x_src = x_dst = x
        else:
            x_src, x_dst = x
        assert x_src.dim() == 2, "static graphs only"
        assert not isinstance(x_src, (tuple, list)) and isinstance(x_dst, (torch.Tensor, int))
        return self.src(x_src) + self.dst(x_dst)


def test_a_traced_tensor_is_a_tensor_and_not_a_tuple():
    report = lazyfx.infer(PairOrTensor(), "N,5")
    assert report.lazy["dst"].resolution.arguments == {"in_features": 5}
    nodes = [(n.op, n.module_path if n.op == "call_module" else n.target) for n in report.nodes]
    assert nodes == [("placeholder", "placeholder"), ("call_method", "Tensor.dim"), ("call_function", "operator.eq"),
                     ("call_module", "src"), ("call_module", "dst"), ("call_function", "operator.add"),
                     ("output", "output")]  # the tensor branch, and nothing of isinstance
    assert not report.opaque
    report = lazyfx.infer(PairOrTensor(), ("N,5", "N,5"))
    assert not report.opaque and str(report.output) == "(N, 4)"
    assert_same_model(dry_run(PairOrTensor, (3, 5)), materialized(PairOrTensor, "N,5"))


def test_isinstance_is_given_back_after_the_analysis():
    lazyfx.infer(PairOrTensor(), "N,5")
    assert "isinstance" not in globals()
    with pytest.raises(lazyfx.ShapeError):
        lazyfx.infer(PairOrTensor(), "N,T,5")  # the assert on x_src.dim() fails
    assert "isinstance" not in globals()


class Optional2(nn.Module):
    """Concatenates ``extra`` when it is a tensor, checked with ``torch.is_tensor`` or ``type``."""

    def __init__(self, how):
        super().__init__()
        self.how, self.a = how, nn.LazyLinear(4)

    def forward(self, x, extra=None):
        if self.how == "is_tensor":
            given = torch.is_tensor(extra)
        elif self.how == "imported":
            given = is_tensor(extra)
        elif self.how == "type_is":
            given = type(extra) is torch.Tensor
        else:
            given = type(extra) == torch.Tensor
        if given:
            x = torch.cat([x, extra], -1)
        assert type(x.shape[0]) is int and type(x).__name__ == "Tensor"
        return self.a(x)


@pytest.mark.parametrize("how", ["is_tensor", "imported", "type_is", "type_eq"])
def test_is_tensor_and_type_answer_as_in_a_dry_run(how):
    # both answered False on a traced input: forward took the other branch, in_features=5, silently
    dry = dry_run(lambda: Optional2(how), (2, 5), (2, 2))
    model = Optional2(how).eval()
    got = materialized(lambda: Optional2(how), ("B", 5), ("B", 2), seed=0)
    assert dry.a.in_features == 7 and got.a.in_features == 7
    assert_same_model(dry, got)
    assert not lazyfx.infer(model, ("B", 5), ("B", 2)).opaque  # traced, not abstract execution
    assert isinstance(model.a, nn.LazyLinear)  # the user's model is as before
    # the counterpart: without extra, both take the other branch, as a dry run does
    assert_same_model(dry_run(lambda: Optional2(how), (2, 5)), materialized(lambda: Optional2(how), ("B", 5)))
    assert materialized(lambda: Optional2(how), ("B", 5)).a.in_features == 5
    assert "type" not in globals() and torch.is_tensor is is_tensor and is_tensor.__module__ == "torch"


def test_type_still_makes_classes_and_answers_isinstance_while_traced():
    class Builds(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.LazyLinear(3)

        def forward(self, x):
            kind = type("Kind", (object,), {"scale": 2})  # the three-argument form makes a class
            assert isinstance(kind, type) and issubclass(type(kind), type) and type(3) is int
            assert not torch.is_tensor([x]) and type([x]) is list
            return self.a(x * kind.scale)

    assert_same_model(dry_run(Builds, (2, 5)), materialized(Builds, ("B", 5)))
    assert not lazyfx.infer(Builds(), ("B", 5)).opaque


class TypeChecked(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        assert x.__class__ is torch.Tensor, "plain tensors only"  # <- type check (a proxy's class is its own)
        assert x.dim() == 2, "a batch of vectors"  # <- dim check
        return self.fc(x)


class Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner, self.head = TypeChecked(), nn.LazyLinear(2)

    def forward(self, x):
        return self.head(self.inner(x))


def test_an_assert_tracing_fails_but_a_dry_run_passes_is_analysed_by_abstract_execution():
    report = lazyfx.infer(Holder(), "B,5")
    assert "an assert that does not test sizes fails on traced values" in report.opaque["inner"]
    assert "x.__class__ is torch.Tensor" in report.opaque["inner"]
    assert report.lazy["inner.fc"].resolution.arguments == {"in_features": 5}
    assert_same_model(dry_run(Holder, (2, 5)), materialized(Holder, "B,5"))
    assert_same_model(dry_run(TypeChecked, (2, 5)), materialized(TypeChecked, "B,5"))


def test_an_assert_the_declared_shapes_fail_is_still_a_shape_error():
    class DimChecked(TypeChecked):
        def forward(self, x):
            assert x.dim() == 2, "a batch of vectors"
            return self.fc(x)

    with pytest.raises(lazyfx.ShapeError, match="an assertion in forward fails for these inputs: a batch of vectors"):
        lazyfx.infer(DimChecked(), "B,T,5")
    with pytest.raises(lazyfx.ShapeError, match="a batch of vectors"):
        lazyfx.infer(TypeChecked(), "B,T,5")  # through abstract execution, after the type check


# -- constant arguments ---------------------------------------------------------------------------


class ActorCritic(nn.Module):
    """A shared trunk with a policy and a value head, the head chosen by a role string."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.LazyLinear(16)
        self.policy = nn.LazyLinear(4)
        self.value = nn.LazyLinear(1)

    def forward(self, states, role):
        h = torch.tanh(self.trunk(states))
        if role == "policy":
            return self.policy(h)
        return self.value(h)


class AnnotatedActorCritic(ActorCritic):
    def forward(self, states, role: str = "policy"):
        return super().forward(states, role)


def test_const_passes_a_string_as_it_is():
    report = lazyfx.infer(ActorCritic(), "B,8", role=lazyfx.Const("policy"))
    assert report.inputs["role"] == "policy" and str(report.output) == "(B, 4)"
    assert report.lazy["policy"].called and not report.lazy["value"].called
    report = lazyfx.infer(ActorCritic(), "B,8", lazyfx.Const("value"))
    assert str(report.output) == "(B, 1)" and not report.lazy["policy"].called


def test_a_head_the_role_does_not_reach_stays_lazy_as_in_a_dry_run():
    dry = dry_run_with(ActorCritic, torch.zeros(2, 8), "policy")
    assert isinstance(dry.value, nn.LazyLinear)  # the dry run leaves it lazy too
    with pytest.raises(lazyfx.ResolutionError, match="'value' \\(LazyLinear\\) is never called") as info:
        materialized(ActorCritic, "B,8", role=lazyfx.Const("policy"))
    assert info.value.code == "LFX042"


def test_both_roles_in_order_match_a_dry_run_making_both_calls():
    torch.manual_seed(0)
    expected = ActorCritic().eval()
    with torch.no_grad():
        expected(torch.zeros(2, 8), "policy")
        expected(torch.zeros(2, 8), "value")
    calls = (lazyfx.Call("B,8", role=lazyfx.Const("policy")), lazyfx.Call("B,8", role=lazyfx.Const("value")))
    assert_same_model(expected, materialized(ActorCritic, *calls))


def test_an_annotated_parameter_takes_a_string_that_is_no_spec_as_it_is():
    class Tagged(ActorCritic):
        def forward(self, states, role: str):
            return super().forward(states, "policy" if role == "policy head" else "value")

    assert str(lazyfx.infer(Tagged(), "B,8", role="policy head").output) == "(B, 4)"
    assert str(lazyfx.infer(Tagged(), "B,8", "value head").output) == "(B, 1)"


def test_a_string_that_is_also_a_spec_is_ambiguous_for_a_str_parameter():
    with pytest.raises(lazyfx.SpecError) as info:
        lazyfx.infer(AnnotatedActorCritic(), "B,8", role="policy")
    assert info.value.code == "LFX002"
    assert info.value.message == (
        "forward's parameter 'role' is annotated str, and 'policy' is also an input spec (a tensor of shape "
        "(policy,)); pass lazyfx.Const('policy') for the string, or lazyfx.TensorSpec('policy') for a tensor")
    # the same string through Const, and the default, are not ambiguous
    assert str(lazyfx.infer(AnnotatedActorCritic(), "B,8", role=lazyfx.Const("value")).output) == "(B, 1)"
    assert str(lazyfx.infer(AnnotatedActorCritic(), "B,8").output) == "(B, 4)"
    # an unannotated parameter still reads a string as a spec
    assert lazyfx.infer(ActorCritic(), "B,8", role="policy").inputs["role"].ndim == 1


class Pooled(nn.Module):
    """Both branches reach the same head, at different sizes."""

    def __init__(self):
        super().__init__()
        self.head = nn.LazyLinear(2)

    def forward(self, x, pool="mean"):
        x = torch.cat([x.mean(1), x.amax(1)], -1) if pool == "meanmax" else x.mean(1)
        return self.head(x)


class DefaultRole(ActorCritic):
    def forward(self, states, role="policy"):
        return super().forward(states, role)


class UnionRole(ActorCritic):
    def forward(self, states, role: Union[str, torch.Tensor] = "policy"):
        return super().forward(states, role if isinstance(role, str) else "value")


def test_a_string_default_makes_a_string_a_constant():
    # pool="meanmax" was a 1-d tensor spec: the head was built with in_features=5, silently
    model = Pooled()
    got = lazyfx.materialize(model, "B,7,5", pool="meanmax", seed=0)
    expected = dry_run_with(Pooled, torch.zeros(2, 7, 5), "meanmax")
    assert expected.head.in_features == 10
    assert_same_model(expected, got)
    assert isinstance(model.head, nn.LazyLinear)  # the user's model is as before
    report = lazyfx.infer(DefaultRole(), "B,8", role="value")
    assert report.inputs["role"] == "value" and report.lazy["value"].called and not report.lazy["policy"].called
    # the counterparts: the default itself, a tensor given as a TensorSpec, and no default at all
    assert_same_model(dry_run_with(Pooled, torch.zeros(2, 7, 5)), materialized(Pooled, "B,7,5", seed=0))
    assert lazyfx.infer(DefaultRole(), "B,8", role=lazyfx.TensorSpec("policy")).inputs["role"].ndim == 1


def test_a_string_that_is_also_a_spec_is_ambiguous_for_a_union_of_str_and_tensor():
    with pytest.raises(lazyfx.SpecError, match=r"LFX002 forward's parameter 'role' is annotated "
                       r"Union\[str, torch.Tensor\], and 'policy' is also an input spec .*lazyfx.Const\('policy'\)"):
        lazyfx.infer(UnionRole(), "B,8", role="policy")
    report = lazyfx.infer(UnionRole(), "B,8", role=lazyfx.Const("policy"))
    assert report.lazy["policy"].called and not report.lazy["value"].called
    assert lazyfx.infer(UnionRole(), "B,8", role="policy head").inputs["role"] == "policy head"
    report = lazyfx.infer(UnionRole(), "B,8", role=lazyfx.TensorSpec("B"))
    assert report.lazy["value"].called and not report.lazy["policy"].called


def test_literal_and_enum_annotations_name_their_strings():
    import enum
    from typing import Literal, Optional

    class Role(str, enum.Enum):
        POLICY = "policy"
        VALUE = "value"

    class ByLiteral(ActorCritic):
        def forward(self, states, role: Literal["policy", "value"]):
            return super().forward(states, role)

    class ByEnum(ActorCritic):
        def forward(self, states, role: Optional[Role] = None):
            return super().forward(states, role)

    assert str(lazyfx.infer(ByLiteral(), "B,8", role="policy").output) == "(B, 4)"
    assert str(lazyfx.infer(ByEnum(), "B,8", role="policy").output) == "(B, 4)"  # Role's own value
    assert str(lazyfx.infer(ByEnum(), "B,8", role=Role.VALUE).output) == "(B, 1)"
    assert str(lazyfx.infer(ActorCritic(), "B,8", role=Role.POLICY).output) == "(B, 4)"  # a member, as it is
    torch.manual_seed(0)
    expected = ByEnum().eval()
    with torch.no_grad():
        expected(torch.zeros(2, 8), Role.VALUE)
        expected(torch.zeros(2, 8), "policy")
    assert_same_model(expected, materialized(ByEnum, lazyfx.Call("B,8", Role.VALUE), lazyfx.Call("B,8", "policy")))


def test_constant_tuples_and_objects_are_not_shapes():
    class Config:
        width = 3

    class Sized(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(2)

        def forward(self, x, size: tuple[int, int], config):
            return self.fc(x.reshape(x.size(0), size[0] * size[1] * config.width))

    report = lazyfx.infer(Sized(), "B,4,6", (2, 4), Config())
    assert report.inputs["size"] == (2, 4) and report.lazy["fc"].resolution.arguments == {"in_features": 24}
    assert lazyfx.infer(Sized(), "B,4,6", lazyfx.Const((2, 4)), config=Config()).inputs["size"] == (2, 4)
