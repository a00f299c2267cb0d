"""No memory kept per call (issue 13 point 8).

The meta-kernel fallback (FakeTensorMode with a ShapeEnv) and abstract
execution leave nothing alive once ``infer`` or ``materialize`` returns or
raises: PyTorch's process-wide caches (ShapeEnv's class-level ``lru_cache``s,
FakeTensorMode's dispatch cache) would otherwise keep every call's ShapeEnv.
The 1,000-call resident-set check is ``python -m benchmarks.leaks``.
"""

from __future__ import annotations

import gc
import weakref

import pytest

import lazyfx
from benchmarks.leaks import Failing, NoRule, Untraceable  # the paths the 1,000-call benchmark measures
from lazyfx.analysis.fallback import meta as fallback
from lazyfx.errors import LazyFXError


@pytest.fixture
def fallbacks(monkeypatch):
    made = []
    original = fallback.MetaKernelFallback.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append((weakref.ref(self.shape_env), weakref.ref(self.mode)))

    monkeypatch.setattr(fallback.MetaKernelFallback, "__init__", init)
    return made


def assert_released(made):
    assert made, "the fallback was not used"
    gc.collect()
    assert [(env(), mode()) for env, mode in made] == [(None, None)] * len(made)


@pytest.mark.parametrize("build", [NoRule, Untraceable])
def test_infer_releases_every_shape_env_and_fake_tensor_mode(fallbacks, build):
    report = lazyfx.infer(build(), ("B", 8))  # the report stays: it holds none of them
    assert_released(fallbacks)
    assert str(report.output) == "(B, 3)"


@pytest.mark.parametrize("build", [NoRule, Untraceable])
def test_materialize_releases_them(fallbacks, build):
    lazyfx.materialize(build(), (2, 8))
    assert_released(fallbacks)


def test_a_failing_call_releases_them(fallbacks):
    with pytest.raises(LazyFXError):
        lazyfx.infer(Failing(), (2, 8))
    assert_released(fallbacks)


def test_the_resident_set_benchmark_runs(capsys):
    from benchmarks import leaks

    assert leaks.main(["--calls", "2", "--warmup", "1"]) in (0, 1)  # the numbers: python -m benchmarks.leaks
    assert "largest growth" in capsys.readouterr().out
