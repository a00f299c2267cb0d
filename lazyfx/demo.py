"""A small lazy CNN bundled with lazyfx, for the quick start:

    lazyfx show lazyfx.demo:Net --input B,3,32,32
"""

import torch.nn as nn


class Net(nn.Module):
    """Two lazy convolutions, a lazy batch norm and a lazy classifier head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.LazyConv2d(32, 3, stride=2),
            nn.LazyBatchNorm2d(),
            nn.ReLU(),
            nn.LazyConv2d(64, 3),
            nn.MaxPool2d(2),
        )
        self.head = nn.LazyLinear(num_classes)

    def forward(self, x):
        features = self.features(x)
        return self.head(features.flatten(1))
