"""Heterogeneous graph networks from PyTorch Geometric, on dicts keyed by node type and by
edge type (``("author", "writes", "paper")``): homogeneous GNNs made heterogeneous by
``to_hetero`` (which rewrites each with torch.fx into a ``GraphModule``, one convolution per
edge type and one linear per node type: a GraphSAGE, and a GAT with lazy linear skips), and a
``HeteroConv`` of GAT and SAGE convolutions whose forward iterates the edge dict and tests
membership in the node dict. Every layer has ``in_channels=-1``: PyG's own lazy ``Linear``
inside."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch_geometric.nn import GATConv, HeteroConv, Linear, SAGEConv, to_hetero

NODE_TYPES = ["paper", "author"]
EDGE_TYPES = [("paper", "cites", "paper"), ("author", "writes", "paper"), ("paper", "rev_writes", "author")]
METADATA = (NODE_TYPES, EDGE_TYPES)
FEATURES = {"paper": 5, "author": 7}


class SAGE(nn.Module):
    """A homogeneous two-layer GraphSAGE that ``to_hetero`` duplicates per edge type."""

    def __init__(self, hidden: int = 16, out: int = 4):
        super().__init__()
        self.conv1 = SAGEConv((-1, -1), hidden)
        self.conv2 = SAGEConv((-1, -1), out)

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index).relu()
        return self.conv2(x, edge_index)


def hetero_sage() -> nn.Module:
    return to_hetero(SAGE(), METADATA, aggr="sum")


class GAT(nn.Module):
    """PyG's heterogeneous-graph tutorial GAT: attention plus a lazy linear skip per layer (no self
    loops: the relations between two node types are bipartite)."""

    def __init__(self, hidden: int = 8, out: int = 4):
        super().__init__()
        self.conv1 = GATConv((-1, -1), hidden, add_self_loops=False)
        self.lin1 = Linear(-1, hidden)
        self.conv2 = GATConv((-1, -1), out, add_self_loops=False)
        self.lin2 = Linear(-1, out)

    def forward(self, x, edge_index):
        x = (self.conv1(x, edge_index) + self.lin1(x)).relu()
        return self.conv2(x, edge_index) + self.lin2(x)


def hetero_gat() -> nn.Module:
    return to_hetero(GAT(), METADATA, aggr="sum")


class HeteroGNN(nn.Module):
    """A ``HeteroConv`` layer (GAT on the paper-paper and paper-author relations, SAGE on
    author-paper), then a lazy readout per node type."""

    def __init__(self, hidden: int = 8, classes: int = 3):
        super().__init__()
        self.conv = HeteroConv({
            ("paper", "cites", "paper"): GATConv((-1, -1), hidden, add_self_loops=False),
            ("author", "writes", "paper"): SAGEConv((-1, -1), hidden),
            ("paper", "rev_writes", "author"): GATConv((-1, -1), hidden, heads=2, concat=False, add_self_loops=False),
        }, aggr="sum")
        self.readout = nn.ModuleDict({kind: Linear(-1, classes) for kind in NODE_TYPES})

    def forward(self, x_dict, edge_index_dict):
        h = self.conv(x_dict, edge_index_dict)
        return {kind: self.readout[kind](x.relu()) for kind, x in h.items()}


def specs() -> tuple[dict, dict]:
    """lazyfx specs: a symbolic count per node type and per edge type."""
    nodes = {kind: f"N_{kind},{FEATURES[kind]}" for kind in NODE_TYPES}
    edges = {edge: f"2,E_{edge[1]}:int64" for edge in EDGE_TYPES}
    return nodes, edges


def sample(nodes: dict[str, int], edges: int, seed: int = 0) -> tuple[dict, dict]:
    """Real inputs with ``nodes[kind]`` nodes of each type and ``edges`` edges per edge type."""
    generator = torch.Generator().manual_seed(seed)
    x = {kind: torch.randn(n, FEATURES[kind], generator=generator) for kind, n in nodes.items()}
    edge_index = {
        (src, rel, dst): torch.stack([torch.randint(0, nodes[src], (edges,), generator=generator),
                                      torch.randint(0, nodes[dst], (edges,), generator=generator)])
        for src, rel, dst in EDGE_TYPES
    }
    return x, edge_index
