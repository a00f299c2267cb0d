"""Every built-in lazy class, across constructor options and input ranks (batched and
unbatched, asymmetric strides/padding/dilation, groups): ``materialize`` must equal a real
dry run -- same module types, same shapes, bit-identical values under the same seed."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import assume, given
from hypothesis import strategies as st

import lazyfx
from dryrun import assert_no_laziness, assert_same_model, dry_run, materialized

LAZY_CONV = {1: nn.LazyConv1d, 2: nn.LazyConv2d, 3: nn.LazyConv3d}
LAZY_CONV_T = {1: nn.LazyConvTranspose1d, 2: nn.LazyConvTranspose2d, 3: nn.LazyConvTranspose3d}
LAZY_BN = {1: nn.LazyBatchNorm1d, 2: nn.LazyBatchNorm2d, 3: nn.LazyBatchNorm3d}
LAZY_IN = {1: nn.LazyInstanceNorm1d, 2: nn.LazyInstanceNorm2d, 3: nn.LazyInstanceNorm3d}


class Wrap(nn.Module):
    """A lazy layer between two eager ones, so RNG order and mixed init matter."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.before = nn.Identity()
        self.layer = layer
        self.after = nn.Identity()

    def forward(self, x):
        return self.after(self.layer(self.before(x)))


def check_against_dry_run(build, shape, dtype=torch.float32, symbolic_batch: bool = True) -> None:
    try:
        expected = dry_run(build, shape, dtype=dtype)
    except Exception:
        # PyTorch rejects this input; lazyfx must reject it too (and leave the model alone).
        model = build()
        with pytest.raises(lazyfx.LazyFXError):
            lazyfx.materialize(model, lazyfx.TensorSpec(shape, dtype=dtype))
        return
    with torch.no_grad():
        output = expected(torch.zeros(shape, dtype=dtype))
    if 0 in output.shape:
        # mkldnn's grouped transposed conv returns an empty tensor where PyTorch's reference
        # kernels say "Output size is too small"; lazyfx follows the reference.
        with pytest.raises(lazyfx.ShapeError, match="too small"):
            materialized(build, lazyfx.TensorSpec(shape, dtype=dtype))
        return
    actual = materialized(build, lazyfx.TensorSpec(shape, dtype=dtype))
    assert_same_model(expected, actual)
    if symbolic_batch and len(shape) >= 2:
        spec = lazyfx.TensorSpec(("B", *shape[1:]), dtype=dtype)
        assert_same_model(expected, materialized(build, spec))


def spatial(draw, n, lo=1, hi=9):
    return tuple(draw(st.integers(lo, hi)) for _ in range(n))


@given(st.data())
def test_lazy_linear(data):
    draw = data.draw
    out, bias = draw(st.integers(1, 6)), draw(st.booleans())
    shape = (*spatial(draw, draw(st.integers(0, 3)), 1, 4), draw(st.integers(1, 7)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    check_against_dry_run(lambda: Wrap(nn.LazyLinear(out, bias=bias, dtype=dtype)), shape, dtype)


@given(st.data())
def test_lazy_conv(data):
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 3]))
    groups = draw(st.sampled_from([1, 2, 3]))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.tuples(*[st.integers(0, 2)] * n)))
    options = dict(
        out_channels=groups * draw(st.integers(1, 3)),
        kernel_size=spatial(draw, n, 1, 3),
        stride=1 if padding == "same" else spatial(draw, n, 1, 3),
        padding=padding,
        dilation=spatial(draw, n, 1, 2),
        groups=groups,
        bias=draw(st.booleans()),
        padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])),
    )
    channels = groups * draw(st.integers(1, 3)) if draw(st.integers(0, 9)) else draw(st.integers(1, 5))
    batch = (draw(st.integers(1, 2)),) if draw(st.booleans()) else ()
    shape = (*batch, channels, *spatial(draw, n, 1, 9))
    cls = LAZY_CONV[n]
    try:
        cls(**options)
    except (ValueError, RuntimeError):
        assume(False)
    check_against_dry_run(lambda: Wrap(cls(**options)), shape, symbolic_batch=bool(batch))


@given(st.data())
def test_lazy_conv_transpose(data):
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 3]))
    groups = draw(st.sampled_from([1, 2]))
    stride, dilation = spatial(draw, n, 1, 3), spatial(draw, n, 1, 2)
    options = dict(
        out_channels=groups * draw(st.integers(1, 3)),
        kernel_size=spatial(draw, n, 1, 3),
        stride=stride,
        padding=spatial(draw, n, 0, 1),
        output_padding=tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)),
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
    )
    channels = groups * draw(st.integers(1, 3))
    batch = (draw(st.integers(1, 2)),) if draw(st.booleans()) else ()
    shape = (*batch, channels, *spatial(draw, n, 1, 6))
    cls = LAZY_CONV_T[n]
    check_against_dry_run(lambda: Wrap(cls(**options)), shape, symbolic_batch=bool(batch))


@given(st.data())
def test_lazy_batch_norm(data):
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 3]))
    options = dict(eps=draw(st.sampled_from([1e-5, 1e-3])), momentum=draw(st.sampled_from([0.1, None])),
                   affine=draw(st.booleans()), track_running_stats=draw(st.booleans()))
    if options["affine"]:
        options["bias"] = draw(st.booleans())
    rank = {1: draw(st.sampled_from([2, 3])), 2: 4, 3: 5}[n]
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), *spatial(draw, rank - 2, 1, 4))
    check_against_dry_run(lambda: Wrap(LAZY_BN[n](**options)), shape)


@given(st.data())
def test_lazy_instance_norm_batched(data):
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 3]))
    options = dict(affine=draw(st.booleans()), track_running_stats=draw(st.booleans()))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), *spatial(draw, n, 2, 4))
    check_against_dry_run(lambda: Wrap(LAZY_IN[n](**options)), shape)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("affine", [False, True])
def test_lazy_instance_norm_unbatched_reads_the_channel_dim(n, affine):
    """PyTorch's own lazy init reads dim 1 of an unbatched input (a spatial dim) and then
    fails in forward; lazyfx resolves num_features from the channel dim, dim 0."""
    channels, shape = 3, (3, *([5] * n))
    eager = lazyfx.materialize(LAZY_IN[n](affine=affine), shape)
    assert type(eager) is {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[n]
    assert eager.num_features == channels
    if affine:
        assert eager.weight.shape == (channels,)
    assert eager(torch.randn(shape)).shape == shape
    assert_no_laziness(eager)


@pytest.mark.parametrize(
    "layer, shape, batched",
    [
        (lambda: nn.LazyConv2d(4, (3, 1), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (2, 3, 9, 7), True),
        (lambda: nn.LazyConv2d(4, (1, 3), stride=(1, 2), padding=(0, 1), dilation=(2, 1)), (3, 9, 7), False),
        (lambda: nn.LazyConv3d(6, (3, 1, 2), stride=(1, 2, 3), padding=(1, 0, 1), groups=3), (1, 3, 5, 6, 7), True),
        (lambda: nn.LazyConv1d(2, 3, padding="same", padding_mode="reflect"), (4, 8), False),
        (lambda: nn.LazyConvTranspose2d(4, (3, 2), stride=(2, 1), output_padding=(1, 0)), (2, 5, 4, 6), True),
        (lambda: nn.LazyConvTranspose1d(3, 2, stride=3, dilation=2, output_padding=2), (2, 7), False),
        (lambda: nn.LazyBatchNorm1d(), (4, 6), True),
        (lambda: nn.LazyBatchNorm1d(), (4, 6, 5), True),
        (lambda: nn.LazyBatchNorm2d(affine=False), (2, 3, 4, 4), True),
        (lambda: nn.LazyLinear(3), (7,), False),
    ],
    ids=["conv2d-asym-stride", "conv2d-unbatched-asym", "conv3d-groups", "conv1d-same-reflect-unbatched",
         "convT2d-output-padding", "convT1d-dilation-unbatched", "bn1d-NC", "bn1d-NCL", "bn2d-no-affine",
         "linear-1d"],
)
def test_asymmetric_and_unbatched(layer, shape, batched):
    check_against_dry_run(lambda: Wrap(layer()), shape, symbolic_batch=batched)


def test_bare_lazy_module_becomes_its_eager_class():
    eager = lazyfx.materialize(nn.LazyLinear(5), ("B", 3))
    assert type(eager) is nn.Linear and eager.in_features == 3 and eager.weight.shape == (5, 3)
    assert_no_laziness(eager)


def test_called_twice_with_the_same_shape_is_fine():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)

        def forward(self, x, y):
            return self.fc(x) + self.fc(y)

    expected = dry_run(Twice, (2, 3), (2, 3))
    assert_same_model(expected, materialized(Twice, ("B", 3), ("B", 3)))


def test_dtype_conversion_matches_module_to():
    """materialize(dtype=) is a dry run after model.to(dtype): the lazy layers initialize in float64
    (float64 draws differ from float32 draws converted afterwards), the input is float64."""
    def build():
        return nn.Sequential(nn.LazyConv2d(4, 3), nn.LazyBatchNorm2d(), nn.Flatten(), nn.LazyLinear(2))

    expected = dry_run(lambda: build().to(torch.float64), (1, 3, 8, 8), dtype=torch.float64)
    actual = materialized(build, ("B", 3, 8, 8), dtype=torch.float64)
    assert_same_model(expected, actual)
    assert actual[1].num_batches_tracked.dtype == torch.int64  # integer buffers keep their dtype
    converted_after = dry_run(build, (1, 3, 8, 8)).to(torch.float64)
    assert not torch.equal(converted_after[0].weight, actual[0].weight)


def test_meta_device_allocates_nothing_and_to_empty_works():
    model = lazyfx.materialize(nn.Sequential(nn.LazyConv2d(8, 3), nn.Flatten(), nn.LazyLinear(10)),
                               ("B", 3, 16, 16), device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model[2].weight.shape == (10, 8 * 14 * 14)
    model.to_empty(device="cpu")
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_a_model_built_on_meta_is_analysed_and_materialized_on_meta():
    class TokenNet(nn.Module):  # a big non-lazy table next to lazy layers, as in a language model
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50_000, 64)
            self.head = nn.LazyLinear(5)

        def forward(self, tokens):
            return self.head(self.embed(tokens).mean(1))

    with torch.device("meta"):
        model = TokenNet()
    assert str(lazyfx.infer(model, "B,T:int64").output) == "(B, 5)"
    eager = lazyfx.materialize(model, "B,T:int64", device="meta")
    assert type(eager.head) is nn.Linear and eager.head.in_features == 64
    assert all(t.device.type == "meta" for t in eager.state_dict().values())


def test_seed_is_reproducible_and_leaves_the_global_rng_alone():
    def build():
        return nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(2))

    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = lazyfx.materialize(build(), (4, 3), seed=7)
    b = lazyfx.materialize(build(), (4, 3), seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    torch.set_rng_state(state)
    build()  # building consumes no RNG (all layers lazy); materializing with a seed consumes none either
    expected_after = torch.get_rng_state()
    torch.set_rng_state(state)
    lazyfx.materialize(build(), (4, 3), seed=7)
    assert torch.equal(torch.get_rng_state(), expected_after)


def test_inplace_materializes_the_given_object():
    expected = dry_run(lambda: Wrap(nn.LazyConv1d(3, 2)), (2, 4, 6))
    torch.manual_seed(0)
    model = Wrap(nn.LazyConv1d(3, 2))
    result = lazyfx.materialize(model, ("B", 4, 6), inplace=True)
    assert result is model
    assert_same_model(expected, model)


def test_materialized_models_work_with_deepcopy_jit_and_state_dict_round_trip(tmp_path):
    import copy

    model = materialized(lambda: nn.Sequential(nn.LazyConv2d(4, 3), nn.LazyBatchNorm2d(), nn.ReLU(),
                                               nn.Flatten(), nn.LazyLinear(5)), ("B", 3, 10, 10))
    copy.deepcopy(model)
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 10, 10)
    model.eval()
    scripted.eval()
    assert torch.allclose(scripted(x), model(x))
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    state = torch.load(path, weights_only=True)
    twin = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))
    twin.load_state_dict(state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_parameters_are_created_on_the_device_and_match_a_cuda_dry_run():
    def build():
        return nn.Sequential(nn.LazyConv2d(8, 3), nn.LazyBatchNorm2d(), nn.Flatten(), nn.LazyLinear(4))

    torch.manual_seed(0)
    expected = build().cuda().eval()
    with torch.no_grad():
        expected(torch.zeros(2, 3, 8, 8, device="cuda"))
    torch.manual_seed(0)
    actual = lazyfx.materialize(build(), ("B", 3, 8, 8), device="cuda")
    assert all(t.is_cuda for t in actual.state_dict().values())
    assert_same_model(expected, actual)


def test_unavailable_device_is_refused_before_anything_happens():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    model = nn.LazyLinear(2)
    with pytest.raises(lazyfx.SpecError, match="invalid device 'cuda'"):
        lazyfx.materialize(model, ("B", 3), device="cuda")
    assert isinstance(model.weight, torch.nn.parameter.UninitializedParameter)


class ReadsInFeatures(nn.Module):
    """Reads ``proj.in_features`` after the call (a dry run: the input's width) and before it (0)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.LazyLinear(4)
        self.head = nn.LazyLinear(2)
        self.norm = nn.LazyBatchNorm1d(affine=False, track_running_stats=False)
        self.seen_before = None

    def forward(self, x):
        before = self.proj.in_features
        y = self.proj(x)
        self.norm(y)  # initializes nothing: PyTorch leaves its num_features at 0
        wide = x * 2 if before == 0 and self.norm.num_features == 0 else x
        return self.head(torch.cat([y[:, : self.proj.in_features - 3], wide], 1))


def test_a_lazy_modules_sizes_read_after_its_call_are_the_resolved_ones():
    report = lazyfx.infer(ReadsInFeatures().eval(), ("B", 6))
    assert report.lazy["head"].resolution.arguments == {"in_features": 3 + 6}
    expected = dry_run(ReadsInFeatures, (2, 6))
    actual = materialized(ReadsInFeatures, ("B", 6))
    assert_same_model(expected, actual)
    x = torch.randn(2, 6)
    assert torch.equal(actual(x), expected(x))
    model = ReadsInFeatures()
    lazyfx.infer(model, ("B", 6))
    assert model.proj.in_features == 0 and model.norm.num_features == 0  # left as it was


def test_a_symbolic_size_read_after_the_call_is_the_traced_size():
    report = lazyfx.infer(ReadsInFeatures().eval(), ("B", lazyfx.Dim("F", min=4)))
    assert str(report.lazy["head"].resolution.arguments["in_features"]) == "F + Min(4, F - 3)"  # y has 4 columns
    assert_same_model(dry_run(ReadsInFeatures, (2, 7)), materialized(ReadsInFeatures, ("B", 7)))

    class Loops(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.LazyLinear(4)

        def forward(self, x):
            y = self.proj(x)
            return sum(y for _ in range(self.proj.in_features))

    with pytest.raises(lazyfx.UndecidedConditionError, match="F"):
        lazyfx.infer(Loops(), ("B", "F"))
    torch.manual_seed(0)
    assert torch.equal(lazyfx.materialize(Loops(), ("B", 3), seed=0)(torch.ones(1, 3)),
                       dry_run(Loops, (1, 3))(torch.ones(1, 3)))
