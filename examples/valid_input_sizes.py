"""Which image sizes does a U-Net accept? Ask with symbolic sizes instead of trying them.

A U-Net pools four times on the way down and concatenates each decoder stage
with the encoder's features on the way up, so the two must have the same size:
that only works when H and W are divisible by 16. lazyfx derives this from the
model, without running it, and still materializes the model for every valid
size at once (its lazy parameters depend on channels only).

Run: python examples/valid_input_sizes.py
"""

import torch
import torch.nn as nn

import lazyfx


def double_conv(width):
    return nn.Sequential(
        nn.LazyConv2d(width, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(),
        nn.LazyConv2d(width, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(),
    )


class Up(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.up = nn.LazyConvTranspose2d(width, 2, stride=2)
        self.conv = double_conv(width)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    def __init__(self, classes=2, widths=(8, 16, 32, 64, 128)):
        super().__init__()
        self.inc = double_conv(widths[0])
        self.down = nn.ModuleList(double_conv(w) for w in widths[1:])
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


# The model is in training mode, so the batch norms need more than one value per channel:
# at the 1/16 bottleneck that is the condition B*(H//16)*(W//16) > 1.
report = lazyfx.infer(UNet(), ("B", 3, "H", "W"))
print("output:", report.output)
print("valid for:", report.domain)
for h, w in [(100, 100), (96, 96), (96, 200), (16, 16)]:
    print(f"  H={h}, W={w}: {'ok' if report.domain.contains(B=1, H=h, W=w) else 'rejected'}")
print("smallest valid input:", report.domain.example())

# Why 100 is rejected: the line and the check PyTorch would fail at.
try:
    lazyfx.infer(UNet(), (1, 3, 100, 100))
except lazyfx.ShapeError as err:
    print("at H=W=100:", err)

# The lazy parameters do not depend on H or W, so one materialization serves every valid size.
model = lazyfx.materialize(UNet(), ("B", 3, "H", "W"), seed=0).eval()
with torch.no_grad():
    for size in (16, 64, 96):
        print(f"  {size}x{size} ->", tuple(model(torch.zeros(1, 3, size, size)).shape))
