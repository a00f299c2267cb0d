"""A sample model for `lazyfx fix` (tests/test_fix.py): the built-in lazy families in the
import styles and call forms the fixer rewrites. Input: (B, 3, 32, 32)."""

import torch
import torch.nn as nn
from torch.nn import LazyBatchNorm1d, LazyLinear, ReLU


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.LazyConv2d(32, 3, stride=2),  # halves the resolution
            nn.LazyBatchNorm2d(),
            ReLU(),
        )
        self.block = nn.Sequential(
            torch.nn.LazyConv2d(
                out_channels=64,
                kernel_size=3,
                padding=1,  # keeps the size
            ),
            nn.LazyInstanceNorm2d(affine=True),
            nn.ReLU(),
        )
        self.up = nn.LazyConvTranspose2d(16, 2, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(4)

    def forward(self, x):
        return self.pool(self.up(self.block(self.stem(x))))


class Net(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.mix = nn.Sequential(nn.LazyConv1d(8, 3), LazyBatchNorm1d(momentum=0.01))
        self.fc = LazyLinear(out_features=64, bias=False)
        # two heads on the same features: one call builds both
        self.heads = nn.ModuleList([LazyLinear(classes) for _ in range(2)])

    def forward(self, x):
        features = self.encoder(x).flatten(2)  # (B, 16, 16)
        hidden = torch.relu(self.fc(self.mix(features).flatten(1)))
        return self.heads[0](hidden) + self.heads[1](hidden)
