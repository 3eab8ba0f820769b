"""Moved: the latent dataset, statistics and manifest reader live in :mod:`dcae.latents`
(``dataset.py``, ``stats.py``, ``manifest.py``). This module re-exports them for code written
against the old path (``from tts.data import LatentManifestDataset``)."""
from dcae.latents import LatentManifestDataset, LatentStats, ManifestError, collate_latents, pad_sequences, read_manifest

__all__ = ["LatentManifestDataset", "LatentStats", "ManifestError", "collate_latents", "pad_sequences", "read_manifest"]
