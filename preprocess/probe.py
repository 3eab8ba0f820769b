"""Decide whether one audio file is usable for training: readable, long enough, optionally clean.

By default only the header is read (torchcodec/FFmpeg metadata, libsndfile as fallback), which is
fast enough for millions of files. Files whose header gives no duration are decoded to measure
it. ``decode=True`` decodes every file fully and also rejects NaN, silent or truncated audio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dcae.audio import AudioError, audio_info, check_audio, load_audio

Status = Literal["valid", "corrupt", "too_short"]


@dataclass(frozen=True)
class ProbeResult:
    path: Path
    status: Status
    duration: float  # seconds; 0.0 when unknown (corrupt)
    reason: str = ""  # one line, for corrupt files


def probe_file(path: str | Path, min_duration: float = 0.0, decode: bool = False) -> ProbeResult:
    """Probe ``path``: ``valid`` (duration >= ``min_duration``), ``too_short`` or ``corrupt``."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        return ProbeResult(path, "corrupt", 0.0, "empty file (0 bytes)")
    try:
        info = audio_info(path)
        duration = info.duration
        if decode or not math.isfinite(duration) or duration <= 0:
            audio = load_audio(path, sample_rate=None)
            check_audio(audio, path, min_samples=1)
            duration = audio.numel() / info.sample_rate
    except AudioError as e:
        return ProbeResult(path, "corrupt", 0.0, e.reason)
    if duration <= 0:
        return ProbeResult(path, "corrupt", 0.0, "no audio samples")
    if duration < min_duration:
        return ProbeResult(path, "too_short", duration)
    return ProbeResult(path, "valid", duration)
