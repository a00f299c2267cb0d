"""Per-rank peak memory of building a lazy GPT sharded with FSDP2, three ways, on gloo ranks.

    python -m benchmarks.sharded [--width 2048] [--layers 20] [--vocab 32000] [--ranks 2]

The model is a GPT built on meta whose attention and MLP layers are lazy
(``LazyLinear``), with a token embedding tied to the output head; the defaults
give 1.07 billion parameters (4.3 GB in float32). Each way runs in fresh
processes, one per rank (forked after the imports), that reset their resident
set size high-water mark (``/proc/self/clear_refs``) right before the build and
report how much it grew (VmHWM minus the RSS before):

* ``lazyfx sharded``: ``lazyfx.materialize(..., mesh=mesh, shard=...)``, the
  gathered state equal to one process's dry run;
* ``meta + reset_parameters``: the docs' former recipe, ``materialize(device=
  "meta")``, ``fully_shard``, ``to_empty``, each module's ``reset_parameters()``
  on its shard (each rank draws its own numbers: the model depends on the
  world size);
* ``materialize then shard``: ``materialize(device="cpu")`` whole on every
  rank, then ``fully_shard``.

It prints the bound the design sets for the sharded build (params/world + 2 x
the largest parameter), then one JSON line per way and rank, with whether its
peak growth stayed within it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

import lazyfx

WAYS = ["lazyfx sharded", "meta + reset_parameters", "materialize then shard"]


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.LazyLinear(3 * width), nn.LazyLinear(width)
        self.up, self.down = nn.LazyLinear(4 * width), nn.LazyLinear(width)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class LazyGPT(nn.Module):
    def __init__(self, vocab: int, width: int, layers: int, context: int = 1024) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, max(1, width // 128)) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tokens.weight

    def forward(self, tokens):
        x = self.tokens(tokens) + self.positions(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def is_block(path: str, module: nn.Module) -> bool:
    return isinstance(module, Block)


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def build(way: str, args, mesh) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    with torch.device("meta"):
        lazy = LazyGPT(args.vocab, args.width, args.layers)
    if way == "lazyfx sharded":
        return lazyfx.materialize(lazy, "B,T:int64", device="cpu", seed=0, mesh=mesh, shard=is_block)
    model = lazyfx.materialize(lazy, "B,T:int64", device="meta" if way.startswith("meta") else "cpu", seed=0)
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if way.startswith("meta"):
        model.to_empty(device="cpu")
        torch.manual_seed(0)
        for module in model.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    return model


def run(rank: int, rendezvous: str, way: str, args, bound: int) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=args.ranks)
    mesh = init_device_mesh("cpu", (args.ranks,))
    torch.set_num_threads(1)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the high-water mark restarts from the current RSS
    before = rss_kib("VmRSS")
    start = time.perf_counter()
    model = build(way, args, mesh)
    seconds = time.perf_counter() - start
    grew = (rss_kib("VmHWM") - before) * 1024
    local = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"way": way, "rank": rank, "peak_growth_mib": round(grew / 2**20),
                      "local_shards_mib": round(local / 2**20), "within_bound": grew <= bound,
                      "seconds": round(seconds, 1)}), flush=True)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated, of: " + ", ".join(WAYS))
    args = parser.parse_args(argv)
    with torch.device("meta"):
        lazy = LazyGPT(args.vocab, args.width, args.layers)
    meta = lazyfx.materialize(lazy, "B,T:int64", device="meta")  # also warms the analysis before the forks
    sizes = [p.numel() * p.element_size() for p in meta.parameters()]
    params, largest = sum(sizes), max(sizes)
    bound = params // args.ranks + 2 * largest
    print(json.dumps({"parameters": sum(p.numel() for p in meta.parameters()), "params_mib": round(params / 2**20),
                      "largest_mib": round(largest / 2**20), "ranks": args.ranks,
                      "bound_mib": round(bound / 2**20)}), flush=True)
    for way in args.ways.split(","):
        # the ranks meet through a file of their own: a port found free and released could be
        # taken by another job before rank 0 listens on it
        with tempfile.TemporaryDirectory() as scratch:
            rendezvous = "file://" + os.path.join(scratch, "rendezvous")
            mp.start_processes(run, args=(rendezvous, way, args, bound), nprocs=args.ranks, join=True,
                               start_method="fork")
    return 0


if __name__ == "__main__":
    sys.exit(main())
