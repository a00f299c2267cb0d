"""Input specs: lazyfx.Dim, lazyfx.TensorSpec, the string shorthand, and how each
input form becomes the abstract value propagation starts from, alone and
through lazyfx.infer."""

from __future__ import annotations

import pytest
import sympy
import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedParameter

import lazyfx
from lazyfx import Dim, SpecError, TensorMeta, TensorSpec
from lazyfx.core.constraints import SymbolInfo
from lazyfx.inputs.spec import SymbolTable, parse_shorthand, to_value
from lazyfx.core.symbolic import symbol

B, T, H, W = (symbol(n) for n in "BTHW")


def value(spec):
    return to_value(spec, SymbolTable())


# -- every input form -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, shape, dtype",
    [
        (("B", 3, "H", "W"), (B, 3, H, W), torch.float32),
        (["B", 3, "H", "W"], (B, 3, H, W), torch.float32),
        ((sympy.Symbol("B"), 3), (B, 3), torch.float32),
        ((sympy.Symbol("B", integer=True), 3), (B, 3), torch.float32),
        ((Dim("B"), Dim("H", min=3), 5), (B, H, 5), torch.float32),
        ((2, 3, 0), (2, 3, 0), torch.float32),
        ((), (), torch.float32),
        ("B,3,H,W", (B, 3, H, W), torch.float32),
        ("B, 3, H, W", (B, 3, H, W), torch.float32),
        ("  B ,3 ,H,W  ", (B, 3, H, W), torch.float32),
        ("(B, 3, H, W)", (B, 3, H, W), torch.float32),
        ("[B, 3, H, W]", (B, 3, H, W), torch.float32),
        ("B,3,H,W,", (B, 3, H, W), torch.float32),
        ("(B,)", (B,), torch.float32),
        ("B", (B,), torch.float32),
        ("7", (7,), torch.float32),
        ("_x1, y_2", (symbol("_x1"), symbol("y_2")), torch.float32),
        ("B,T:int64", (B, T), torch.int64),
        ("B, T : int64 ", (B, T), torch.int64),
        ("B,T:long", (B, T), torch.int64),
        ("B,T:torch.int64", (B, T), torch.int64),
        ("(B, T):float16", (B, T), torch.float16),
        ("(B,):bool", (B,), torch.bool),
        ("", (), torch.float32),
        ("()", (), torch.float32),
        (":int32", (), torch.int32),
        (torch.Size([2, 3]), (2, 3), torch.float32),
        (torch.Size([]), (), torch.float32),
        (TensorSpec(("B", 8)), (B, 8), torch.float32),
        (TensorSpec(["B", 8], dtype=torch.int64), (B, 8), torch.int64),
        (TensorSpec("B,8"), (B, 8), torch.float32),
        (TensorSpec("B,8", dtype="int64"), (B, 8), torch.int64),
        (TensorSpec("B,8", dtype="torch.bfloat16"), (B, 8), torch.bfloat16),
        (TensorSpec("B,8:int8"), (B, 8), torch.int8),
        (TensorSpec("B,8:int8", dtype=torch.int8), (B, 8), torch.int8),  # the same dtype twice is fine
        (TensorSpec("B,8:float32", dtype="float"), (B, 8), torch.float32),
        (TensorSpec(torch.Size([4, 8]), dtype="double"), (4, 8), torch.float64),
        (TensorSpec((Dim("B", max=16), "T")), (B, T), torch.float32),
    ],
)
def test_input_forms(spec, shape, dtype):
    result = value(spec)
    assert result == TensorMeta(shape, dtype)
    assert all(type(d) is int or d.is_Symbol for d in result.shape)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_tensors_are_taken_concretely(device):
    tensor = torch.empty(2, 3, 5, dtype=torch.int64, device=device)
    result = value(tensor)
    assert result == TensorMeta((2, 3, 5), torch.int64)
    assert all(type(d) is int for d in result.shape)
    assert value(torch.empty((), device=device)) == TensorMeta((), torch.float32)


def test_symbols_are_positive_integers_named_as_given():
    (b, t) = value("B,T").shape
    assert (b.name, t.name) == ("B", "T")
    assert b.is_integer and b.is_positive
    assert b is symbol("B")
    # a user's plain sympy.Symbol becomes lazyfx's symbol of that name
    assert value((sympy.Symbol("B"),)).shape[0] is symbol("B")


def test_containers_of_specs():
    result = value(
        {
            "image": "B,3,H,W",
            "tokens": ("B", "T"),
            "pair": [TensorSpec("B,T:int64"), torch.empty(2, device="meta")],
            "extras": (None, 0.5, True, 3, torch.float16),
            "empty": {},
        }
    )
    assert result == {
        "image": TensorMeta((B, 3, H, W)),
        "tokens": TensorMeta((B, T)),
        "pair": [TensorMeta((B, T), torch.int64), TensorMeta((2,))],
        "extras": (None, 0.5, True, 3, torch.float16),
        "empty": {},
    }
    assert type(result["pair"]) is list
    # a tuple is a shape when every entry is a dim, otherwise a container
    assert value((("B", 3), ("B", 4))) == (TensorMeta((B, 3)), TensorMeta((B, 4)))
    assert value(("B,3", None)) == (TensorMeta((B, 3)), None)
    assert value([["B"], [2, 2]]) == [TensorMeta((B,)), TensorMeta((2, 2))]


@pytest.mark.parametrize("constant", [None, 0, 7, 2.5, 1j, True, False, torch.float64, torch.device("cpu")])
def test_constants_pass_through(constant):
    result = value(constant)
    assert result is constant or (result == constant and type(result) is type(constant))


def test_shorthand_parses_to_a_tensor_spec():
    spec = parse_shorthand("(B, 3, H, W):bfloat16")
    assert spec == TensorSpec(("B", 3, "H", "W"), torch.bfloat16)
    assert spec.shape == ("B", 3, "H", "W") and spec.dtype is torch.bfloat16
    assert parse_shorthand("B,007").shape == ("B", 7)


def test_tensor_spec_normalizes_its_fields():
    spec = TensorSpec(["B", 3], dtype="half")
    assert spec.shape == ("B", 3) and type(spec.shape) is tuple
    assert spec.dtype is torch.float16
    assert TensorSpec("B,3") == TensorSpec(("B", 3)) == TensorSpec(["B", 3], dtype=torch.float32)
    assert TensorSpec("B,3:int64") == TensorSpec(("B", 3), dtype="int64")
    assert TensorSpec(torch.Size([1, 2])).shape == (1, 2)


# -- one name, one symbol ----------------------------------------------------------------------


def test_same_name_in_two_inputs_is_the_same_symbol():
    table = SymbolTable()
    x = to_value("B,T,8", table)
    y = to_value(TensorSpec(("B", Dim("T")), dtype="int64"), table)
    z = to_value((sympy.Symbol("T"), 2), table)
    assert x.shape[0] is y.shape[0]
    assert x.shape[1] is y.shape[1] is z.shape[0]
    assert sorted(table.dims) == ["B", "T"]


def test_dim_constraints_merge_with_plain_names():
    table = SymbolTable()
    to_value("B,H", table)
    to_value((Dim("H", min=8, multiple_of=4), "W"), table)
    to_value(("H", "W"), table)  # a plain name later does not drop the constraints
    to_value((Dim("H", min=8, multiple_of=4),), table)  # the same constraints again are fine
    assert table.dims["H"] == Dim("H", min=8, multiple_of=4)
    infos = table.constraints().infos
    assert infos["H"] == SymbolInfo("H", 8, None, 4)
    assert infos["B"] == SymbolInfo("B") and infos["W"] == SymbolInfo("W")
    assert table.constraints().decide(sympy.Eq(sympy.Mod(H, 2), 0)) is True


@pytest.mark.parametrize(
    "first, second",
    [
        (Dim("H", min=8), Dim("H", min=16)),
        (Dim("H", min=8), Dim("H", max=16)),
        (Dim("H", multiple_of=2), Dim("H", multiple_of=2, max=64)),
    ],
)
def test_two_constraint_sets_for_one_name_are_refused(first, second):
    table = SymbolTable()
    to_value(("B", first), table)
    with pytest.raises(SpecError, match=r"symbol 'H' is given two different constraints") as info:
        to_value((second, "W"), table)
    assert info.value.code == "LFX002"
    assert repr(first) in str(info.value) and repr(second) in str(info.value)


def test_conflicting_constraints_through_infer():
    model = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(SpecError, match="two different constraints"):
        lazyfx.infer(model, [(Dim("B", max=8), 3), (Dim("B", max=9), 3)])


# -- malformed specs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("B,3,,W", r"malformed input spec 'B,3,,W': an empty entry at position 2"),
        (",", r"an empty entry at position 0"),
        ("B,,", r"an empty entry at position 1"),
        ("B,-3", r"'-3' at position 1; .*\(dims are non-negative\)"),
        ("B,3.5", r"'3.5' at position 1; expected an integer or a symbol name"),
        ("B,class", r"'class' at position 1"),
        ("B H", r"'B H' at position 0"),
        ("(B,3", r"'\(B' at position 0"),
        ("B:int65", r"unknown dtype 'int65' \(known: .*int64"),
        ("B:Int64", r"unknown dtype 'Int64'"),
        ("B:", r"malformed input spec 'B:': nothing after ':'"),
        ("B,T: ", r"nothing after ':'"),
    ],
)
def test_malformed_shorthand(text, message):
    with pytest.raises(SpecError, match=message) as info:
        parse_shorthand(text)
    assert info.value.code == "LFX001"
    # the same error on every path a string takes
    with pytest.raises(SpecError, match=message):
        value(text)
    with pytest.raises(SpecError, match=message):
        TensorSpec(text)


def test_malformed_shorthand_through_infer():
    with pytest.raises(SpecError, match="an empty entry at position 2") as info:
        lazyfx.infer(nn.Sequential(nn.LazyLinear(4)), "B,3,,W")
    assert info.value.code == "LFX001"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Dim("1H"), r"Dim name '1H' is not a valid symbol name"),
        (lambda: Dim("H-W"), r"Dim name 'H-W' is not a valid symbol name"),
        (lambda: Dim(""), r"Dim name '' is not a valid symbol name"),
        (lambda: Dim("class"), r"Dim name 'class' is not a valid symbol name"),
        (lambda: Dim("None"), r"Dim name 'None' is not a valid symbol name"),
        (lambda: Dim(5), r"Dim name 5 is not a valid symbol name"),
        (lambda: Dim("H", min=0), r"Dim\('H'\): min must be a positive int, got 0"),
        (lambda: Dim("H", max=-1), r"max must be a positive int, got -1"),
        (lambda: Dim("H", multiple_of=0), r"multiple_of must be a positive int, got 0"),
        (lambda: Dim("H", min=2.0), r"min must be a positive int, got 2.0"),
        (lambda: Dim("H", min=True), r"min must be a positive int, got True"),
        (lambda: Dim("H", min=10, max=5), r"admits no value: nothing between min=10 and max=5$"),
        (
            lambda: Dim("H", min=33, max=63, multiple_of=32),
            r"admits no value: nothing between min=33 and max=63 is a multiple of 32",
        ),
        (lambda: Dim("H", max=7, multiple_of=8), r"nothing between min=1 and max=7 is a multiple of 8"),
    ],
)
def test_bad_dim_arguments(make, message):
    with pytest.raises(SpecError, match=message) as info:
        make()
    assert info.value.code == "LFX002"


def test_good_dim_arguments():
    assert Dim("H", min=32, max=32, multiple_of=32).info() == SymbolInfo("H", 32, 32, 32)
    assert Dim("H", max=8, multiple_of=8).info().smallest() == 8
    assert Dim("_h2").info() == SymbolInfo("_h2")
    assert repr(Dim("H", min=32, max=1024, multiple_of=32)) == "Dim('H', min=32, max=1024, multiple_of=32)"
    assert repr(Dim("H")) == "Dim('H')"
    assert Dim("H").symbol is symbol("H")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TensorSpec(("B", 3.5)), r"TensorSpec shape must be a tuple of dims .*got \('B', 3.5\)"),
        (lambda: TensorSpec(("B", "1x")), r"got \('B', '1x'\)"),
        (lambda: TensorSpec(("B", True)), r"got \('B', True\)"),
        (lambda: TensorSpec(("B", None)), r"got \('B', None\)"),
        (lambda: TensorSpec((("B", 3),)), r"got \(\('B', 3\),\)"),
        (lambda: TensorSpec(5), r"got 5$"),
        (lambda: TensorSpec({"B": 1}), r"got \{'B': 1\}"),
        (lambda: TensorSpec(("B", 3), dtype=5), r"dtype must be a torch.dtype or its name, got 5"),
        (lambda: TensorSpec(("B", 3), dtype="int65"), r"unknown dtype 'int65'"),
        (lambda: TensorSpec("B:int64", dtype="int32"), r"dtype suffix and dtype= disagree"),
        (lambda: TensorSpec("B:int64", dtype=torch.float32), r"dtype suffix and dtype= disagree"),
        (lambda: TensorSpec("B:float32", dtype=torch.int64), r"dtype suffix and dtype= disagree"),
        (lambda: TensorSpec("B,,3"), r"an empty entry at position 1"),
    ],
)
def test_bad_tensor_specs(make, message):
    with pytest.raises(SpecError, match=message):
        make()


@pytest.mark.parametrize("spec", [("B", -3), TensorSpec(("B", -3)), [("B", 2), (-1,)]])
def test_negative_dims_are_refused(spec):
    with pytest.raises(SpecError, match="dims are non-negative integers, got -") as info:
        value(spec)
    assert info.value.code == "LFX002"


@pytest.mark.parametrize("spec", [{1, 2}, b"B,3", nn.Linear, "B,3".split])
def test_unusable_objects_are_refused(spec):
    with pytest.raises(SpecError, match="cannot use .* as an input spec; expected a shape tuple.*lazyfx.Const"):
        value(spec)


@pytest.mark.parametrize("constant", [object(), lazyfx.Const(nn.Linear), lazyfx.Const("B,3"), lazyfx.Const((2, 3))])
def test_other_objects_and_consts_are_constants_as_they_are(constant):
    expected = constant.value if isinstance(constant, lazyfx.Const) else constant
    assert value(constant) is expected


def test_non_string_to_parse_shorthand():
    with pytest.raises(SpecError, match="expected a spec string, got 3"):
        parse_shorthand(3)


# -- end to end through lazyfx.infer ---------------------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.LazyLinear(4)

    def forward(self, x, mask=None):
        y = self.fc(x)
        if mask is not None:
            y = y * mask
        return y


def snapshot(model: nn.Module):
    return (
        [(k, type(v)) for k, v in model.state_dict().items()],
        [(name, type(m)) for name, m in model.named_modules()],
        {name: len(m._forward_pre_hooks) for name, m in model.named_modules()},
    )


def assert_untouched(model: nn.Module, before) -> None:
    assert snapshot(model) == before
    params = list(model.parameters())
    assert params and all(isinstance(p, UninitializedParameter) for p in params)
    assert all(type(m) is nn.LazyLinear and m.in_features == 0 for m in model.modules() if isinstance(m, nn.LazyLinear))


SYMBOLIC_INPUTS = [
    ("B", 8),
    ["B", 8],
    (Dim("B"), 8),
    (sympy.Symbol("B"), 8),
    "B,8",
    "(B, 8,)",
    "[B,8]:float32",
    TensorSpec(("B", 8)),
    TensorSpec("B,8", dtype="float"),
    TensorSpec(["B", 8], dtype=torch.float32),
]
CONCRETE_INPUTS = [
    (2, 8),
    "2,8",
    torch.Size([2, 8]),
    torch.empty(2, 8, device="meta"),
    torch.zeros(2, 8),
    TensorSpec(torch.Size([2, 8])),
]


@pytest.mark.parametrize("spec", SYMBOLIC_INPUTS + CONCRETE_INPUTS)
@pytest.mark.parametrize("make", [Net, lambda: nn.Sequential(nn.LazyLinear(4))], ids=["Net", "Sequential"])
def test_infer_accepts_every_input_form(make, spec):
    model = make()
    before = snapshot(model)
    report = lazyfx.infer(model, spec)
    batch = 2 if any(spec is c for c in CONCRETE_INPUTS) else B
    assert report.output == TensorMeta((batch, 4))
    (record,) = report.lazy.values()
    assert record.resolution.arguments == {"in_features": 8}
    assert str(report.domain) == "all positive sizes"
    assert_untouched(model, before)


def test_infer_by_keyword_and_with_the_optional_argument():
    model = Net()
    before = snapshot(model)
    by_name = lazyfx.infer(model, x="B,T,8")
    assert by_name.output == TensorMeta((B, T, 4))
    assert by_name.inputs == {"x": TensorMeta((B, T, 8)), "mask": None}
    masked = lazyfx.infer(model, ("B", 8), mask=("B", 1))
    assert masked.output == TensorMeta((B, 4))
    assert masked.inputs["mask"] == TensorMeta((B, 1))
    both = lazyfx.infer(model, mask="B,4", x="B,8")
    assert both.output == TensorMeta((B, 4))
    positional = lazyfx.infer(model, "B,8", None)
    assert positional.inputs == {"x": TensorMeta((B, 8)), "mask": None}
    assert lazyfx.infer(nn.Sequential(nn.LazyLinear(4)), input=(3, 8)).output == TensorMeta((3, 4))
    assert_untouched(model, before)


def test_infer_with_constrained_dims():
    model = Net()
    before = snapshot(model)
    report = lazyfx.infer(model, (Dim("B", max=16, multiple_of=2), 8), mask=("B", 4))
    assert report.output == TensorMeta((B, 4))
    assert str(report.domain) == "B <= 16 and B % 2 == 0"
    assert report.domain.contains(B=4) and not report.domain.contains(B=3)
    assert_untouched(model, before)


class DictNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.LazyLinear(4)
        self.side = nn.LazyLinear(4)

    def forward(self, batch, pair=None, scale=1.0):
        y = self.fc(batch["x"]) * scale
        if pair is not None:
            y = y + self.side(pair[0]) + pair[1]
        return y


def test_infer_with_containers_and_constants():
    model = DictNet()
    before = snapshot(model)
    plain = lazyfx.infer(model, {"x": "B,8"})
    assert plain.output == TensorMeta((B, 4))
    assert plain.inputs == {"batch": {"x": TensorMeta((B, 8))}, "pair": None, "scale": 1.0}
    assert plain.lazy["side"].called is False
    full = lazyfx.infer(model, {"x": ("B", 8)}, [TensorSpec("B,3"), "B,1"], scale=2.0)
    assert full.output == TensorMeta((B, 4))
    assert full.lazy["side"].resolution.arguments == {"in_features": 3}
    concrete = lazyfx.infer(model, batch={"x": torch.empty(5, 8, device="meta")}, pair=(torch.empty(5, 2), (5, 4)))
    assert concrete.output == TensorMeta((5, 4))
    assert concrete.lazy["side"].resolution.arguments == {"in_features": 2}
    assert_untouched(model, before)


@pytest.mark.parametrize(
    "args, kwargs, reason",
    [
        ((("B", 8), ("B", 4), ("B", 4)), {}, "too many positional arguments"),
        ((), {}, "missing a required argument: 'x'"),
        ((), {"y": ("B", 8)}, "missing a required argument: 'x'"),
        ((("B", 8),), {"y": ("B", 8)}, "got an unexpected keyword argument 'y'"),
        ((("B", 8),), {"x": ("B", 8)}, "multiple values for argument 'x'"),
    ],
)
def test_inputs_that_do_not_fit_forward(args, kwargs, reason):
    model = Net()
    before = snapshot(model)
    with pytest.raises(SpecError) as info:
        lazyfx.infer(model, *args, **kwargs)
    text = str(info.value)
    assert "the inputs do not fit Net.forward(x, mask=None)" in text
    assert reason in text
    assert info.value.code == "LFX002"
    assert_untouched(model, before)


def test_bad_specs_leave_the_model_untouched():
    model = Net()
    before = snapshot(model)
    for spec in ["B,3,,W", ("B", -1), object(), TensorSpec("B,8", dtype="int64")]:
        with pytest.raises(lazyfx.LazyFXError):
            lazyfx.infer(model, spec)
    assert_untouched(model, before)


def test_infer_needs_a_module():
    with pytest.raises(SpecError, match="lazyfx needs an nn.Module, got function"):
        lazyfx.infer(lambda x: x, ("B", 8))


# -- issue 12: sizes too large, constraints --------------------------------------------------------


@pytest.mark.parametrize("spec", [("B", 2**63), "B," + "9" * 25, "B," + "9" * 5000, TensorSpec(("B", 10**30))])
def test_sizes_over_int64_are_refused(spec):
    with pytest.raises(SpecError, match="too large"):
        value(spec)


def test_the_largest_size_is_accepted():
    assert value(("B", 2**63 - 1)).shape[1] == 2**63 - 1


def test_constraints_merge_moduli_and_keep_the_tightest_bounds():
    from lazyfx.inputs.spec import parse_constraints

    dims, aliases = parse_constraints(["H%4==0", "H%6==0", "H>=8", "H>=16", "H<=100", "H<200"])
    assert dims == {"H": Dim("H", min=16, max=100, multiple_of=12)} and aliases == {}
    dims, aliases = parse_constraints(["W==H", "H==W"])  # a cycle is one symbol
    assert len(set(aliases.values())) == 1 and dims == {}


def test_constraint_symbols_are_checked_against_the_inputs():
    from lazyfx.inputs.spec import check_constraint_symbols, symbol_names

    known = symbol_names(["B,3,H,W", {"mask": ("B", Dim("T"))}, (("B", 2), None)])
    assert known == {"B", "H", "W", "T"}
    check_constraint_symbols(["H>=3", "W==H", "T%8==0"], known)
    with pytest.raises(SpecError, match=r"constraint 'X==H': no input has a symbol X \(the inputs' symbols are"):
        check_constraint_symbols(["X==H"], known)
