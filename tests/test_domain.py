"""The input domain is exact: for every size in a range, lazyfx says valid exactly when a
meta-device run of the eager model succeeds; and it prints as a person would write it."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import lazyfx
from lazyfx.core.symbolic import substitute


def accepts(model: nn.Module, shape) -> bool:
    try:
        with torch.no_grad():
            model(torch.empty(shape, device="meta"))
    except Exception:
        return False
    return True


def layer(draw):
    kind = draw(st.sampled_from(["conv", "conv", "max", "avg"]))
    k, s = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    if kind == "conv":
        return nn.Conv1d(2, 2, k, stride=s, padding=draw(st.integers(0, 2)), dilation=draw(st.integers(1, 2)))
    pad = draw(st.integers(0, k // 2))
    if kind == "max":
        return nn.MaxPool1d(k, s, pad, dilation=draw(st.integers(1, 2)), ceil_mode=draw(st.booleans()))
    return nn.AvgPool1d(k, s, pad, ceil_mode=draw(st.booleans()))


@settings(max_examples=20)
@given(st.data())
def test_domain_of_random_conv_pool_stacks_matches_pytorch(data):
    model = nn.Sequential(*(layer(data.draw) for _ in range(data.draw(st.integers(1, 4)))))
    try:
        report = lazyfx.infer(model, (1, 2, "H"))
    except lazyfx.ShapeError:
        assert not any(accepts(model.to("meta"), (1, 2, h)) for h in range(1, 257))
        return
    meta = model.to("meta")
    wrong = [h for h in range(1, 257) if report.domain.contains(H=h) != accepts(meta, (1, 2, h))]
    assert not wrong, f"{model}: domain '{report.domain}' is wrong at H in {wrong[:10]}"
    sizes = report.domain.solved()["H"]
    assert sizes is not None, f"not summarized: {report.domain}"
    assert all(sizes.contains(h) == report.domain.contains(H=h) for h in range(1, 257))
    valid = [h for h in range(1, 257) if accepts(meta, (1, 2, h))]
    assert list(itertools.islice(sizes.values(), 5)) == valid[:5]
    assert report.domain.example() == ({"H": valid[0]} if valid else None)


class BatchNormBottleneck(nn.Module):
    """Training-mode batch norm after three poolings: needs more than one value per channel,
    a condition that relates B, H and W (so the per-symbol smallest sizes are not valid)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(4, 3, padding=1)
        self.pool = nn.MaxPool2d(8)
        self.norm = nn.LazyBatchNorm2d()

    def forward(self, x):
        return self.norm(self.pool(self.conv(x)))


def test_example_is_a_valid_input_when_the_smallest_sizes_are_not():
    report = lazyfx.infer(BatchNormBottleneck(), ("B", 3, "H", "W"))
    assert report.domain.smallest() == {"B": 1, "H": 8, "W": 8}
    assert not report.domain.contains(B=1, H=8, W=8)
    example = report.domain.example()
    assert example == {"B": 2, "H": 8, "W": 8}
    eager = lazyfx.materialize(BatchNormBottleneck(), (1, 3, 8, 16), device="meta")
    assert accepts(eager, (example["B"], 3, example["H"], example["W"]))
    assert not accepts(eager, (1, 3, 8, 8))


class UNet(nn.Module):
    """Four poolings, transposed-conv upsampling and skip concatenation."""

    def __init__(self, depth: int = 4):
        super().__init__()
        self.down = nn.ModuleList([nn.LazyConv2d(4, 3, padding=1) for _ in range(depth)])
        self.up = nn.ModuleList([nn.LazyConvTranspose2d(4, 2, stride=2) for _ in range(depth)])
        self.fuse = nn.ModuleList([nn.LazyConv2d(4, 3, padding=1) for _ in range(depth)])
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        skips = []
        for conv in self.down:
            x = conv(x)
            skips.append(x)
            x = self.pool(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips)):
            x = fuse(torch.cat([up(x), skip], 1))
        return x


class FixedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(8, 5, stride=2)
        self.fc = nn.Linear(8 * 12 * 12, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class TinyViT(nn.Module):
    """Patches of 8 and a positional embedding for 16 patches fix the image size."""

    def __init__(self):
        super().__init__()
        self.patch = nn.LazyConv2d(16, 8, stride=8)
        self.cls = nn.Parameter(torch.zeros(1, 1, 16))
        self.pos = nn.Parameter(torch.zeros(1, 17, 16))
        self.head = nn.LazyLinear(5)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], 1) + self.pos
        return self.head(tokens[:, 0])


@pytest.mark.parametrize(
    "build, spec, text",
    [
        (UNet, ("B", 3, "H", "W"), "H % 16 == 0 and W % 16 == 0"),
        (FixedHead, ("B", 1, "H", "H"), "27 <= H <= 28"),
        (TinyViT, ("B", 3, "H", "H"), "32 <= H <= 39"),
    ],
    ids=["unet", "conv-into-fixed-linear", "vit-positional-embedding"],
)
def test_domains_that_matter_print_exactly(build, spec, text):
    report = lazyfx.infer(build(), spec)
    assert str(report.domain) == text


@pytest.mark.parametrize("build", [UNet, FixedHead, TinyViT], ids=["unet", "fixed-linear", "vit"])
def test_domains_that_matter_brute_force(build):
    report = lazyfx.infer(build(), ("B", 3 if build is not FixedHead else 1, "H", "H"))
    in_channels = 1 if build is FixedHead else 3
    eager = lazyfx.materialize(build(), (1, in_channels, 32 if build is not FixedHead else 27, 32 if
                                         build is not FixedHead else 27), device="meta")
    for h in range(1, 97):
        assert report.domain.contains(B=1, H=h) == accepts(eager, (1, in_channels, h, h)), h


def test_smallest_input_and_empty_domains():
    import sympy

    from lazyfx.core.checks import Condition
    from lazyfx.core.constraints import Constraints
    from lazyfx.domain.domain import Domain
    from lazyfx.core.symbolic import symbol

    assert lazyfx.infer(UNet(), ("B", 3, "H", "W")).domain.smallest() == {"B": 1, "H": 16, "W": 16}
    # an empty domain that a single check proves is the error that makes it empty, at its line
    with pytest.raises(lazyfx.ShapeError, match="Linear has in_features=1152") as info:
        lazyfx.infer(FixedHead(), ("B", 1, lazyfx.Dim("H", max=20), lazyfx.Dim("H", max=20)))
    assert info.value.diagnostics[0].location.line == FixedHead.forward.__code__.co_firstlineno + 1
    # one that only the conditions together make empty is reported by the domain
    H = symbol("H")
    odd_and_even = Domain(Constraints(), [Condition(sympy.Eq(sympy.Mod(H, 4), 1), "odd"),
                                          Condition(sympy.Eq(sympy.Mod(H, 2), 0), "even")])
    assert odd_and_even.is_empty and str(odd_and_even) == "no valid H" and odd_and_even.smallest() == {"H": None}


def test_dim_constraints_decide_and_print():
    h = lazyfx.Dim("H", min=64, multiple_of=32)
    report = lazyfx.infer(UNet(), ("B", 3, h, h))
    assert str(report.domain) == "H >= 64 and H % 32 == 0"


class StridedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(8, 5, stride=2)
        self.fc = nn.LazyLinear(10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def test_a_checkpoint_tells_which_input_sizes_fit():
    state = lazyfx.materialize(StridedHead(), ("B", 1, 28, 28), seed=0).state_dict()
    report = lazyfx.infer(StridedHead(), ("B", 1, "H", "H"))
    assert str(report.fit(state)) == "27 <= H <= 28"  # a stride-2 floor: two sizes give 12x12
    pairs = lazyfx.infer(StridedHead(), ("B", 1, "H", "W")).fit(state)
    assert pairs.contains(B=1, H=27, W=28) and not pairs.contains(B=1, H=27, W=30)
    model = lazyfx.materialize(StridedHead(), ("B", 1, "H", "H"), state_dict=state)
    assert model.fc.in_features == 1152 and torch.equal(model.fc.weight, state["fc.weight"])


def test_no_size_fits_the_checkpoint():
    state = lazyfx.materialize(StridedHead(), ("B", 1, 28, 28), seed=0).state_dict()
    state["fc.weight"] = torch.zeros(10, 1000)
    with pytest.raises(lazyfx.ShapeError, match=r"checkpoint key 'fc.weight' has shape \(10, 1000\), but the inputs "
                                                r"resolve it to \(10, 8\*\(\(H - 5\)//2 \+ 1\)\*\*2\) \(no input size gives"):
        lazyfx.infer(StridedHead(), ("B", 1, "H", "H")).fit(state)


def test_a_model_no_input_fits_is_a_shape_error_at_the_condition_that_empties_the_domain():
    model = nn.Sequential(nn.LazyConv2d(8, 3), nn.Flatten(), nn.Linear(100, 10))  # 8*(H-2)*(W-2) is never 100
    for spec in [("B", 3, "H", "W"), ("B", 3, "H", "H")]:
        with pytest.raises(lazyfx.ShapeError, match="no input sizes satisfy 8") as info:
            lazyfx.infer(model, spec)
        assert info.value.diagnostics[0].module_path == "2"
    meta = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(100, 10)).to("meta")
    assert not any(accepts(meta, (1, 3, h, w)) for h in range(1, 40) for w in range(1, 40))


@pytest.mark.parametrize("spatial, needs", [((1, 1), "B >= 2"), ((2, 1), None), ((1, "W"), "B*W > 1"), ((0, 1), None)])
def test_batch_norm_in_training_needs_more_than_one_value_exactly_where_pytorch_does(spatial, needs):
    """A constant factor of 2 or more decides it (no condition); a factor of 1 leaves one."""
    model = lambda: nn.Sequential(nn.LazyBatchNorm2d())  # noqa: E731 (training mode)
    report = lazyfx.infer(model(), ("B", 3, *spatial))
    assert [str(c) for c in report.domain.conditions()] == ([needs] if needs else [])
    eager = lazyfx.materialize(model(), (2, 3, spatial[0], 1), device="meta")
    for b in (1, 2, 3):
        for w in ((1, 2) if spatial[1] == "W" else (spatial[1],)):
            sizes = {"B": b, "W": w} if spatial[1] == "W" else {"B": b}
            assert accepts(eager, (b, 3, spatial[0], w)) == report.domain.contains(**sizes), (b, w)


class _AddAfterAView(nn.Module):
    """``x.view(1)`` requires ``x`` to have one element; ``x + y`` then broadcasts it."""

    def forward(self, x, y):
        return x.view(1) + y, x + y


def test_a_size_the_constraints_fix_to_one_broadcasts_without_an_assumption():
    """A symbol whose range is one size (a declared max=1, or an earlier ``view(1)``) is 1 when it
    broadcasts against another symbol: the result is the other one, exactly, and nothing is
    assumed. Its counterpart, a symbol that may be 2, keeps the usual != 1 assumption."""
    for spec in ((lazyfx.Dim("T", max=1),), ("T",)):
        report = lazyfx.infer(_AddAfterAView(), spec, ("S",))
        assert not report.domain.assumptions
        for s in (1, 3):
            x, y = torch.zeros(1), torch.zeros(s)
            expected = [tuple(t.shape) for t in _AddAfterAView()(x, y)]
            assert report.domain.contains(T=1, S=s)
            assert [tuple(substitute(d, {"S": s}) for d in t.shape) for t in report.output] == expected
        assert not report.domain.contains(T=2, S=2)  # view(1) fails there

    class Add(nn.Module):
        def forward(self, x, y):
            return x + y

    report = lazyfx.infer(Add(), (lazyfx.Dim("T", max=2),), ("S",))
    assert [str(a.expr) for a in report.domain.assumptions] == ["Ne(T, 1)", "Ne(S, 1)"]
