"""A lazy CNN and a lazy transformer, for the integration matrix."""

import torch.nn as nn


class LazyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.LazyConv2d(8, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(2),
            nn.LazyConv2d(16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.LazyLinear(5)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class LazyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.LazyLinear(16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.mlp = nn.Sequential(nn.LazyLinear(32), nn.GELU(), nn.LazyLinear(16))
        self.head = nn.LazyLinear(3)

    def forward(self, x):
        h = self.proj(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        h = self.norm(h + a)
        h = h + self.mlp(h)
        return self.head(h.mean(1))


MODELS = {
    "cnn": (LazyCNN, ("B", 3, 16, 16), (2, 3, 16, 16)),
    "transformer": (LazyTransformer, ("B", "T", 7), (2, 5, 7)),
}
