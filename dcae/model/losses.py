"""Latent-space losses of the DC-AE."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dispersive_loss(latent: torch.Tensor) -> torch.Tensor:
    """Push the latents of different batch samples apart (no positive pairs).

    latent (B, ...) is flattened per sample and L2-normalised; the loss is the mean squared cosine
    similarity over all off-diagonal pairs. Returns 0 for a batch of one.
    """
    b = latent.shape[0]
    if b < 2:
        return latent.new_zeros(())
    z = F.normalize(latent.reshape(b, -1).float(), dim=-1)
    sim = z @ z.T
    off_diagonal = ~torch.eye(b, dtype=torch.bool, device=latent.device)
    return sim.pow(2)[off_diagonal].mean()
