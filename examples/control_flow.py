"""A model whose forward branches on input shapes: lazyfx decides each branch from the
input spec, or says which condition it cannot decide and how to pin it.

Run: python examples/control_flow.py
"""

import torch.nn as nn

import lazyfx


class AnySizeClassifier(nn.Module):
    """Downsamples large images once more than small ones; accepts (C, H, W) or (B, C, H, W)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.LazyConv2d(16, 3, stride=2, padding=1)
        self.down = nn.LazyConv2d(32, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.LazyLinear(10)

    def forward(self, x):
        if x.dim() == 3:  # an unbatched image
            x = x.unsqueeze(0)
        assert x.size(1) == 3, "expected an RGB image"
        x = self.stem(x)
        if x.shape[-1] >= 64:  # only large images take the extra stage
            x = self.down(x)
        return self.head(self.pool(x).flatten(1))


# Concrete sizes decide every branch; the report lists the decisions.
report = lazyfx.infer(AnySizeClassifier(), (3, 224, 224))
print("output:", report.output)
for decision in report.decisions:
    print(f"  decided: {decision.condition} is {decision.taken}")

# A symbolic width leaves `x.shape[-1] >= 64` open: lazyfx will not guess a branch.
try:
    lazyfx.infer(AnySizeClassifier(), ("B", 3, "H", "W"))
except lazyfx.UndecidedConditionError as err:
    print(err)

# Constraining the symbol decides it, and the result holds for every W >= 128.
report = lazyfx.infer(AnySizeClassifier(), ("B", 3, "H", lazyfx.Dim("W", min=128)))
print("with W >= 128:", report.output, "| lazy modules resolved:", len(report.lazy), "| valid for:", report.domain)

# An assertion that no input satisfies is a shape error at its line.
try:
    lazyfx.infer(AnySizeClassifier(), ("B", 1, 32, 32))
except lazyfx.ShapeError as err:
    print(err)
