"""Least-squares GAN losses and feature matching (HiFi-GAN formulation).

Each argument is a list with one entry per discriminator (see :class:`dcae.discriminators.MelDiscriminator`).
"""
from __future__ import annotations

import torch
from torch import Tensor


def discriminator_loss(real_scores: list[Tensor], fake_scores: list[Tensor]) -> Tensor:
    """Sum over discriminators of ``mean((1 - D(real))^2) + mean(D(fake)^2)``."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f ** 2) for r, f in zip(real_scores, fake_scores))


def generator_loss(fake_scores: list[Tensor]) -> Tensor:
    """Sum over discriminators of ``mean((1 - D(fake))^2)``."""
    return sum(torch.mean((1 - f) ** 2) for f in fake_scores)


def feature_matching_loss(real_features: list[list[Tensor]], fake_features: list[list[Tensor]]) -> Tensor:
    """Twice the sum over discriminators and layers of the mean absolute feature difference."""
    total = sum(torch.mean(torch.abs(r - f))
                for real, fake in zip(real_features, fake_features) for r, f in zip(real, fake))
    return 2 * total
