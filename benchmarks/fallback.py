"""Per-node cost of a hand-written rule against PyTorch's meta kernel (the fallback).

    python -m benchmarks.fallback [--nodes 200] [--repeat 5]

Each model is a chain of ``--nodes`` operations of one kind, analysed by
``lazyfx.infer`` with a symbolic batch (and symbolic H, W for convolutions),
once with lazyfx's rules and once with the rules of the chain's operations
suspended, so that they take the fallback. The operations are those the
fallback serves in real models too: ``stochastic_depth`` in training mode
(torchvision's, traced into: ``torch.empty``, ``bernoulli_``, ``div_``, a
product), ``torch.fft.rfft`` (no rule, and its meta kernel fixes the batch
to its representative size; its column "rule" is a chain of as many nodes with
rules of the same shapes, ``torch.neg`` and ``abs``) and an einops-style rearrange
(``view``, ``permute``, ``reshape``).

The fallback keeps the output of a call for the next call like it (the blocks of a
model repeat); "every call new" runs every call's kernels anew, as for a call unlike
any before it. Per operation is the slope: the analysis of ``--nodes`` operations
less that of one, divided by ``--nodes - 1`` (medians of ``--repeat``), so that what
an analysis pays once is apart: "first call" is what the fallback's first call in an
analysis costs over the rule's (PyTorch's fake-tensor mode and ShapeEnv start empty in
each analysis, and its first kernel run on symbolic sizes runs PyTorch's Python
decompositions and the size-one check). Reported: microseconds per operation, the
ratios to the rule, and the first call in milliseconds.
"""

from __future__ import annotations

import argparse
import operator
import statistics
import time

import torch
import torch.nn as nn

import lazyfx
from benchmarks.models import stochastic_depth
from lazyfx.analysis.fallback.meta import MetaKernelFallback
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


# torch.fx.wrap patches the name in the globals of the module that calls it: the global here,
# which drop_path looks up (benchmarks.models wraps its own)
torch.fx.wrap("stochastic_depth")


def drop_path(x):
    return stochastic_depth(x, 0.1, "row", True)  # looked up as a global, where torch.fx.wrap patches it


def rearrange(x):
    """``rearrange(x, "b c (h p1) (w p2) -> b c (p1 p2 h w)")`` and back to (B, 4, 8, 8), as einops
    computes it."""
    b = x.size(0)
    return x.view(b, 4, 4, 2, 4, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4, 8, 8)


def spectrum(x):
    return torch.fft.rfft(x, n=62).real  # (B, 16, 32)


WORKLOADS = {
    # name: (model factory, input spec, rule keys to suspend[, the chain that gives the rule's cost])
    "relu": (lambda n: Chain(torch.relu, n), ("B", 16, 32), [torch.relu]),
    "add": (lambda n: Chain(lambda x: x + x, n), ("B", 16, 32), [operator.add]),
    "view": (lambda n: Chain(lambda x: x.view(x.size(0), -1), n), ("B", 16, 32), [Method("view"), Method("size")]),
    "conv2d": (convs, ("B", 4, "H", "W"), [nn.Conv2d]),
    "stochastic_depth": (lambda n: Chain(drop_path, n), ("B", 16, 32),
                         [torch.empty, Method("bernoulli_"), Method("div_"), operator.mul]),
    "fft": (lambda n: Chain(spectrum, n), ("B", 16, 32), [], lambda n: Chain(lambda x: torch.neg(x).abs(), n)),
    "rearrange": (lambda n: Chain(rearrange, n), ("B", 4, 8, 8),
                  [Method("size"), Method("view"), Method("permute"), Method("reshape")]),
}


def analysis_seconds(factory, spec, n: int, repeat: int, suspend=(), reuse: bool = True) -> float:
    """Median seconds of ``infer`` on a chain of ``n`` operations."""
    model = factory(n)
    times = []
    MetaKernelFallback.reuse = reuse
    try:
        with RULES.suspended(*suspend):
            lazyfx.infer(model, spec)  # warm-up
            for _ in range(repeat):
                start = time.perf_counter()
                lazyfx.infer(model, spec)
                times.append(time.perf_counter() - start)
    finally:
        MetaKernelFallback.reuse = True
    return statistics.median(times)


def costs(factory, spec, n: int, repeat: int, suspend=(), reuse: bool = True) -> tuple[float, float]:
    """(microseconds per operation, the slope from 1 to ``n`` operations; seconds of one)."""
    one = analysis_seconds(factory, spec, 1, repeat, suspend, reuse)
    many = analysis_seconds(factory, spec, n, repeat, suspend, reuse)
    return (many - one) / (n - 1) * 1e6, one


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), help="some of the workloads")
    args = parser.parse_args(argv)
    if args.nodes < 2:
        parser.error("--nodes must be at least 2 (the cost per operation is a slope from 1 to --nodes)")
    print(f"torch {torch.__version__}; 1 and {args.nodes} operations per model; microseconds per operation "
          f"(the slope, medians of {args.repeat}); first call: milliseconds over the rule's")
    print(f"{'op':18}{'rule':>8}{'fallback':>10}{'ratio':>7}{'first call':>12}{'every call new':>16}{'ratio':>7}")
    for name in args.only or WORKLOADS:
        factory, spec, keys, *reference = WORKLOADS[name]
        lazyfx.infer(factory(1), spec)  # the rules are loaded before any is suspended
        rule, rule_once = costs(reference[0] if reference else factory, spec, args.nodes, args.repeat)
        fallback, fallback_once = costs(factory, spec, args.nodes, args.repeat, keys)
        anew, _ = costs(factory, spec, args.nodes, args.repeat, keys, reuse=False)
        first = (fallback_once - rule_once) * 1e3
        print(f"{name:18}{rule:8.0f}{fallback:10.0f}{fallback / rule:7.1f}{first:12.1f}{anew:16.0f}{anew / rule:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
