"""MobileNetV2 (Sandler et al. 2018) with lazy layers: inverted residual blocks whose
depthwise 3x3 convolution is a LazyConv2d with ``groups`` equal to its channels."""

from __future__ import annotations

import torch.nn as nn


def conv_bn_relu(out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.LazyConv2d(out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.LazyBatchNorm2d(),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu(hidden, 1))  # pointwise expansion
        layers += [
            conv_bn_relu(hidden, 3, stride, groups=hidden),  # depthwise
            nn.LazyConv2d(out, 1, bias=False),  # pointwise linear projection
            nn.LazyBatchNorm2d(),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    # t (expansion), c (channels), n (repeats), s (stride); channels scaled down by the factory
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 10, scale: int = 8, repeats: int = 2, last: int = 64):
        super().__init__()
        channels = 32 // scale
        features: list[nn.Module] = [conv_bn_relu(channels, 3, stride=2)]
        for t, c, n, s in self.SETTINGS:
            out = max(c // scale, 2)
            for i in range(min(n, repeats)):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(conv_bn_relu(last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.LazyLinear(num_classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(x.flatten(1))
