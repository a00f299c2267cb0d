"""materialize(dtype=) analyses the model as it will be after ``model.to(dtype)``, and its values
are those of that PyTorch sequence: ``torch.manual_seed(s); m = build(); m.to(dtype); m(x)``.

Lazy layers then initialize in the target dtype (float64 draws are not float32 draws converted);
eager layers initialize at construction, in their own dtype, and are converted. Inputs whose spec
names no dtype are in the target dtype; parameters and buffers are converted, plain tensor
attributes are not (``module.to`` does not reach them)."""

import pytest
import torch
import torch.nn as nn

import lazyfx
from dryrun import assert_same_model, dry_run, materialized
from test_model_tensors import CastFirst, PositionalEncoding, TableEncoding

DTYPES = [torch.bfloat16, torch.float16, torch.float64]


def converted_first(build, dtype):
    """The PyTorch sequence materialize(dtype=) equals: the model converted, then the dry run."""
    return lambda: build().to(dtype)


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.conv = nn.LazyConv2d(8, 3)
        self.norm = nn.LazyBatchNorm2d()
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(10), nn.ReLU(), nn.Linear(10, 2))

    def forward(self, x):
        return self.head(self.norm(self.conv(self.stem(x))))


class ValueBranch(nn.Module):
    """A block torch.fx cannot trace (it branches on values): abstract execution in the target dtype."""

    def __init__(self):
        super().__init__()
        self.proj = nn.LazyLinear(6)

    def forward(self, x):
        if (x != x).any():
            x = torch.nan_to_num(x)
        return self.proj(x)


def pyg_head():
    # imported here, not at collection: torch_geometric replaces torch.index_select and torch.select
    # when it is imported, and lazyfx's rules (loaded at the first analysis) would be keyed on those
    from torch_geometric.nn import Linear as PygLinear

    return nn.Sequential(PygLinear(-1, 4), nn.LazyLinear(2))


BUILDS = {
    "linear": (lambda: nn.LazyLinear(10), ("B", 5), (2, 5)),
    "mixed": (Mixed, ("B", 3, 12, 12), (2, 3, 12, 12)),
    "opaque": (lambda: nn.Sequential(ValueBranch(), nn.LazyLinear(3)), ("B", 5), (2, 5)),
    "generic": (pyg_head, ("B", 5), (2, 5)),
    "buffer": (PositionalEncoding, ("T", "B", 16), (7, 2, 16)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(BUILDS))
def test_values_equal_a_dry_run_after_to_dtype(name, dtype):
    build, spec, shape = BUILDS[name]
    expected = dry_run(converted_first(build, dtype), shape, dtype=dtype)
    assert_same_model(expected, materialized(build, lazyfx.TensorSpec(spec, dtype=dtype), dtype=dtype))
    assert_same_model(expected, materialized(build, spec, dtype=dtype))  # a spec without a dtype takes dtype=


def test_float64_lazy_layers_draw_in_float64():
    build = BUILDS["mixed"][0]
    actual = materialized(build, ("B", 3, 12, 12), dtype=torch.float64)
    converted_after = dry_run(build, (2, 3, 12, 12)).to(torch.float64)
    assert torch.equal(actual.stem.weight, converted_after.stem.weight)  # eager: built in float32, converted
    assert not torch.equal(actual.conv.weight, converted_after.conv.weight)  # lazy: drawn in float64
    assert actual.norm.num_batches_tracked.dtype == torch.int64


def test_the_dtype_of_a_lazy_parameter_is_the_target_dtype():
    expected = dry_run(converted_first(CastFirst, torch.float64), (2, 5), dtype=torch.int64)
    actual = materialized(CastFirst, "B,5:int64", dtype=torch.float64)
    assert_same_model(expected, actual)
    assert actual.proj.weight.dtype == torch.float64


def test_an_input_in_another_dtype_is_refused_as_pytorch_does():
    with pytest.raises(lazyfx.ShapeError, match="LFX030 Linear: input dtype torch.float32 and weight dtype "
                                                "torch.bfloat16 must be the same"):
        lazyfx.materialize(nn.LazyLinear(10), "B,5:float32", dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="same dtype"):
        nn.LazyLinear(10).to(torch.bfloat16)(torch.zeros(2, 5))


def test_a_plain_tensor_attribute_keeps_its_dtype():
    # model.to() converts parameters and buffers only: P stays float32, X + P is float32 and
    # reaches a bfloat16 LazyLinear, which PyTorch refuses
    with pytest.raises(lazyfx.ShapeError, match="LFX030 Linear: input dtype torch.float32 and weight dtype "
                                                "torch.bfloat16"):
        lazyfx.materialize(TableEncoding(), ("B", "T", 16), dtype=torch.bfloat16)
    model = TableEncoding().to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="same dtype"):
        model(torch.zeros(2, 9, 16, dtype=torch.bfloat16))
    assert lazyfx.infer(TableEncoding(), ("B", "T", 16)).output.dtype == torch.float32  # infer: as the model is


class FirstParameterDtype(nn.Module):
    """Reads its dtype from ``next(self.parameters())`` and scales by a buffer, both for real while
    torch.fx traces (neither goes through the graph)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.LazyLinear(4)
        self.register_buffer("scale", torch.full((5,), 0.5))
        self.out = nn.LazyLinear(2)

    def forward(self, x):
        x = x.to(next(self.parameters()).dtype)
        return self.out(self.proj(x * (self.scale * 2)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64], ids=str)
def test_tensors_forward_reads_for_real_are_in_the_target_dtype(dtype):
    expected = dry_run(converted_first(FirstParameterDtype, dtype), (2, 5), dtype=torch.int64)
    assert_same_model(expected, materialized(FirstParameterDtype, "B,5:int64", dtype=dtype))
    model = FirstParameterDtype()
    lazyfx.materialize(model, "B,5:int64", dtype=dtype)
    assert model.scale.dtype == torch.float32 and model.proj.weight.dtype == torch.float32  # left as it was


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_on_cuda_values_equal_a_dry_run_after_to_dtype(dtype):
    build = BUILDS["mixed"][0]
    torch.manual_seed(0)
    expected = build().to("cuda", dtype).eval()
    with torch.no_grad():
        expected(torch.zeros(2, 3, 12, 12, device="cuda", dtype=dtype))
    torch.manual_seed(0)
    actual = lazyfx.materialize(build(), ("B", 3, 12, 12), device="cuda", dtype=dtype)
    assert all(t.is_cuda for t in actual.state_dict().values())
    assert_same_model(expected, actual)
