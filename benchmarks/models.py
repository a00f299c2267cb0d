"""Lazy models of real sizes for the benchmarks, with their hand-written eager twins."""

from __future__ import annotations

import torch
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


class Layers:
    """Builds a layer lazily (``nn.LazyLinear(out)``) or eagerly (``nn.Linear(in, out)``), so
    that one model definition gives both the lazy model and its hand-written eager twin."""

    def __init__(self, lazy: bool) -> None:
        self.lazy = lazy

    def linear(self, fan_in: int, out: int, **kw) -> nn.Module:
        return nn.LazyLinear(out, **kw) if self.lazy else nn.Linear(fan_in, out, **kw)

    def conv(self, fan_in: int, out: int, *args, **kw) -> nn.Module:
        return nn.LazyConv2d(out, *args, **kw) if self.lazy else nn.Conv2d(fan_in, out, *args, **kw)

    def conv_transpose(self, fan_in: int, out: int, *args, **kw) -> nn.Module:
        return nn.LazyConvTranspose2d(out, *args, **kw) if self.lazy else nn.ConvTranspose2d(fan_in, out, *args, **kw)

    def batch_norm(self, channels: int) -> nn.Module:
        return nn.LazyBatchNorm2d() if self.lazy else nn.BatchNorm2d(channels)


class ViTBlock(nn.Module):
    def __init__(self, width: int, heads: int, make: Layers):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.qkv = make.linear(width, 3 * width)
        self.proj = make.linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(make.linear(width, 4 * width), nn.GELU(), make.linear(4 * width, width))
        self.heads = heads

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attention = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attention.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A ViT-B/16-shaped model (86M parameters at depth 12, width 768)."""

    def __init__(self, lazy: bool = True, width: int = 768, depth: int = 12, heads: int = 12, image: int = 224,
                 patch: int = 16):
        super().__init__()
        make = Layers(lazy)
        self.patch = make.conv(3, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, width))
        self.blocks = nn.Sequential(*[ViTBlock(width, heads, make) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = make.linear(width, 1000)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


class UNet(nn.Module):
    """A UNet: 4 poolings, transposed-conv upsampling, skip concatenation."""

    def __init__(self, lazy: bool = True, width: int = 32, depth: int = 4):
        super().__init__()
        make = Layers(lazy)
        widths = [width * 2 ** i for i in range(depth)]
        ins = [3] + widths[:-1]
        self.down = nn.ModuleList([
            nn.Sequential(make.conv(i, w, 3, padding=1), make.batch_norm(w), nn.ReLU(),
                          make.conv(w, w, 3, padding=1), nn.ReLU())
            for i, w in zip(ins, widths)
        ])
        self.bottom = make.conv(widths[-1], widths[-1] * 2, 3, padding=1)
        self.up = nn.ModuleList([make.conv_transpose(2 * w, w, 2, stride=2) for w in reversed(widths)])
        self.fuse = nn.ModuleList([nn.Sequential(make.conv(2 * w, w, 3, padding=1), nn.ReLU())
                                   for w in reversed(widths)])
        self.pool = nn.MaxPool2d(2)
        self.out = make.conv(widths[0], 2, 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips)):
            x = fuse(torch.cat([up(x), skip], 1))
        return self.out(x)


class GPTBlock(nn.Module):
    def __init__(self, width: int, heads: int, make: Layers):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = make.linear(width, 3 * width), make.linear(width, width)
        self.up, self.down = make.linear(width, 4 * width), make.linear(4 * width, width)
        self.heads = heads

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm2(x))))


class GPT(nn.Module):
    """A GPT-2-shaped decoder; GPT(width=2048, depth=24, heads=16) has about 1.3B parameters."""

    def __init__(self, lazy: bool = True, width: int = 768, depth: int = 12, heads: int = 12, vocab: int = 50304,
                 context: int = 1024):
        super().__init__()
        make = Layers(lazy)
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*[GPTBlock(width, heads, make) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = make.linear(width, vocab, bias=False)

    def forward(self, idx):
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tokens(idx) + self.positions(positions)
        return self.head(self.norm(self.blocks(x)))
