"""Token features onto the latent frame grid at any (non-integer) rate ratio.

Speech tokens come at ``token_rate`` (25 Hz for S3Tokenizer, 21.53 Hz for our FSQ tokenizer) and
DC-AE latent frames at ``frame_rate`` (22050 / 4096 = 5.383 Hz), so a frame spans
``ratio = token_rate / frame_rate`` tokens: 4.644 for S3 (not an integer), exactly 4 for FSQ.
Frame j of an utterance covers the token interval ``[j ratio, (j + 1) ratio)``; a token i covers
``[i, i + 1)``. The frame's feature pools the tokens its span overlaps:

    slot k (k = 0 .. K-1) = token floor(start) + k, weighted by its overlap with the span (0..1)
    feature = Linear([overlap_0 h_0, ..., overlap_{K-1} h_{K-1}, overlap_0, ..., overlap_{K-1}])

``K = ceil(max_ratio) + 1`` slots always hold a span of ``max_ratio`` tokens (it can start inside a
token). The slots keep the tokens' order and the overlaps tell where the span starts, so the pooling
can learn anything from an average to "the second token of the span". A frame uses only the tokens
its span overlaps, which is what lets chunked (streaming) generation start a frame as soon as its
span's tokens (plus the encoder's lookahead) have arrived.

The number of frames for ``n`` tokens is ``round(n / token_rate * frame_rate)`` (:func:`frames_for_tokens`).
With a prompt, the prompt's ``P`` frames span its own ``Np`` tokens and the new frames start at token
``Np`` (:func:`frame_spans`), so the boundary stays aligned whatever the prompt's rounding was.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def frames_for_tokens(num_tokens: int, tokens_per_frame: float) -> int:
    """Latent frames for ``num_tokens`` tokens: round(num_tokens / token_rate * frame_rate)."""
    return int(round(num_tokens / tokens_per_frame))


def frame_spans(start: int, stop: int, tokens_per_frame: float, prompt_frames: int = 0,
                prompt_tokens: int = 0) -> torch.Tensor:
    """Token intervals of frames [start, stop): (stop - start, 2) float64 rows ``[begin, end)``.

    Frames before ``prompt_frames`` share the prompt's ``prompt_tokens`` evenly (its own ratio);
    frame ``prompt_frames + j`` spans ``[prompt_tokens + j r, prompt_tokens + (j + 1) r)``, r =
    ``tokens_per_frame``. The same frame gets the same numbers whichever range it is asked in.
    """
    j = torch.arange(start, stop, dtype=torch.float64)
    if prompt_frames > 0:
        prompt_ratio = prompt_tokens / prompt_frames
        new = prompt_tokens + (j - prompt_frames) * tokens_per_frame
        begin = torch.where(j < prompt_frames, j * prompt_ratio, new)
        end = torch.where(j < prompt_frames, (j + 1) * prompt_ratio, new + tokens_per_frame)
        return torch.stack([begin, end], dim=-1)
    return torch.stack([j * tokens_per_frame, (j + 1) * tokens_per_frame], dim=-1)


def batch_spans(num_frames: int, tokens_per_frame: float) -> torch.Tensor:
    """:func:`frame_spans` of frames [0, num_frames) of one utterance as a batch of one: (1, num_frames, 2)
    (training: prompt and continuation come from the same utterance, so one ratio covers both)."""
    return frame_spans(0, num_frames, tokens_per_frame)[None]


def slot_count(max_tokens_per_frame: float) -> int:
    """Slots that always hold a span of ``max_tokens_per_frame`` tokens starting anywhere in a token."""
    return math.ceil(max_tokens_per_frame) + 1


def span_slots(spans: torch.Tensor, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token indices (B, T, K) long and overlaps (B, T, K) float32 of ``spans`` (B, T, 2) float64."""
    first = spans[..., :1].floor()
    index = first + torch.arange(slots, dtype=spans.dtype, device=spans.device)
    overlap = (torch.minimum(spans[..., 1:], index + 1) - torch.maximum(spans[..., :1], index)).clamp(0, 1)
    return index.long(), overlap.float()


class LengthRegulator(nn.Module):
    """Token features (B, N, C) -> frame features (B, T, C) by span pooling (module docstring)."""

    def __init__(self, width: int, max_tokens_per_frame: float):
        super().__init__()
        self.slots = slot_count(max_tokens_per_frame)
        self.max_tokens_per_frame = max_tokens_per_frame
        self.proj = nn.Linear(self.slots * (width + 1), width)

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
        """``tokens`` (B, N, C) with ``token_mask`` (B, N) valid tokens, ``spans`` (B, T, 2) float64 token
        intervals of the frames -> (B, T, C). Slots past the valid tokens weigh 0, so their features
        are never read (a stream may not have them yet)."""
        b, n, c = tokens.shape
        index, overlap = span_slots(spans.to(tokens.device), self.slots)
        valid = index < n
        gather = index.clamp(0, max(n - 1, 0))
        valid = valid & torch.gather(token_mask, 1, gather.flatten(1)).view_as(gather)
        overlap = (overlap * valid).to(tokens.dtype)
        if n == 0:
            picked = tokens.new_zeros(b, *index.shape[1:], c)
        else:
            picked = torch.gather(tokens, 1, gather.flatten(1)[..., None].expand(-1, -1, c)).view(*index.shape, c)
        picked = torch.where(overlap[..., None] > 0, picked, torch.zeros((), dtype=picked.dtype, device=picked.device))
        pooled = torch.cat([(picked * overlap[..., None]).flatten(2), overlap], dim=-1)
        return self.proj(pooled)
