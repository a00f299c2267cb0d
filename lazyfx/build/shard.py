"""Sharded materialization: the eager model built straight into FSDP2 on a device mesh.

``materialize(..., mesh=mesh, shard=...)`` resolves the lazy model as a single
process does, builds the eager model on the meta device, applies
``fully_shard`` to the chosen submodules and the root, and allocates each
rank's shards on the device (``to_empty``). The values then come from the
dry run's initialization, run on a meta staging copy of the model: every rank
runs the same seeded sequence, so every rank draws the same random numbers
without communicating. A tensor is created on the device when the first
initialization step that can touch it begins (its module's, or an ancestor's
whose ``reset_parameters()`` may reach into its children) and, once the last
such step is done, each rank copies its shard of it into the sharded
parameter and drops the full tensor. The gathered state is the single-process
model's bit for bit, whatever the world size; each rank holds its shards plus
the tensors of the module being initialized.

Before anything is sharded, the ranks agree on their arguments
(:mod:`lazyfx.build.agree`). torch.distributed is imported where it is used:
``import lazyfx`` does not pay for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import warnings
from typing import Any, Callable, Iterator, Mapping, Optional

import torch
import torch.nn as nn
from torch.nn.parameter import is_lazy

from lazyfx.core.diagnostics import first_line
from lazyfx.errors import LazyFXError, MaterializeError, SpecError
from lazyfx.analysis.resolve import LazyModuleRecord
from lazyfx.build.rewrite import (converted, copy_model, initialize_in_order, materialize_model,
                                   meta_eager_modules)

META = torch.device("meta")


# --- arguments, checked on each rank before anything is gathered -------------------------------

def checked_mesh(mesh: Any):
    """``mesh`` if it is a ``DeviceMesh`` (nothing can be gathered without one, so this error is
    the only one raised on a rank alone)."""
    from torch.distributed.device_mesh import DeviceMesh

    if not isinstance(mesh, DeviceMesh):
        raise SpecError(f"mesh must be a torch.distributed.device_mesh.DeviceMesh (init_device_mesh(\"cuda\", "
                        f"(world_size,))), got {type(mesh).__name__}")
    return mesh


def mesh_device(mesh, device: Optional[torch.device]) -> torch.device:
    """The device this rank builds its shards on: ``device`` (of the mesh's device type), or the
    mesh's device type at the current index."""
    if device is None:
        if mesh.device_type == "cpu":
            return torch.device("cpu")
        module = getattr(torch, mesh.device_type)
        return torch.device(mesh.device_type, module.current_device())
    if device.type != mesh.device_type:
        raise SpecError(f"device {str(device)!r} is not of the mesh's device type {mesh.device_type!r}: each rank "
                        f"builds its shards on its own {mesh.device_type} device")
    return device


_FULLY_SHARD_OPTIONS = ("reshard_after_forward", "shard_placement_fn", "mp_policy", "offload_policy",
                        "ignored_params")


def check_options(shard: Any, fsdp_kwargs: Any, inplace: bool, init_order: str, device: torch.device) -> dict:
    """``fsdp_kwargs`` as a dict, after checking the options that go with ``mesh``."""
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    if inplace:
        raise SpecError("materialize(mesh=...) builds a new FSDP2 module; inplace=True is not supported with a mesh")
    if init_order != "dry-run":
        raise SpecError("materialize(mesh=...) initializes in the dry run's order only; init_order='registration' "
                        "would need every lazy tensor at once, which sharding is meant to avoid")
    if shard is not None and not callable(shard):
        raise SpecError(f"shard must be a function (path, module) -> bool, got {type(shard).__name__}")
    if fsdp_kwargs is None:
        return {}
    if not isinstance(fsdp_kwargs, Mapping):
        raise SpecError(f"fsdp_kwargs must be a mapping of fully_shard keyword arguments, got "
                        f"{type(fsdp_kwargs).__name__}")
    accepted = [name for name in inspect.signature(fully_shard).parameters if name not in ("module", "mesh")]
    unknown = [key for key in fsdp_kwargs if key not in accepted]
    if unknown:
        raise SpecError(f"fsdp_kwargs has {', '.join(map(repr, unknown))}, which fully_shard does not take "
                        f"(it takes {', '.join(accepted)}; the mesh is materialize's mesh=)")
    if isinstance(fsdp_kwargs.get("offload_policy"), CPUOffloadPolicy) and device.type != "cpu":
        raise SpecError("materialize(mesh=...) does not build with fsdp_kwargs={'offload_policy': "
                        "CPUOffloadPolicy()} on a GPU yet (the shards would have to live on the cpu, the buffers on "
                        "the device)", notes=["shard without CPU offloading, or shard materialize(device='meta')'s "
                                              "model with it yourself"])
    return dict(fsdp_kwargs)


def is_checkpoint_dir(state_dict: Any) -> bool:
    """Whether ``state_dict`` names a ``torch.distributed.checkpoint`` directory."""
    return isinstance(state_dict, (str, os.PathLike)) and os.path.isfile(os.path.join(state_dict, ".metadata"))


def checkpoint_shapes(path) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.distributed.checkpoint`` directory as meta tensors (shapes and
    dtypes, from its metadata; nothing is read)."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    try:
        metadata = FileSystemReader(path).read_metadata()
    except Exception as exc:
        raise SpecError(f"cannot read the checkpoint directory {str(path)!r}: {type(exc).__name__}: "
                        f"{first_line(exc)}") from exc
    return {key: torch.empty(tuple(entry.size), dtype=entry.properties.dtype, device=META)
            for key, entry in metadata.state_dict_metadata.items() if isinstance(entry, TensorStorageMetadata)}


# --- the plan: the eager model on meta and its FSDP units -----------------------------------------

@dataclasses.dataclass
class Plan:
    """What every rank agrees on before sharding: the eager model on meta and the paths of the
    submodules that become FSDP units (bottom-up)."""

    skeleton: nn.Module
    units: list[str]


def plan(model: nn.Module, records: dict[str, LazyModuleRecord], dtype: Optional[torch.dtype],
         shard: Optional[Callable], state_dict: Optional[Mapping[str, torch.Tensor]], strict: bool) -> Plan:
    """The eager model on meta (no memory), the FSDP units ``shard`` picks, and, with a
    checkpoint, the single-process load's key and shape checks."""
    with torch.random.fork_rng(devices=[]):  # nothing is initialized on meta, but nothing may draw either
        skeleton = materialize_model(model, records, device=META, dtype=dtype, seed=None, inplace=False,
                                     initialize=False)
    units = []
    for path, module in skeleton.named_modules():
        if not path or shard is None:
            continue
        try:
            chosen = shard(path, module)
        except Exception as exc:
            raise SpecError(f"shard({path!r}, {type(module).__name__}) raised {type(exc).__name__}: "
                            f"{first_line(exc)}") from exc
        if not isinstance(chosen, bool):
            raise SpecError(f"shard({path!r}, {type(module).__name__}) returned {type(chosen).__name__}, not a bool")
        if chosen:
            units.append(path)
    _check_tied_in_one_unit(skeleton, units)
    if state_dict is not None:
        with warnings.catch_warnings():  # loading into meta checks the keys and shapes, and copies nothing
            warnings.simplefilter("ignore")
            try:
                skeleton.load_state_dict(state_dict, strict=strict)
            except Exception as exc:
                raise MaterializeError(f"materializing {type(model).__name__} failed: {type(exc).__name__}: "
                                       f"{exc}", notes=["the given model was not modified"]) from exc
    return Plan(skeleton, units[::-1])


def _check_tied_in_one_unit(skeleton: nn.Module, units: list[str]) -> None:
    """A tensor several modules share (a head tied to the embedding) must belong to one FSDP unit:
    FSDP2 refuses it at the first forward otherwise; said here, before anything is sharded."""
    def unit_of(fqn: str) -> str:
        owner = _owner(fqn)
        return max((u for u in units if _inside(owner, u)), key=len, default="")

    for group in _groups(skeleton):
        owners = {fqn: unit_of(fqn) for fqn in group}
        if len(set(owners.values())) > 1:
            where = ", ".join(f"'{fqn}' in {f'the unit {u!r}' if u else 'the root'}" for fqn, u in owners.items())
            raise SpecError(f"{' and '.join(repr(f) for f in group)} are one tied tensor, but shard(...) puts them in "
                            f"different FSDP units ({where}); FSDP2 needs a tied tensor in one unit",
                            notes=["let shard(...) return False for the modules that share it (they then belong "
                                   "to their nearest sharded ancestor, or the root)"])


# --- the build ------------------------------------------------------------------------------------

def build(model: nn.Module, records: dict[str, LazyModuleRecord], the_plan: Plan, *, mesh, device: torch.device,
          dtype: Optional[torch.dtype], seed: Optional[int], fsdp_kwargs: dict,
          state_dict: Optional[Mapping[str, torch.Tensor]] = None, checkpoint_dir=None,
          strict: bool = True) -> nn.Module:
    """Shard the plan's skeleton with FSDP2 and fill each rank's shards with the single-process
    values: the dry run's initialization (or the checkpoint's values)."""
    from torch.distributed.fsdp import fully_shard

    sharded = the_plan.skeleton
    try:
        for path in the_plan.units:
            fully_shard(sharded.get_submodule(path), mesh=mesh, **fsdp_kwargs)
        fully_shard(sharded, mesh=mesh, **fsdp_kwargs)
        sharded.to_empty(device=device)  # this rank's shards, and the (replicated) buffers
        staging = copy_model(model, META, dtype)
        meta_eager = meta_eager_modules(model, device, records)
        provided_keys = state_dict if state_dict is not None else checkpoint_dir_keys(checkpoint_dir)
        steps = [path for path, _ in meta_eager] + list(records)
        filler = Filler(staging, model, sharded, steps, device, dtype, state_dict)
        initialize_in_order(staging, records, meta_eager, device=device, dtype=dtype, seed=seed, journal=None,
                            provided=lambda key: key in provided_keys,
                            initialize=state_dict is None and checkpoint_dir is None, around=filler.around)
        filler.finish_untouched()
    except LazyFXError:
        raise
    except Exception as exc:
        raise MaterializeError(f"materializing {type(model).__name__} on the mesh failed: {type(exc).__name__}: "
                               f"{first_line(exc)}", notes=["the given model was not modified"]) from exc
    if checkpoint_dir is not None:  # collective: every rank reads its shards
        load_checkpoint_dir(sharded, checkpoint_dir, mesh_group(mesh), strict)
    return sharded


def checkpoint_dir_keys(path) -> frozenset:
    return frozenset() if path is None else frozenset(checkpoint_shapes(path))


def mesh_group(mesh):
    """The process group of all the mesh's ranks (for torch.distributed.checkpoint): a 1-D mesh's
    own, the default group for a mesh over every rank."""
    import torch.distributed as dist

    if mesh.ndim == 1:
        return mesh.get_group()
    if mesh.size() == dist.get_world_size():
        return None
    raise SpecError(f"a torch.distributed.checkpoint directory loads on a 1-D mesh or on a mesh over all "
                    f"{dist.get_world_size()} ranks; this {mesh.ndim}-D mesh has {mesh.size()}")


def load_checkpoint_dir(sharded: nn.Module, path, group, strict: bool) -> None:
    """Each rank reads its shards of the checkpoint directory (a collective over ``group``)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

    state = get_model_state_dict(sharded)
    if not strict:  # what the directory does not have keeps its initialization
        state = {key: value for key, value in state.items() if key in checkpoint_dir_keys(path)}
    dcp.load(state, checkpoint_id=path, process_group=group, planner=DefaultLoadPlanner(allow_partial_load=not strict))
    set_model_state_dict(sharded, state, options=StateDictOptions(strict=strict))


def _owner(fqn: str) -> str:
    return fqn.rpartition(".")[0]


def _inside(owner: str, path: str) -> bool:
    return path == "" or owner == path or owner.startswith(path + ".")


def _groups(model: nn.Module) -> list[list[str]]:
    """The model's parameters and buffers as the names each tensor object has (a tied weight
    has several), in state_dict order."""
    groups: dict[int, list[str]] = {}
    for fqn, tensor in (*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)):
        groups.setdefault(id(tensor), []).append(fqn)
    return list(groups.values())


def _container(model: nn.Module, fqn: str) -> tuple[dict, str]:
    owner, _, name = fqn.rpartition(".")
    module = model.get_submodule(owner)
    return (module._parameters if name in module._parameters else module._buffers), name


def _tensor(model: nn.Module, fqn: str) -> torch.Tensor:
    container, name = _container(model, fqn)
    return container[name]


def _assign(model: nn.Module, fqn: str, tensor: torch.Tensor) -> None:
    container, name = _container(model, fqn)
    container[name] = tensor


class Filler:
    """The dry run's initialization, run on ``staging`` (a copy of the model on meta), tensor by
    tensor: each is created on the device as the single-process copy creates it when the first
    step that may touch it begins (a step touches its module's subtree), and written into
    ``sharded`` (each rank its shard) and dropped when the last such step ends. ``values``: a
    checkpoint whose values replace the initialized ones."""

    def __init__(self, staging: nn.Module, original: nn.Module, sharded: nn.Module, steps: list[str],
                 device: torch.device, dtype: Optional[torch.dtype],
                 values: Optional[Mapping[str, torch.Tensor]] = None) -> None:
        self.staging, self.original, self.sharded = staging, original, sharded
        self.device, self.dtype, self.values = device, dtype, values or {}
        self.steps, self.position = steps, 0
        self.groups = _groups(staging)
        self.opening: dict[int, list[list[str]]] = {}
        self.closing: dict[int, list[list[str]]] = {}
        self.untouched: list[list[str]] = []
        for group in self.groups:
            owners = {_owner(fqn) for fqn in group}
            touching = [i for i, path in enumerate(steps) if any(_inside(o, path) for o in owners)]
            if touching:
                self.opening.setdefault(touching[0], []).append(group)
                self.closing.setdefault(touching[-1], []).append(group)
            else:
                self.untouched.append(group)

    @contextlib.contextmanager
    def around(self, path: str) -> Iterator[None]:
        index, self.position = self.position, self.position + 1
        if self.steps[index] != path:  # pragma: no cover - the rewrite's order changed without the plan
            raise MaterializeError(f"sharded initialization out of order: step {index} is '{path}', planned "
                                   f"'{self.steps[index]}'")
        for group in self.opening.get(index, ()):
            self._create(group)
        yield
        for group in self.closing.get(index, ()):
            self._finish(group)

    def finish_untouched(self) -> None:
        """The tensors no initialization step touches (eager ones with values): one at a time."""
        for group in self.untouched:
            self._create(group)
            self._finish(group)

    def _create(self, group: list[str]) -> None:
        """The tensor as the single-process copy creates it on the device (the given model's
        values in ``dtype``; empty in its own dtype where the given one is on meta), under every
        name it has. A lazy one is left for its module's step to create."""
        source = _tensor(self.original, group[0])
        if is_lazy(source):
            return
        new = converted(source, self.device, self.dtype, copy=True)
        if isinstance(source, nn.Parameter):
            new = nn.Parameter(new, source.requires_grad)
        for fqn in group:
            _assign(self.staging, fqn, new)

    def _finish(self, group: list[str]) -> None:
        """Write the tensor's shard (a buffer whole) under each of its names, then drop it."""
        full = _tensor(self.staging, group[0])
        value = next((self.values[fqn] for fqn in group if fqn in self.values), None)
        with torch.no_grad():
            full = converted(full, self.device, self.dtype, copy=False)  # as the final module.to(dtype)
            if value is not None:  # a load copies into the tensor: its dtype, on its device
                full = value.to(device=self.device, dtype=full.dtype)
            for fqn in group:
                write_shard(_tensor(self.sharded, fqn), full)
        meta = torch.empty_like(full, device=META)
        for fqn in group:
            old = _tensor(self.staging, fqn)
            _assign(self.staging, fqn, nn.Parameter(meta, old.requires_grad) if isinstance(old, nn.Parameter) else meta)


def write_shard(target: torch.Tensor, full: torch.Tensor) -> None:
    """Copy this rank's part of ``full`` into ``target``: its local shard for a DTensor (no
    communication: every rank holds the same full tensor), all of it for a plain tensor."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(target, DTensor):
        local = distribute_tensor(full.detach(), target.device_mesh, target.placements, src_data_rank=None)
        target.to_local().copy_(local.to_local())
    else:
        target.copy_(full)
