"""Metric functions on arrays: parity with the reference packages, ordering, edge cases."""
from __future__ import annotations

import numpy as np
import pesq
import pystoi
import pytest
import soundfile as sf
import torch
from scipy.signal import butter, resample_poly, sosfiltfilt

from evaluation import metrics
from evaluation.scoring import METRIC_NAMES, align, available_metrics, score_arrays

SIM = ("sim",) if "sim" in available_metrics() else ()  # speaker similarity needs the [sim] extra


def add_noise(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.size)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean + noise


def low_pass(clean: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    return sosfiltfilt(butter(8, cutoff_hz, fs=sample_rate, output="sos"), clean)


@pytest.fixture(scope="module")
def speech(speech_files) -> tuple[np.ndarray, int]:
    """A 2.5-4 s real 16 kHz utterance."""
    for path in speech_files:
        info = sf.info(str(path))
        if info.samplerate == 16000 and 2.5 < info.duration < 4.0:
            audio, rate = sf.read(str(path))
            return audio, rate
    pytest.skip("no 16 kHz utterance of 2.5-4 s in the speech data")


def test_pesq_and_stoi_equal_direct_calls(speech):
    clean, sr = speech
    degraded = add_noise(clean, 10)
    assert metrics.pesq_wb(clean, degraded, sr) == pytest.approx(pesq.pesq(16000, clean, degraded, "wb"), abs=1e-6)
    narrow = resample_poly(clean, 1, 2), resample_poly(degraded, 1, 2)  # the documented method: polyphase
    assert metrics.pesq_nb(clean, degraded, sr) == pytest.approx(pesq.pesq(8000, *narrow, "nb"), abs=1e-4)
    assert metrics.stoi(clean, degraded, sr) == pytest.approx(pystoi.stoi(clean, degraded, sr), abs=1e-9)
    assert metrics.estoi(clean, degraded, sr) == pytest.approx(pystoi.stoi(clean, degraded, sr, extended=True),
                                                              abs=1e-9)


def test_torch_and_float32_inputs_are_accepted(speech):
    clean, sr = speech
    degraded = add_noise(clean, 5)
    as_tensor = metrics.stoi(torch.from_numpy(clean).float(), torch.from_numpy(degraded).float(), sr)
    assert as_tensor == pytest.approx(metrics.stoi(clean.astype(np.float32), degraded.astype(np.float32), sr))


def test_metrics_rank_noise_levels(speech):
    clean, sr = speech
    rows = [score_arrays(f"snr{snr}", clean, add_noise(clean, snr), sr) for snr in (30, 15, 5, 0)]
    for metric in ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", *SIM):
        values = [row[metric] for row in rows]
        assert values == sorted(values, reverse=True), (metric, values)
    distances = [row["mel_distance"] for row in rows]
    assert distances == sorted(distances), distances
    assert [round(r["si_sdr"]) for r in rows] == [30, 15, 5, 0]  # white noise at a given SNR


def test_metrics_rank_low_pass_cutoffs(speech):
    clean, sr = speech
    rows = [score_arrays(f"lp{c}", clean, low_pass(clean, c, sr), sr) for c in (4000, 2000, 1000, 500)]
    for metric in ("pesq_wb", "pesq_nb", "stoi", "estoi", *SIM):
        values = [row[metric] for row in rows]
        assert values == sorted(values, reverse=True), (metric, values)


def test_identical_signals_score_the_maximum(speech):
    clean, sr = speech
    row = score_arrays("same", clean, clean, sr)
    assert row["pesq_wb"] > 4.6 and row["pesq_nb"] > 4.5 and row["stoi"] == pytest.approx(1.0)
    assert row["mel_distance"] == 0.0 and row["si_sdr"] == metrics.SI_SDR_CEILING_DB and row["error"] == ""
    if SIM:
        assert row["sim"] == pytest.approx(1.0, abs=1e-5)


def test_si_sdr_is_scale_invariant_and_matches_formula():
    rng = np.random.default_rng(1)
    ref, noise = rng.standard_normal(8000), rng.standard_normal(8000)
    ref -= ref.mean()
    noise -= noise.mean()
    noise -= noise @ ref / (ref @ ref) * ref  # orthogonal to ref: SI-SDR is exactly the energy ratio
    expected = 10 * np.log10((ref @ ref) / (0.25 * noise @ noise))
    assert metrics.si_sdr(ref, ref + 0.5 * noise) == pytest.approx(expected, abs=1e-9)
    assert metrics.si_sdr(ref, 3.0 * (ref + 0.5 * noise)) == pytest.approx(expected, abs=1e-9)


def test_mel_distance_uses_bigvgan_mel(speech):
    from bigvgan.meldataset import mel_spectrogram

    clean, sr = speech
    degraded = add_noise(clean, 10)
    waves = [torch.from_numpy(resample_poly(x, 441, 320)).float()[None] for x in (clean, degraded)]
    mels = [mel_spectrogram(w, 1024, 80, 22050, 256, 1024, 0, None) for w in waves]
    expected = float((mels[0] - mels[1]).abs().mean())
    assert metrics.mel_distance(clean, degraded, sr) == pytest.approx(expected, rel=1e-4)


def test_unscorable_pairs_give_reasons_not_exceptions(speech):
    clean, sr = speech
    silent = score_arrays("silent", clean, np.zeros_like(clean), sr)
    assert silent["error"].startswith("degraded is silent") and all(silent[m] is None for m in METRIC_NAMES)
    nan = clean.copy()
    nan[100] = np.nan
    assert score_arrays("nan", nan, clean, sr)["error"] == "reference contains NaN or Inf"
    short = score_arrays("short", clean[:2000], clean[:2000], sr)  # 0.125 s
    assert short["pesq_wb"] is None and short["stoi"] is None and short["si_sdr"] is not None
    assert "pesq_wb: PESQ cannot score this pair: Buffer needs to be at least 1/4 of a second" in short["error"]
    assert "stoi: STOI needs at least 30 frames" in short["error"]
    with pytest.raises(metrics.MetricError, match="lengths differ"):
        metrics.stoi(clean, clean[:-1], sr)


def test_align_uses_the_lower_rate_and_trims():
    ref = np.sin(np.arange(48000) / 10.0)  # 1 s at 48 kHz
    deg = np.sin(np.arange(20000) / 10.0 * 48000 / 22050)  # ~0.9 s at 22.05 kHz
    a, b, rate = align(ref, 48000, deg, 22050)
    assert rate == 22050 and a.size == b.size == 20000
