"""Build a lazy model straight into FSDP2 on two processes: each rank allocates its shards only,
and the gathered model is the one a single process would have built, bit for bit.

Run: python examples/sharded_fsdp.py
(two gloo processes on this machine; with GPUs, use "nccl", init_device_mesh("cuda", ...)
and device="cuda")
"""

import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

import lazyfx


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(64)
        self.up = nn.LazyLinear(256)
        self.down = nn.LazyLinear(64)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(self.norm(x))))


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(1000, 64)
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.LazyLinear(1000)

    def forward(self, tokens):
        return self.head(self.blocks(self.embed(tokens)))


def build_on_meta():
    with torch.device("meta"):
        return TinyLM()  # nothing allocated, the lazy layers unresolved


def main(rank, world, rendezvous):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule

    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))

    model = lazyfx.materialize(build_on_meta(), "B,T:int64", device="cpu", seed=0, mesh=mesh,
                               shard=lambda path, module: isinstance(module, Block))
    weight = model.blocks[0].up.weight
    local = {name: tuple(p.to_local().shape) for name, p in model.named_parameters()}
    shards = [None] * world
    dist.all_gather_object(shards, local)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    # every rank passes the same arguments; one that does not is an error on every rank
    try:
        lazyfx.materialize(build_on_meta(), "B,T:int64", device="cpu", seed=rank, mesh=mesh)
    except lazyfx.LazyFXError as error:
        mismatch = error.message

    if rank == 0:
        print("a TinyLM:", isinstance(model, TinyLM), "and an FSDPModule:", isinstance(model, FSDPModule))
        print("blocks.0.up.weight:", type(weight).__name__, tuple(weight.shape), weight.placements)
        for r, sizes in enumerate(shards):
            up, head = sizes["blocks.0.up.weight"], sizes["head.weight"]
            print(f"rank {r} holds blocks.0.up.weight {up}, head.weight {head}")
        single = lazyfx.materialize(build_on_meta(), "B,T:int64", device="cpu", seed=0)
        same = all(torch.equal(full[k], v) for k, v in single.state_dict().items())
        print("gathered state equals one process's model:", same)
        print("a rank called with another seed:", mismatch)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: gloo's threads can abort it (pytorch/pytorch #190489)


if __name__ == "__main__":
    # the ranks meet through a file (a port picked as free could be taken before rank 0 listens)
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(main, args=(2, "file://" + os.path.join(folder, "rendezvous")), nprocs=2, join=True)
