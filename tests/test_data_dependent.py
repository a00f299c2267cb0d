"""Ops whose output shape depends on tensor values are refused with DataDependentError
(LFX022), naming the op and why, after the checks their shapes decide. Their empty-input
forms, whose shape is known, are differential cases in tests/cases_shape.py."""

import pytest
import torch
import torch.nn as nn

import lazyfx
from differential import fn_module

B, BOOL, LONG = "B", torch.bool, torch.int64


def spec(*dims, dtype=torch.float32):
    return lazyfx.TensorSpec(dims, dtype=dtype)


ITEM_MESSAGE = (r"Tensor.item\(\) returns the tensor's value, and a size or shape taken from a tensor's value "
                r"cannot be known statically")

CASES = {
    "torch.nonzero": (torch.nonzero, [spec(B, 3)], "nonzero: the number of rows"),
    "Tensor.nonzero": (lambda x: x.nonzero(), [spec(2, 3)], "nonzero"),
    "nonzero(as_tuple=True)": (lambda x: torch.nonzero(x, as_tuple=True), [spec(4)], "nonzero"),
    "torch.argwhere": (torch.argwhere, [spec(B)], "argwhere"),
    "Tensor.argwhere": (lambda x: x.argwhere(), [spec(2)], "argwhere"),
    "torch.masked_select": (lambda x, m: torch.masked_select(x, m), [spec(B, 3), spec(3, dtype=BOOL)],
                            "masked_select: the number of elements"),
    "Tensor.masked_select": (lambda x, m: x.masked_select(m), [spec(2, 3), spec(2, 3, dtype=BOOL)], "masked_select"),
    "torch.unique": (torch.unique, [spec(B, 3)], "unique: the number of distinct values depends on the tensor"),
    "Tensor.unique": (lambda x: x.unique(return_counts=True), [spec(5)], "Tensor.unique"),
    "unique(dim=)": (lambda x: torch.unique(x, dim=1), [spec(1, 1)], r"unique\(dim=1\)"),
    "Tensor.item": (lambda x: x.item(), [spec(1)], ITEM_MESSAGE),
    "item as a size": (lambda x, n: x.view(n.item(), -1), [spec(6), spec(dtype=LONG)], r"Tensor.item\(\)"),
    "Tensor.tolist": (lambda x: x.tolist(), [spec(2, 3)], r"Tensor.tolist\(\)"),
    "x[mask]": (lambda x, m: x[m], [spec(B, 3), spec(B, 3, dtype=BOOL)], "boolean mask"),
    "x[:, mask]": (lambda x, m: x[:, m], [spec(2, 3), spec(3, dtype=torch.uint8)], "boolean mask"),
    "x[0-dim bool tensor]": (lambda x, m: x[m], [spec(2), spec(dtype=BOOL)], "boolean mask"),
    "tensor_split(tensor)": (lambda x, i: torch.tensor_split(x, i), [spec(6), spec(2, dtype=LONG)], "tensor_split"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_dependent_shape_is_refused(name):
    fn, specs, message = CASES[name]
    with pytest.raises(lazyfx.DataDependentError, match=message) as info:
        lazyfx.infer(fn_module(fn, len(specs), name), *specs)
    assert info.value.code == "LFX022"


@pytest.mark.parametrize("fn, specs, fragment", [
    (lambda x, m: x[m], [spec(2, 3), spec(2, 4, dtype=BOOL)], "The shape of the mask [2, 4] at index 1 does not match"),
    (lambda x, m: torch.masked_select(x, m), [spec(2, 3), spec(2, dtype=BOOL)], "must match"),
    (lambda x, m: torch.masked_select(x, m), [spec(2, 3), spec(3)], "expected BoolTensor for mask"),
    (lambda x: x.item(), [spec(2, 3)], "a Tensor with 6 elements cannot be converted to Scalar"),
    (lambda x: torch.unique(x, dim=2), [spec(2, 3)], "Dimension out of range"),
])
def test_shape_errors_come_first(fn, specs, fragment):
    """What the shapes alone decide is a shape error, not a data dependence."""
    with pytest.raises(lazyfx.ShapeError) as info:
        lazyfx.infer(fn_module(fn, len(specs)), *specs)
    assert fragment in str(info.value)


def test_empty_inputs_have_known_shapes():
    report = lazyfx.infer(fn_module(torch.nonzero), spec(B, 0, 3))
    assert report.output.shape == (0, 3)
    report = lazyfx.infer(fn_module(lambda x: x.unique(return_inverse=True)), spec(1, 1))
    assert [t.shape for t in report.output] == [(1,), (1, 1)]


class MaskedMean(nn.Module):
    def forward(self, x, mask):
        return x[mask].mean()


class Masked(nn.Module):
    def forward(self, x, mask):
        return x[mask]


class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, mask):
        return self.inner(x, mask) * 2


def test_refusal_inside_a_submodule_names_the_op():
    """The tracer retries a submodule whose boolean mask stopped it by abstract execution, which
    answers the mask's count several ways (lazyfx.analysis.counts): the output's size follows the count,
    so the refusal stands, and the user reads which op and why."""
    with pytest.raises(lazyfx.DataDependentError, match="boolean mask") as info:
        lazyfx.infer(Wrapper(Masked()), spec(B, 3), spec(B, 3, dtype=BOOL))
    assert info.value.code == "LFX022" and "in module 'inner'" in str(info.value)


def test_a_count_nothing_depends_on_is_accepted():
    """The mean of the selected elements is one number however many the mask selects."""
    report = lazyfx.infer(Wrapper(MaskedMean()), spec(B, 3), spec(B, 3, dtype=BOOL))
    assert report.output.shape == () and list(report.opaque) == ["inner"]
    x, mask = torch.zeros(2, 3), torch.tensor([[True, False, True], [False, False, True]])
    assert Wrapper(MaskedMean())(x, mask).shape == report.output.shape


class PickRows(nn.Module):
    """Branches on values (so abstract execution runs it), then keeps the rows a mask selects."""

    def __init__(self, reduce: str):
        super().__init__()
        self.reduce = reduce
        self.fc = nn.LazyLinear(4)

    def forward(self, x, mask):
        if (x < 0).any():
            x = x.abs()
        rows = x[mask]  # <- count
        if self.reduce == "sum":
            return self.fc(rows).sum(0)
        if self.reduce == "transposed":
            return self.fc(rows.T)
        return self.fc(rows)


@pytest.mark.parametrize("reduce, message", [
    ("transposed", r"the sizes of the lazy module inner.fc depend on how many elements boolean-mask indexing at .*:\d+ "
                   r"selects"),
    ("none", r"its output shape depends on how many elements boolean-mask indexing at .*:\d+ selects"),
])
def test_abstract_execution_refuses_what_moves_with_a_count(reduce, message):
    """The rows a mask keeps decide fc's in_features (transposed), or the output's first size."""
    build = lambda: Wrapper(PickRows(reduce))  # noqa: E731
    for mask in (torch.tensor([True, False, True]), torch.tensor([True, True, True])):
        torch.manual_seed(0)
        model = build().eval()
        with torch.no_grad():
            out = model(torch.ones(3, 5), mask)
        width = model.inner.fc.in_features
        assert (width if reduce == "transposed" else out.shape[0]) == int(mask.sum())
    with pytest.raises(lazyfx.DataDependentError, match=message) as info:
        lazyfx.infer(build(), spec(B, 5), spec(B, dtype=BOOL))
    assert info.value.code == "LFX022"


def test_abstract_execution_accepts_a_count_nothing_depends_on():
    from dryrun import assert_same_model, materialized

    build = lambda: Wrapper(PickRows("sum"))  # noqa: E731
    report = lazyfx.infer(build(), spec(B, 5), spec(B, dtype=BOOL))
    assert str(report.output) == "(4,)" and list(report.opaque) == ["inner"]
    assert report.lazy["inner.fc"].resolution.arguments == {"in_features": 5}
    torch.manual_seed(0)
    expected = build().eval()
    with torch.no_grad():
        expected(torch.zeros(3, 5), torch.zeros(3, dtype=BOOL))
    assert_same_model(expected, materialized(build, spec(B, 5), spec(B, dtype=BOOL)))


class KeepColumns(nn.Module):
    """A mask made from Python data has values: it selects its own three columns, every time."""

    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(2)

    def forward(self, x):
        if (x < 0).any():
            x = x.abs()
        return self.fc(x[:, torch.tensor([True, False, True, True])])


def test_a_mask_with_values_keeps_its_own_count():
    from dryrun import assert_same_model, dry_run, materialized

    report = lazyfx.infer(KeepColumns(), spec(B, 4))
    assert list(report.opaque) == [""] and report.lazy["fc"].resolution.arguments == {"in_features": 3}
    assert_same_model(dry_run(KeepColumns, (2, 4)), materialized(KeepColumns, spec(B, 4)))
