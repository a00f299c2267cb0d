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


# -- torchvision's classifiers, written as torchvision writes them --------------------------------
# (torchvision itself is not a dependency: its wheels for this torch need CUDA's libraries)


def stochastic_depth(input: torch.Tensor, p: float, mode: str, training: bool = True) -> torch.Tensor:
    """torchvision.ops.stochastic_depth, as torchvision writes it (marked ``torch.fx.wrap``)."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ["batch", "row"]:
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device).bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


torch.fx.wrap("stochastic_depth")


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, input):
        return stochastic_depth(input, self.p, self.mode, self.training)


class Permute(nn.Module):
    def __init__(self, dims: list) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = torch.nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int, sd_prob: float, make: Layers) -> None:
        super().__init__()
        self.block = nn.Sequential(
            make.conv(dim, dim, 7, padding=3, groups=dim), Permute([0, 2, 3, 1]), nn.LayerNorm(dim, eps=1e-6),
            make.linear(dim, 4 * dim), nn.GELU(), make.linear(4 * dim, dim), Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, input):
        result = self.layer_scale * self.block(input)
        return self.stochastic_depth(result) + input


class ConvNeXt(nn.Module):
    """torchvision's convnext_tiny (28.6M parameters)."""

    def __init__(self, lazy: bool = True, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes: int = 1000):
        super().__init__()
        make = Layers(lazy)
        layers: list[nn.Module] = [nn.Sequential(make.conv(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6))]
        total, block_id = sum(depths), 0
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            stage = []
            for _ in range(depth):
                stage.append(CNBlock(dim, 0.1 * block_id / (total - 1.0), make))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), make.conv(dim, dims[i + 1], 2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1),
                                        make.linear(dims[-1], num_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def conv_norm_act(make: Layers, fan_in: int, out: int, kernel: int, stride: int = 1, groups: int = 1,
                  activation=nn.ReLU) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: a convolution, batch norm and an activation (none: None)."""
    layers = [make.conv(fan_in, out, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False),
              make.batch_norm(out)]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int, make: Layers, activation=nn.ReLU, scale=nn.Sigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = make.conv(channels, squeeze, 1), make.conv(squeeze, channels, 1)
        self.activation, self.scale_activation = activation(), scale()

    def forward(self, input):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(input)))))
        return scale * input


class MBConv(nn.Module):
    def __init__(self, expand: int, kernel: int, stride: int, fan_in: int, out: int, sd_prob: float,
                 make: Layers) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and fan_in == out
        hidden = fan_in * expand
        layers = [conv_norm_act(make, fan_in, hidden, 1, activation=nn.SiLU)] if hidden != fan_in else []
        layers += [conv_norm_act(make, hidden, hidden, kernel, stride, groups=hidden, activation=nn.SiLU),
                   SqueezeExcitation(hidden, max(1, fan_in // 4), make, activation=nn.SiLU),
                   conv_norm_act(make, hidden, out, 1, activation=None)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, input):
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result) + input
        return result


class EfficientNet(nn.Module):
    """torchvision's efficientnet_b0 (5.3M parameters)."""

    SETTINGS = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))

    def __init__(self, lazy: bool = True, num_classes: int = 1000):
        super().__init__()
        make = Layers(lazy)
        layers: list[nn.Module] = [conv_norm_act(make, 3, 32, 3, 2, activation=nn.SiLU)]
        total, block_id = sum(s[-1] for s in self.SETTINGS), 0
        for expand, kernel, stride, fan_in, out, repeats in self.SETTINGS:
            stage = []
            for i in range(repeats):
                stage.append(MBConv(expand, kernel, stride if i == 0 else 1, fan_in if i == 0 else out, out,
                                    0.2 * block_id / total, make))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        layers.append(conv_norm_act(make, 320, 1280, 1, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), make.linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's _make_divisible: the nearest multiple of ``divisor``, never 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class InvertedResidual(nn.Module):
    def __init__(self, fan_in: int, kernel: int, expanded: int, out: int, se: bool, activation, stride: int,
                 make: Layers) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and fan_in == out
        layers = [conv_norm_act(make, fan_in, expanded, 1, activation=activation)] if expanded != fan_in else []
        layers.append(conv_norm_act(make, expanded, expanded, kernel, stride, groups=expanded, activation=activation))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4), make, scale=nn.Hardsigmoid))
        layers.append(conv_norm_act(make, expanded, out, 1, activation=None))
        self.block = nn.Sequential(*layers)

    def forward(self, input):
        result = self.block(input)
        return result + input if self.use_res_connect else result


class MobileNetV3(nn.Module):
    """torchvision's mobilenet_v3_large (5.5M parameters)."""

    RE, HS = nn.ReLU, nn.Hardswish
    SETTINGS = ((16, 3, 16, 16, False, RE, 1), (16, 3, 64, 24, False, RE, 2), (24, 3, 72, 24, False, RE, 1),
                (24, 5, 72, 40, True, RE, 2), (40, 5, 120, 40, True, RE, 1), (40, 5, 120, 40, True, RE, 1),
                (40, 3, 240, 80, False, HS, 2), (80, 3, 200, 80, False, HS, 1), (80, 3, 184, 80, False, HS, 1),
                (80, 3, 184, 80, False, HS, 1), (80, 3, 480, 112, True, HS, 1), (112, 3, 672, 112, True, HS, 1),
                (112, 5, 672, 160, True, HS, 2), (160, 5, 960, 160, True, HS, 1), (160, 5, 960, 160, True, HS, 1))

    def __init__(self, lazy: bool = True, num_classes: int = 1000):
        super().__init__()
        make = Layers(lazy)
        layers: list[nn.Module] = [conv_norm_act(make, 3, 16, 3, 2, activation=nn.Hardswish)]
        layers += [InvertedResidual(*setting, make) for setting in self.SETTINGS]
        layers.append(conv_norm_act(make, 160, 960, 1, activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(make.linear(960, 1280), nn.Hardswish(inplace=True),
                                        nn.Dropout(p=0.2, inplace=True), make.linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
