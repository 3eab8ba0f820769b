"""Speaker similarity (SIM): cosine of two speaker embeddings, reference vs degraded (or generated vs
prompt). The speaker model is Resemblyzer's encoder by default (:mod:`tts.speakers.resemblyzer_encoder`:
what it is, how each signal is prepared), or any model :func:`tts.speakers.verification.load_verifier`
loads, chosen with :func:`use_speaker_model` (``--sim-model``): an ONNX CAM++/ECAPA model, or a
transformers x-vector model (WavLM / UniSpeech-SAT fine-tuned for verification) from a folder or hub id.
SIM values depend on the model: compare them only with SIM from the same model.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from evaluation.metrics import MetricError, as_numpy, resample_to
from tts.speakers import resemblyzer_encoder
from tts.speakers.resemblyzer_encoder import (  # noqa: F401  (the names evaluation uses)
    ENCODER_RATE,
    INSTALL_HINT,
    EncoderUnavailable,
    speaker_encoder,
)
from tts.speakers.resemblyzer_encoder import speaker_embedding as _embedding
from tts.speakers.verification import RESEMBLYZER, VerifierError, load_verifier

_selected = [RESEMBLYZER]  # the speaker model of this process (set before scoring workers fork)


def use_speaker_model(spec: str) -> None:
    """Compute SIM with ``spec`` (``"resemblyzer"``, a ``.onnx`` file, or a transformers x-vector folder
    or hub id) from now on in this process (and in workers forked after)."""
    _selected[0] = spec


def speaker_model() -> str:
    return _selected[0]


@lru_cache(maxsize=4)
def _verifier(spec: str):
    return load_verifier(spec, "--sim-model")


def encoder_available() -> str | None:
    """None when the selected speaker model can be used, else the one-line reason."""
    if _selected[0] == RESEMBLYZER:
        return resemblyzer_encoder.encoder_available()
    try:
        _verifier(_selected[0])
    except VerifierError as e:
        return str(e)
    return None


def encoder_description() -> str:
    if _selected[0] == RESEMBLYZER:
        return resemblyzer_encoder.encoder_description()
    return _verifier(_selected[0]).name


def warm_up() -> None:
    """Load the selected speaker model in this process (forked workers inherit it). ONNX sessions are
    left to each worker: an onnxruntime thread pool does not survive a fork."""
    if _selected[0] == RESEMBLYZER:
        resemblyzer_encoder.warm_up()
    elif not _selected[0].lower().endswith(".onnx"):
        _verifier(_selected[0])


def speaker_embedding(audio, sample_rate: int) -> np.ndarray:
    """(samples,) at ``sample_rate`` -> the selected model's embedding (Resemblyzer's: L2-normed (256,))."""
    wave = as_numpy(audio)
    if wave.size == 0:
        raise MetricError("SIM needs a non-empty signal")
    if _selected[0] == RESEMBLYZER:
        return _embedding(wave, sample_rate)
    import torch

    verifier = _verifier(_selected[0])
    wave = resample_to(wave, sample_rate, verifier.sample_rate)
    try:
        return verifier.embed(torch.from_numpy(wave.astype(np.float32))).numpy()
    except ValueError as e:
        raise MetricError(f"SIM: {e}") from None


def speaker_similarity(ref, deg, sample_rate: int) -> float:
    """Cosine similarity of the speaker embeddings of ``ref`` and ``deg`` (1-D, same rate).

    The lengths may differ. Resemblyzer embeddings are non-negative, so its SIM lies in [0, 1]; other
    models' in [-1, 1]."""
    a, b = speaker_embedding(ref, sample_rate), speaker_embedding(deg, sample_rate)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
