"""ResNet-18 (He et al. 2016) with lazy layers: BasicBlocks with residual adds and a
1x1-conv downsample branch, adaptive average pooling and a LazyLinear head."""

from __future__ import annotations

import torch.nn as nn


class BasicBlock(nn.Module):
    def __init__(self, width: int, stride: int = 1, downsample: bool = False):
        super().__init__()
        self.conv1 = nn.LazyConv2d(width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.LazyBatchNorm2d()
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.LazyConv2d(width, 3, padding=1, bias=False)
        self.bn2 = nn.LazyBatchNorm2d()
        self.downsample = (
            nn.Sequential(nn.LazyConv2d(width, 1, stride=stride, bias=False), nn.LazyBatchNorm2d())
            if downsample else None
        )

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10, widths=(4, 8, 16, 32), blocks=(2, 2, 2, 2)):
        super().__init__()
        self.conv1 = nn.LazyConv2d(widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.LazyBatchNorm2d()
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = widths[0]
        stages = []
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(width, stride, downsample=stride != 1 or channels != width)]
            layers += [BasicBlock(width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.LazyLinear(num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.fc(x.flatten(1))
