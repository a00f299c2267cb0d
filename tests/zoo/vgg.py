"""VGG-11 with batch norm (configuration "A" of Simonyan & Zisserman), with lazy layers.

``pool=None`` drops the adaptive pooling, so that the first classifier layer's
``in_features`` depends on the input's spatial sizes (as in the original VGG,
which fixed the input at 224x224). ``nonfinite="replace"`` makes forward replace NaN and infinite
input values, ``nonfinite="raise"`` makes it reject such inputs: a branch on tensor values, which
torch.fx cannot trace (lazyfx then analyses the model by abstract execution)."""

from __future__ import annotations

import torch
import torch.nn as nn

CONFIG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(nn.Module):
    def __init__(self, num_classes: int = 10, scale: int = 16, hidden: int = 32, pool=(2, 2),
                 nonfinite: str | None = None):
        super().__init__()
        self.nonfinite = nonfinite
        layers: list[nn.Module] = []
        for v in CONFIG_A:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.LazyConv2d(v // scale, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pool) if pool is not None else nn.Identity()
        self.classifier = nn.Sequential(
            nn.LazyLinear(hidden), nn.ReLU(True), nn.Dropout(),
            nn.LazyLinear(hidden), nn.ReLU(True), nn.Dropout(),
            nn.LazyLinear(num_classes),
        )

    def forward(self, x):
        if self.nonfinite is not None and not torch.isfinite(x).all():  # <- finite
            if self.nonfinite == "raise":
                raise ValueError("the input has NaN or infinite values")
            x = torch.nan_to_num(x)
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))
