"""A small GoogLeNet: Inception blocks (four branches concatenated) and two auxiliary
classifiers that forward calls only in training mode, between the blocks, each with dropout
between its two lazy linear layers, and dropout before the lazy main head. A training-mode dry
run initializes the auxiliary heads where forward reaches them, after dropout has drawn from
the generator; an eval-mode one never reaches them."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(out: int, kernel: int = 1, **options) -> nn.Sequential:
    return nn.Sequential(nn.LazyConv2d(out, kernel, **options), nn.ReLU(inplace=True))


class Inception(nn.Module):
    def __init__(self, b1: int, b3: tuple[int, int], b5: tuple[int, int], pool: int):
        super().__init__()
        self.branch1 = conv(b1)
        self.branch3 = nn.Sequential(conv(b3[0]), conv(b3[1], 3, padding=1))
        self.branch5 = nn.Sequential(conv(b5[0]), conv(b5[1], 3, padding=1))  # torchvision's 3x3 "5x5"
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(pool))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1)


class AuxHead(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.conv = conv(8)
        self.fc1 = nn.LazyLinear(32)
        self.fc2 = nn.LazyLinear(classes)

    def forward(self, x):
        x = self.conv(F.adaptive_avg_pool2d(x, (2, 2)))
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        x = F.dropout(x, 0.7, training=self.training)
        return self.fc2(x)


class GoogLeNet(nn.Module):
    def __init__(self, classes: int = 10, aux_logits: bool = True):
        super().__init__()
        self.stem = nn.Sequential(conv(8, 3, padding=1), nn.MaxPool2d(2), conv(16, 3, padding=1))
        self.block3 = Inception(8, (8, 12), (4, 4), 4)  # 28 channels
        self.pool3 = nn.MaxPool2d(2)
        self.block4a = Inception(12, (8, 16), (4, 8), 4)  # 40
        self.block4b = Inception(12, (8, 16), (4, 8), 8)  # 44
        self.block4c = Inception(16, (8, 16), (4, 8), 8)  # 48
        self.aux1 = AuxHead(classes) if aux_logits else None
        self.aux2 = AuxHead(classes) if aux_logits else None
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.LazyLinear(classes)

    def forward(self, x):
        x = self.pool3(self.block3(self.stem(x)))
        x = self.block4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.block4b(x)
        x = self.block4c(x)
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        logits = self.fc(self.dropout(x))
        if self.training and self.aux1 is not None:
            return logits, aux2, aux1
        return logits
