import torch.nn as nn
from models.blocks import block

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = block(16)
        self.head = nn.LazyLinear(10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))

class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(8, 3)
        self.fc = nn.Linear(100, 10)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(y.flatten(1))
