"""Masked 1-D convolutional blocks: padded frames of a batch never reach the valid frames.

Every convolution with a kernel wider than one frame sees its input multiplied by the length mask,
so beyond a clip's end it reads zeros, exactly what the convolution's own zero padding gives a
clip processed alone: a clip's outputs do not depend on what it was batched with.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, 1, max_len) float mask, 1 on valid frames."""
    steps = torch.arange(max_len, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).unsqueeze(1).float()


class ConvNeXtBlock1d(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP (GELU) -> layer scale, residual. (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int = 7, mlp_ratio: int = 3, layer_scale: float = 0.1):
        super().__init__()
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, channels * mlp_ratio), nn.GELU(),
                                 nn.Linear(channels * mlp_ratio, channels))
        self.gamma = nn.Parameter(torch.full((channels,), float(layer_scale)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), mask (B, 1, T) -> (B, C, T) (values past a clip's end are garbage: mask them)."""
        h = self.dwconv(x * mask).transpose(1, 2)
        h = self.mlp(self.norm(h)) * self.gamma
        return x + h.transpose(1, 2)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)
