import os
import uuid

import pytest
import torch
from hypothesis import HealthCheck, settings

# The tests run tiny tensors, for which thread start-up costs more than it saves (the
# Transformer cases run twice as fast on one thread).
torch.set_num_threads(1)

# CI runs derandomized (a red build is reproducible); locally examples vary run to run.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("thorough", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_addoption(parser, pluginmanager):
    """pyproject.toml's addopts distribute the tests with pytest-xdist (--numprocesses=2
    --dist=loadgroup, written long: a conftest may not add the short -n).
    Without the plugin (`-p no:xdist`, for a debugger, or not installed) its options are accepted
    here and mean nothing: the tests run in this process, one after another."""
    if not pluginmanager.has_plugin("xdist"):
        group = parser.getgroup("xdist", "distributed testing (pytest-xdist is not loaded: ignored)")
        group.addoption("--numprocesses", dest="numprocesses", default=None)
        group.addoption("--dist", dest="dist", default="no")


def pytest_configure(config):
    # the mark pytest-xdist registers, registered here too so that --strict-markers accepts it
    # without the plugin
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one worker (--dist loadgroup)")


@pytest.fixture(autouse=True)
def _lazyfx_cache_of_its_own(tmp_path_factory, monkeypatch):
    """`lazyfx check` keeps results beside the project's pyproject.toml; in the tests, in a
    folder of each test's own (LAZYFX_CACHE_DIR, which subprocesses inherit), so that no test
    writes into the repository or sees another test's entries. tests/test_check_cache.py tests
    the default folder itself."""
    monkeypatch.setenv("LAZYFX_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lazyfx_cache" / uuid.uuid4().hex))
