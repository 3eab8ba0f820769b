"""A toy latent corpus where every character is a fixed pattern of latent frames.

Use it to check that a TTS pipeline learns at all before spending GPU hours: a model that reads
the text must reproduce the pattern sequence of strings it never saw, and stop at
``len(text) * frames_per_char`` frames.

    corpus = SyntheticCorpus(alphabet="abcdefgh", frames_per_char=3, dim=80, seed=0)
    corpus.write(folder, corpus.random_texts(200, seed=1))  # folder/manifest.jsonl + latents
    corpus.truth("badge")                                    # (15, 80), the noise-free latent
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from dcae.latents import LatentMeta, save_latent, write_manifest

SAMPLE_RATE, HOP, COMPRESSION = 22050, 256, 16


class SyntheticCorpus:
    def __init__(self, alphabet: str = "abcdefgh", frames_per_char: int = 3, dim: int = 80, noise: float = 0.1,
                 seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.alphabet = alphabet
        self.frames_per_char = frames_per_char
        self.dim = dim
        self.noise = noise
        self.patterns = {c: torch.randn(frames_per_char, dim, generator=g) for c in alphabet}

    def truth(self, text: str) -> torch.Tensor:
        """Noise-free latent of ``text``: (len(text) * frames_per_char, dim)."""
        return torch.cat([self.patterns[c] for c in text])

    def random_texts(self, count: int, seed: int, min_len: int = 3, max_len: int = 10,
                     exclude: set[str] | None = None) -> list[str]:
        """``count`` distinct random strings over the alphabet, none of them in ``exclude``."""
        rng = random.Random(seed)
        exclude = exclude or set()
        texts: list[str] = []
        while len(texts) < count:
            t = "".join(rng.choice(self.alphabet) for _ in range(rng.randint(min_len, max_len)))
            if t not in exclude and t not in texts:
                texts.append(t)
        return texts

    def write(self, folder: str | Path, texts: list[str], seed: int = 0) -> Path:
        """Latent files and ``manifest.jsonl`` (no stats.json) for ``texts``; returns the manifest path."""
        folder = Path(folder)
        g = torch.Generator().manual_seed(seed)
        rows = []
        for i, text in enumerate(texts):
            latent = self.truth(text)
            latent = latent + self.noise * torch.randn(latent.shape, generator=g)
            frames = latent.shape[0]
            samples = frames * HOP * COMPRESSION
            meta = LatentMeta(SAMPLE_RATE, HOP, SAMPLE_RATE / HOP / COMPRESSION, samples, "synthetic")
            save_latent(folder / "latents" / f"utt{i:05d}.safetensors", latent.T, meta)
            rows.append({"id": f"utt{i:05d}", "audio_path": "", "latent_path": f"latents/utt{i:05d}.safetensors",
                         "num_frames": frames, "duration": samples / SAMPLE_RATE, "text": text})
        manifest = folder / "manifest.jsonl"
        write_manifest(manifest, rows)
        return manifest
