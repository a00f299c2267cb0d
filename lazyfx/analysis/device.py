"""Forward as in a dry run on the target device, with every tensor on meta.

Torch-function modes that answer ``x.device`` (and ``is_cuda``, ``is_cpu``, ``is_meta``)
with the target device (:mod:`lazyfx.core.target`) and, for abstract execution, put every
tensor forward creates or moves onto meta.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch
from torch.overrides import TorchFunctionMode

from lazyfx.analysis.randomness import device_given
from lazyfx.core.target import DEVICE_ATTRIBUTES, TARGET_DEVICE

_META = torch.device("meta")
_CPU = torch.device("cpu")
# Tensors made from Python data keep their values, on cpu, as before a model's data exists.
_FROM_DATA = (torch.tensor, torch.as_tensor, torch.asarray, torch.scalar_tensor)
_DEVICE_PROPERTIES = {getattr(torch.Tensor, name): answer for name, answer in DEVICE_ATTRIBUTES.items()}


class _AnswersTarget(TorchFunctionMode):
    """``x.device`` (and ``is_cuda``, ``is_cpu``, ``is_meta``) answer ``target``, as in a dry run
    on it: a lazy module's own initialization runs on shape-only (meta) inputs, its tensors
    created on ``target``."""

    def __init__(self, target: torch.device) -> None:
        super().__init__()
        self.target = target

    def __torch_function__(self, func, types, args=(), kwargs=None):
        answer = _DEVICE_PROPERTIES.get(getattr(func, "__self__", None))
        if answer is not None:
            return answer(self.target)
        return self.run(func, args, dict(kwargs or {}))

    def run(self, func, args, kwargs):
        return func(*args, **kwargs)


def answering_target_device(device: Optional[torch.device] = None, onto_meta: bool = False) -> TorchFunctionMode:
    """Within the block ``.device`` answers ``device`` (the analysis' target device where None);
    with ``onto_meta``, a tensor created on or moved to a given device lands on meta (see
    :class:`_OnTarget`), while one created without a device stays where PyTorch puts it, as in
    a dry run (``torch.arange(n)`` meets ``torch.tensor(sizes)`` there)."""
    target = torch.device(device) if device is not None else TARGET_DEVICE.get()
    return _OnTarget(target) if onto_meta else _AnswersTarget(target)


class _OnTarget(_AnswersTarget):
    """Forward as in a dry run on ``target``, with every tensor on meta: ``x.device`` (and
    ``is_cuda``, ``is_cpu``, ``is_meta``) answer ``target``, and a tensor created or moved to
    any device (``torch.zeros(n, 16)``, ``device=x.device``, ``.to(x.device)``, ``.cuda()``)
    lands on meta, beside the inputs."""

    def run(self, func, args, kwargs):
        if func in _FROM_DATA:  # Python data (``torch.tensor(x.shape[-1])``): its values matter
            kwargs["device"] = _CPU
        elif kwargs.get("device") is not None:
            kwargs["device"] = _META
            with device_given():  # a draw it makes is on the device forward named, not the default one
                return func(*args, **kwargs)
        if func in (torch.Tensor.cuda, torch.Tensor.cpu):
            return args[0]
        if func is torch.Tensor.to:
            args = (args[0], *(_META if _is_device(a) else a for a in args[1:]))
        return func(*args, **kwargs)


def _is_device(value: Any) -> bool:
    return isinstance(value, torch.device) or isinstance(value, str) or (isinstance(value, int)
                                                                       and not isinstance(value, bool))


@contextlib.contextmanager
def on_meta_as_target() -> Iterator[None]:
    """Factories default to meta and ``.device`` answers the target device (see :class:`_OnTarget`)."""
    with torch.device(_META), _OnTarget(TARGET_DEVICE.get()):
        yield
