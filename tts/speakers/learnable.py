"""MiniMax-Speech's learnable speaker encoder: a reference clip of any length -> one timbre vector,
trained jointly with the model it conditions, with no transcript of the reference.

It reads the reference's DC-AE latents (normalised by the run's latent stats; 5.4 frames per second,
so a 10 s reference is 54 frames): a linear input, a few bidirectional transformer blocks, then
attention pooling (a learned query attends over the frames, padding masked) and a projection:

    encoder = SpeakerEncoder(latent_dim=80, width=256, layers=2, heads=4)
    vector = encoder(reference, mask)        # reference (B, R, D), mask (B, R) bool -> (B, width)

In training the reference is a crop of another utterance of the same speaker
(:class:`ReferencePool`), so the encoder cannot pass the utterance's own content through. A model
conditioned on a speaker vector (the token flow, the token LMs) holds the encoder or a fixed
embedding's projection through :class:`SpeakerConditioning`.
Shapes: B batch, R reference frames, D latent dim, C width.
"""
from __future__ import annotations

import random

import torch
from torch import nn

from tts.layers import Block, rope_angles

SPEAKER_ENCODERS = ("none", "learnable")


class SpeakerEncoder(nn.Module):
    def __init__(self, latent_dim: int, width: int, layers: int = 2, heads: int = 4, ff_mult: float = 2.0):
        super().__init__()
        self.width, self.heads = width, heads
        self.inp = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(Block(width, heads, ff_mult) for _ in range(layers))
        self.query = nn.Parameter(torch.randn(width) * 0.02)
        self.key = nn.Linear(width, width)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))

    def forward(self, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reference latents (B, R, D) with valid frames ``mask`` (B, R) -> speaker vectors (B, C).
        A row with no valid frame gives the vector of an empty reference (the pooled zero)."""
        x = self.inp(reference.to(self.inp.weight.dtype))
        positions = torch.arange(x.shape[1], device=x.device)[None].expand(x.shape[0], -1)
        rope = rope_angles(positions, self.width // self.heads)
        keys = mask | ~mask.any(dim=1, keepdim=True)  # an empty row attends to its padding (then zeroed)
        attn = keys[:, None, None, :]
        for block in self.blocks:
            x = block(x, rope, attn)
        scores = (self.key(x) @ self.query) / self.width ** 0.5  # (B, R)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1).nan_to_num(0.0)
        return self.out((weights[..., None] * x).sum(1))


class SpeakerConditioning:
    """A mixin for an ``nn.Module`` conditioned on a speaker vector: ``self.speaker_encoder`` (the
    learnable encoder, or None) and ``self.speaker`` (the projection of the vector to the model's
    width, or None), built by :meth:`_speaker_modules` from a config's ``speaker_encoder``,
    ``speaker_dim``, ``speaker_layers`` and ``latent_dim``."""

    def _speaker_modules(self, cfg, width: int, heads: int) -> None:
        """A fixed embedding of ``cfg.speaker_dim`` values, or the learnable encoder (width-sized vectors)."""
        if cfg.speaker_encoder not in SPEAKER_ENCODERS:
            raise ValueError(f"speaker encoder {cfg.speaker_encoder!r}: none or learnable")
        learnable = cfg.speaker_encoder == "learnable"
        if learnable and cfg.speaker_dim:
            raise ValueError("a learnable speaker encoder replaces the fixed speaker embedding (speaker_dim 0)")
        self.speaker_encoder = SpeakerEncoder(cfg.latent_dim, width, cfg.speaker_layers, heads) if learnable else None
        size = width if learnable else cfg.speaker_dim
        self.speaker = nn.Linear(size, width) if size else None

    @property
    def speaker_size(self) -> int:
        """Size of the speaker vector the model is conditioned on (the learnable encoder's: the width)."""
        return 0 if self.speaker is None else self.speaker.in_features

    def encode_speaker(self, reference: torch.Tensor) -> torch.Tensor:
        """Learnable encoder: a reference's normalised latents (R, D) -> the speaker vector (width,)."""
        if self.speaker_encoder is None:
            raise ValueError("this model has no learnable speaker encoder")
        device = self.speaker.weight.device
        reference = reference.to(device).float()[None]
        mask = torch.ones(reference.shape[:2], dtype=torch.bool, device=device)
        with torch.no_grad():
            return self.speaker_encoder(reference, mask)[0]


class ReferencePool:
    """Crops of the utterances seen so far, per speaker: the training reference of a row is a crop of
    another utterance of its speaker seen earlier in the stream (a crop of itself for the first one of
    a speaker, or when rows carry no ``speaker``). Holds up to ``per_speaker`` crops of at most
    ``frames`` frames per speaker; each reader process has its own pool."""

    def __init__(self, frames: int, per_speaker: int = 4):
        self.frames, self.per_speaker = frames, per_speaker
        self.crops: dict[str, list[tuple[str, torch.Tensor]]] = {}

    def crop(self, latent: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """A random window of at most ``frames`` frames of latent (T, D)."""
        if latent.shape[0] <= self.frames:
            return latent
        start = rng.randrange(latent.shape[0] - self.frames + 1)
        return latent[start: start + self.frames]

    def for_row(self, row: dict, latent: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """:meth:`reference` for a corpus row (its ``id`` and ``speaker``, an empty id counting as none)."""
        speaker = row.get("speaker")
        return self.reference(str(row["id"]), None if speaker in (None, "") else str(speaker), latent, rng)

    def reference(self, uid: str, speaker: str | None, latent: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """The reference (R, D) for utterance ``uid`` of ``speaker``; its own crop joins the pool."""
        own = self.crop(latent, rng)
        if speaker is None:
            return own
        others = [crop for other, crop in self.crops.get(speaker, []) if other != uid]
        chosen = rng.choice(others) if others else own
        bank = self.crops.setdefault(speaker, [])
        bank[:] = [(other, crop) for other, crop in bank if other != uid]
        if len(bank) >= self.per_speaker:
            bank.pop(rng.randrange(len(bank)))
        bank.append((uid, own.clone()))
        return chosen
