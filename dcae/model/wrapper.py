"""``DCAEWrapper``: the mel VAE as the reference trains it.

``model`` is the DC-AE (every Conv2d weight-norm parametrized), ``norm`` a LayerNorm without
affine over the latent channels. In training, sigma-VAE noise with a per-sample Gaussian
strength is added to the normalised latent before decoding; in eval no noise is added.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from dcae.model.autoencoder import DCAE
from dcae.model.config import DCAEConfig
from dcae.model.weight_norm import add_weight_norm


def add_sigma_vae_noise(latent: torch.Tensor, strength: float, per_sample: bool) -> torch.Tensor:
    """latent + sigma * N(0, I); sigma = ``strength`` (fixed) or U(0, strength) per sample."""
    if strength == 0:
        return latent
    if per_sample:
        sigma = torch.rand(latent.shape[0], *([1] * (latent.ndim - 1)), device=latent.device, dtype=latent.dtype)
        sigma = sigma * strength
    else:
        sigma = strength
    return latent + sigma * torch.randn_like(latent)


class DCAEWrapper(nn.Module):
    """Mel (B, n_mels, T) <-> latent (B, C, n_mels / r, T / r), r = 2 ** (stages - 1)."""

    def __init__(self, config: str | Path | dict | DCAEConfig, noise_strength: float = 0.5):
        super().__init__()
        self.config = DCAEConfig.load(config)
        self.model = add_weight_norm(DCAE(self.config))
        self.norm = nn.LayerNorm(self.config.latent_channels, elementwise_affine=False)
        self.noise_strength = noise_strength

    @property
    def compression(self) -> int:
        return self.config.compression

    def num_params(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {"encoder": count(self.model.encoder), "decoder": count(self.model.decoder)}

    def encode(self, mel: torch.Tensor, noise_strength: float | None = None):
        """mel (B, n_mels, T) or (B, 1, n_mels, T), T divisible by r -> latent (B, C, n_mels/r, T/r).

        Eval: returns the normalised latent (noise only if ``noise_strength`` is given).
        Training: returns ``(noisy_latent, clean_latent)``.
        """
        if mel.ndim == 3:
            mel = mel.unsqueeze(1)
        param = next(self.parameters())
        latent = self.model.encoder(mel.to(param.dtype))
        latent = self.norm(latent.movedim(1, -1)).movedim(-1, 1)
        if self.training:
            strength = self.noise_strength if noise_strength is None else noise_strength
            return add_sigma_vae_noise(latent, strength, per_sample=True), latent
        if noise_strength:
            latent = add_sigma_vae_noise(latent, noise_strength, per_sample=False)
        return latent.to(mel.dtype)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (B, C, n_mels/r, T/r) -> mel (B, n_mels, T)."""
        param = next(self.parameters())
        return self.model.decoder(latent.to(param.dtype)).squeeze(1).to(latent.dtype)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training step: (reconstructed mel (B, n_mels, T), clean latent) as the reference trainer expects."""
        if self.training:
            noisy, clean = self.encode(mel)
        else:
            noisy = clean = self.encode(mel)
        return self.decode(noisy), clean
