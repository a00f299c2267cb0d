import torch.nn as nn


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.LazyConv2d(32, 3, stride=2, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.LazyConv2d(64, 3, stride=2, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        # The deliberate bug: the pooled features have 64 * 4 * 4 = 1024 values, not 64 * 8 * 8.
        self.head = nn.Linear(64 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
