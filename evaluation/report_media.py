"""The media of one file on the listening page: its renderings as audio files and their log-mel images.

Audio is written in a format every current browser plays, encoded by FFmpeg (through
torchcodec's ``AudioEncoder``):

- ``mp3`` (default): MPEG audio layer III, mono, at the file's own rate (48 kHz when MP3 has no
  such rate), 96 kbit/s up to 24 kHz, 128 kbit/s above: near-transparent for speech, plays everywhere;
- ``opus``: Ogg Opus, mono, 48 kHz, 64 kbit/s (smaller for the same quality; Safari plays it from 18.4);
- ``wav``: 16-bit PCM at the file's own rate (lossless, 3-6x larger).

Mel images are BigVGAN's log-mel (80 bins, 22.05 kHz, hop 256) as 64-colour PNG (magma), one
pixel per bin and frame (frames averaged in groups for files longer than ``MEL_MAX_WIDTH``
frames, ~4.6 s), low frequencies at the bottom; the renderings of one file share one colour scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dcae.atomic import atomic_path, atomic_write_bytes
from dcae.audio import AudioError, save_audio
from evaluation import AUDIO_FORMATS
from evaluation.metrics import MetricError, log_mel
from evaluation.scoring import read_native

MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATE = 48000
MEL_COLORMAP = "magma"
MEL_COLORS = 64
MEL_MAX_WIDTH = 400


@dataclass(frozen=True)
class ReportFile:
    """One row of the page: ``audio`` maps each rendering's label (e.g. ``"reference"``) to its file."""

    name: str
    audio: dict[str, Path]


@dataclass
class RenderedMedia:
    """Paths are relative to the report folder (POSIX); a rendering that could not be read is left out."""

    audio: dict[str, str] = field(default_factory=dict)
    mel: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def encode_audio(path: Path, audio: np.ndarray, sample_rate: int, audio_format: str) -> None:
    """Write (samples,) float audio to ``path`` in ``audio_format`` (see the module docstring)."""
    if audio_format == "wav":
        save_audio(path, audio, sample_rate)
        return
    import torch
    from torchcodec.encoders import AudioEncoder

    samples = torch.from_numpy(np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0))[None]
    if audio_format == "opus":
        options = {"format": "opus", "sample_rate": OPUS_RATE, "bit_rate": 64000}
    elif audio_format == "mp3":
        rate = sample_rate if sample_rate in MP3_RATES else 48000
        options = {"format": "mp3", "sample_rate": rate, "bit_rate": 96000 if rate <= 24000 else 128000}
    else:
        raise ValueError(f"unknown audio format {audio_format!r} (choose from {', '.join(AUDIO_FORMATS)})")
    data = AudioEncoder(samples, sample_rate=int(sample_rate)).to_tensor(num_channels=1, **options)
    atomic_write_bytes(path, data.numpy().tobytes())


def _narrow(mel: np.ndarray, width: int) -> np.ndarray:
    """(bins, frames) -> (bins, <= width): frames averaged in equal groups."""
    group = -(-mel.shape[1] // width)
    if group <= 1:
        return mel
    frames = mel.shape[1] // group * group
    return mel[:, :frames].reshape(mel.shape[0], -1, group).mean(axis=2)


def save_mel_images(paths: dict[str, Path], mels: dict[str, np.ndarray]) -> None:
    """Each (80, frames) log-mel as a palette PNG, all on the colour scale of the whole set."""
    import matplotlib
    from PIL import Image

    low = min(float(np.percentile(m, 1)) for m in mels.values())
    high = max(float(m.max()) for m in mels.values())
    palette = (matplotlib.colormaps[MEL_COLORMAP](np.linspace(0, 1, MEL_COLORS))[:, :3] * 255).round()
    for label, mel in mels.items():
        scaled = np.clip((_narrow(mel, MEL_MAX_WIDTH) - low) / max(high - low, 1e-9), 0, 1)[::-1]
        image = Image.fromarray(np.round(scaled * (MEL_COLORS - 1)).astype(np.uint8))  # mode L ...
        image.putpalette(palette.astype(np.uint8).ravel().tolist())  # ... becomes a palette image
        with atomic_path(paths[label]) as tmp:
            image.save(tmp, format="PNG", optimize=True)


def render_media(item: ReportFile, report_dir: Path, folder: str, audio_format: str,
                 reuse_wav: bool = False) -> RenderedMedia:
    """Write ``folder/<label>.<ext>`` and ``folder/<label>_mel.png`` under ``report_dir`` for each rendering.

    With ``reuse_wav`` (and ``audio_format="wav"``), a rendering that already is a WAV file inside
    ``report_dir`` is linked as it is instead of copied. Never raises for bad audio: a rendering
    that cannot be read gets a line in ``problems``.
    """

    result = RenderedMedia()
    mels = {}
    for label, source in item.audio.items():
        stem = f"{folder}/{_slug(label)}"
        try:
            audio, rate = read_native(source)
            if audio.size == 0 or not np.isfinite(audio).all():
                raise AudioError(source, "empty or not finite")
            result.seconds[label] = audio.size / rate
            if reuse_wav and audio_format == "wav" and _is_wav_under(source, report_dir):
                result.audio[label] = Path(source).resolve().relative_to(report_dir.resolve()).as_posix()
            else:
                result.audio[label] = f"{stem}.{audio_format}"
                encode_audio(report_dir / result.audio[label], audio, rate, audio_format)
            mels[label] = log_mel(audio, rate).numpy()
        except (AudioError, MetricError, RuntimeError, ValueError) as e:
            result.problems.append(f"{label}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    if mels:
        result.mel = {label: f"{folder}/{_slug(label)}_mel.png" for label in mels}
        save_mel_images({label: report_dir / rel for label, rel in result.mel.items()}, mels)
    return result


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)


def _is_wav_under(path: Path, root: Path) -> bool:
    path = Path(path).resolve()
    return path.suffix.lower() == ".wav" and path.is_relative_to(root.resolve())
