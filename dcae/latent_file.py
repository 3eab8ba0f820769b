"""Moved: the latent file format lives in :mod:`dcae.latents.file` (import from :mod:`dcae.latents`).
This module re-exports its names for code written against the old path."""
from .latents.file import LATENT_KEY, LatentFileError, LatentMeta, check_complete, load_latent, save_latent, weights_hash

__all__ = ["LATENT_KEY", "LatentFileError", "LatentMeta", "check_complete", "load_latent", "save_latent", "weights_hash"]
