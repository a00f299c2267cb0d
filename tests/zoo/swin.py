"""A Swin Transformer stage (Liu et al. 2021) with lazy layers, written as torchvision
writes it: the shifted-window attention and the patch-merging pad are plain Python helpers
marked ``torch.fx.wrap`` (torch.fx alone keeps them as opaque calls: their Python branches
on sizes). The window attention pads the feature map to a multiple of the window
(``(window - H % window) % window``), cuts it into windows with views and permutes, shifts
it with ``torch.roll`` and masks across the shift, and crops back with ``x[:, :H, :W]``.
The patch embedding, the MLPs, the merging projection and the head are lazy."""

from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F


def _patch_merging_pad(x: torch.Tensor) -> torch.Tensor:
    H, W, _ = x.shape[-3:]
    x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    x0 = x[..., 0::2, 0::2, :]
    x1 = x[..., 1::2, 0::2, :]
    x2 = x[..., 0::2, 1::2, :]
    x3 = x[..., 1::2, 1::2, :]
    return torch.cat([x0, x1, x2, x3], -1)


torch.fx.wrap("_patch_merging_pad")


def shifted_window_attention(x: torch.Tensor, qkv: nn.Linear, proj: nn.Linear, bias: torch.Tensor,
                             window: int, heads: int, shift: int) -> torch.Tensor:
    B, H, W, C = x.shape
    pad_r = (window - W % window) % window
    pad_b = (window - H % window) % window
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, pad_H, pad_W, _ = x.shape
    if window >= pad_H and window >= pad_W:  # one window covers the map: nothing to shift
        shift = 0
    if shift > 0:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    num_windows = (pad_H // window) * (pad_W // window)
    x = x.view(B, pad_H // window, window, pad_W // window, window, C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B * num_windows, window * window, C)
    q, k, v = qkv(x).reshape(x.size(0), x.size(1), 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    attn = (q * (C // heads) ** -0.5).matmul(k.transpose(-2, -1)) + bias
    if shift > 0:
        mask = x.new_zeros((pad_H, pad_W))
        slices = ((0, -window), (-window, -shift), (-shift, None))
        count = 0
        for h in slices:
            for w in slices:
                mask[h[0]:h[1], w[0]:w[1]] = count
                count += 1
        mask = mask.view(pad_H // window, window, pad_W // window, window)
        mask = mask.permute(0, 2, 1, 3).reshape(num_windows, window * window)
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = attn.view(x.size(0) // num_windows, num_windows, heads, x.size(1), x.size(1))
        attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, x.size(1), x.size(1))
    x = F.softmax(attn, dim=-1).matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), C)
    x = proj(x)
    x = x.view(B, pad_H // window, pad_W // window, window, window, C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, pad_H, pad_W, C)
    if shift > 0:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    return x[:, :H, :W, :].contiguous()


torch.fx.wrap("shifted_window_attention")


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int, shift: int):
        super().__init__()
        self.window, self.heads, self.shift = window, heads, shift
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.randn(heads, window * window, window * window) * 0.02)

    def forward(self, x):
        return shifted_window_attention(x, self.qkv, self.proj, self.bias, self.window, self.heads, self.shift)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, window: int, heads: int, shift: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads, shift)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.LazyLinear(2 * dim), nn.GELU(), nn.LazyLinear(dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.LazyLinear(2 * dim, bias=False)

    def forward(self, x):
        return self.reduction(self.norm(_patch_merging_pad(x)))


class Swin(nn.Module):
    """Patch embedding, two blocks (the second shifted), patch merging, a lazy head."""

    def __init__(self, dim: int = 8, window: int = 4, heads: int = 2, num_classes: int = 5):
        super().__init__()
        self.embed = nn.LazyConv2d(dim, 2, stride=2)
        self.blocks = nn.Sequential(SwinBlock(dim, window, heads, 0), SwinBlock(dim, window, heads, window // 2))
        self.merge = PatchMerging(dim)
        self.head = nn.LazyLinear(num_classes)

    def forward(self, x):
        x = self.embed(x).permute(0, 2, 3, 1)  # (B, H/2, W/2, dim)
        x = self.merge(self.blocks(x))
        return self.head(x.mean(dim=(1, 2)))
