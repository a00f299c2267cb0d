"""A shared actor-critic for reinforcement learning, written as skrl writes its shared models:
one ``forward(inputs, role)`` takes a dict of tensors and a role string, and the role selects
the head (``"policy"``: action means and a log-std parameter; ``"value"``: a state value, or
a state-action value where ``inputs`` has ``"taken_actions"``). A dry run with one role leaves
the other head lazy."""

from __future__ import annotations

import torch
import torch.nn as nn


class SharedActorCritic(nn.Module):
    def __init__(self, actions: int = 2, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.LazyLinear(hidden), nn.ELU(), nn.LazyLinear(hidden), nn.ELU())
        self.mean_layer = nn.LazyLinear(actions)
        self.log_std_parameter = nn.Parameter(torch.zeros(actions))
        self.value_layer = nn.LazyLinear(1)

    def forward(self, inputs: dict, role: str = ""):
        features = self.net(inputs["states"])
        if role == "policy":
            return torch.tanh(self.mean_layer(features)), self.log_std_parameter, {}
        if role == "value":
            actions = inputs.get("taken_actions")  # a Q-style critic when the actions are given
            if actions is not None:
                features = torch.cat([features, actions], dim=-1)
            return self.value_layer(features), {}
        raise ValueError(f"unknown role {role!r}")
