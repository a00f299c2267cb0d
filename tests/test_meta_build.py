"""A model built under ``torch.device("meta")`` materializes to any device (issue 13 point 7).

Its eager layers hold meta tensors without values: lazyfx creates them on the
target device and initializes them with their own ``reset_parameters()``,
children before parents in registration order, before the lazy modules in
first-call order. The values then equal ``torch.manual_seed(s)``, building
the model on that device, and a dry run.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import lazyfx
from lazyfx.errors import LazyFXError
from tests.dryrun import assert_same_model


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.BatchNorm2d(8)
        self.mid = nn.LazyLinear(16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.lazy_norm = nn.LazyBatchNorm1d()
        self.head = nn.LazyLinear(4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.flatten(self.norm(self.conv(x)), 2).transpose(1, 2)  # (B, 36, 8)
        h = self.mid(torch.cat([h, h], -1))
        h, _ = self.attn(h, h, h)
        return self.out(self.head(self.lazy_norm(h.mean(1))))


def dry_run_on(device: str, seed: int, shape=(2, 3, 8, 8), build=Net, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    with torch.device(device):
        model = build().eval()
        with torch.no_grad():
            model(torch.zeros(shape, dtype=dtype))
    return model


def built_on_meta(build=Net) -> nn.Module:
    with torch.device("meta"):
        return build().eval()


@pytest.mark.parametrize("seed", [0, 3])
def test_a_meta_built_model_materializes_on_cpu_as_a_dry_run(seed):
    model = built_on_meta()
    eager = lazyfx.materialize(model, ("B", 3, 8, 8), device="cpu", seed=seed)
    assert_same_model(dry_run_on("cpu", seed), eager)
    assert model.conv.weight.is_meta and lazyfx.infer(model, ("B", 3, 8, 8))  # the given model is untouched


def test_the_current_rng_state_without_a_seed():
    model = built_on_meta()
    torch.manual_seed(5)
    eager = lazyfx.materialize(model, ("B", 3, 8, 8), device="cpu")
    assert_same_model(dry_run_on("cpu", 5), eager)


def test_in_place():
    model = built_on_meta()
    eager = lazyfx.materialize(model, ("B", 3, 8, 8), device="cpu", seed=1, inplace=True)
    assert eager is model
    assert_same_model(dry_run_on("cpu", 1), eager)


def test_with_a_dtype():
    """As the model built on the device, converted with .to(dtype), then a dry run in that dtype:
    the eager layers initialize in their own dtype, the lazy ones in the target dtype."""
    eager = lazyfx.materialize(built_on_meta(), ("B", 3, 8, 8), device="cpu", seed=2, dtype=torch.float64)
    expected = dry_run_on("cpu", 2, build=lambda: Net().to(torch.float64), dtype=torch.float64)
    assert_same_model(expected, eager)


def test_registration_order():
    def twin():
        torch.manual_seed(4)
        return nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))

    model = built_on_meta(lambda: nn.Sequential(nn.Linear(3, 5), nn.LazyLinear(2)))
    eager = lazyfx.materialize(model, ("B", 3), device="cpu", seed=4, init_order="registration")
    assert all(torch.equal(a, b) for a, b in zip(twin().state_dict().values(), eager.state_dict().values()))


def test_an_all_lazy_meta_model_still_works():
    build = lambda: nn.Sequential(nn.LazyLinear(5), nn.ReLU(), nn.LazyLinear(2))  # noqa: E731
    eager = lazyfx.materialize(built_on_meta(build), ("B", 3), device="cpu", seed=0)
    assert_same_model(dry_run_on("cpu", 0, (2, 3), build), eager)
    on_meta = lazyfx.materialize(built_on_meta(build), ("B", 3), device="meta")
    assert on_meta[0].weight.is_meta


def test_staying_on_meta_keeps_meta():
    eager = lazyfx.materialize(built_on_meta(), ("B", 3, 8, 8))
    assert all(t.is_meta for t in eager.state_dict().values())


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))  # no reset_parameters: its values exist only here
        self.head = nn.LazyLinear(4)

    def forward(self, x):
        return self.head(x) * self.scale


def test_a_module_without_reset_parameters_is_an_explicit_error():
    with pytest.raises(LazyFXError) as info:
        lazyfx.materialize(built_on_meta(Scaled), ("B", 3), device="cpu")
    assert info.value.code == "LFX052" and "reset_parameters" in str(info.value) and "'scale'" in str(info.value)


def test_unless_a_checkpoint_provides_its_values():
    state = lazyfx.materialize(Scaled(), ("B", 3), seed=0).state_dict()
    state["scale"] = torch.arange(4.0)
    eager = lazyfx.materialize(built_on_meta(Scaled), ("B", 3), device="cpu", state_dict=state)
    assert all(torch.equal(state[k], v) for k, v in eager.state_dict().items())
    eager = lazyfx.materialize(built_on_meta(Scaled), device="cpu", state_dict=state)
    assert all(torch.equal(state[k], v) for k, v in eager.state_dict().items())
    partial = {k: v for k, v in state.items() if k != "scale"}
    with pytest.raises(LazyFXError) as info:
        lazyfx.materialize(built_on_meta(Scaled), device="cpu", state_dict=partial, strict=False)
    assert info.value.code == "LFX052"


class EagerStem(nn.Module):
    """An eager stem built (and initialized) in the constructor, a lazy head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.head = nn.LazyLinear(10)

    def forward(self, x):
        return self.head(self.stem(x).flatten(1))


def test_seed_seeds_where_the_initialization_starts():
    """A model built on the CPU exists, its eager stem initialized, before materialize is called:
    ``seed=s`` seeds after the build, as ``m = build(); torch.manual_seed(s); m(x)``. Seeding before
    the build is the caller's: ``torch.manual_seed(s); materialize(build(), ...)``. Built on meta, the
    stem is initialized by materialize too, from the seed: ``manual_seed(s); build(); m(x)``."""
    x = torch.zeros(2, 3, 8, 8)
    built = EagerStem().eval()
    torch.manual_seed(0)
    with torch.no_grad():
        built(x)  # seeded after the build
    model = EagerStem().eval()
    model.stem.load_state_dict(built.stem.state_dict())  # the same built stem
    assert_same_model(built, lazyfx.materialize(model, ("B", 3, 8, 8), seed=0))
    seeded_first = dry_run_on("cpu", 0, build=EagerStem)  # manual_seed(0); build(); dry run
    assert not torch.equal(seeded_first.head.weight, built.head.weight)  # the stem's draws come between
    torch.manual_seed(0)
    assert_same_model(seeded_first, lazyfx.materialize(EagerStem().eval(), ("B", 3, 8, 8)))
    with torch.device("meta"):
        on_meta = EagerStem().eval()
    assert_same_model(seeded_first, lazyfx.materialize(on_meta, ("B", 3, 8, 8), device="cpu", seed=0))
