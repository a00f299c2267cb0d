"""Lazy layers that are not PyTorch's built-in ones, for the generic-resolution tests."""

import math, torch, torch.nn as nn, torch.nn.functional as F
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter
from torch.nn.modules.lazy import LazyModuleMixin

class LazyScale(LazyModuleMixin, nn.Module):
    """A user's own lazy layer: a per-channel scale and a projection to `out` features."""
    cls_to_become = None
    def __init__(self, out):
        super().__init__()
        self.out = out
        self.channels = 0
        self.scale = UninitializedParameter()
        self.proj = UninitializedParameter()
    def initialize_parameters(self, x):
        if self.has_uninitialized_params():
            self.channels = x.shape[-1]
            self.scale.materialize((self.channels,))
            self.proj.materialize((self.out, self.channels))
            self.reset_parameters()
    def reset_parameters(self):
        if not self.has_uninitialized_params():
            nn.init.ones_(self.scale)
            nn.init.kaiming_uniform_(self.proj, a=math.sqrt(5))
    def forward(self, x):
        return F.linear(x * self.scale, self.proj)

class PygLinear(nn.Module):
    """Shaped like torch_geometric.nn.Linear(-1, out): no LazyModuleMixin, a pre-hook materializes."""
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        if in_channels > 0:
            self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        else:
            self.weight = UninitializedParameter()
            self._hook = self.register_forward_pre_hook(self.initialize_parameters)
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()
    def reset_parameters(self):
        if self.in_channels > 0:
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.zeros_(self.bias)
    @torch.no_grad()
    def initialize_parameters(self, module, input):
        if isinstance(self.weight, UninitializedParameter):
            self.in_channels = input[0].size(-1)
            self.weight.materialize((self.out_channels, self.in_channels))
            self.reset_parameters()
        self._hook.remove()
        delattr(self, "_hook")
    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

class LazyGate(LazyModuleMixin, nn.Linear):
    """A user's lazy layer that becomes an eager nn.Linear (like the built-in ones do)."""

    cls_to_become = nn.Linear
    weight: UninitializedParameter

    def __init__(self, out_features):
        super().__init__(0, out_features, bias=False)
        self.weight = UninitializedParameter()

    def initialize_parameters(self, x):
        if self.has_uninitialized_params():
            self.in_features = x.shape[-1]
            self.weight.materialize((self.out_features, self.in_features))
            self.reset_parameters()

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.in_features:
            nn.init.orthogonal_(self.weight)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = PygLinear(-1, 8)
        self.s = LazyScale(6)
        self.g = LazyGate(4)
        self.fc = nn.LazyLinear(2)
    def forward(self, x):
        return self.fc(self.g(torch.relu(self.s(self.a(x)))))


class LazyStateDependentNoise(LazyModuleMixin, nn.Module):
    """gSDE-style exploration noise: a log-std per (feature, action) and an exploration matrix
    drawn from it. ``fit``: the scale is fitted to the first features seen (their values), with
    a fallback when they are all zero (a branch on values); without it only sizes are read."""

    cls_to_become = None

    def __init__(self, actions, fit="none"):
        super().__init__()
        self.actions, self.fit = actions, fit
        self.log_std = UninitializedParameter()
        self.register_buffer("exploration", UninitializedBuffer())

    def initialize_parameters(self, features):
        if self.has_uninitialized_params():
            n = features.shape[-1]
            self.log_std.materialize((n, self.actions))
            self.exploration.materialize((n, self.actions))
            with torch.no_grad():
                if self.fit == "none":
                    self.log_std.fill_(-0.5)
                else:
                    scale = features.abs().mean(0)
                    if self.fit == "branch" and (scale == 0).all():  # <- reads the features' values
                        scale = torch.ones_like(scale)
                    self.log_std.copy_(scale.log().unsqueeze(1).expand(n, self.actions))  # <- stores them
                self.exploration.normal_()
                self.exploration.mul_(self.log_std.exp())

    def forward(self, features):
        return features @ self.exploration


class LazyBilinear(LazyModuleMixin, nn.Bilinear):
    """A user's lazy layer with two inputs that becomes an eager nn.Bilinear."""

    cls_to_become = nn.Bilinear
    weight: UninitializedParameter

    def __init__(self, out_features):
        super().__init__(0, 0, out_features)
        self.weight = UninitializedParameter()

    def initialize_parameters(self, x1, x2):
        if self.has_uninitialized_params():
            self.in1_features, self.in2_features = x1.shape[-1], x2.shape[-1]
            self.weight.materialize((self.out_features, self.in1_features, self.in2_features))
            self.reset_parameters()

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.in1_features:
            super().reset_parameters()


class LazyFlatBilinear(LazyBilinear):
    """A lazy bilinear with a forward of its own. A dry run's first call runs it (PyTorch reads
    ``self.forward`` before the pre-hook switches the class), so Bilinear's rule does not apply."""

    def forward(self, x1, x2):
        return F.bilinear(x1, x2, self.weight, self.bias).flatten()


class Pair(nn.Module):
    def __init__(self, bilinear=LazyBilinear):
        super().__init__()
        self.bilinear = bilinear(3)
        self.fc = nn.LazyLinear(2)

    def forward(self, a, b):
        return self.fc(torch.relu(self.bilinear(a, b)))


class LazyMLP(LazyModuleMixin, nn.Sequential):
    """A lazy container: no lazy tensor of its own, its layers are lazy. It becomes nn.Sequential."""

    cls_to_become = nn.Sequential

    def __init__(self, *widths):
        layers = []
        for width in widths:
            layers += [nn.LazyLinear(width), nn.ReLU()]
        super().__init__(*layers[:-1])

    def initialize_parameters(self, *inputs):
        pass  # the layers initialize themselves


class LazyWidthMLP(LazyMLP):
    """A lazy container whose initialization records its input width: lazyfx traces its forward as
    it is before that, so it refuses it."""

    def initialize_parameters(self, x):
        self.in_features = x.shape[-1]


class Classifier(nn.Module):
    def __init__(self, mlp=LazyMLP):
        super().__init__()
        self.mlp = mlp(8, 4)
        self.head = nn.LazyLinear(2)

    def forward(self, x):
        return self.head(self.mlp(x))


class LazyEagerMLP(LazyMLP):
    """A lazy container whose initialization initializes its first layer itself."""

    def initialize_parameters(self, x):
        self[0].initialize_parameters(x)
