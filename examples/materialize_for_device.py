"""Prepare a lazy model ahead of time: parameters straight on the target device,
or on the meta device (no memory at all) for FSDP-style deferred initialization.

Run: python examples/materialize_for_device.py
"""

import torch
import torch.nn as nn

import lazyfx


def build():
    return nn.Sequential(
        nn.LazyConv2d(64, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(1000),
    )


device = "cuda" if torch.cuda.is_available() else "cpu"
model = lazyfx.materialize(build(), ("B", 3, 224, 224), device=device, dtype=torch.bfloat16, seed=0)
print({name: (tuple(p.shape), str(p.device), str(p.dtype)) for name, p in model.named_parameters()})

# On the meta device nothing is allocated; to_empty + reset_parameters initializes later.
meta = lazyfx.materialize(build(), ("B", 3, 224, 224), device="meta")
print("meta parameters:", sum(p.numel() for p in meta.parameters()), "elements, 0 bytes allocated")
meta.to_empty(device="cpu")
for module in meta.modules():
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
print("after to_empty:", meta(torch.randn(2, 3, 224, 224)).shape)

# A materialized model is a plain eager model: it scripts, deep-copies and checkpoints.
scripted = torch.jit.script(lazyfx.materialize(build(), ("B", 3, 32, 32)))
print("scripted:", type(scripted).__name__)
