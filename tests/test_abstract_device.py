"""Abstract execution runs forward as a dry run on the target device would (issue 13 point 6).

The forwards here branch on tensor values, so torch.fx cannot trace them and
lazyfx runs them on meta tensors. A tensor forward creates without a device
(``torch.zeros(x.size(0), 16)``, the usual GRUCell hidden state), with
``device=x.device`` or moved by ``.to(x.device)`` lands beside the meta
inputs, and ``x.device`` answers the device a dry run would run on (cpu),
so ``torch.autocast(device_type=x.device.type)`` works as in the dry run.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import lazyfx
from lazyfx.core.target import target_device
from tests.dryrun import assert_same_model, dry_run, materialized


class GRULoop(nn.Module):
    """A GRUCell unrolled over time, skipping all-zero steps (a branch on values)."""

    def __init__(self, how: str = "default"):
        super().__init__()
        self.cell = nn.GRUCell(8, 16)
        self.head = nn.LazyLinear(3)
        self.how = how

    def forward(self, x):
        if self.how == "default":
            h = torch.zeros(x.size(0), 16)
        elif self.how == "device":
            h = torch.zeros(x.size(0), 16, device=x.device, dtype=x.dtype)
        elif self.how == "to":
            h = torch.zeros(x.size(0), 16).to(x.device)
        else:
            h = x.new_zeros(x.size(0), 16)
        for t in range(x.size(1)):
            if (x[:, t] != 0).any():
                h = self.cell(x[:, t], h)
        return self.head(torch.cat([h, torch.ones(x.size(0), 2)], dim=1))


class Autocast(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.LazyLinear(3)

    def forward(self, x):
        if (x > 0).any():
            x = x * 2
        assert x.device.type == "cpu" and not x.is_meta and not x.is_cuda
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head(x.cpu())


@pytest.mark.parametrize("how", ["default", "device", "to", "new"])
def test_a_hidden_state_created_in_forward_matches_a_dry_run(how):
    report = lazyfx.infer(GRULoop(how), ("B", 5, 8))
    assert "" in report.opaque  # analysed by abstract execution
    assert report.lazy["head"].resolution.arguments == {"in_features": 18}
    expected = dry_run(lambda: GRULoop(how), (2, 5, 8))
    assert_same_model(expected, materialized(lambda: GRULoop(how), (2, 5, 8)))


def test_the_output_keeps_its_symbolic_batch():
    class Hidden(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.LazyLinear(3)

        def forward(self, x):
            if (x > 0).any():
                x = -x
            return self.head(torch.cat([x, torch.zeros(x.size(0), 16)], dim=1))

    report = lazyfx.infer(Hidden(), ("B", 8))
    assert str(report.output) == "(B, 3)" and report.lazy["head"].resolution.arguments == {"in_features": 24}


def test_autocast_on_the_input_device_matches_a_dry_run():
    assert lazyfx.infer(Autocast(), ("B", 8)).lazy["head"].resolution.arguments == {"in_features": 8}
    assert_same_model(dry_run(Autocast, (2, 8)), materialized(Autocast, (2, 8)))


def test_the_target_device_is_what_device_answers():
    class Where(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.LazyLinear(3)

        def forward(self, x):
            if (x > 0).any():
                pass
            return self.head(x[:, : 4 if x.device.type == "cuda" else 6])

    assert lazyfx.infer(Where(), ("B", 8)).lazy["head"].resolution.arguments == {"in_features": 6}
    with target_device("cuda"):
        assert lazyfx.infer(Where(), ("B", 8)).lazy["head"].resolution.arguments == {"in_features": 4}


def test_nothing_is_allocated_on_cpu(monkeypatch):
    made = []
    original = torch.Tensor.__bool__

    class Big(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.LazyLinear(3)

        def forward(self, x):
            h = torch.zeros(x.size(0), 1 << 16)
            made.append(h.device.type)
            if (x > 0).any():
                pass
            return self.head(h[:, :4])

    lazyfx.infer(Big(), ("B", 8))
    assert torch.Tensor.__bool__ is original
    assert made and all(d == "cpu" for d in made)  # answered as cpu, held on meta


def test_materialize_answers_its_target_device():
    class Where(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.LazyLinear(3)

        def forward(self, x):
            if (x > 0).any():
                pass
            return self.head(x)

    seen = []
    original = Where.forward

    def spy(self, x):
        if not isinstance(x, torch.fx.Proxy):  # abstract execution, not the fx trace before it
            seen.append(x.device.type)
        return original(self, x)

    Where.forward = spy
    lazyfx.materialize(Where(), (2, 8), device="meta")  # a dry run on meta: x.device is meta
    assert set(seen) == {"meta"}
    seen.clear()
    lazyfx.materialize(Where(), (2, 8), device="cpu")
    assert set(seen) == {"cpu"}


class TracedAutocast(nn.Module):
    """torch.autocast on the input's device in a forward torch.fx traces (no value branch)."""

    def __init__(self):
        super().__init__()
        self.head = nn.LazyLinear(3)

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            h = self.head(x[:, : 6 if x.is_cpu else 4])
        return h + torch.zeros(h.shape[-1], device=x.device)


def test_the_traced_forward_sees_the_target_device_too():
    report = lazyfx.infer(TracedAutocast(), ("B", 8))
    assert not report.opaque and str(report.output) == "(B, 3)"  # traced, not abstract execution
    assert report.lazy["head"].resolution.arguments == {"in_features": 6}
    assert_same_model(dry_run(TracedAutocast, (2, 8)), materialized(TracedAutocast, ("B", 8)))
    with target_device("cuda"):  # as materialize(device="cuda") analyses it
        report = lazyfx.infer(TracedAutocast(), ("B", 8))
    assert not report.opaque and report.lazy["head"].resolution.arguments == {"in_features": 4}
    # a dry run on meta fails in torch.autocast itself: so does the analysis
    with pytest.raises(lazyfx.LazyFXError, match="unsupported scalarType"):
        lazyfx.materialize(TracedAutocast(), ("B", 8), device="meta")
