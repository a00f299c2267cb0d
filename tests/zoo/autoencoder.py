"""A convolutional autoencoder: a strided LazyConv2d encoder, a linear bottleneck and a
LazyConvTranspose2d decoder that restores the input's size (for sizes divisible by 4); its
forward checks that the reconstruction has the input's shape, as a reconstruction loss needs."""

from __future__ import annotations

import torch.nn as nn


class ConvAutoencoder(nn.Module):
    def __init__(self, channels: int = 3, width: int = 4):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.LazyConv2d(width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.LazyConv2d(2 * width, 3, stride=2, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(inplace=True),
        )
        self.bottleneck = nn.LazyConv2d(2 * width, 1)
        self.decoder = nn.Sequential(
            nn.LazyConvTranspose2d(width, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True),
            nn.LazyConvTranspose2d(channels, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
        )

    def forward(self, x):
        out = self.decoder(self.bottleneck(self.encoder(x)))
        assert out.shape == x.shape, "the input's height and width must be multiples of 4"  # <- reconstruction
        return out
