"""Chunk-aware attention masks: one model for full-context (offline) and chunked (streaming) synthesis.

Latent frames are cut into chunks of ``chunk`` frames from frame 0 (the prompt's first frame); in
chunked mode a frame attends to every frame of its own chunk and of all earlier chunks
(block-causal), so chunk k's result depends on chunks <= k only and can be generated before any
later token arrives. ``chunk = 0`` means full context: every frame sees every frame. The token
encoder is causal in chunked mode (plus its fixed lookahead) and bidirectional in full mode.

Training draws the mode per sample ("unified" training, as CosyVoice 2): full context with
probability ``full_context_prob``, else a chunk size from ``chunk_sizes``.

Masks are bool, True = may attend, shaped (B, 1, S, S) for ``scaled_dot_product_attention``.
"""
from __future__ import annotations

import torch

FULL_CONTEXT = 0  # chunk size meaning "no chunking"


def chunk_ids(num_frames: int, chunk: torch.Tensor) -> torch.Tensor:
    """Chunk index of each frame for per-sample chunk sizes ``chunk`` (B,) (0: one chunk) -> (B, T)."""
    j = torch.arange(num_frames, device=chunk.device)[None]
    return torch.where(chunk[:, None] > 0, j // chunk.clamp_min(1)[:, None], torch.zeros_like(j))


def frame_mask(chunk: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Block-causal (or full, where ``chunk`` is 0) mask over frames: chunk (B,), valid frames (B, T)
    -> (B, 1, T, T); keys must be valid. A padded query row keeps its own key so no row is empty."""
    ids = chunk_ids(valid.shape[1], chunk)
    allowed = (ids[:, None, :] <= ids[:, :, None]) & valid[:, None, :]
    return (allowed | torch.eye(valid.shape[1], dtype=torch.bool, device=valid.device)[None])[:, None]


def token_mask(causal: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Causal (where ``causal`` (B,) is set) or bidirectional mask over tokens (B, N) -> (B, 1, N, N)."""
    n = valid.shape[1]
    lower = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
    allowed = valid[:, None, :] & (lower[None] | ~causal[:, None, None])
    return (allowed | torch.eye(n, dtype=torch.bool, device=valid.device)[None])[:, None]


def sample_chunks(batch: int, chunk_sizes: list[int], full_context_prob: float,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Per-sample training modes (B,): 0 (full context) with probability ``full_context_prob``, else a
    chunk size drawn uniformly from ``chunk_sizes``."""
    sizes = torch.tensor(chunk_sizes or [FULL_CONTEXT], dtype=torch.long, device=device)
    pick = sizes[torch.randint(len(sizes), (batch,), device=device)]
    full = torch.rand(batch, device=device) < full_context_prob
    return torch.where(full, torch.zeros_like(pick), pick)
