"""The device a dry run would run on: what ``x.device`` answers while lazyfx analyses.

The analysis never runs on the user's device (shapes are symbolic, tensors live on meta),
but a forward may ask where its input is (``torch.zeros(n, device=x.device)``) and a
lazy module's initialization may read it. They get the answer a dry run on the target
device would give: cpu for ``infer``, ``materialize``'s device where it analyses.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch

# The device a dry run would run on: what ``x.device`` answers while forward runs on meta tensors.
TARGET_DEVICE: contextvars.ContextVar[torch.device] = contextvars.ContextVar("lazyfx_target_device",
                                                                              default=torch.device("cpu"))


@contextlib.contextmanager
def target_device(device) -> Iterator[None]:
    """Abstract execution within the block answers ``.device`` with ``device`` (a dry run on it)."""
    token = TARGET_DEVICE.set(torch.device(device))
    try:
        yield
    finally:
        TARGET_DEVICE.reset(token)


# What a tensor says about its device, from the device it is on: the tracer answers these
# from the target device too (a dry run's ``x.device``, not the analysis' "meta").
DEVICE_ATTRIBUTES = {"device": lambda d: d, "is_cuda": lambda d: d.type == "cuda",
                     "is_cpu": lambda d: d.type == "cpu", "is_meta": lambda d: d.type == "meta"}
