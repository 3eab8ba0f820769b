"""Speaker similarity (SIM): cosine of two speaker embeddings, reference vs degraded (or generated vs
prompt), from Resemblyzer's encoder (:mod:`tts.speakers.resemblyzer_encoder`: what it is, how each
signal is prepared). SIM values depend on the encoder: compare them only with SIM from the same encoder.
"""
from __future__ import annotations

import numpy as np

from evaluation.metrics import MetricError, as_numpy
from tts.speakers.resemblyzer_encoder import (  # noqa: F401  (the names evaluation uses)
    ENCODER_RATE,
    INSTALL_HINT,
    EncoderUnavailable,
    encoder_available,
    encoder_description,
    speaker_encoder,
    warm_up,
)
from tts.speakers.resemblyzer_encoder import speaker_embedding as _embedding


def speaker_embedding(audio, sample_rate: int) -> np.ndarray:
    """(samples,) at ``sample_rate`` -> L2-normed Resemblyzer embedding (256,) float32."""
    wave = as_numpy(audio)
    if wave.size == 0:
        raise MetricError("SIM needs a non-empty signal")
    return _embedding(wave, sample_rate)


def speaker_similarity(ref, deg, sample_rate: int) -> float:
    """Cosine similarity of the speaker embeddings of ``ref`` and ``deg`` (1-D, same rate).

    The lengths may differ. Resemblyzer embeddings are non-negative, so SIM lies in [0, 1].
    """
    a, b = speaker_embedding(ref, sample_rate), speaker_embedding(deg, sample_rate)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
