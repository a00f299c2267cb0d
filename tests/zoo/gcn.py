"""A graph convolutional network (Kipf & Welling 2017) on a dense adjacency matrix, whose
layers are lazy layers we did not get from PyTorch: a user's own ``LazyModuleMixin``
subclass with its own ``initialize_parameters``, and a PyG-style linear whose forward
pre-hook materializes an ``UninitializedParameter`` (``tests/data/custom_lazy.py``)."""

from __future__ import annotations

import math
import pathlib
import sys

import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "data"))
from custom_lazy import PygLinear  # noqa: E402


def normalize(adj: torch.Tensor) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2."""
    adj = adj + torch.eye(adj.size(-1), dtype=adj.dtype, device=adj.device)
    deg = adj.sum(-1).clamp(min=1)
    inv_sqrt = deg.pow(-0.5)
    return inv_sqrt.unsqueeze(-1) * adj * inv_sqrt.unsqueeze(-2)


class LazyGraphConv(LazyModuleMixin, nn.Module):
    """``A_hat @ X @ W + b`` with ``W`` of shape (in_features, out_features), in_features lazy."""

    cls_to_become = None

    def __init__(self, out_features: int):
        super().__init__()
        self.in_features = 0
        self.out_features = out_features
        self.weight = UninitializedParameter()
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def initialize_parameters(self, x, adj):
        if self.has_uninitialized_params():
            self.in_features = x.shape[-1]
            self.weight.materialize((self.in_features, self.out_features))
            self.reset_parameters()

    def reset_parameters(self):
        if not self.has_uninitialized_params():
            nn.init.xavier_uniform_(self.weight)
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            nn.init.zeros_(self.bias)

    def forward(self, x, adj):
        return adj @ (x @ self.weight) + self.bias


class GCN(nn.Module):
    """Node classification: two LazyGraphConv layers, a PyG-style lazy readout."""

    def __init__(self, hidden: int = 8, num_classes: int = 4, dropout: float = 0.5):
        super().__init__()
        self.conv1 = LazyGraphConv(hidden)
        self.conv2 = LazyGraphConv(hidden)
        self.dropout = nn.Dropout(dropout)
        self.readout = PygLinear(-1, num_classes)

    def forward(self, x, adj):
        if adj.size(0) != x.size(0):  # <- nodes
            raise ValueError("the adjacency matrix must have one row per node")
        adj = normalize(adj)
        x = self.dropout(torch.relu(self.conv1(x, adj)))
        x = torch.relu(self.conv2(x, adj))
        return torch.log_softmax(self.readout(x), dim=-1)
