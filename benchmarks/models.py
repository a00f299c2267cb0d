"""Lazy models of real sizes for the benchmarks, with their hand-written eager twins."""

from __future__ import annotations

import torch.nn as nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, width: int, stride: int, downsample: bool, lazy: bool, in_channels: int = 0):
        super().__init__()
        out = width * self.expansion
        if lazy:
            conv = lambda o, k, s=1, p=0: nn.LazyConv2d(o, k, stride=s, padding=p, bias=False)  # noqa: E731
            bn = lambda c: nn.LazyBatchNorm2d()  # noqa: E731
            inputs = [None, width, width]
        else:
            conv = None
            inputs = [in_channels, width, width]
        make = (lambda i, o, k, s=1, p=0: nn.Conv2d(i, o, k, stride=s, padding=p, bias=False))
        self.conv1 = conv(width, 1) if lazy else make(inputs[0], width, 1)
        self.bn1 = bn(width) if lazy else nn.BatchNorm2d(width)
        self.conv2 = conv(width, 3, stride, 1) if lazy else make(width, width, 3, stride, 1)
        self.bn2 = bn(width) if lazy else nn.BatchNorm2d(width)
        self.conv3 = conv(out, 1) if lazy else make(width, out, 1)
        self.bn3 = bn(out) if lazy else nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if downsample:
            self.downsample = nn.Sequential(
                conv(out, 1, stride) if lazy else make(in_channels, out, 1, stride),
                bn(out) if lazy else nn.BatchNorm2d(out),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet50(nn.Module):
    """ResNet-50 (25.6M parameters); ``lazy=True`` builds it from lazy modules only."""

    def __init__(self, lazy: bool = True, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.LazyConv2d(64, 7, stride=2, padding=3, bias=False) if lazy else \
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.LazyBatchNorm2d() if lazy else nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers, channels = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for i in range(blocks):
                stage.append(Bottleneck(width, stride if i == 0 else 1, i == 0, lazy, channels))
                channels = width * 4
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.LazyLinear(num_classes) if lazy else nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))
