"""Training data for the DC-AE: fixed-length waveform segments read straight from audio files.

Only the requested range of a file is decoded (torchcodec seeks), so the time per sample does not
grow with file length; audio is mixed to mono and resampled to 22050 Hz while decoding. The mel is
*not* computed here: the trainer computes it on its device for the whole batch
(:class:`vocoder.mel.MelSpectrogram`).

Files shorter than a segment are zero-padded at the end (as the reference trainer does). A file
that cannot be used (unreadable, empty, shorter than ``min_seconds``) is replaced by another
randomly chosen file and reported in the batch, so a bad file never stops training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dcae.audio import DEFAULT_SAMPLE_RATE, AudioError, audio_info, load_audio
from preprocess.filelist import FilelistError, read_filelist

MAX_CONSECUTIVE_FAILURES = 32


@dataclass
class Segment:
    """One training example: ``audio`` (segment_samples,), the files skipped to get it, and
    ``valid_samples``: how many samples came from the file (the rest is zero padding)."""

    audio: torch.Tensor
    skipped: list[str]
    valid_samples: int


@dataclass
class SegmentBatch:
    """``audio`` (B, segment_samples) float32; ``skipped`` lists ``"path: reason"`` of bad files met;
    ``valid_samples`` (B,) int64: samples of each row that came from its file (the rest is zero padding)."""

    audio: torch.Tensor
    skipped: list[str]
    valid_samples: torch.Tensor

    def pin_memory(self) -> "SegmentBatch":
        return SegmentBatch(self.audio.pin_memory(), self.skipped, self.valid_samples.pin_memory())

    def to_device(self, device: torch.device) -> "SegmentBatch":
        return SegmentBatch(self.audio.to(device, non_blocking=True), self.skipped,
                            self.valid_samples.to(device, non_blocking=True))


def read_segment(path: str | Path, segment_samples: int, sample_rate: int = DEFAULT_SAMPLE_RATE,
                 min_seconds: float = 0.0, duration: float | None = None,
                 rng: random.Random | None = None) -> torch.Tensor:
    """A random ``(segment_samples,)`` window of ``path`` at ``sample_rate``; short files are zero-padded."""
    audio = read_window(path, segment_samples, sample_rate, min_seconds, duration, rng)
    return F.pad(audio, (0, segment_samples - audio.numel()))


def read_window(path: str | Path, segment_samples: int, sample_rate: int = DEFAULT_SAMPLE_RATE,
                min_seconds: float = 0.0, duration: float | None = None,
                rng: random.Random | None = None) -> torch.Tensor:
    """A random window of ``path`` at ``sample_rate``: (segment_samples,), or the whole file when shorter.

    ``duration`` (seconds) saves reading the header when the caller already knows it; ``rng`` picks
    the window (default: the global ``random``).
    Raises :class:`dcae.audio.AudioError` when the file cannot be read or is shorter than ``min_seconds``.
    """
    if duration is None:
        duration = audio_info(path).duration
    if duration != duration:  # NaN: the header does not tell, decode the whole file
        duration = float("inf")
    if duration < min_seconds:
        raise AudioError(path, f"too short ({duration:.3f} s, need at least {min_seconds} s)")
    rng = rng or random
    segment_seconds = segment_samples / sample_rate
    if duration > segment_seconds and duration != float("inf"):
        offset = rng.uniform(0.0, duration - segment_seconds)
        audio = load_audio(path, sample_rate, offset=offset, duration=segment_seconds)
    else:
        audio = load_audio(path, sample_rate)
        if audio.numel() > segment_samples:
            start = rng.randint(0, audio.numel() - segment_samples)
            audio = audio[start:start + segment_samples]
    if not bool(torch.isfinite(audio).all()):
        raise AudioError(path, "audio contains NaN or Inf values")
    return audio[:segment_samples]


class SegmentDataset(Dataset):
    """Random ``segment_samples``-long windows of the files in a filelist (``path`` or ``path|text`` lines).

    Items are addressed by ``index`` or by ``(index, seed)``: with a seed the window (and any
    replacement file) is drawn from ``random.Random(seed)``, so the item does not depend on which
    process reads it or on a restart (:mod:`dcae.training.sampling`).
    """

    uses_item_seeds = True

    def __init__(self, filelist: str | Path, segment_samples: int, sample_rate: int = DEFAULT_SAMPLE_RATE,
                 min_seconds: float = 0.1):
        self.paths = [entry.path for entry in read_filelist(filelist)]
        if not self.paths:
            raise FilelistError(f"{filelist}: the filelist has no audio files")
        self.segment_samples = segment_samples
        self.sample_rate = sample_rate
        self.min_seconds = min_seconds
        self._durations: dict[int, float] = {}  # header reads cost as much as decoding a short file

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> Segment:
        index, seed = key if isinstance(key, tuple) else (key, None)
        rng = random.Random(seed) if seed is not None else random
        skipped: list[str] = []
        for _ in range(MAX_CONSECUTIVE_FAILURES):
            try:
                path = self.paths[index]
                if index not in self._durations:
                    self._durations[index] = audio_info(path).duration
                audio = read_window(path, self.segment_samples, self.sample_rate, self.min_seconds,
                                    self._durations[index], rng)
                return Segment(F.pad(audio, (0, self.segment_samples - audio.numel())), skipped, audio.numel())
            except AudioError as e:
                skipped.append(str(e))
                index = rng.randrange(len(self.paths))
        raise RuntimeError(f"{MAX_CONSECUTIVE_FAILURES} files in a row could not be used "
                           f"(last: {skipped[-1]}); check the filelist")


def collate_segments(items: list[Segment]) -> SegmentBatch:
    return SegmentBatch(torch.stack([it.audio for it in items]), [s for it in items for s in it.skipped],
                        torch.tensor([it.valid_samples for it in items], dtype=torch.int64))


def note_skipped(batch: SegmentBatch, skipped: dict[str, int], log) -> None:
    """Count each ``"path: reason"`` the batch reports in ``skipped``, logging a file the first time it appears."""
    for problem in batch.skipped:
        if problem not in skipped:
            log(f"skipped {problem}")
        skipped[problem] = skipped.get(problem, 0) + 1


def read_clip(path: str | Path, max_samples: int, multiple_of: int, sample_rate: int = DEFAULT_SAMPLE_RATE) -> torch.Tensor:
    """The start of ``path``: at most ``max_samples``, cut to a multiple of ``multiple_of`` -> (samples,).

    For validation: deterministic, no padding. Raises ``AudioError`` when shorter than ``multiple_of``.
    """
    audio = load_audio(path, sample_rate, duration=max_samples / sample_rate)[:max_samples]
    usable = audio.numel() // multiple_of * multiple_of
    if usable == 0:
        raise AudioError(path, f"too short ({audio.numel()} samples, need at least {multiple_of})")
    return audio[:usable]
