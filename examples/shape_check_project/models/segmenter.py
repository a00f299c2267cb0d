import torch
import torch.nn as nn


class Segmenter(nn.Module):
    """Two poolings down, two transposed convolutions up, one skip connection."""

    def __init__(self, classes=2):
        super().__init__()
        self.enc1 = nn.Sequential(nn.LazyConv2d(16, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), nn.LazyConv2d(32, 3, padding=1), nn.ReLU())
        self.bottom = nn.Sequential(nn.MaxPool2d(2), nn.LazyConv2d(64, 3, padding=1), nn.ReLU())
        self.up2 = nn.LazyConvTranspose2d(32, 2, stride=2)
        self.up1 = nn.LazyConvTranspose2d(16, 2, stride=2)
        self.out = nn.LazyConv2d(classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        x = self.up2(self.bottom(e2)) + e2
        return self.out(torch.cat([self.up1(x), e1], dim=1))
