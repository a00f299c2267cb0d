"""What lazyfx's analysis of each differential case reaches: the rule keys its nodes use, and
the nodes that took the meta-kernel fallback. Two gates read it: tests/test_registry.py (every
rule is reached by a case) and tests/test_fallback.py (no case falls back, which would test
PyTorch against itself). The cases are explored once per process and the two share it (they
are in one xdist_group, so that pytest -n runs them on one worker)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import lazyfx
from cases import CASES

EXAMPLES = 10  # per case, the same ones every run
# The seed of those examples: the one tests/test_registry.py drew them from when it explored the
# cases itself (derandomized: hypothesis seeded it with the digest of that function's source).
# Pinned, because a seed drawn anew reaches fewer rules: some cases reach their rule in one
# example of six or seven (roll's arguments are mostly invalid, and eye with concrete sizes is
# mostly a constant), so that ten other examples miss some rule (four, with a seed per case).
SEED = int("bebaa75acef911634f7c9905e0a286f30ba8e92c61621b0c1c6414101b240bbadd158c62cdf56179e00040069e146b36", 16)
GROUP = "case_reach"  # the xdist_group of the tests that read it


@dataclass(frozen=True)
class Reach:
    keys: frozenset  # the rule keys of the analysed nodes
    fallback: tuple[str, ...]  # "example: node" for each node that took the fallback


@functools.lru_cache(maxsize=None)
def reach(name: str) -> Reach:
    """The case's examples that lazyfx accepts, analysed (those it rejects reach no rule)."""
    keys: set = set()
    fallback: list[str] = []

    @seed(SEED)
    @settings(max_examples=EXAMPLES, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def explore(data):
        example = CASES[name](data.draw)
        specs = [lazyfx.TensorSpec(shape, dtype=dtype) for shape, dtype in example.inputs]
        try:
            report = lazyfx.infer(example.module, *specs)
        except lazyfx.LazyFXError:
            return
        keys.update(n.key for n in report.nodes if n.key is not None)
        fallback.extend(f"{example!r}: {n.name}" for n in report.nodes if n.fallback)

    explore()
    return Reach(frozenset(keys), tuple(fallback))
