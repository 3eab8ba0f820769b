"""Toy latent corpora for checking that a TTS pipeline learns at all before spending GPU hours.

Text (:class:`SyntheticCorpus`): every character is a fixed pattern of latent frames; a model that
reads the text must reproduce the pattern sequence of strings it never saw, and stop at
``len(text) * frames_per_char`` frames.

    corpus = SyntheticCorpus(alphabet="abcdefgh", frames_per_char=3, dim=80, seed=0)
    corpus.write(folder, corpus.random_texts(200, seed=1))  # folder/manifest.jsonl + latents
    corpus.truth("badge")                                    # (15, 80), the noise-free latent

Speech tokens (:class:`SyntheticTokenCorpus`): tokens at ``token_rate`` (25 Hz by default, as
S3Tokenizer: 4.64 tokens per 5.383 Hz latent frame, not an integer); each latent frame is a fixed
function of the tokens its span covers (their overlap with the span, their identity and their place
in it), so a token-to-latent model must learn the rate ratio and the mapping to reproduce unseen
token sequences.

    corpus = SyntheticTokenCorpus(vocab=8, dim=16, seed=0)
    corpus.write(folder, corpus.random_sequences(200, seed=1))  # latents + token files + manifest
    corpus.truth(tokens)                                         # (round(N / 4.644), 16)

Text and speech tokens (:class:`SyntheticTextTokenCorpus`, for the text-to-token LM): every character
is a fixed pattern of 1 to ``max_pattern`` tokens (lengths differ by character, so the tokens per
character vary with the text); the latents follow from the tokens as above, so the same corpus
trains both stages.

    corpus = SyntheticTextTokenCorpus(alphabet="abcdefgh", vocab=32, seed=0)
    corpus.write(folder, corpus.random_texts(300, seed=1))      # rows with text, token_path, latent_path
    corpus.tokens("badge")                                       # the token sequence the LM should write
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from dcae.corpus import (
    DEFAULT_HOP_LENGTH,
    DEFAULT_SAMPLE_RATE,
    LatentMeta,
    read_manifest,
    save_latent,
    save_tokens,
    write_manifest,
)
from tts.token_flow.length_regulator import frame_spans, frames_for_tokens, slot_count, span_slots

SAMPLE_RATE, HOP, COMPRESSION = DEFAULT_SAMPLE_RATE, DEFAULT_HOP_LENGTH, 16


def random_strings(alphabet: str, count: int, seed: int, min_len: int, max_len: int,
                   exclude: set[str] | None = None) -> list[str]:
    """``count`` distinct random strings over ``alphabet`` of min_len..max_len characters, none in ``exclude``."""
    rng = random.Random(seed)
    exclude = exclude or set()
    texts: list[str] = []
    while len(texts) < count:
        t = "".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len)))
        if t not in exclude and t not in texts:
            texts.append(t)
    return texts


def write_latent_row(folder: Path, index: int, latent: torch.Tensor,
                     frame_rate: float = SAMPLE_RATE / HOP / COMPRESSION) -> dict:
    """Save ``latent`` (frames, D) as ``folder/latents/utt{index}.safetensors`` (model "synthetic"); its manifest row."""
    frames = latent.shape[0]
    samples = round(frames * SAMPLE_RATE / frame_rate)
    name = f"utt{index:05d}"
    save_latent(folder / "latents" / f"{name}.safetensors", latent.T, LatentMeta(SAMPLE_RATE, HOP, frame_rate, samples,
                                                                                  "synthetic"))
    return {"id": name, "audio_path": "", "latent_path": f"latents/{name}.safetensors", "num_frames": frames,
            "duration": samples / SAMPLE_RATE}


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
        return random_strings(self.alphabet, count, seed, min_len, max_len, exclude)

    def write(self, folder: str | Path, texts: list[str], seed: int = 0) -> Path:
        """Latent files and ``manifest.jsonl`` (no stats.json) for ``texts``; returns the manifest path."""
        folder = Path(folder)
        g = torch.Generator().manual_seed(seed)
        rows = []
        for i, text in enumerate(texts):
            latent = self.truth(text)
            latent = latent + self.noise * torch.randn(latent.shape, generator=g)
            rows.append({**write_latent_row(folder, i, latent), "text": text})
        manifest = folder / "manifest.jsonl"
        write_manifest(manifest, rows)
        return manifest


class SyntheticTokenCorpus:
    """Token sequences and the latents they determine through a non-integer rate ratio (module docstring).

    Frame j spans tokens [j r, (j + 1) r), r = token_rate / frame_rate; with o_i the overlap of token i
    with the span and p_i in [-1/2, 1/2] the token's centre relative to the frame's centre (in frames):
    frame_j = sqrt(r) / r * sum_i o_i (level[t_i] + 2 p_i slope[t_i]), plus ``noise`` in the written files.
    With ``context`` > 0 a frame also carries ``context`` times the next frame's plain term
    sqrt(r) / r * sum_i o_i level[t_i] (future context: what a streaming model sees only partly).
    """

    def __init__(self, vocab: int = 8, token_rate: float = 25.0, frame_rate: float = SAMPLE_RATE / HOP / COMPRESSION,
                 dim: int = 16, noise: float = 0.05, seed: int = 0, context: float = 0.0, speakers: int = 0,
                 speaker_scale: float = 1.0):
        g = torch.Generator().manual_seed(seed)
        self.vocab, self.token_rate, self.frame_rate = vocab, token_rate, frame_rate
        self.ratio = token_rate / frame_rate
        self.dim, self.noise, self.context = dim, noise, context
        self.level = torch.randn(vocab, dim, generator=g)
        self.slope = torch.randn(vocab, dim, generator=g)
        # speakers: each adds its own fixed pattern to every frame of its utterances (the tokens carry content only)
        self.patterns = torch.randn(speakers, dim, generator=g) * speaker_scale

    def num_frames(self, num_tokens: int) -> int:
        return frames_for_tokens(num_tokens, self.ratio)

    def truth(self, tokens: torch.Tensor | list[int]) -> torch.Tensor:
        """Noise-free latent of ``tokens`` (N,): (round(N / ratio), dim)."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        spans = frame_spans(0, self.num_frames(tokens.numel()), self.ratio)
        index, overlap = span_slots(spans, slot_count(self.ratio))  # (T, K)
        overlap = overlap * (index < tokens.numel())
        ids = tokens[index.clamp(max=tokens.numel() - 1)]
        place = ((index + 0.5 - spans.mean(-1, keepdim=True)) / self.ratio).float()
        scale = math.sqrt(self.ratio) / self.ratio
        value = overlap[..., None] * (self.level[ids] + 2 * place[..., None] * self.slope[ids])
        frames = value.sum(1) * scale
        if self.context:
            plain = (overlap[..., None] * self.level[ids]).sum(1) * scale
            frames = frames + self.context * torch.cat([plain[1:], torch.zeros_like(plain[:1])])
        return frames

    def random_sequences(self, count: int, seed: int, min_len: int = 20, max_len: int = 60,
                         exclude: list[list[int]] | None = None) -> list[list[int]]:
        """``count`` distinct random token sequences, none of them in ``exclude``."""
        rng = random.Random(seed)
        seen = {tuple(e) for e in exclude or []}
        out: list[list[int]] = []
        while len(out) < count:
            seq = [rng.randrange(self.vocab) for _ in range(rng.randint(min_len, max_len))]
            if tuple(seq) not in seen:
                seen.add(tuple(seq))
                out.append(seq)
        return out

    def write(self, folder: str | Path, sequences: list[list[int]], seed: int = 0,
              speakers: list[int] | None = None) -> Path:
        """Latent files, token files and ``manifest.jsonl`` (rows with ``token_path``, ``num_tokens``,
        ``token_rate``; no stats.json) for ``sequences``; returns the manifest path. With ``speakers``
        (one index per sequence) each latent carries its speaker's pattern and its row ``speaker``."""
        folder = Path(folder)
        g = torch.Generator().manual_seed(seed)
        rows = []
        for i, seq in enumerate(sequences):
            latent = self.truth(seq)
            if speakers is not None:
                latent = latent + self.patterns[speakers[i]]
            latent = latent + self.noise * torch.randn(latent.shape, generator=g)
            row = write_latent_row(folder, i, latent, self.frame_rate)
            save_tokens(folder / "tokens" / f"{row['id']}.safetensors", seq, self.token_rate,
                        extra={"tokenizer": "synthetic", "codebook_size": self.vocab})
            rows.append({**row, "token_path": f"tokens/{row['id']}.safetensors", "num_tokens": len(seq),
                         "token_rate": self.token_rate, **({} if speakers is None else {"speaker": f"spk{speakers[i]}"})})
        manifest = folder / "manifest.jsonl"
        write_manifest(manifest, rows)
        return manifest


class SyntheticTextTokenCorpus:
    """Text -> speech tokens by fixed per-character patterns, tokens -> latents by
    :class:`SyntheticTokenCorpus` (module docstring)."""

    def __init__(self, alphabet: str = "abcdefgh", vocab: int = 32, max_pattern: int = 4, dim: int = 16,
                 token_rate: float = 25.0, seed: int = 0, speakers: int = 0, speaker_scale: float = 1.0):
        rng = random.Random(seed)
        self.alphabet = alphabet
        self.patterns = {c: [rng.randrange(vocab) for _ in range(rng.randint(1, max_pattern))] for c in alphabet}
        # speakers: speaker k says every token shifted by k * vocab // speakers, and adds its latent pattern
        self.latents = SyntheticTokenCorpus(vocab=vocab, token_rate=token_rate, dim=dim, seed=seed, speakers=speakers,
                                            speaker_scale=speaker_scale)
        self.vocab, self.speakers = vocab, speakers

    def tokens(self, text: str, speaker: int | None = None) -> list[int]:
        """The speech tokens of ``text`` (characters outside the alphabet are an error), as ``speaker`` says them."""
        shift = 0 if speaker is None else speaker * (self.vocab // self.speakers)
        return [(t + shift) % self.vocab for c in text for t in self.patterns[c]]

    def random_texts(self, count: int, seed: int, min_len: int = 4, max_len: int = 12,
                     exclude: set[str] | None = None) -> list[str]:
        """``count`` distinct random strings over the alphabet, none of them in ``exclude``."""
        return random_strings(self.alphabet, count, seed, min_len, max_len, exclude)

    def write(self, folder: str | Path, texts: list[str], seed: int = 0, speakers: list[int] | None = None) -> Path:
        """Token files, latents and ``manifest.jsonl`` (rows with ``text`` too; with ``speakers``, the
        speaker of each text and the row's ``speaker`` id); returns the manifest path."""
        said = [self.tokens(t, None if speakers is None else speakers[i]) for i, t in enumerate(texts)]
        manifest = self.latents.write(folder, said, seed=seed, speakers=speakers)
        rows = read_manifest(manifest)
        for row, text in zip(rows, texts):
            row["text"] = text
            for key in ("latent_path", "token_path"):
                row[key] = str(Path(row[key]).relative_to(Path(folder).resolve()))
        write_manifest(manifest, rows)
        return manifest
