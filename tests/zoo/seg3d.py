"""A 3D segmentation network (a small 3D U-Net in the style of Cicek et al. 2016) with
lazy layers: LazyConv3d + LazyBatchNorm3d blocks, max-pooling, trilinear upsampling
(``nn.Upsample``) and skip concatenations."""

from __future__ import annotations

import torch
import torch.nn as nn


def block(out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LazyConv3d(out, 3, padding=1, bias=False), nn.LazyBatchNorm3d(), nn.ReLU(inplace=True),
        nn.LazyConv3d(out, 3, padding=1, bias=False), nn.LazyBatchNorm3d(), nn.ReLU(inplace=True),
    )


class Seg3D(nn.Module):
    def __init__(self, classes: int = 3, base: int = 2):
        super().__init__()
        self.enc1, self.enc2, self.bottom = block(base), block(2 * base), block(4 * base)
        self.pool = nn.MaxPool3d(2)
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.dec2, self.dec1 = block(2 * base), block(base)
        self.head = nn.LazyConv3d(classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([e2, self.up(b)], dim=1))
        d1 = self.dec1(torch.cat([e1, self.up(d2)], dim=1))
        return self.head(d1)
