"""Graph neural networks from PyTorch Geometric with ``in_channels=-1``: each convolution holds
PyG's own lazy ``Linear`` (an ``UninitializedParameter`` its forward pre-hook materializes, then
initialized by PyG's ``glorot``/``kaiming_uniform``), and GCN and GAT add self loops with
boolean masks (``edge_index[:, mask]``), whose edge count only the data decides."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch_geometric.nn import GATConv, GCNConv, Linear, SAGEConv

CONVOLUTIONS = {
    "gcn": lambda out: GCNConv(-1, out),
    "sage": lambda out: SAGEConv(-1, out),
    "gat": lambda out: GATConv(-1, out, heads=2),  # the heads concatenated: 2 * out features
}


class GNN(nn.Module):
    """Node classification: two graph convolutions, a lazy PyG Linear readout."""

    def __init__(self, conv: str = "gcn", hidden: int = 8, num_classes: int = 4):
        super().__init__()
        self.conv1 = CONVOLUTIONS[conv](hidden)
        self.conv2 = CONVOLUTIONS[conv](hidden)
        self.readout = Linear(-1, num_classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x, edge_index))
        x = torch.relu(self.conv2(x, edge_index))
        return torch.log_softmax(self.readout(x), dim=-1)


class EdgeScorer(nn.Module):
    """A GCN whose readout scores the edges left after removing self loops: the readout's input
    has one row per remaining edge, a count only the data decides."""

    def __init__(self):
        super().__init__()
        self.conv = GCNConv(-1, 8)
        self.score = Linear(-1, 1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        from torch_geometric.utils import remove_self_loops

        h = torch.relu(self.conv(x, edge_index))
        edges, _ = remove_self_loops(edge_index)
        return self.score(h[edges[0]] * h[edges[1]])
