"""Audio I/O: decode any file to a mono float32 waveform, check it, resample it, write WAV.

Decoding uses torchcodec (FFmpeg: every container/codec FFmpeg knows; FFmpeg resamples and
mixes down to mono, and only the requested time range is decoded, so a 1 s segment of a 3 h
file is cheap). When torchcodec or FFmpeg is unavailable or fails, soundfile (libsndfile: WAV,
FLAC, OGG...) is the fallback and :func:`resample` does the rate conversion.

Every failure is an :class:`AudioError` whose message is one line ``"<path>: <reason>"``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from dcae.utils.atomic import atomic_path

DEFAULT_SAMPLE_RATE = 22050
SILENCE_PEAK = 1e-5  # a waveform whose peak |x| is below this is "silent"


class AudioError(ValueError):
    """An audio file that cannot be used; ``str(e)`` is ``"<path>: <reason>"`` on one line."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = _one_line(reason)
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says. ``num_samples`` is None when the container does not tell."""

    sample_rate: int
    num_channels: int
    num_samples: int | None
    duration: float


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else "unknown error"


def _decoder_reason(error: Exception, path: Path) -> str:
    """FFmpeg's own words, without torchcodec's C++ source location and the repeated path."""
    text = re.sub(r"^.*\.cpp:\d+,\s*", "", _one_line(error))
    return re.sub(r"\s+", " ", text.replace(str(path), "")).strip() or type(error).__name__


def _torchcodec_decoder(path: Path, sample_rate: int | None):
    from torchcodec.decoders import AudioDecoder  # imported lazily: loads FFmpeg

    return AudioDecoder(str(path), sample_rate=sample_rate, num_channels=1)


def audio_info(path: str | Path) -> AudioInfo:
    """Sample rate, channels, length of ``path`` from its header only (nothing is decoded)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    try:
        meta = _torchcodec_decoder(path, None).metadata
        sr, ch = int(meta.sample_rate), int(meta.num_channels)
        duration = meta.duration_seconds if meta.duration_seconds is not None else meta.duration_seconds_from_header
        if duration is None:
            return AudioInfo(sr, ch, None, float("nan"))
        return AudioInfo(sr, ch, int(round(duration * sr)), float(duration))
    except Exception as codec_error:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError/ImportError
        import soundfile

        try:
            info = soundfile.info(str(path))
        except Exception:  # noqa: BLE001
            raise AudioError(path, f"not a readable audio file ({_decoder_reason(codec_error, path)})") from None
        return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), float(info.duration))


def load_audio(path: str | Path, sample_rate: int | None = DEFAULT_SAMPLE_RATE, *,
               offset: float = 0.0, duration: float | None = None) -> torch.Tensor:
    """Decode ``[offset, offset + duration)`` seconds of ``path`` -> (samples,) float32 mono.

    The waveform is mixed down to mono and resampled to ``sample_rate`` (``None`` keeps the
    file's own rate). Raises :class:`AudioError` for missing, corrupt or empty files.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    stop = None if duration is None else offset + duration
    try:
        decoder = _torchcodec_decoder(path, sample_rate)
        audio = decoder.get_samples_played_in_range(offset, stop).data[0]
    except Exception as codec_error:  # noqa: BLE001 - fall back to libsndfile
        audio = _load_with_soundfile(path, sample_rate, offset, duration, codec_error)
    audio = audio.to(torch.float32).contiguous()
    if audio.numel() == 0:
        raise AudioError(path, "no audio samples" + (" in the requested range" if offset or duration else ""))
    return audio


def _load_with_soundfile(path: Path, sample_rate: int | None, offset: float, duration: float | None,
                         codec_error: Exception) -> torch.Tensor:
    import soundfile

    try:
        with soundfile.SoundFile(str(path)) as f:
            native = f.samplerate
            start = int(round(offset * native))
            frames = -1 if duration is None else int(round(duration * native))
            f.seek(min(start, f.frames))
            data = f.read(frames, dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001 - report the first decoder's reason, it knows more formats
        raise AudioError(path, f"not a readable audio file ({_decoder_reason(codec_error, path)})") from None
    audio = torch.from_numpy(data.mean(axis=1))
    if sample_rate is not None and sample_rate != native:
        audio = resample(audio, native, sample_rate)
    return audio


def check_audio(audio: torch.Tensor, path: str | Path, min_samples: int = 256) -> None:
    """Raise :class:`AudioError` if ``audio`` ((samples,) or (C, samples)) is unusable.

    Unusable means: empty, shorter than ``min_samples`` (default one mel hop), containing
    NaN/Inf, or silent (peak below 1e-5).
    """
    n = audio.shape[-1] if audio.ndim else 0
    if audio.numel() == 0:
        raise AudioError(path, "empty audio (0 samples)")
    if n < min_samples:
        raise AudioError(path, f"too short ({n} samples, need at least {min_samples})")
    if not bool(torch.isfinite(audio).all()):
        raise AudioError(path, "audio contains NaN or Inf values")
    peak = float(audio.abs().max())
    if peak < SILENCE_PEAK:
        raise AudioError(path, f"silent audio (peak {peak:.2e})")


def save_audio(path: str | Path, audio: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Atomically write ``audio`` ((samples,) or (1, samples), float in [-1, 1]) as 16-bit WAV."""
    import soundfile

    data = audio.detach().to("cpu", torch.float32).numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, np.float32)
    if data.ndim == 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 1:
        raise ValueError(f"save_audio expects (samples,) or (1, samples), got shape {data.shape}")
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), np.clip(data, -1.0, 1.0), int(sample_rate), subtype="PCM_16", format="WAV")


def resample(audio: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample (..., samples) along the last axis from ``orig_sr`` to ``new_sr``.

    Method: polyphase FIR filtering (``scipy.signal.resample_poly``, Kaiser-windowed sinc
    low-pass, beta 5.0) at the rational ratio ``new_sr / orig_sr``. The output has
    ``ceil(samples * new_sr / orig_sr)`` samples; dtype and device are kept.
    """
    if orig_sr == new_sr:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(int(new_sr), int(orig_sr))
    data = audio.detach().to("cpu", torch.float64).numpy()
    out = resample_poly(data, ratio.numerator, ratio.denominator, axis=-1)
    expected = math.ceil(audio.shape[-1] * new_sr / orig_sr)
    return torch.from_numpy(np.ascontiguousarray(out[..., :expected])).to(audio.device, audio.dtype)
