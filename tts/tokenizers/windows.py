"""Overlapping windows for encoders with a bounded input length (S3Tokenizer: 30 s).

A sequence of ``num_frames`` feature frames is cut into windows of ``window`` frames that start
every ``window - overlap`` frames; the last window is the first that reaches the end. Each
window is encoded alone; from the tokens of each window we keep the ones nearer to its middle than
to any other window's: the overlap between two neighbouring windows is split at its midpoint (half
to each). So every token is taken from exactly one window, at least ``overlap / 2`` frames away from
that window's cut edges (unless it is the signal's own edge), and the merged sequence has exactly
``ceil(num_frames / frames_per_token)`` tokens.

Same geometry as ``s3tokenizer``'s own long-audio path (30 s windows, 4 s overlap, half the overlap
dropped on each side), without its tail bug: that path adds one window too many when the previous
one already reached the end and then loses up to 2 s of tokens (S3Tokenizer issue #53: e.g. 80 s
of audio gives 1950 tokens instead of 2000).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Frames ``[start, end)`` of the input; keep its local tokens ``[keep_start, keep_end)``."""

    start: int
    end: int
    keep_start: int
    keep_end: int


def plan_windows(num_frames: int, window: int, overlap: int, frames_per_token: int) -> list[Window]:
    """Windows covering ``num_frames`` frames (one window when it fits). ``window`` and ``overlap``
    must be multiples of ``frames_per_token``, ``overlap`` of ``2 * frames_per_token``, and
    ``overlap < window``."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if window % frames_per_token or overlap % (2 * frames_per_token) or not 0 <= overlap < window:
        raise ValueError(f"window {window} / overlap {overlap} do not fit frames_per_token {frames_per_token}")
    total_tokens = math.ceil(num_frames / frames_per_token)
    if num_frames <= window:
        return [Window(0, num_frames, 0, total_tokens)]
    stride = window - overlap
    count = math.ceil((num_frames - window) / stride) + 1
    half = overlap // 2 // frames_per_token
    windows = []
    for k in range(count):
        start = k * stride
        first = start // frames_per_token  # global index of this window's first token
        keep_from = 0 if k == 0 else first + half
        keep_to = total_tokens if k == count - 1 else (k + 1) * stride // frames_per_token + half
        windows.append(Window(start, min(start + window, num_frames), keep_from - first, keep_to - first))
    return windows
