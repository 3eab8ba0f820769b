"""Predicted MOS (``mos`` column): a non-intrusive speech-quality model that scores one signal alone, no
reference needed, so it judges generated speech as well as reconstructions. Two predictors
(:func:`use_mos_model`, ``--mos-model``): DistillMOS (default) and DNSMOS.

The default model is **DistillMOS** (Stahl & Gamper, "Distillation and pruning for scalable self-supervised
representation-based speech quality assessment", ICASSP 2025; PyPI ``distillmos`` 0.9.1, MIT): a
4.1M-parameter convolution + transformer model distilled from an XLS-R-based quality model trained on
human MOS ratings; its weights ship inside the wheel, so it runs offline. It takes 16 kHz audio,
scales it to a peak of 1, cuts it into 7.68 s windows (shorter signals are zero-padded to one
window; longer ones get overlapping windows whose scores are averaged) and predicts a MOS in 1-5.

Install: ``pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0`` (:data:`INSTALL_HINT`). Both
declare ``torchaudio`` (and xls-r-sqa librosa and transformers for models we do not use); the model
itself needs neither. DistillMOS imports torchaudio at its top for a file loader we never call: the
stand-in of :mod:`dcae.torchaudio_stand_in` takes its place while it imports. Audio is resampled to
16 kHz by :func:`dcae.audio.resample`, as everywhere in evaluation.

**DNSMOS** (``--mos-model dnsmos``; Reddy et al., ICASSP 2022, Microsoft's DNS Challenge P.835 model):
the ONNX models shipped in the ``speechmos`` 0.0.1.1 wheel (MIT; extra ``[mos]``: speechmos,
onnxruntime, librosa), run by that package; the column is its OVRL score (overall quality, 1-5, from
9.01 s windows every second; a shorter signal is repeated to 9.01 s).
"""
from __future__ import annotations

import contextlib
import io
from functools import lru_cache

import numpy as np

from dcae.torchaudio_stand_in import import_without_torchaudio
from evaluation.metrics import MetricError, as_numpy, resample_to

MOS_RATE = 16000
INSTALL_HINT = "pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0 (README, \"Extras\")"
DNSMOS_HINT = 'pip install "dc-speech-vae[mos]" (speechmos, onnxruntime, librosa; README, "Extras")'
MOS_MODELS = ("distillmos", "dnsmos")
_selected = ["distillmos"]  # the predictor of this process (set before scoring workers fork)


def use_mos_model(name: str) -> None:
    """Predict MOS with ``name`` (:data:`MOS_MODELS`) from now on in this process and workers forked after."""
    if name not in MOS_MODELS:
        raise ValueError(f"unknown MOS model {name!r} (choose from {', '.join(MOS_MODELS)})")
    _selected[0] = name


class MOSUnavailable(RuntimeError):
    """The MOS model cannot be loaded (one line naming what to install)."""


@lru_cache(maxsize=1)
def _package():
    try:
        return import_without_torchaudio("distillmos")
    except ImportError as e:
        raise MOSUnavailable(f"the MOS predictor needs distillmos ({e}); install it: {INSTALL_HINT}") from None


@lru_cache(maxsize=1)
def _dnsmos():
    try:
        import onnxruntime  # noqa: F401
        from speechmos import dnsmos
    except ImportError as e:
        raise MOSUnavailable(f"--mos-model dnsmos needs {e.name}; install it: {DNSMOS_HINT}") from None
    return dnsmos


def mos_available() -> str | None:
    """None when the selected MOS model can be used, else the one-line reason."""
    try:
        _package() if _selected[0] == "distillmos" else _dnsmos()
    except MOSUnavailable as e:
        return str(e)
    return None


def mos_description() -> str:
    if _selected[0] == "dnsmos":
        return "DNSMOS P.835 OVRL (speechmos 0.0.1.1 ONNX models; 16 kHz, 1-5)"
    return "DistillMOS (distillmos 0.9.1, ConvTransformerSQAModel, distill_mos_v7 weights; 16 kHz, 1-5)"


@lru_cache(maxsize=1)
def mos_model():
    """The DistillMOS model in eval mode, loaded once per process (its load message silenced)."""
    package = _package()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints where its weights came from
        model = package.ConvTransformerSQAModel()
    return model.eval()


def warm_up() -> None:
    """Load the model in this process (forked scoring workers inherit it). DNSMOS's onnxruntime sessions
    are left to each worker: an onnxruntime thread pool does not survive a fork."""
    if _selected[0] == "distillmos":
        mos_model()


def predict_mos(audio, sample_rate: int) -> float:
    """Predicted MOS (1-5) of a (samples,) signal at ``sample_rate``. Raises :class:`MetricError` for an
    empty or silent signal."""
    import torch

    wave = as_numpy(audio)
    if wave.size == 0 or not np.isfinite(wave).all() or float(np.abs(wave).max()) < 1e-5:
        raise MetricError("MOS needs a non-empty, finite, non-silent signal")
    wave = resample_to(wave, sample_rate, MOS_RATE).astype(np.float32)
    if _selected[0] == "dnsmos":
        return float(_dnsmos().run(np.clip(wave, -1.0, 1.0), MOS_RATE)["ovrl_mos"])
    with torch.inference_mode():
        return float(mos_model()(torch.from_numpy(wave)[None]).reshape(-1)[0])
