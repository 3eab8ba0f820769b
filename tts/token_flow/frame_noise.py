"""Starting noise fixed per latent frame position, so a chunk gets the same noise however it is made.

Frame j's noise is drawn from a generator seeded by ``(seed, j)``: generating frames [a, b) alone
(a streaming chunk) or as part of the whole sequence gives the same values, on any device (drawn
on the CPU, then moved).
"""
from __future__ import annotations

import torch

from dcae.seeds import mix_seed


def frame_noise(seed: int, start: int, stop: int, dim: int, temperature: float = 1.0,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Noise of frames [start, stop): (stop - start, dim), N(0, temperature^2) per value."""
    g = torch.Generator()
    rows = []
    for j in range(start, stop):
        g.manual_seed(mix_seed(seed, j))
        rows.append(torch.randn(dim, generator=g))
    noise = torch.stack(rows) if rows else torch.zeros(0, dim)
    return (noise * temperature).to(device)
