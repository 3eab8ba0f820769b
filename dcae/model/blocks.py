"""DC-AE building blocks on (B, C, H, W) feature maps, H = mel frequency, W = time.

Attribute names follow diffusers' ``autoencoder_dc`` so state dicts are interchangeable:
``ResBlock`` (conv1, conv2, norm), ``EfficientViTBlock`` (attn: multi-scale linear attention,
conv_out: GLU MB-conv), ``DownsampleBlock`` / ``UpsampleBlock`` (conv) with their
channel-averaging / channel-duplicating shortcuts.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcae.model.layers import ChannelRMSNorm, make_activation, make_norm


class ResBlock(nn.Module):
    """conv3x3 -> act -> conv3x3 -> norm, plus identity: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, norm_type: str = "rms_norm", act_fn: str = "silu"):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.nonlinearity = make_activation(act_fn)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm = make_norm(norm_type, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv2(self.nonlinearity(self.conv1(x))))


class MultiscaleQKVProjection(nn.Module):
    """Depthwise k x k conv then grouped 1x1 conv over stacked q, k, v: (B, 3D, H, W) -> same."""

    def __init__(self, inner_dim: int, num_heads: int, kernel_size: int):
        super().__init__()
        channels = 3 * inner_dim
        self.proj_in = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False)
        self.proj_out = nn.Conv2d(channels, channels, 1, groups=3 * num_heads, bias=False)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.proj_in(qkv))


class MultiscaleLinearAttention(nn.Module):
    """ReLU linear attention over all H*W positions, with multi-scale q/k/v aggregation.

    (B, C, H, W) -> (B, C, H, W), residual included. When H*W is no larger than the head
    dimension, the exact (quadratic) ReLU-kernel form is used instead, as in diffusers.
    """

    def __init__(self, channels: int, head_dim: int, norm_type: str, kernel_sizes: list[int], eps: float = 1e-15):
        super().__init__()
        self.head_dim = head_dim
        self.eps = eps
        num_heads = channels // head_dim
        inner_dim = num_heads * head_dim
        self.to_q = nn.Linear(channels, inner_dim, bias=False)
        self.to_k = nn.Linear(channels, inner_dim, bias=False)
        self.to_v = nn.Linear(channels, inner_dim, bias=False)
        self.to_qkv_multiscale = nn.ModuleList(
            MultiscaleQKVProjection(inner_dim, num_heads, k) for k in kernel_sizes)
        self.to_out = nn.Linear(inner_dim * (1 + len(kernel_sizes)), channels, bias=False)
        self.norm_out = make_norm(norm_type, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        channels_last = x.movedim(1, -1)
        qkv = torch.cat([self.to_q(channels_last), self.to_k(channels_last), self.to_v(channels_last)], dim=-1)
        qkv = qkv.movedim(-1, 1)
        qkv = torch.cat([qkv, *(proj(qkv) for proj in self.to_qkv_multiscale)], dim=1)
        linear = h * w > self.head_dim
        if linear:
            qkv = qkv.float()
        # groups of 3 * head_dim consecutive channels, split into (q, k, v) of head_dim each
        q, k, v = qkv.reshape(b, -1, 3 * self.head_dim, h * w).chunk(3, dim=2)
        q, k = F.relu(q), F.relu(k)
        if linear:
            v = F.pad(v, (0, 0, 0, 1), value=1.0)                   # (B, G, d+1, N): ones row -> normaliser
            out = (v @ k.transpose(-1, -2)) @ q                      # (B, G, d+1, N)
            out = (out[:, :, :-1] / (out[:, :, -1:] + self.eps)).to(x.dtype)
        else:
            scores = (k.transpose(-1, -2) @ q).float()               # (B, G, N, N)
            scores = scores / (scores.sum(dim=2, keepdim=True) + self.eps)
            out = v @ scores.to(v.dtype)
        out = self.to_out(out.reshape(b, -1, h, w).movedim(1, -1)).movedim(-1, 1)
        return x + self.norm_out(out)


class GLUMBConv(nn.Module):
    """Gated inverted-bottleneck conv (1x1 expand x4, depthwise 3x3, gate, 1x1), RMS norm, residual."""

    def __init__(self, channels: int, expand_ratio: float = 4):
        super().__init__()
        hidden = int(expand_ratio * channels)
        self.nonlinearity = nn.SiLU()
        self.conv_inverted = nn.Conv2d(channels, 2 * hidden, 1)
        self.conv_depth = nn.Conv2d(2 * hidden, 2 * hidden, 3, 1, 1, groups=2 * hidden)
        self.conv_point = nn.Conv2d(hidden, channels, 1, bias=False)
        self.norm = ChannelRMSNorm(channels, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_depth(self.nonlinearity(self.conv_inverted(x)))
        y, gate = y.chunk(2, dim=1)
        return x + self.norm(self.conv_point(y * self.nonlinearity(gate)))


class EfficientViTBlock(nn.Module):
    """Multi-scale linear attention (context) followed by a GLU MB-conv (local): (B, C, H, W) -> same."""

    def __init__(self, channels: int, head_dim: int, norm_type: str, qkv_multiscales: list[int]):
        super().__init__()
        self.attn = MultiscaleLinearAttention(channels, head_dim, norm_type, list(qkv_multiscales))
        self.conv_out = GLUMBConv(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.attn(x))


def make_block(block_type: str, channels: int, head_dim: int, norm_type: str, act_fn: str,
               qkv_multiscales: list[int]) -> nn.Module:
    if block_type == "ResBlock":
        return ResBlock(channels, norm_type, act_fn)
    if block_type == "EfficientViTBlock":
        return EfficientViTBlock(channels, head_dim, norm_type, qkv_multiscales)
    raise ValueError(f"unknown block type {block_type!r}")


class DownsampleBlock(nn.Module):
    """2x down in H and W: (B, Cin, H, W) -> (B, Cout, H/2, W/2).

    ``pixel_unshuffle=False``: stride-2 conv ("Conv"); ``True``: conv to Cout/4 then pixel-unshuffle.
    The shortcut pixel-unshuffles the input and averages groups of channels down to Cout.
    """

    def __init__(self, in_channels: int, out_channels: int, pixel_unshuffle: bool, shortcut: bool = True):
        super().__init__()
        self.pixel_unshuffle = pixel_unshuffle
        self.shortcut = shortcut
        self.group_size = in_channels * 4 // out_channels
        conv_out = out_channels // 4 if pixel_unshuffle else out_channels
        self.conv = nn.Conv2d(in_channels, conv_out, 3, stride=1 if pixel_unshuffle else 2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.pixel_unshuffle:
            y = F.pixel_unshuffle(y, 2)
        if self.shortcut:
            y = y + F.pixel_unshuffle(x, 2).unflatten(1, (-1, self.group_size)).mean(dim=2)
        return y


class UpsampleBlock(nn.Module):
    """2x up in H and W: (B, Cin, H, W) -> (B, Cout, 2H, 2W).

    ``interpolate=True``: nearest upsampling then conv; ``False``: conv to 4*Cout then pixel-shuffle.
    The shortcut repeats each input channel and pixel-shuffles it.
    """

    def __init__(self, in_channels: int, out_channels: int, interpolate: bool, shortcut: bool = True):
        super().__init__()
        self.interpolate = interpolate
        self.shortcut = shortcut
        self.repeats = out_channels * 4 // in_channels
        self.conv = nn.Conv2d(in_channels, out_channels if interpolate else 4 * out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.interpolate:
            y = self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        else:
            y = F.pixel_shuffle(self.conv(x), 2)
        if self.shortcut:
            y = y + F.pixel_shuffle(x.repeat_interleave(self.repeats, dim=1), 2)
        return y
