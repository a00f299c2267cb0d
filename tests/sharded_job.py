"""The distributed half of tests/test_sharded.py: four gloo processes on loopback materialize lazy
models built on meta straight into FSDP2 on meshes of 1, 2 and 4 ranks, train one step,
round-trip a torch.distributed.checkpoint directory, load a full checkpoint, and call materialize
wrongly on one rank. Rank 0 saves what it gathered; the test compares it with one process.

Run: python tests/sharded_job.py OUT.pt SCRATCH_DIR [cuda]

The ranks meet through a file in SCRATCH_DIR (torch.distributed's FileStore), not a loopback
port: a port found free and released before rank 0 listens on it can be taken meanwhile by
another job (a test running in parallel), and two jobs on one port join each other's groups.
"""

import copy
import datetime
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

import lazyfx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from integration_models import LazyCNN  # noqa: E402

WORLD = 4
SIZES = (1, 2, 4)


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
        self.up = nn.LazyLinear(4 * width)
        self.down = nn.LazyLinear(width)

    def forward(self, x):
        h = self.norm(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + a
        return x + self.down(torch.relu(self.up(x)))


class LazyGPT(nn.Module):
    """A small language model: token and position embeddings, two blocks whose MLPs are lazy,
    and a head tied to the token embedding."""

    def __init__(self, vocab=37, width=16, context=11):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.Sequential(Block(width), Block(width))
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tokens.weight
        self.classify = nn.LazyLinear(3)

    def forward(self, tokens):
        x = self.tokens(tokens) + self.positions(torch.arange(tokens.shape[1], device=tokens.device))
        return self.classify(self.head(self.blocks(x)).mean(1))


# name: (class, input spec, a batch for the training step, which submodules are FSDP units)
MODELS = {
    "cnn": (LazyCNN, ("B", 3, 16, 16), lambda: torch.randn(2, 3, 16, 16),
            lambda path, module: isinstance(module, (nn.Conv2d, nn.Linear))),
    # not the tied head: FSDP2 needs both users of a tied weight in one unit (here the root)
    "gpt": (LazyGPT, "B,T:int64", lambda: torch.randint(0, 37, (2, 7)),
            lambda path, module: isinstance(module, Block) or path == "classify"),
}


ERRORS = ("seed", "spec", "options", "device", "tied", "predicate", "rng", "values")


def built_on_cpu(seed):
    """The GPT built as usual, its eager layers initialized by their constructors from ``seed``."""
    torch.manual_seed(seed)
    return LazyGPT()


def on_meta(name):
    with torch.device("meta"):
        return MODELS[name][0]()


def shard_units(model, name, mesh):
    """fully_shard as materialize(shard=...) applies it: the units bottom-up, then the root."""
    from torch.distributed.fsdp import fully_shard

    for path, module in reversed(list(model.named_modules())):
        if path and MODELS[name][3](path, module):
            fully_shard(module, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def full_state(model, everywhere=False):
    """The gathered state: on rank 0 only, or on every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=not everywhere))
    return {key: value.clone() for key, value in state.items()}  # buffers come as they are: training moves them


def sharded(name, mesh, device="cpu", **kwargs):
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("shard", MODELS[name][3])
    return lazyfx.materialize(on_meta(name), MODELS[name][1], device=device, mesh=mesh, **kwargs)


def step(model, name):
    """One SGD step on the same batch on every rank; returns the loss."""
    torch.manual_seed(1)
    batch = MODELS[name][2]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(batch).square().mean()
    loss.backward()
    optimizer.step()
    return loss.detach()


def outcome(call):
    """What a call raised on this rank, as (class, code, message), or None."""
    try:
        call()
    except lazyfx.LazyFXError as error:
        return type(error).__name__, error.code, str(error)
    return None


def rendezvous(scratch) -> str:
    """The init_method of the job's process group: a file of its own (gloo's connections
    between the ranks then take ports the kernel assigns)."""
    return "file://" + os.path.join(os.path.abspath(scratch), "rendezvous")


def run(rank, out, scratch):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

    dist.init_process_group("gloo", init_method=rendezvous(scratch), rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    meshes = {WORLD: init_device_mesh("cpu", (WORLD,))}
    for size in SIZES[:-1]:
        group = dist.new_group(list(range(size)))  # every rank takes part in creating it
        if rank < size:
            meshes[size] = DeviceMesh.from_group(group, "cpu")
    results = {}
    for name in MODELS:
        models = {}
        for size in SIZES:
            if rank < size:
                models[size] = sharded(name, meshes[size])
                results[name, size] = full_state(models[size])
        path = os.path.join(scratch, name)
        if rank < 2:
            # materialize in one process, then shard: the FSDP2 numerics the sharded build must match
            control = lazyfx.materialize(on_meta(name), MODELS[name][1], device="cpu", seed=0)
            recipe = copy.deepcopy(control).to("meta")
            shard_units(control, name, meshes[2])
            results[name, "step"] = step(models[2], name), full_state(models[2])
            results[name, "control"] = step(control, name), full_state(control)
            dcp.save(get_model_state_dict(models[2]), checkpoint_id=path, process_group=meshes[2].get_group())
            # the docs' former recipe: meta, fully_shard, to_empty, reset_parameters on each rank's shard
            shard_units(recipe, name, meshes[2])
            recipe.to_empty(device="cpu")
            torch.manual_seed(0)
            for module in recipe.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
            results[name, "recipe"] = full_state(recipe)
        dist.barrier()
        # saved on 2 ranks, loaded on 4: each reads its shards
        results[name, "dcp"] = full_state(sharded(name, meshes[WORLD], seed=5, state_dict=path))
        # a full checkpoint on every rank (here the seeded model's plus one): each keeps its shards
        checkpoint = {key: value + 1 if value.is_floating_point() else value
                      for key, value in full_state(models[WORLD], everywhere=True).items()}
        results[name, "state_dict"] = full_state(sharded(name, meshes[WORLD], seed=5, state_dict=checkpoint))
    # HSDP: a 2 x 2 mesh, replicated across its first dimension and sharded across its second
    hsdp = init_device_mesh("cpu", (2, 2), mesh_dim_names=("replicate", "shard"))
    results["gpt", "2x2"] = full_state(sharded("gpt", hsdp))
    # a model built on cpu: its eager layers' values (a tied head among them) go to the shards as
    # they are
    if rank < 2:
        results["gpt on cpu", 2] = full_state(lazyfx.materialize(
            built_on_cpu(0), "B,T:int64", device="cpu", seed=0, mesh=meshes[2], shard=MODELS["gpt"][3]))
    # a rank called differently, a rank whose analysis fails alone, options fully_shard does not
    # take...: every rank raises the same error, and none waits
    results["seed", rank] = outcome(lambda: sharded("cnn", meshes[WORLD], seed=1 if rank == 2 else 0))
    spec = ("B", 3, 16) if rank == 3 else MODELS["cnn"][1]
    results["spec", rank] = outcome(lambda: lazyfx.materialize(on_meta("cnn"), spec, mesh=meshes[WORLD]))
    results["options", rank] = outcome(lambda: sharded("cnn", meshes[WORLD], fsdp_kwargs={"mesh": None}))
    results["device", rank] = outcome(lambda: sharded("cnn", meshes[WORLD], device="meta"))
    results["tied", rank] = outcome(lambda: sharded("gpt", meshes[WORLD], shard=lambda path, module: path == "head"))
    results["predicate", rank] = outcome(lambda: sharded("gpt", meshes[WORLD], shard=lambda path, module: 1 / rank > 2))
    torch.manual_seed(rank)  # no seed: every rank must start from the same generator state
    results["rng", rank] = outcome(lambda: lazyfx.materialize(on_meta("cnn"), MODELS["cnn"][1], mesh=meshes[WORLD]))
    results["values", rank] = outcome(lambda: lazyfx.materialize(built_on_cpu(rank), "B,T:int64", seed=0,
                                                                 mesh=meshes[WORLD]))
    errors = [None] * WORLD
    dist.all_gather_object(errors, {key: value for key, value in results.items() if isinstance(key[1], int)
                                    and key[0] in ERRORS})
    if rank == 0:
        for part in errors:
            results.update(part)
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()
    # Skip interpreter finalization: gloo's worker threads can abort it (pytorch/pytorch #190489).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_cuda(rank, out, scratch, world):
    """NCCL on one GPU per rank: the gathered state, for the test to compare with one process."""
    from torch.distributed.device_mesh import init_device_mesh

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=rendezvous(scratch), rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    mesh = init_device_mesh("cuda", (world,))
    results = {name: full_state(sharded(name, mesh, device="cuda")) for name in MODELS}
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[3:] == ["cuda"]:
        world = torch.cuda.device_count()
        mp.start_processes(run_cuda, args=(sys.argv[1], sys.argv[2], world), nprocs=world, join=True,
                           start_method="spawn")
    else:
        for name in MODELS:  # the analysis's first-call setup, done once before the workers fork
            lazyfx.materialize(on_meta(name), MODELS[name][1], device="meta")
        # forked after the imports: the workers share them instead of importing torch four times
        mp.start_processes(run, args=(sys.argv[1], sys.argv[2]), nprocs=WORLD, join=True, start_method="fork")
