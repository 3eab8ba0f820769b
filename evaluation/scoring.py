"""Score one reference/degraded pair: align the two waveforms, run every metric, keep going on errors.

A scored pair is a row (dict) with the CSV columns ``file, pesq_wb, pesq_nb, stoi, estoi,
mel_distance, si_sdr, sim, mos, error`` (``mos``: the predicted MOS of the degraded signal alone,
:mod:`evaluation.mos`). A metric that cannot score the pair is left as None and its reason
goes into ``error`` (``"pesq_wb: ...; stoi: ..."``); a pair that is unusable as a whole (missing
or corrupt file, NaN, silence) has every metric None.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dcae.audio import AudioError, audio_info, load_audio
from evaluation import metrics, mos, speaker

METRIC_NAMES: tuple[str, ...] = ("pesq_wb", "pesq_nb", "stoi", "estoi", "mel_distance", "si_sdr", "sim", "mos")
# each: None, or why the metric cannot be computed here (looked up when called: the model is selectable)
OPTIONAL_METRICS = {"sim": lambda: speaker.encoder_available(), "mos": lambda: mos.mos_available()}
CSV_COLUMNS: tuple[str, ...] = ("file", *METRIC_NAMES, "error")
SILENCE_PEAK = 1e-5  # same threshold as dcae.audio.check_audio

Row = dict[str, object]

_METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "pesq_wb": metrics.pesq_wb,
    "pesq_nb": metrics.pesq_nb,
    "stoi": metrics.stoi,
    "estoi": metrics.estoi,
    "mel_distance": metrics.mel_distance,
    "si_sdr": lambda ref, deg, sample_rate: metrics.si_sdr(ref, deg),
    "sim": speaker.speaker_similarity,
    "mos": lambda ref, deg, sample_rate: mos.predict_mos(deg, sample_rate),
}


def available_metrics() -> tuple[str, ...]:
    """Every metric this installation can compute (SIM needs the optional speaker encoder, MOS the
    optional DistillMOS)."""
    return tuple(m for m in METRIC_NAMES if m not in OPTIONAL_METRICS or OPTIONAL_METRICS[m]() is None)


def empty_row(name: str, error: str) -> Row:
    """A row with every metric empty and ``error`` set."""
    return {"file": name, **{m: None for m in METRIC_NAMES}, "error": error}


def align(ref: np.ndarray, ref_rate: int, deg: np.ndarray, deg_rate: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Bring both (samples,) signals to the lower of the two rates, then trim both to the shorter.

    Comparing at the lower rate invents no band that one signal never had.
    """
    rate = min(ref_rate, deg_rate)
    ref = metrics.resample_to(metrics.as_numpy(ref), ref_rate, rate)
    deg = metrics.resample_to(metrics.as_numpy(deg), deg_rate, rate)
    n = min(ref.size, deg.size)
    return ref[:n], deg[:n], rate


def _unusable(signal: np.ndarray, role: str) -> str | None:
    if signal.size == 0:
        return f"{role} is empty"
    if not np.isfinite(signal).all():
        return f"{role} contains NaN or Inf"
    peak = float(np.abs(signal).max())
    if peak < SILENCE_PEAK:
        return f"{role} is silent (peak {peak:.1e})"
    return None


def score_arrays(name: str, ref: np.ndarray, deg: np.ndarray, sample_rate: int,
                 metric_names: Sequence[str] | None = None) -> Row:
    """Score equal-length (samples,) signals at ``sample_rate``; never raises for bad audio.

    ``metric_names`` (default: :func:`available_metrics`) picks the metrics to compute; the
    others stay None without an error.
    """
    metric_names = available_metrics() if metric_names is None else tuple(metric_names)
    ref, deg = metrics.as_numpy(ref), metrics.as_numpy(deg)
    for signal, role in ((ref, "reference"), (deg, "degraded")):
        reason = _unusable(signal, role)
        if reason:
            return empty_row(name, reason)
    row: Row = {"file": name, **{m: None for m in METRIC_NAMES}}
    errors = []
    for metric, function in _METRIC_FUNCTIONS.items():
        if metric not in metric_names:
            continue
        try:
            row[metric] = function(ref, deg, sample_rate)
        except metrics.MetricError as e:
            row[metric] = None
            errors.append(f"{metric}: {e}")
    row["error"] = "; ".join(errors)
    return row


def read_native(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples,) float mono at the file's own rate, and that rate.

    libsndfile reads WAV/FLAC/OGG directly (about 100x faster than opening an FFmpeg decoder);
    everything else goes through :func:`dcae.audio.load_audio`. Channels are averaged.
    Raises :class:`dcae.audio.AudioError`.
    """
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return data.mean(axis=1), int(rate)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        rate = audio_info(path).sample_rate
        return load_audio(path, sample_rate=None).numpy(), rate


def score_files(name: str, ref_path: str | Path, deg_path: str | Path,
                metric_names: Sequence[str] | None = None) -> Row:
    """Load both files at their own rates (mono), align them and score them."""
    try:
        loaded = [read_native(path) for path in (ref_path, deg_path)]
    except AudioError as e:
        return empty_row(name, str(e))
    (ref, ref_rate), (deg, deg_rate) = loaded
    ref, deg, rate = align(ref, ref_rate, deg, deg_rate)
    return score_arrays(name, ref, deg, rate, metric_names)
