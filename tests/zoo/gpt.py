"""A GPT-style decoder-only transformer (in the style of nanoGPT), written by hand with lazy
layers: token and position ``nn.Embedding``, pre-norm blocks whose causal self-attention
uses LazyLinear q/k/v/output projections and ``F.scaled_dot_product_attention(is_causal=True)``,
a LazyLinear MLP, and a LazyLinear language-model head. Its forward branches on shapes:
an unbatched sequence is given a batch dimension, and the sequence must fit the context."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.LazyLinear(dim), nn.LazyLinear(dim), nn.LazyLinear(dim)
        self.proj = nn.LazyLinear(dim)

    def forward(self, x):
        B, T, C = x.size()
        q = self.q(x).view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, heads, T, head_dim)
        k = self.k(x).view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = self.v(x).view(B, T, self.heads, C // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.LazyLinear(4 * dim), nn.GELU(), nn.LazyLinear(dim), nn.Dropout(0.1))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int = 50, block_size: int = 16, dim: int = 16, heads: int = 2, layers: int = 2):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, dim)
        self.wpe = nn.Embedding(block_size, dim)
        self.drop = nn.Dropout(0.1)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.LazyLinear(vocab_size, bias=False)

    def forward(self, idx):
        if idx.dim() == 1:  # <- unbatched
            idx = idx.unsqueeze(0)
        B, T = idx.size()
        assert T <= self.block_size, f"sequence of length {T} longer than the context {self.block_size}"  # <- context
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))
