"""Which image sizes does a model accept? Ask with symbolic sizes.

Run: python examples/valid_input_sizes.py
"""

import torch.nn as nn

import lazyfx

model = nn.Sequential(
    nn.LazyConv2d(16, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.LazyConv2d(32, 5, stride=2, padding=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(10),
)

report = lazyfx.infer(model, ("B", 3, "H", "W"))
print("output:", report.output)
print("valid for:", report.domain)
for h in (8, 9, 10, 64):
    print(f"  H = W = {h}: {'ok' if report.domain.contains(B=1, H=h, W=h) else 'rejected'}")

# The adaptive pooling makes the head independent of H and W, so the model
# materializes with symbolic sizes; without it, lazyfx would refuse and say
# which symbols to pin.
eager = lazyfx.materialize(model, ("B", 3, "H", "W"))
print("head:", eager[7])

no_pool = nn.Sequential(nn.LazyConv2d(16, 5), nn.Flatten(), nn.LazyLinear(10))
try:
    lazyfx.materialize(no_pool, ("B", 3, "H", "W"))
except lazyfx.ResolutionError as err:
    print("refused:", err.message)
