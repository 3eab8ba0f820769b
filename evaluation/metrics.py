"""Speech quality metrics on one pair of waveforms: reference ``ref`` and degraded ``deg``.

Every function takes 1-D float arrays (numpy or torch, any scale, e.g. [-1, 1]) of the same
length at ``sample_rate`` and returns a Python float. A pair a metric cannot score raises
:class:`MetricError` with a one-line reason.

Each metric runs at its own standard rate; rate conversion always uses
:func:`dcae.audio.resample` (``scipy.signal.resample_poly``: polyphase Kaiser-windowed sinc
FIR, beta 5), the same method everywhere in the project:

- ``pesq_wb``: ITU-T P.862.2 wide-band PESQ (MOS-LQO, about 1.0-4.64) at 16 kHz.
- ``pesq_nb``: ITU-T P.862 narrow-band PESQ (MOS-LQO, about 1.0-4.55) at 8 kHz.
- ``stoi`` / ``estoi``: (extended) short-time objective intelligibility, 0-1 (pystoi resamples
  to 10 kHz internally with its own method, as every pystoi user does).
- ``mel_distance``: mean absolute difference of BigVGAN's log-mel spectrograms (80 bins,
  22.05 kHz, hop 256; natural-log magnitude), lower is better.
- ``si_sdr``: scale-invariant signal-to-distortion ratio in dB at the input rate, saturating at
  150 dB for (numerically) identical signals.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from dcae.audio import DEFAULT_SAMPLE_RATE, resample
from vocoder.mel import MelSpectrogram

PESQ_WB_RATE = 16000
PESQ_NB_RATE = 8000
MEL_RATE = DEFAULT_SAMPLE_RATE
SI_SDR_CEILING_DB = 150.0  # identical signals score this instead of +inf (keeps CSV/JSON finite)


class MetricError(ValueError):
    """A pair of waveforms that a metric cannot score (silence, too short...)."""


def as_numpy(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """(samples,) array or tensor -> float64 numpy array."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float64).numpy()
    audio = np.ascontiguousarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise MetricError(f"expected a 1-D waveform, got shape {audio.shape}")
    return audio


def resample_to(audio: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """(samples,) at ``sample_rate`` -> (samples',) at ``target_rate`` (dcae.audio.resample)."""
    if sample_rate == target_rate:
        return audio

    return resample(torch.from_numpy(audio), sample_rate, target_rate).numpy()


def _pair(ref, deg) -> tuple[np.ndarray, np.ndarray]:
    ref, deg = as_numpy(ref), as_numpy(deg)
    if ref.shape != deg.shape:
        raise MetricError(f"reference and degraded lengths differ ({ref.size} vs {deg.size} samples)")
    return ref, deg


def _pesq(ref, deg, sample_rate: int, target_rate: int, mode: str) -> float:
    import pesq as pesq_lib

    ref, deg = _pair(ref, deg)
    ref, deg = resample_to(ref, sample_rate, target_rate), resample_to(deg, sample_rate, target_rate)
    try:
        return float(pesq_lib.pesq(target_rate, ref, deg, mode))
    except pesq_lib.PesqError as e:
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise MetricError(f"PESQ cannot score this pair: {reason}") from None
    except ValueError as e:  # the C core returns NaN for a silent degraded signal
        raise MetricError(f"PESQ cannot score this pair ({e})") from None


def pesq_wb(ref, deg, sample_rate: int) -> float:
    """Wide-band PESQ (P.862.2) of ``deg`` against ``ref``, both resampled to 16 kHz."""
    return _pesq(ref, deg, sample_rate, PESQ_WB_RATE, "wb")


def pesq_nb(ref, deg, sample_rate: int) -> float:
    """Narrow-band PESQ (P.862) of ``deg`` against ``ref``, both resampled to 8 kHz."""
    return _pesq(ref, deg, sample_rate, PESQ_NB_RATE, "nb")


def _stoi(ref, deg, sample_rate: int, extended: bool) -> float:
    from pystoi import stoi as stoi_lib

    ref, deg = _pair(ref, deg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi_lib(ref, deg, sample_rate, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise MetricError("STOI needs at least 30 frames (~0.4 s) of speech after silence removal")
    return value


def stoi(ref, deg, sample_rate: int) -> float:
    """STOI (Taal et al. 2011) via pystoi, 0-1."""
    return _stoi(ref, deg, sample_rate, extended=False)


def estoi(ref, deg, sample_rate: int) -> float:
    """Extended STOI (Jensen & Taal 2016) via pystoi, 0-1."""
    return _stoi(ref, deg, sample_rate, extended=True)


def si_sdr(ref, deg) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean first.

    Capped at ``SI_SDR_CEILING_DB`` so that a perfect copy gives a finite number.
    """
    ref, deg = _pair(ref, deg)
    ref, deg = ref - ref.mean(), deg - deg.mean()
    ref_energy = float(np.sum(ref * ref))  # elementwise sums: no BLAS call, no thread start-up
    if ref_energy == 0.0:
        raise MetricError("SI-SDR is undefined for a silent reference")
    target = (float(np.sum(deg * ref)) / ref_energy) * ref
    noise = deg - target
    target_energy = float(np.sum(target * target))
    if target_energy == 0.0:
        raise MetricError("SI-SDR is undefined: degraded signal is orthogonal to the reference")
    noise_energy = max(float(np.sum(noise * noise)), target_energy * 10 ** (-SI_SDR_CEILING_DB / 10))
    return float(10.0 * np.log10(target_energy / noise_energy))


@functools.lru_cache(maxsize=1)
def _mel_extractor():
    return MelSpectrogram().eval()


def log_mel(audio, sample_rate: int) -> torch.Tensor:
    """(samples,) at ``sample_rate`` -> BigVGAN log-mel (80, frames) at 22.05 kHz."""
    wave = resample_to(as_numpy(audio), sample_rate, MEL_RATE)
    extractor = _mel_extractor()
    if wave.size < extractor.n_fft:
        raise MetricError(f"mel distance needs at least {extractor.n_fft} samples at {MEL_RATE} Hz, got {wave.size}")
    with torch.no_grad():
        return extractor(torch.from_numpy(wave).float()[None])[0]


def mel_distance(ref, deg, sample_rate: int) -> float:
    """Mean |log-mel(ref) - log-mel(deg)| over bins and frames (BigVGAN's mel at 22.05 kHz)."""
    ref, deg = _pair(ref, deg)
    return float((log_mel(ref, sample_rate) - log_mel(deg, sample_rate)).abs().mean())
