"""A Vision Transformer (Dosovitskiy et al. 2021) with lazy layers: a patch-embedding
LazyConv2d, a class token (an ``nn.Parameter``, ``expand``-ed over the batch and
concatenated), a learned positional embedding (an ``nn.Parameter`` of a fixed number of
patches: it fixes the input's spatial size), ``nn.TransformerEncoder`` (batch_first)
and a LazyLinear head on the class token."""

from __future__ import annotations

import torch
import torch.nn as nn


class ViT(nn.Module):
    def __init__(self, image_size: int = 16, patch: int = 4, dim: int = 16, depth: int = 2, heads: int = 2,
                 num_classes: int = 10):
        super().__init__()
        patches = (image_size // patch) ** 2
        self.patch_embed = nn.LazyConv2d(dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, patches + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.1, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.LazyLinear(num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, patches, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.encoder(x)
        return self.head(x[:, 0])
