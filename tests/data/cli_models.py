"""Models for the CLI tests, loaded by file path."""

import torch.nn as nn

from lazyfx.demo import Net


def make_net():
    return Net(num_classes=3)


instance = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2))


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(8, 3)
        self.fc = nn.Linear(100, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class NeedsArgs(nn.Module):
    def __init__(self, width):
        super().__init__()


def not_a_model():
    return 42


def crashes():
    raise RuntimeError("factory exploded")


CONSTANT = 3


class ActorCritic(nn.Module):
    """The head forward takes is chosen by a role string (passed with ``--input role:=policy``)."""

    def __init__(self):
        super().__init__()
        self.policy = nn.LazyLinear(4)
        self.value = nn.LazyLinear(1)

    def forward(self, states, role: str, scale=1):
        return (self.policy(states) if role == "policy" else self.value(states)) * scale
