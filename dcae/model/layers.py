"""Normalisations and activations of the DC-AE, on channel-first tensors (B, C, H, W).

Parameter names match diffusers (``weight``/``bias`` for RMSNorm, BatchNorm2d buffers), so a
state dict moves between the two unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn

ACTIVATION_CLASSES: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU, "swish": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "mish": nn.Mish,
}


def make_activation(name: str) -> nn.Module:
    return ACTIVATION_CLASSES[name.lower()]()


class ChannelRMSNorm(nn.Module):
    """RMS norm over the channel axis of (B, C, ...) with affine weight and bias of shape (C,).

    Statistics are computed in float32; the result has the dtype of ``weight``.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        variance = x.float().pow(2).mean(dim=1, keepdim=True)
        x = (x * torch.rsqrt(variance + self.eps)).to(self.weight.dtype)
        return x * self.weight.view(shape) + self.bias.view(shape)


def make_norm(norm_type: str, channels: int) -> nn.Module:
    """``rms_norm`` (over channels, affine + bias) or ``batch_norm`` (BatchNorm2d), eps 1e-5."""
    if norm_type == "rms_norm":
        return ChannelRMSNorm(channels, eps=1e-5)
    if norm_type == "batch_norm":
        return nn.BatchNorm2d(channels, eps=1e-5)
    raise ValueError(f"unknown norm type {norm_type!r}")
