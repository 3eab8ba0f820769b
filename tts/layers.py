"""Transformer pieces shared by the AR and flow models.

Rotary position embedding on float positions (so text and latent frames can share a time axis),
pre-norm blocks with an optional adaptive norm (DiT adaLN-Zero) and an optional KV cache.
Shapes: B batch, S sequence, C model width, H heads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BackboneConfig:
    """Transformer sizes shared by the AR and flow models (each extends it with its own fields)."""

    vocab_size: int
    latent_dim: int
    width: int = 256
    layers: int = 6
    heads: int = 4
    ff_mult: float = 4.0
    dropout: float = 0.0


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of flow times: (N,) in [0, 1] -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = scale * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEmbedding(nn.Module):
    """Flow time (N,) -> (N, C) through a sinusoid and a small MLP."""

    def __init__(self, width: int, freq_dim: int = 256, scale: float = 1000.0):
        super().__init__()
        self.freq_dim = freq_dim
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim, self.scale).to(self.mlp[0].weight.dtype))


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Float positions (B, S) -> (cos, sin), each (B, 1, S, head_dim // 2)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None, :, None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, S, Dh) by the angles of :func:`rope_angles` (pairs are the two halves of Dh)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


@dataclass
class LayerCache:
    """Keys and values of the positions seen so far, (B, H, S, Dh) each."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if width % heads or (width // heads) % 2:
            raise ValueError(f"width {width} must split into {heads} heads of even size")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
                cache: LayerCache | None = None) -> torch.Tensor:
        """x (B, S, C); mask (B, 1, S, S_total) bool, True = may attend; S_total includes cached keys."""
        b, s, c = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.extend(k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, s, c))


class FeedForward(nn.Module):
    def __init__(self, width: int, mult: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(width * mult)
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, S, C) with per-sample shift/scale (B, C)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    """Pre-norm transformer block; with ``cond_width`` it is a DiT adaLN-Zero block on a (B, cond) vector."""

    def __init__(self, width: int, heads: int, ff_mult: float = 4.0, dropout: float = 0.0, adaptive: bool = False):
        super().__init__()
        self.adaptive = adaptive
        self.norm1 = nn.LayerNorm(width, elementwise_affine=not adaptive, eps=1e-6)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=not adaptive, eps=1e-6)
        self.attn = Attention(width, heads, dropout)
        self.ff = FeedForward(width, ff_mult, dropout)
        self.drop = nn.Dropout(dropout)
        if adaptive:
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
            nn.init.zeros_(self.ada[1].weight)
            nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
                cond: torch.Tensor | None = None, cache: LayerCache | None = None) -> torch.Tensor:
        if not self.adaptive:
            x = x + self.drop(self.attn(self.norm1(x), rope, mask, cache))
            return x + self.drop(self.ff(self.norm2(x)))
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(cond).chunk(6, dim=-1)
        x = x + g1[:, None] * self.drop(self.attn(modulate(self.norm1(x), sh1, sc1), rope, mask, cache))
        return x + g2[:, None] * self.drop(self.ff(modulate(self.norm2(x), sh2, sc2)))


class AdaLNOutput(nn.Module):
    """Final adaptive norm + zero-initialised projection: (B, S, C), cond (B, C) -> (B, S, out)."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.proj = nn.Linear(width, out_dim)
        for layer in (self.ada[1], self.proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(cond).chunk(2, dim=-1)
        return self.proj(modulate(self.norm(x), shift, scale))
