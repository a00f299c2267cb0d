"""The meta-kernel fallback: operations without a rule still get shapes (in the user's
symbols), marked as such in the report; what PyTorch cannot evaluate either, or what depends
on tensor values, gets a specific diagnostic with the user's line."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import case_reach
import lazyfx
from cases import CASES
from differential import Example, check, fn_module
from dryrun import assert_same_model, dry_run, materialized
from lazyfx.core.registry import RULES, Method
from test_errors import snapshot

def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(open(__file__).read().splitlines(), 1) if marker in line)


# Operations lazyfx has no rule for (the fallback's everyday work), with input shapes.
NO_RULE = {
    "cumsum-like torch.cummax": (lambda x: torch.cummax(x, 1)[0], [(2, 5)]),
    "torch.sort": (lambda x: torch.sort(x, -1)[0], [(3, 4, 5)]),
    "torch.kthvalue": (lambda x: torch.kthvalue(x, 2, 1)[0], [(3, 1)]),  # k=2 needs a dim >= 2
    "torch.topk": (lambda x: torch.topk(x, 2, 1).values, [(2, 1)]),
    "torch.pdist": (lambda x: torch.pdist(x), [(5, 3)]),
    "torch.cdist": (lambda x, y: torch.cdist(x, y), [(2, 4, 3), (2, 6, 3)]),
    "torch.searchsorted": (lambda x, y: torch.searchsorted(x, y), [(3, 5), (3, 2)]),
    "torch.tril": (lambda x: torch.tril(x), [(4, 4)]),
    "torch.kron": (lambda x, y: torch.kron(x, y), [(2, 3), (4, 5)]),
    "F.one_hot-free torch.diff": (lambda x: torch.diff(x, dim=1), [(3, 6)]),
}


def check_fallback(example: Example, symbolic) -> None:
    """Like ``differential.check``, except that with symbolic sizes the fallback may be
    inconclusive (the kernel failed at the representative sizes), which it must say."""
    try:
        check(example, symbolic=symbolic)
    except lazyfx.UnsupportedOpError as exc:
        assert "cannot tell for which sizes it is valid" in str(exc), exc
        check(example)  # concretely it must agree


@pytest.mark.parametrize("name", sorted(NO_RULE))
@given(data=st.data())
def test_fallback_agrees_with_pytorch(name, data):
    fn, shapes = NO_RULE[name]
    shapes = [tuple(d + data.draw(st.integers(0, 3)) for d in shape) for shape in shapes]
    example = Example(fn_module(fn, len(shapes), name), [(s, torch.float32) for s in shapes])
    check_fallback(example, [[data.draw(st.booleans()) for _ in s] for s in shapes])


def test_an_inconclusive_kernel_says_so_instead_of_rejecting():
    with pytest.raises(lazyfx.UnsupportedOpError, match="cannot tell for which sizes it is valid") as info:
        lazyfx.infer(fn_module(torch.searchsorted, 2), (3, 5), ("N", 2))
    assert "pin N to concrete sizes" in str(info.value)
    assert str(lazyfx.infer(fn_module(torch.searchsorted, 2), (3, 5), (3, 2)).output) == "(3, 2) int64"
    with pytest.raises(lazyfx.ShapeError, match="torch.searchsorted rejects its inputs"):
        lazyfx.infer(fn_module(torch.searchsorted, 2), (3, 5), (4, 2))


def test_a_check_that_only_size_one_fails_is_a_condition():
    # size-oblivious kernels take symbolic sizes to be >= 2; topk(2) along T fails at T = 1
    report = lazyfx.infer(fn_module(lambda x: torch.topk(x, 2, 1).values), ("B", "T"))
    assert str(report.domain) == "T >= 2" and str(report.output) == "(B, 2)"
    assert not report.domain.contains(B=3, T=1) and report.domain.contains(B=1, T=2)
    report = lazyfx.infer(fn_module(lambda x: torch.topk(x, 2, 1).values), ("B", lazyfx.Dim("T", min=2)))
    assert str(report.domain) == "T >= 2"


def test_fallback_nodes_are_marked_and_formulas_use_the_users_names():
    report = lazyfx.infer(fn_module(torch.pdist), ("N", 3))
    node = next(n for n in report.nodes if n.op == "call_function")
    assert node.fallback and node.rule == "fallback: meta kernel"
    assert str(report.output) == "((N*(N - 1))//2,)"
    assert "torch.pdist [meta kernel]" in report.table()
    assert report.to_dict()["nodes"][1]["fallback"] is True


# Operations that do have a rule, evaluated with the rule suspended: the fallback and the rule
# must agree with PyTorch (and hence with each other).
SUSPENDED = {
    "torch.flatten": (torch.flatten, lambda x: torch.flatten(x, 1), [(2, 3, 4, 5)]),
    "Tensor.view": (Method("view"), lambda x: x.view(x.size(0), -1), [(3, 4, 5)]),
    "F.conv2d": (F.conv2d, lambda x, w: F.conv2d(x, w, stride=2, padding=1), [(2, 3, 9, 7), (4, 3, 3, 3)]),
    "torch.matmul": (torch.matmul, torch.matmul, [(2, 3, 4), (4, 5)]),
    "operator.add": (operator.add, operator.add, [(3, 1, 5), (4, 1)]),
    "torch.cat": (torch.cat, lambda x, y: torch.cat([x, y], 1), [(2, 3), (2, 4)]),
}


@pytest.mark.parametrize("name", sorted(SUSPENDED))
@given(data=st.data())
def test_fallback_matches_pytorch_where_a_rule_exists(name, data):
    key, fn, shapes = SUSPENDED[name]
    shapes = [tuple(d + data.draw(st.integers(0, 2)) for d in shape) for shape in shapes]
    example = Example(fn_module(fn, len(shapes), name), [(s, torch.float32) for s in shapes])
    with RULES.suspended(key):
        check_fallback(example, [[data.draw(st.booleans()) for _ in s] for s in shapes])


def test_conv_stack_through_the_fallback_keeps_symbolic_sizes():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    with RULES.suspended(nn.Conv2d, nn.ReLU):
        report = lazyfx.infer(model, ("B", 3, "H", "W"))
    assert str(report.nodes[1].value) == "(B, 8, (H - 3)//2 + 1, (W - 3)//2 + 1)"
    assert str(report.domain) == "H >= 3 and W >= 3"


def test_module_without_a_rule_runs_on_fake_copies_of_its_state():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)
            self.loss = nn.SmoothL1Loss(reduction="none")
            self.norm = nn.SyncBatchNorm(4)

        def forward(self, x, y):
            return self.norm(self.loss(self.fc(x), y))

    model = Model()
    before = snapshot(model)
    stats = [t.clone() for t in model.norm.buffers()]
    report = lazyfx.infer(model, ("B", 3), ("B", 4))
    assert str(report.output) == "(B, 4)"
    assert [n.fallback for n in report.nodes if n.op == "call_module"] == [False, True, True]
    assert snapshot(model) == before
    assert all(torch.equal(a, b) for a, b in zip(stats, model.norm.buffers()))


def test_lazy_model_with_fallback_ops_matches_a_dry_run():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv1d(6, 3)
            self.fc = nn.LazyLinear(2)

        def forward(self, x):
            y = torch.cummax(self.conv(x), -1)[0]
            return self.fc(torch.sort(y, 1)[0].flatten(1))

    expected = dry_run(Model, (2, 4, 9))
    assert_same_model(expected, materialized(Model, ("B", 4, 9)))


def test_data_dependent_shapes_get_a_specific_diagnostic():
    class Model(nn.Module):
        def forward(self, x):
            return torch.unique_consecutive(x)  # <- data-dependent

    with pytest.raises(lazyfx.DataDependentError) as info:
        lazyfx.infer(Model(), ("B", 3))
    assert info.value.code == "LFX022"
    assert "depends on tensor values" in info.value.message
    assert info.value.diagnostics[0].location.line == line_of("# <- data-dependent")


@torch.library.custom_op("lazyfx_tests::opaque", mutates_args=())
def opaque(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@torch.library.custom_op("lazyfx_tests::opaque_with_fake", mutates_args=())
def opaque_with_fake(x: torch.Tensor) -> torch.Tensor:
    return x[..., :2].clone()


opaque_with_fake.register_fake(lambda x: x.new_empty((*x.shape[:-1], 2)))


def test_custom_op_without_a_meta_kernel_is_named_with_its_line():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(2)

        def forward(self, x):
            return self.fc(opaque(x))  # <- opaque op

    model = Model()
    before = snapshot(model)
    with pytest.raises(lazyfx.UnsupportedOpError) as info:
        lazyfx.materialize(model, ("B", 5))
    diag = info.value.diagnostics[0]
    assert diag.code.code == "LFX020"
    assert "no shape rule for torch.ops.lazyfx_tests.opaque.default, and PyTorch has no meta kernel" in diag.message
    assert diag.location.line == line_of("# <- opaque op")
    assert snapshot(model) == before


def test_custom_op_with_a_fake_kernel_just_works():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(3)

        def forward(self, x):
            return self.fc(opaque_with_fake(x))

    eager = lazyfx.materialize(Model(), ("B", "T", 7))
    assert eager.fc.in_features == 2


def test_a_kernel_that_specializes_a_size_is_flagged_and_not_trusted_for_parameters():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(2)

        def forward(self, x):
            spectrum = torch.view_as_real(torch.stft(x, 4, return_complex=True))
            return self.fc(spectrum.flatten(1))

    report = lazyfx.infer(Model(), ("B", "T"))
    codes = {d.code.code for d in report.diagnostics}
    assert "LFX023" in codes
    assert any("fixed T to" in d.message for d in report.diagnostics)
    assert report.domain.assumptions
    with pytest.raises(lazyfx.ResolutionError, match="LFX023 lazy module 'fc' .* hold for one input size only"):
        lazyfx.materialize(Model(), ("B", "T"))
    expected = dry_run(Model, (2, 16))
    assert_same_model(expected, materialized(Model, (2, 16)))  # concrete sizes: nothing to specialize


@pytest.mark.xdist_group(case_reach.GROUP)
def test_every_case_op_has_a_rule_so_the_fallback_is_not_hiding_gaps():
    """The differential cases exercise rules, not the fallback: a case that silently fell back
    would test PyTorch against itself."""
    fallback = [node for name in CASES for node in case_reach.reach(name).fallback]
    assert not fallback, f"case nodes that took the meta-kernel fallback: {fallback}"


class SpectralPatchEmbed(nn.Module):
    """Patches cut with einops (which torch.fx cannot trace: the block is analysed by abstract
    execution) and their 2-d spectrum: the meta kernel of ``rfft2`` fixes the batch B to its
    representative size."""

    def __init__(self, patch: int = 4, dim: int = 16):
        super().__init__()
        self.patch = patch
        self.proj = nn.LazyLinear(dim)

    def forward(self, x):
        from einops import rearrange

        x = rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=self.patch, p2=self.patch)
        spectrum = torch.fft.rfft2(x, norm="ortho")
        return self.proj(torch.cat([spectrum.real, spectrum.imag], dim=-1))


class Spectral(nn.Module):
    def __init__(self, mix_batch: bool = False):
        super().__init__()
        self.mix_batch = mix_batch
        self.embed = SpectralPatchEmbed()
        self.head = nn.LazyLinear(5)

    def forward(self, x):
        tokens = self.embed(x).mean(1)  # (B, 16)
        return self.head(tokens.T if self.mix_batch else tokens)  # mixing the batch: in_features = B


def test_a_lazy_module_after_a_specialization_is_resolved_where_its_size_does_not_depend_on_it():
    report = lazyfx.infer(Spectral(), ("B", 3, 16, 16))
    assert any("fixed B to 64" in d.message and d.code.code == "LFX023" for d in report.diagnostics)  # the node
    assert report.lazy["head"].materializable and report.lazy["head"].resolution.arguments == {"in_features": 16}
    assert not any(d.module_path == "head" for d in report.diagnostics)
    assert_same_model(dry_run(Spectral, (2, 3, 16, 16)), materialized(Spectral, ("B", 3, 16, 16)))
    # sampled, so the domain says so: it never reads "all positive sizes"
    checked = report.domain.checked_at["B"]
    assert {1, 2, 8, 16, 32, 64, 65} <= set(checked)
    assert str(report.domain) == (f"B in {{{', '.join(map(str, checked))}}} (checked at these sizes only: a meta "
                                  f"kernel fixed B upstream of a lazy module)")
    assert report.domain.contains(B=8) and not report.domain.contains(B=9)


class CappedBatch(nn.Module):
    """The head's in_features is min(B, 16), after the meta kernel of rfft fixed B."""

    def __init__(self):
        super().__init__()
        self.head = nn.LazyLinear(2)

    def forward(self, x):  # (B, 8)
        s = torch.view_as_real(torch.fft.rfft(x, dim=-1)).flatten(1)  # (B, 10)
        return self.head(s.T[:, :16])  # (10, min(B, 16))


def test_a_lazy_size_capped_below_the_sizes_tried_is_still_refused():
    # the re-runs at 64, 65, 128 and 32 all agreed, so it was materialized with in_features=16 and
    # "valid for: all positive sizes"; a dry run at B=8 gives 8
    model = CappedBatch()
    report = lazyfx.infer(model, ("B", 8))
    assert not report.lazy["head"].materializable and not report.domain.checked_at
    with pytest.raises(lazyfx.ResolutionError, match=r"LFX023 lazy module 'head' .* fixed B to 64; resolved as "
                                                     r"in_features=16 at B=64 but as in_features=\d+ at B=\d+"):
        lazyfx.materialize(model, ("B", 8))
    assert isinstance(model.head, nn.LazyLinear)  # the user's model is as before
    # the counterpart: pinned, it is exact
    assert_same_model(dry_run(CappedBatch, (8, 8)), materialized(CappedBatch, (8, 8)))


def test_a_lazy_module_whose_size_depends_on_the_specialized_symbol_is_still_refused():
    build = lambda: Spectral(mix_batch=True)  # noqa: E731
    report = lazyfx.infer(build(), ("B", 3, 16, 16))
    assert not report.lazy["head"].materializable
    refusal = "LFX023 lazy module 'head' .* fixed B to 64; resolved as in_features=64 at B=64 but as in_features=65"
    with pytest.raises(lazyfx.ResolutionError, match=refusal):
        lazyfx.materialize(build(), ("B", 3, 16, 16))
    assert_same_model(dry_run(build, (2, 3, 16, 16)), materialized(build, (2, 3, 16, 16)))  # pinned: accepted


def test_a_branch_a_kernel_takes_on_a_size_is_not_a_requirement():
    # cdist computes distances through a matrix product from 25 rows on, and directly below:
    # the meta kernel's guard N > 25 is the branch it took, not a check
    report = lazyfx.infer(fn_module(torch.cdist, 2), ("B", "N", 3), ("B", "M", 3))
    assert str(report.output) == "(B, N, M)" and str(report.domain) == "all positive sizes"
    for n in (4, 25, 26, 90):
        assert report.domain.contains(B=2, N=n, M=3)
        assert tuple(torch.cdist(torch.zeros(2, n, 3, device="meta"), torch.zeros(2, 3, 3, device="meta")).shape) \
            == (2, n, 3)
    # a check the kernel makes is still a requirement: kthvalue(k=3) needs 3 elements
    report = lazyfx.infer(fn_module(lambda x: torch.kthvalue(x, 3, 1)[0]), ("B", "N"))
    assert str(report.domain) == "N >= 3" and not report.domain.contains(B=2, N=2)
    with pytest.raises(RuntimeError):
        torch.kthvalue(torch.zeros(2, 2), 3, 1)


class Magnitudes(nn.Module):
    """A magnitude spectrum (complex -> real with abs) and its phase, into a lazy head."""

    def __init__(self):
        super().__init__()
        self.head = nn.LazyLinear(3)

    def forward(self, x):
        spectrum = torch.fft.rfft(x, dim=-1)
        parts = torch.cat([spectrum.abs(), spectrum.angle(), spectrum.real, spectrum.imag], -1)
        return self.head(parts)


def test_the_magnitude_of_a_spectrum_is_real():
    report = lazyfx.infer(Magnitudes(), (2, 8))
    assert report.output.dtype == torch.float32 and report.lazy["head"].resolution.arguments == {"in_features": 20}
    expected = dry_run(Magnitudes, (2, 8))
    actual = materialized(Magnitudes, (2, 8))
    assert_same_model(expected, actual)
    x = torch.randn(2, 8)
    assert torch.equal(actual(x), expected(x))
    # a real tensor has no .imag (a RuntimeError through torch 2.14, a TypeError from 2.15)
    with pytest.raises((RuntimeError, TypeError), match="imag is not implemented"):
        torch.zeros(2).imag
    with pytest.raises(lazyfx.ShapeError, match="imag is not implemented"):
        lazyfx.infer(fn_module(lambda x: x.imag), (2, 8))


class EinopsPatches(nn.Module):
    """einops patches (abstract execution): with H a multiple of 4, the meta kernel pins
    ``24*(H//2)``, which sympy cannot solve for H."""

    def __init__(self):
        super().__init__()
        self.a = nn.LazyLinear(8)
        self.b = nn.LazyLinear(3)

    def forward(self, x):
        from einops import rearrange

        y = rearrange(x, "b (h p1) (w p2) c -> b (h w) (p1 p2 c)", p1=2, p2=2)
        return self.b(self.a(y).flatten(1))


def test_a_size_pinned_through_a_floor_division_is_a_specialization():
    report = lazyfx.infer(EinopsPatches(), ("B", lazyfx.Dim("H", multiple_of=4), 6, 3))  # was LFX021 from sympy
    codes = sorted(d.code.code for d in report.diagnostics)
    assert codes == ["LFX023", "LFX040"]  # b's in_features moves with H: refused, never guessed
    assert not report.lazy["b"].materializable and report.lazy["a"].resolution.arguments == {"in_features": 12}
    expected = dry_run(EinopsPatches, (2, 8, 6, 3))
    actual = materialized(EinopsPatches, ("B", 8, 6, 3))
    assert_same_model(expected, actual)
    x = torch.randn(2, 8, 6, 3)
    assert torch.equal(actual(x), expected(x))


class EvenRows(nn.Module):
    """einops splits H in two: PyTorch (einops) raises for an odd H."""

    def __init__(self):
        super().__init__()
        self.a = nn.LazyLinear(8)

    def forward(self, x):
        from einops import rearrange

        return self.a(rearrange(x, "b (h p) c -> b h (p c)", p=2))


def test_a_forward_that_runs_only_at_multiples_suggests_multiple_of():
    with pytest.raises(lazyfx.ShapeError, match=r"LFX033[\s\S]*if H must be a multiple of 2, declare it: "
                                                r"lazyfx.Dim\(\"H\", multiple_of=2\)") as raised:
        lazyfx.infer(EvenRows(), ("B", "H", 3))
    assert "forward runs with H = " in str(raised.value)
    with pytest.raises(Exception, match="rearrange"):
        EvenRows()(torch.zeros(1, 5, 3))
    report = lazyfx.infer(EvenRows(), ("B", lazyfx.Dim("H", multiple_of=2), 3))
    assert str(report.output) == "(B, H//2, 8)"
    assert_same_model(dry_run(EvenRows, (1, 4, 3)), materialized(EvenRows, ("B", lazyfx.Dim("H", multiple_of=2), 3)))


def test_a_forward_that_raises_at_every_size_has_no_multiple_of_hint():
    class Refuses(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.LazyLinear(8)

        def forward(self, x):
            if torch.jit.is_scripting() is False:  # always: a check of the model's own
                raise ValueError("this model is not ready")
            return self.a(x)

    with pytest.raises(lazyfx.ShapeError, match="raises at every size") as raised:
        lazyfx.infer(Refuses(), ("B", "H"))
    assert "multiple_of" not in str(raised.value)


@torch.library.custom_op("lazyfx_tests::counted", mutates_args=())
def counted(x: torch.Tensor) -> torch.Tensor:
    return x[..., 1:].clone()


KERNEL_RUNS = []
counted.register_fake(lambda x: KERNEL_RUNS.append(tuple(x.shape)) or x.new_empty((*x.shape[:-1], x.shape[-1] - 1)))


class Repeats(nn.Module):
    """Blocks that repeat, each with operations that take the fallback: a kernel's check on a
    size (kthvalue), one that only size one fails (topk), a branch it takes (cdist), a layer
    without a rule, in place ops, and a custom op whose fake kernel counts its runs."""

    def __init__(self, blocks: int = 3):
        super().__init__()
        self.loss = nn.ModuleList([nn.SmoothL1Loss(reduction="none") for _ in range(blocks)])
        self.head = nn.LazyLinear(2)

    def forward(self, x, y):
        for loss in self.loss:
            top = torch.topk(x, 2, 1).values + torch.kthvalue(x, 3, 1)[0].unsqueeze(1)  # (B, 2)
            d = torch.cdist(x.unsqueeze(0), y.unsqueeze(0))[0]  # (B, M)
            x = loss(x, torch.sort(x, 1)[0]).scatter_add_(1, torch.zeros_like(x, dtype=torch.int64), x)
            x = torch.cat([x, top, d.sum(1, keepdim=True)], 1)[:, :-3] + counted(x)[:, :1]
        return self.head(torch.cummax(x, 1)[0])


def reports_with_and_without_reuse(build, *inputs):
    from lazyfx.analysis.fallback.meta import MetaKernelFallback

    reports, runs = [], []
    for reuse in (True, False):
        MetaKernelFallback.reuse = reuse
        KERNEL_RUNS.clear()
        try:
            reports.append(lazyfx.infer(build(), *inputs))
        finally:
            MetaKernelFallback.reuse = True
        runs.append(list(KERNEL_RUNS))
    return reports, runs


def test_a_repeated_call_reuses_the_kernels_output_and_changes_nothing():
    (reused, anew), (runs_reused, runs_anew) = reports_with_and_without_reuse(Repeats, ("B", "N"), ("M", "N"))
    assert reused.to_dict() == anew.to_dict() and str(reused) == str(anew)
    assert str(reused.domain) == str(anew.domain) == "N >= 3"
    assert [n.fallback for n in reused.nodes] == [n.fallback for n in anew.nodes]
    assert sum(n.fallback for n in reused.nodes) > 20
    # the symbolic run, then the size-one check at B = 1 (N >= 3 by then), in the first block only
    assert len(runs_reused) == 2 and len(runs_anew) == 2 * 3
    # at concrete sizes, every block has its own shapes: nothing to reuse, and the same answers
    (reused, anew), _ = reports_with_and_without_reuse(Repeats, (4, 5), (6, 5))
    assert reused.to_dict() == anew.to_dict() and str(reused.output) == "(4, 2)"


def test_a_call_changed_in_place_does_not_pass_its_change_on():
    def forward(x):
        y = x.clone()
        y.unsqueeze_(0)  # changes the fake tensor it was given: never handed out again
        return torch.sort(x, 1)[0] + torch.sort(y[0], 1)[0]

    with RULES.suspended(Method("unsqueeze_"), Method("clone")):
        (reused, anew), _ = reports_with_and_without_reuse(lambda: fn_module(forward), ("B", "N"))
    assert reused.to_dict() == anew.to_dict() and str(reused.output) == "(B, N)"
