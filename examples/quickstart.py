"""Infer every shape of a lazy CNN and materialize it, without a dry run.

Run: python examples/quickstart.py
"""

import torch
import torch.nn as nn

import lazyfx


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.LazyConv2d(32, 3, stride=2), nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.LazyConv2d(64, 3), nn.MaxPool2d(2),
        )
        self.head = nn.LazyLinear(10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


# 1. The report: every node's shapes as formulas in the symbolic batch size B.
report = lazyfx.infer(Net(), ("B", 3, 32, 32))
print(report)

# 2. The eager model: same class, lazy children replaced by Conv2d / BatchNorm2d / Linear.
torch.manual_seed(0)
eager = lazyfx.materialize(Net(), ("B", 3, 32, 32), device="cpu")
print(eager)

# 3. Bit-identical to what a dry run would have produced under the same seed.
torch.manual_seed(0)
dry = Net().eval()
with torch.no_grad():
    dry(torch.zeros(1, 3, 32, 32))
same = all(torch.equal(a, b) for a, b in zip(dry.state_dict().values(), eager.state_dict().values()))
print("bit-identical to a dry run:", same)
assert same
