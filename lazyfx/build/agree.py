"""The ranks of a sharded build agree before anything is sharded.

Every rank of ``materialize(..., mesh=...)`` must be called with the same
arguments, as with ``fully_shard``; a rank called differently, or one whose
checks or analysis fail alone, would otherwise leave the others waiting in a
collective or build a model whose shards do not fit together. Each rank
digests its arguments and what the analysis resolved (:func:`fingerprint`),
and :func:`agreed` compares the digests in one ``all_gather`` that every rank
reaches, whether its own preparation succeeded or failed; a failure or a
mismatch is then raised on every rank alike.

torch.distributed is imported where it is used: ``import lazyfx`` does not pay
for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import pickle
from typing import Any, Iterator, Mapping, Optional

import torch
import torch.nn as nn
from torch.nn.parameter import is_lazy

from lazyfx.analysis.resolve import LazyModuleRecord
from lazyfx.core import diagnostics
from lazyfx.core.diagnostics import Diagnostic, first_line
from lazyfx.errors import LazyFXError, MaterializeError, SpecError


def _described(value: Any) -> Any:
    """A value as it enters the fingerprint: tensors by shape, dtype and device type."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), str(value.dtype), value.device.type)
    if isinstance(value, (list, tuple)):
        return type(value).__name__, tuple(_described(v) for v in value)
    if isinstance(value, Mapping):
        return tuple((str(k), _described(v)) for k, v in value.items())
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", type(value).__name__)
    return repr(value)


def fingerprint(**fields: Any) -> dict[str, str]:
    """A short digest of each argument (and of what the analysis resolved), to compare ranks."""
    return {name: hashlib.sha256(repr(_described(value)).encode()).hexdigest()[:16]
            for name, value in fields.items()}


def model_layout(model: nn.Module) -> list:
    """The given model's modules (paths, classes, modes) and tensors (names, shapes, dtypes, and
    a sample of the values of those that have values: ranks whose eager layers were initialized
    from different seeds differ there)."""
    tensors = [(name, "lazy" if is_lazy(t) else tuple(t.shape), str(t.dtype), _sample(t))
               for name, t in (*model.named_parameters(remove_duplicate=False),
                               *model.named_buffers(remove_duplicate=False))]
    modules = [(p, type(m).__qualname__, m.training) for p, m in model.named_modules()]
    return [type(model).__qualname__, modules, tensors]


def _sample(tensor: torch.Tensor) -> Optional[bytes]:
    """Up to 64 of the tensor's values, evenly spaced, as bytes (None without values)."""
    if is_lazy(tensor) or tensor.is_meta or tensor.numel() == 0:
        return None
    flat = tensor.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // 64)].cpu().numpy().tobytes()


def rng_state(seed: Optional[int], device: torch.device) -> Optional[bytes]:
    """Without a seed, the generator state the initialization starts from (every rank must have
    the same, or their shards come from different streams)."""
    if seed is not None:
        return None
    state = torch.get_rng_state().numpy().tobytes()
    if device.type == "cuda":
        state += torch.cuda.get_rng_state(device).numpy().tobytes()
    return state


def resolved_layout(records: Mapping[str, LazyModuleRecord], state_dict: Any) -> list:
    sizes = [(path, r.resolution.arguments, r.resolution.parameter_shapes) for path, r in records.items()]
    keys = None if state_dict is None else [(k, tuple(v.shape), str(v.dtype)) for k, v in state_dict.items()]
    return [sizes, keys]


# --- the agreement: one all_gather that every rank reaches ----------------------------------------

@dataclasses.dataclass
class Agreement:
    """What a rank brings to the agreement: its fingerprint, or the error it raised."""

    fingerprint: Optional[dict[str, str]] = None
    error: Optional[LazyFXError] = None


@contextlib.contextmanager
def agreed(mesh) -> Iterator[Agreement]:
    """Run the block (a rank's checks and analysis), then compare the ranks of ``mesh`` in one
    ``all_gather``: every rank raises the same error if one failed (the first failing rank's) or
    if their fingerprints differ. A rank that fails reaches the gather too, so none waits."""
    import torch.distributed as dist

    mine = Agreement()
    try:
        yield mine
    except LazyFXError as exc:
        mine.error = exc
    except Exception as exc:  # anything else that fails on one rank must not leave the others waiting
        mine.error = MaterializeError(f"preparing the sharded build failed: {type(exc).__name__}: "
                                      f"{first_line(exc)}")
        mine.error.__cause__ = exc
    rank = dist.get_rank()
    gathered = [(rank, mine.fingerprint, _portable(mine.error))]
    for group in mesh.get_all_groups():  # each mesh dimension in turn: every rank ends up with all
        lists: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(lists, gathered, group=group)
        gathered = sorted({entry[0]: entry for part in lists for entry in part}.values(), key=lambda e: e[0])
    failed = [(r, error) for r, _, error in gathered if error is not None]
    if failed:
        first, (cls, diags) = failed[0]
        others = ", ".join(str(r) for r, _ in failed[1:])
        note = (f"raised on rank {first} of {len(gathered)}{f' (and on ranks {others})' if others else ''}; "
                f"every rank of the mesh raises it")
        error = cls(diagnostics=[dataclasses.replace(d, notes=d.notes + (note,)) for d in diags])
        if mine.error is not None and rank == first:
            raise error from mine.error
        raise error
    reference = gathered[0][1]
    for other, prints, _ in gathered[1:]:
        differ = [name for name in reference if prints.get(name) != reference[name]]
        if differ:
            raise SpecError(
                f"the ranks called materialize(mesh=...) differently: rank {other}'s {', '.join(differ)} "
                f"differ{'s' if len(differ) == 1 else ''} from rank {gathered[0][0]}'s",
                code=diagnostics.RANKS_DISAGREE,
                notes=["every rank must call materialize with the same model, inputs and options, as with "
                       "fully_shard; nothing was sharded"],
            )


def _portable(error: Optional[LazyFXError]) -> Optional[tuple]:
    """An error as it travels to the other ranks: its class and diagnostics, made of plain values
    (pickling must not fail here: that rank would leave the gather)."""
    if error is None:
        return None
    diagnostics_ = [dataclasses.replace(d, op=None if d.op is None else str(d.op), notes=tuple(map(str, d.notes)))
                    for d in error.diagnostics]
    try:
        pickle.dumps((type(error), diagnostics_))
    except Exception:  # a user's subclass, say: the message still travels
        return LazyFXError, [Diagnostic(d.code, d.message, severity=d.severity, module_path=d.module_path,
                                        location=d.location, notes=d.notes) for d in diagnostics_]
    return type(error), diagnostics_


