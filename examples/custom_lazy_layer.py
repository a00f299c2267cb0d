"""Your own lazy layer: lazyfx resolves any LazyModuleMixin subclass by running its own
initialize_parameters on shape-only (meta) inputs, and materializes it with its own code.

Run: python examples/custom_lazy_layer.py
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

import lazyfx


class LazyFiLM(LazyModuleMixin, nn.Module):
    """Feature-wise modulation: scales and shifts each channel of x by a projection of a
    conditioning vector. Both the channel count and the conditioning size are inferred."""

    cls_to_become = None  # stays a LazyFiLM, with its lazy hooks removed once initialized

    def __init__(self):
        super().__init__()
        self.channels = 0
        self.cond_features = 0
        self.weight = UninitializedParameter()
        self.bias = UninitializedParameter()

    def initialize_parameters(self, x, cond):
        if self.has_uninitialized_params():
            self.channels, self.cond_features = x.shape[1], cond.shape[-1]
            self.weight.materialize((2 * self.channels, self.cond_features))
            self.bias.materialize((2 * self.channels,))
            self.reset_parameters()

    def reset_parameters(self):
        if not self.has_uninitialized_params():
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            nn.init.zeros_(self.bias)

    def forward(self, x, cond):
        scale, shift = F.linear(cond, self.weight, self.bias).chunk(2, dim=-1)
        return x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(32, 3, padding=1)
        self.film = LazyFiLM()
        self.out = nn.LazyConv2d(3, 1)

    def forward(self, x, cond):
        return self.out(torch.relu(self.film(self.conv(x), cond)))


report = lazyfx.infer(Generator(), ("B", 3, "H", "W"), ("B", 16))
print("output:", report.output)
print(report.lazy_summary())

# Materialized with the layer's own initialization, on the target device, with no lazy hooks left.
torch.manual_seed(0)
model = lazyfx.materialize(Generator(), ("B", 3, "H", "W"), ("B", 16))
print("film:", type(model.film).__name__, "channels =", model.film.channels,
      "cond_features =", model.film.cond_features, "weight", tuple(model.film.weight.shape))
print("lazy hooks left:", len(model.film._forward_pre_hooks))

# The same values as a dry run under the same seed.
torch.manual_seed(0)
dry = Generator()
dry(torch.zeros(1, 3, 8, 8), torch.zeros(1, 16))
print("bit-identical to a dry run:",
      all(torch.equal(a, b) for a, b in zip(dry.state_dict().values(), model.state_dict().values())))
