"""A sample model for `lazyfx fix` (tests/test_fix.py) with lazy calls it must leave alone,
next to one it rewrites. Input: (B, 3, 16, 16)."""

import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter


class LazyScale(LazyModuleMixin, nn.Module):
    """A user's own lazy layer: not one of PyTorch's built-in lazy classes."""

    cls_to_become = None

    def __init__(self) -> None:
        super().__init__()
        self.scale = UninitializedParameter()

    def initialize_parameters(self, x):
        if self.has_uninitialized_params():
            self.scale.materialize((x.shape[1], 1, 1))
            nn.init.ones_(self.scale)

    def forward(self, x):
        return x * self.scale


Lazy = nn.LazyLinear  # an alias: the call does not say which class it builds


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers = []
        for width in (16, 32):  # one call, two modules: in_channels 3, then 16
            layers += [nn.LazyConv2d(width, 3), nn.ReLU()]
        self.features = nn.Sequential(*layers, LazyScale(), nn.Flatten())
        sizes = (64,)
        self.hidden = nn.LazyLinear(*sizes)
        self.head = Lazy(10)
        self.out = nn.LazyLinear(4)
        self.spare = nn.LazyLinear(4)  # never called

    def forward(self, x):
        return self.out(self.head(self.hidden(self.features(x))))
