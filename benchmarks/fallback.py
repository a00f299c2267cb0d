"""Per-node cost of a hand-written rule against PyTorch's meta kernel (the fallback).

    python -m benchmarks.fallback [--nodes 200] [--repeat 5]

Each model is a chain of ``--nodes`` operations of one kind, analysed by
``lazyfx.infer`` with a symbolic batch (and symbolic H, W for convolutions),
once with lazyfx's rule and once with the rule suspended so that every node
takes the fallback. Reported: microseconds per node (median of --repeat) and
the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

import lazyfx
from lazyfx.core.registry import RULES, Method


class Chain(nn.Module):
    def __init__(self, step, n: int) -> None:
        super().__init__()
        self.step, self.n = step, n

    def forward(self, x):
        for _ in range(self.n):
            x = self.step(x)
        return x


def convs(n: int) -> nn.Module:
    return nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(n)])


WORKLOADS = {
    # name: (model factory, input spec, rule keys to suspend)
    "relu": (lambda n: Chain(torch.relu, n), ("B", 16, 32), [torch.relu]),
    "add": (lambda n: Chain(lambda x: x + x, n), ("B", 16, 32), ["operator.add"]),
    "view": (lambda n: Chain(lambda x: x.view(x.size(0), -1), n), ("B", 16, 32), [Method("view"), Method("size")]),
    "conv2d": (convs, ("B", 4, "H", "W"), [nn.Conv2d]),
}


def _keys(keys):
    import operator

    return [operator.add if k == "operator.add" else k for k in keys]


def per_node_us(factory, spec, n: int, repeat: int, suspend=()) -> float:
    model = factory(n)
    times = []
    with RULES.suspended(*suspend):
        lazyfx.infer(model, spec)  # warm-up
        for _ in range(repeat):
            start = time.perf_counter()
            lazyfx.infer(model, spec)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / n * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}; {args.nodes} nodes per model; microseconds per node (median of {args.repeat})")
    print(f"{'op':10}{'rule':>10}{'fallback':>12}{'ratio':>8}")
    for name, (factory, spec, keys) in WORKLOADS.items():
        rule = per_node_us(factory, spec, args.nodes, args.repeat)
        fallback = per_node_us(factory, spec, args.nodes, args.repeat, _keys(keys))
        print(f"{name:10}{rule:10.0f}{fallback:12.0f}{fallback / rule:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
