"""U-Net (Ronneberger et al. 2015) with lazy layers: four max-poolings on the way down,
LazyConvTranspose2d upsampling on the way up, and each decoder stage concatenating
(``torch.cat``) the encoder's features with the upsampled ones. Padded convolutions,
so the output has the input's size when it is divisible by 16."""

from __future__ import annotations

import torch
import torch.nn as nn


class DoubleConv(nn.Sequential):
    def __init__(self, out: int):
        super().__init__(
            nn.LazyConv2d(out, 3, padding=1, bias=False), nn.LazyBatchNorm2d(), nn.ReLU(inplace=True),
            nn.LazyConv2d(out, 3, padding=1, bias=False), nn.LazyBatchNorm2d(), nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    def __init__(self, out: int):
        super().__init__()
        self.up = nn.LazyConvTranspose2d(out, 2, stride=2)
        self.conv = DoubleConv(out)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    def __init__(self, classes: int = 2, base: int = 4):
        super().__init__()
        widths = [base * 2**i for i in range(5)]
        self.inc = DoubleConv(widths[0])
        self.down = nn.ModuleList(DoubleConv(w) for w in widths[1:])
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(Up(w) for w in reversed(widths[:-1]))
        self.outc = nn.LazyConv2d(classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(self.pool(skips[-1])))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)
