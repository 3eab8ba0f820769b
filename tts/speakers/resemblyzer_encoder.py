"""Resemblyzer's pretrained speaker-verification encoder: speech -> a fixed 256-d speaker embedding,
for speaker similarity (SIM, :mod:`evaluation.speaker`) and for the embeddings ``dcae speakers``
writes (:mod:`tts.speakers.verification`).

The speaker encoder is Resemblyzer's ``VoiceEncoder`` (the ``resemblyzer`` package, extra
``[sim]``): a 3-layer LSTM trained with the GE2E loss that maps 16 kHz speech to an L2-normed
256-d embedding. Its weights ship inside the package, so SIM works offline. Each signal goes
through Resemblyzer's own preparation (:func:`resemblyzer.preprocess_wav`: volume raised to
-30 dBFS if quieter, long silences cut with WebRTC VAD) and ``embed_utterance`` (1.6 s windows,
averaged). Rate conversion to 16 kHz uses the project's one resampler (:func:`dcae.audio.resample`).

SIM values depend on the encoder: compare them only with SIM from the same encoder.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Iterator

import numpy as np
import torch

from dcae.audio import resample

ENCODER_RATE = 16000
INSTALL_HINT = 'pip install "dc-speech-vae[sim]" && pip install --no-deps resemblyzer==0.1.4 (README, "Extras")'


class EncoderUnavailable(RuntimeError):
    """The speaker encoder package cannot be imported; the message says why and how to fix it."""


@functools.lru_cache(maxsize=1)
def _resemblyzer():
    try:
        with warnings.catch_warnings():  # its imports use deprecated scipy / pkg_resources names
            warnings.simplefilter("ignore")
            import resemblyzer
    except ImportError as e:
        raise EncoderUnavailable(f"speaker similarity needs the resemblyzer package ({e}); {INSTALL_HINT}") from None
    return resemblyzer


def encoder_available() -> str | None:
    """None when the encoder can be used, else the one-line reason it cannot."""
    try:
        _resemblyzer()
    except EncoderUnavailable as e:
        return str(e)
    return None


def encoder_description() -> str:
    """e.g. ``resemblyzer 0.1.4 VoiceEncoder (GE2E LSTM, 256-d, 16 kHz)``, for reports."""
    from importlib.metadata import version

    return f"resemblyzer {version('resemblyzer')} VoiceEncoder (GE2E LSTM, 256-d, 16 kHz)"


@functools.lru_cache(maxsize=1)
def speaker_encoder():
    """The packaged Resemblyzer voice encoder on CPU (loaded once per process)."""
    return _resemblyzer().VoiceEncoder("cpu", verbose=False)


def warm_up() -> None:
    """Load the encoder and run it once (librosa compiles its numba kernels on first use, seconds),
    e.g. before forking worker processes that then inherit all of it."""
    noise = np.random.default_rng(0).standard_normal(ENCODER_RATE * 2) * 0.1
    speaker_embedding(noise, ENCODER_RATE)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """The LSTM on short windows runs fastest on one thread (2 threads on 2 busy cores: 10-100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def speaker_embedding(audio, sample_rate: int) -> np.ndarray:
    """(samples,) at ``sample_rate`` -> L2-normed speaker embedding (256,) float32.

    When the voice-activity detector finds no speech at all, the untrimmed signal is embedded
    (a badly degraded file then scores low instead of failing). An empty signal raises ValueError.
    """
    wave = torch.as_tensor(np.ascontiguousarray(audio), dtype=torch.float32)
    if wave.ndim != 1 or wave.numel() == 0:
        raise ValueError(f"a speaker embedding needs a non-empty 1-D signal, got shape {tuple(wave.shape)}")
    if sample_rate != ENCODER_RATE:
        wave = resample(wave, sample_rate, ENCODER_RATE)
    wave = wave.numpy()
    resemblyzer = _resemblyzer()
    prepared = resemblyzer.preprocess_wav(wave)
    if prepared.size == 0:
        prepared = resemblyzer.normalize_volume(wave, resemblyzer.audio.audio_norm_target_dBFS, increase_only=True)
    with _one_thread():
        return speaker_encoder().embed_utterance(prepared)
