"""Memory kept per call: the resident set across 1,000 calls on each path (issue 13 point 8).

    python -m benchmarks.leaks            # 1,000 calls per path
    python -m benchmarks.leaks --calls 200

Each path (the meta-kernel fallback, abstract execution, a failing analysis,
and materialize) is warmed up, then called ``--calls`` times; the resident
set (RSS, from /proc/self/statm) before and after is printed, and the run
fails (exit 1) when it grows by more than 5 MB on any path. Measured: the
fallback, abstract execution and materialize stay within 0.4 MB over 1,000
calls; a failing analysis grows the resident set by a few MB over its first
two thousand calls and then not at all, while its Python heap (tracemalloc)
stays flat from the start: allocator arenas, not objects kept.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import torch
import torch.nn as nn

import lazyfx
from lazyfx.errors import LazyFXError

LIMIT_MB = 5.0


class NoRule(nn.Module):  # bessel_j0 has no shape rule: PyTorch's meta kernel computes it
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        return self.fc(torch.special.bessel_j0(x))


class Untraceable(nn.Module):  # a branch on values: abstract execution
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        if (x > 0).any():
            x = -x
        return self.fc(torch.cat([x, torch.zeros(x.size(0), 2)], 1))


class Failing(nn.Module):  # the fallback rejects the sizes: an error
    def forward(self, x):
        return torch.special.bessel_j0(x).view(7, -1)


def _failing() -> None:
    try:
        lazyfx.infer(Failing(), (2, 8))
    except LazyFXError:
        pass


PATHS = {
    "fallback (infer, symbolic)": lambda: lazyfx.infer(NoRule(), ("B", 8)),
    "abstract execution (infer, symbolic)": lambda: lazyfx.infer(Untraceable(), ("B", 8)),
    "failing analysis": _failing,
    "materialize (abstract execution)": lambda: lazyfx.materialize(Untraceable(), (2, 8)),
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args(argv)
    worst = 0.0
    for name, call in PATHS.items():
        for _ in range(args.warmup):
            call()
        gc.collect()
        before, start = rss_mb(), time.perf_counter()
        for _ in range(args.calls):
            call()
        gc.collect()
        growth = rss_mb() - before
        worst = max(worst, growth)
        print(f"{name:40s} {args.calls} calls in {time.perf_counter() - start:6.1f} s: "
              f"RSS {before:7.1f} -> {before + growth:7.1f} MB ({growth:+.2f} MB)")
    print(f"largest growth {worst:+.2f} MB (limit {LIMIT_MB} MB)")
    return 0 if worst <= LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
