"""The reference generator, rebuilt from its published recipe for parity tests:
diffusers ``AutoencoderDC`` + torch weight norm on every Conv2d + LayerNorm (no affine) over the
latent channels, encode without noise in eval. Needs the ``[dev]`` extra (diffusers)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import weight_norm


class ReferenceDCAE(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        from diffusers import AutoencoderDC

        self.model = AutoencoderDC.from_config({k: v for k, v in config.items() if not k.startswith("_comment")})
        for m in self.model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                weight_norm(m)
        self.norm = nn.LayerNorm(self.model.config.latent_channels, elementwise_affine=False)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        latent = self.model.encode(mel.unsqueeze(1)).latent
        return self.norm(latent.transpose(1, -1)).transpose(1, -1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latent).sample.squeeze(1)


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb every parameter and BatchNorm statistic so that parity checks are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("original0", "norm.weight", "norm_out.weight")) or p.ndim == 1:
                p.mul_(1 + 0.2 * torch.rand(p.shape, generator=g)).add_(0.05 * torch.randn(p.shape, generator=g))
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return module


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()
