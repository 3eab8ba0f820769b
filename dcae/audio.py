"""Audio I/O: decode any file to a mono float32 waveform, check it, resample it, write it.

Decoding uses torchcodec (FFmpeg: every container/codec FFmpeg knows; FFmpeg mixes down to mono,
and only the requested time range is decoded, so a 1 s segment of a 3 h file is cheap). When
torchcodec or FFmpeg is unavailable or fails, soundfile (libsndfile: WAV, FLAC, OGG...) is the
fallback. Rate conversion is always :func:`resample` (one resampler for files and tensors: a file
decoded at a rate equals the tensor path ``resample(load_audio(path, None), native_rate, rate)``).

Writing picks the format from the extension: ``.wav`` (16-bit PCM) and ``.flac`` with
libsndfile, everything else FFmpeg can encode (``.mp3``, ``.ogg``, ``.m4a``, ``.opus``...) with
torchcodec's ``AudioEncoder``.

Every failure is an :class:`AudioError` whose message is one line ``"<path>: <reason>"``.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from dcae.atomic import atomic_path
from dcae.audio_shards import ShardAudioError, member_bytes, split_member
from dcae.paths import missing_reason

DEFAULT_SAMPLE_RATE = 22050  # the toolkit's audio rate: BigVGAN-v2 22 kHz and the DC-AE's mel (the one definition)
SILENCE_PEAK = 1e-5  # a waveform whose peak |x| is below this is "silent"
RESAMPLE_BLOCK = 1 << 20  # input samples per block of :func:`resample` (bounds its extra memory)
LIBSNDFILE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}  # written with soundfile, 16-bit PCM


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


def _torchcodec_decoder(source: Path | bytes, sample_rate: int | None):
    from torchcodec.decoders import AudioDecoder  # imported lazily: loads FFmpeg

    return AudioDecoder(source if isinstance(source, bytes) else str(source), sample_rate=sample_rate, num_channels=1)


def _source(path: Path) -> Path | bytes:
    """What the decoders read: the file, or the bytes of a shard member (``SHARD::KEY``,
    :mod:`dcae.audio_shards`). Raises :class:`AudioError` for a missing or empty one."""
    member = split_member(path)
    if member is not None:
        try:
            data = member_bytes(*member)
        except ShardAudioError as e:
            raise AudioError(path, str(e).removeprefix(f"{path}: ")) from None
        if not data:
            raise AudioError(path, "empty member (0 bytes)")
        return data
    if not path.is_file():
        raise AudioError(path, missing_reason(path))
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    return path


def audio_info(path: str | Path) -> AudioInfo:
    """Sample rate, channels, length of ``path`` from its header only (nothing is decoded). ``path`` may
    name a member of an audio shard (``SHARD::KEY``)."""
    path = Path(path)
    source = _source(path)
    try:
        meta = _torchcodec_decoder(source, None).metadata
        sr, ch = int(meta.sample_rate), int(meta.num_channels)
        duration = meta.duration_seconds if meta.duration_seconds is not None else meta.duration_seconds_from_header
        if duration is None:
            return AudioInfo(sr, ch, None, float("nan"))
        return AudioInfo(sr, ch, int(round(duration * sr)), float(duration))
    except Exception as codec_error:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError/ImportError
        import soundfile

        try:
            info = soundfile.info(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        except Exception:  # noqa: BLE001
            raise AudioError(path, f"not a readable audio file ({_decoder_reason(codec_error, path)})") from None
        return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), float(info.duration))


def load_audio(path: str | Path, sample_rate: int | None = DEFAULT_SAMPLE_RATE, *,
               offset: float = 0.0, duration: float | None = None) -> torch.Tensor:
    """Decode ``[offset, offset + duration)`` seconds of ``path`` -> (samples,) float32 mono.

    The waveform is mixed down to mono and resampled to ``sample_rate`` (``None`` keeps the
    file's own rate). ``path`` may name a member of an audio shard (``SHARD::KEY``,
    :mod:`dcae.audio_shards`). Raises :class:`AudioError` for missing, corrupt or empty files.
    """
    path = Path(path)
    source = _source(path)
    stop = None if duration is None else offset + duration
    try:
        samples = _torchcodec_decoder(source, None).get_samples_played_in_range(offset, stop)
        audio, native = samples.data[0], int(samples.sample_rate)
    except Exception as codec_error:  # noqa: BLE001 - fall back to libsndfile
        audio, native = _load_with_soundfile(path, source, offset, duration, codec_error)
    audio = audio.to(torch.float32).contiguous()
    if audio.numel() == 0:
        raise AudioError(path, "no audio samples" + (" in the requested range" if offset or duration else ""))
    if sample_rate is not None and sample_rate != native:
        audio = resample(audio, native, sample_rate)
    return audio


def _load_with_soundfile(path: Path, source: Path | bytes, offset: float, duration: float | None,
                         codec_error: Exception) -> tuple[torch.Tensor, int]:
    """(samples,) mono at the file's own rate, and that rate."""
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as f:
            native = f.samplerate
            start = int(round(offset * native))
            frames = -1 if duration is None else int(round(duration * native))
            f.seek(min(start, f.frames))
            data = f.read(frames, dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001 - report the first decoder's reason, it knows more formats
        raise AudioError(path, f"not a readable audio file ({_decoder_reason(codec_error, path)})") from None
    return torch.from_numpy(data.mean(axis=1)), native


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


def load_checked_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """:func:`load_audio` then :func:`check_audio`: (samples,) float32 at ``sample_rate``, or :class:`AudioError`."""
    audio = load_audio(path, sample_rate)
    check_audio(audio, path)
    return audio


def save_audio(path: str | Path, audio: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Atomically write ``audio`` ((samples,) or (1, samples), float in [-1, 1]) in the format the
    extension of ``path`` names (module docstring). Raises :class:`AudioError` for an extension
    FFmpeg cannot write; nothing is left at ``path`` then."""
    import soundfile

    path = Path(path)
    data = audio.detach().to("cpu", torch.float32).numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, np.float32)
    if data.ndim == 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 1:
        raise ValueError(f"save_audio expects (samples,) or (1, samples), got shape {data.shape}")
    data = np.clip(data, -1.0, 1.0)
    kind = LIBSNDFILE_FORMATS.get(path.suffix.lower())
    if kind is not None:
        with atomic_path(path) as tmp:
            soundfile.write(str(tmp), data, int(sample_rate), subtype="PCM_16", format=kind)
        return
    try:
        with atomic_path(path, keep_suffix=True) as tmp:
            _encode_with_ffmpeg(tmp, torch.from_numpy(data), int(sample_rate))
    except Exception as e:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError/ImportError
        raise AudioError(path, _unwritable(path, e)) from None


def check_output_suffix(path: str | Path) -> None:
    """Raise :class:`AudioError` now (before any work) if :func:`save_audio` cannot write ``path``'s format."""
    import tempfile

    path = Path(path)
    if path.suffix.lower() in LIBSNDFILE_FORMATS:
        return
    with tempfile.TemporaryDirectory() as folder:
        try:
            _encode_with_ffmpeg(Path(folder) / f"probe{path.suffix}", torch.zeros(1024), DEFAULT_SAMPLE_RATE)
        except Exception as e:  # noqa: BLE001
            raise AudioError(path, _unwritable(path, e)) from None


def _encode_with_ffmpeg(path: Path, samples: torch.Tensor, sample_rate: int) -> None:
    """(samples,) -> ``path`` with FFmpeg, format from the extension. A codec that cannot take
    ``sample_rate`` gets the highest rate it supports (Opus: 48 kHz; FFmpeg resamples)."""
    from torchcodec.encoders import AudioEncoder

    if not path.suffix:
        raise ValueError("the file name has no extension")
    encoder = AudioEncoder(samples.reshape(1, -1), sample_rate=sample_rate)
    try:
        encoder.to_file(str(path))
    except RuntimeError as e:
        supported = re.search(r"[Ss]upported sample rate values are:\s*([\d,\s]+)", str(e))
        rates = sorted(int(r) for r in re.findall(r"\d+", supported.group(1))) if supported else []
        if not rates:
            raise
        encoder.to_file(str(path), sample_rate=rates[-1])


def _unwritable(path: Path, error: Exception) -> str:
    reason = _decoder_reason(error, path).split(". ")[0].strip(" ,.;:") or type(error).__name__
    if "AVFormatContext" in reason:  # FFmpeg has no muxer for this extension
        reason = "no format with this extension"
    return (f"cannot write audio as '{path.suffix}' (FFmpeg: {reason}); "
            "use .wav or .flac, or an extension FFmpeg encodes such as .mp3, .ogg, .m4a")


def resample(audio: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample (..., samples) along the last axis from ``orig_sr`` to ``new_sr``: the project's one
    resampler (files are decoded at their own rate and go through it too).

    Method: polyphase FIR filtering (``scipy.signal.resample_poly``, Kaiser-windowed sinc
    low-pass, beta 5.0) at the rational ratio ``new_sr / orig_sr``, computed in float64 in blocks of
    ``RESAMPLE_BLOCK`` input samples with enough context that the result equals one pass over the
    whole signal (memory stays flat for hours of audio). The output has
    ``ceil(samples * new_sr / orig_sr)`` samples; dtype and device are kept.
    """
    if orig_sr == new_sr:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(int(new_sr), int(orig_sr))
    up, down = ratio.numerator, ratio.denominator
    n = audio.shape[-1]
    expected = math.ceil(n * up / down)
    # numpy, not torch, for the copies: torch's multi-threaded elementwise ops cost milliseconds each
    # on a busy CPU, more than the filtering itself
    x = audio.detach().to("cpu").reshape(-1, n)
    x = (x if x.dtype in (torch.float32, torch.float64) else x.float()).numpy()
    out = np.empty((x.shape[0], expected), dtype=x.dtype)
    # output m is centred on input m * down / up and reaches 10 * max(up, down) / up inputs either
    # side (resample_poly's filter); block and context starts are multiples of ``down``, so every
    # block's outputs fall on the same output grid as one pass over the whole signal
    context = math.ceil((10 * max(up, down) // up + 2) / down) * down
    block = max(1, RESAMPLE_BLOCK // down) * down
    for k0 in range(0, n, block):
        k1 = min(n, k0 + block)
        c0, c1 = max(0, k0 - context), min(n, k1 + context)
        y = resample_poly(x[:, c0:c1].astype(np.float64), up, down, axis=-1)
        m0, m1 = k0 * up // down, (expected if k1 == n else k1 * up // down)
        skip = (k0 - c0) * up // down
        out[:, m0:m1] = y[:, skip: skip + m1 - m0]
    return torch.from_numpy(out).reshape(*audio.shape[:-1], expected).to(audio.device, audio.dtype)
