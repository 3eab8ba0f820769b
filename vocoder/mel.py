"""BigVGAN's log-mel front end as a module, so latents are computed on the vocoder's own features.

:class:`MelSpectrogram` computes exactly what ``bigvgan.meldataset.mel_spectrogram`` computes
(reflect padding of ``(n_fft - hop) / 2`` on both sides, Hann-windowed STFT without centering,
magnitude ``sqrt(re^2 + im^2 + 1e-9)``, librosa's Slaney mel filterbank, ``log(max(x, 1e-5))``),
with the filterbank and window stored as buffers so they follow ``.to(device)``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from bigvgan.env import AttrDict

PACKAGED_CONFIG = Path(__file__).resolve().parent / "configs" / "bigvgan_v2_22khz_80band_256x.json"
MAGNITUDE_EPS = 1e-9
LOG_CLIP = 1e-5


def load_bigvgan_config(path_or_dir: str | Path | dict | None = None) -> AttrDict:
    """BigVGAN hyper-parameters from a JSON file, a folder holding ``config.json``, or a dict.

    ``None`` gives the packaged ``bigvgan_v2_22khz_80band_256x`` config.
    """
    if isinstance(path_or_dir, dict):
        return AttrDict(dict(path_or_dir))
    path = PACKAGED_CONFIG if path_or_dir is None else Path(path_or_dir)
    if path.is_dir():
        path = path / "config.json"
    with open(path, encoding="utf-8") as f:
        return AttrDict(json.load(f))


class MelSpectrogram(nn.Module):
    """Waveform (B, samples) or (samples,) -> log-mel (B, n_mels, frames), frames = samples // hop.

    (For ``samples`` a multiple of ``hop_length``; in general
    ``frames = (samples + 2 * ((n_fft - hop) // 2) - n_fft) // hop + 1``.)
    """

    def __init__(self, config: str | Path | dict | None = None):
        super().__init__()
        from librosa.filters import mel as librosa_mel  # the filterbank BigVGAN was trained with

        h = load_bigvgan_config(config)
        self.sample_rate = int(h.sampling_rate)
        self.n_fft = int(h.n_fft)
        self.hop_length = int(h.hop_size)
        self.win_length = int(h.win_size)
        self.n_mels = int(h.num_mels)
        self.padding = (self.n_fft - self.hop_length) // 2
        basis = librosa_mel(sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels, fmin=h.fmin, fmax=h.fmax)
        self.register_buffer("mel_basis", torch.from_numpy(basis).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return (num_samples + 2 * self.padding - self.n_fft) // self.hop_length + 1

    def pad(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, samples + 2 * padding), reflect-padded as BigVGAN does."""
        return F.pad(audio.float().unsqueeze(1), (self.padding, self.padding), mode="reflect").squeeze(1)

    def padded_window(self, audio: torch.Tensor, start: int, stop: int, length: int) -> torch.Tensor:
        """``pad(zero-padded audio)[:, start:stop]`` without padding the whole signal: (B, samples) ->
        (B, stop - start), the same values (copies), so long audio costs one window's memory.

        ``length``: the signal's length once zero-padded at the end (>= samples); the reflect
        padding of ``pad`` is taken around it.
        """
        audio = audio.float()
        if length <= self.padding or start < 0 or stop > length + 2 * self.padding:  # as pad() would (or refuse)
            return self.pad(F.pad(audio, (0, length - audio.shape[-1])))[:, start:stop]
        index = torch.arange(start, stop, device=audio.device) - self.padding  # position in the signal
        index = torch.where(index < 0, -index, index)  # reflect at the start...
        index = torch.where(index >= length, 2 * (length - 1) - index, index)  # ...and at the end
        inside = index < audio.shape[-1]  # the rest is the zero padding
        return audio[:, index.clamp(max=audio.shape[-1] - 1)] * inside

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.ndim == 1:
            audio = audio.unsqueeze(0)
        return self.from_padded(self.pad(audio))

    def from_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """Mel of an already padded signal (B, samples) -> (B, n_mels, (samples - n_fft) // hop + 1).

        Mel frame ``f`` of the whole signal uses padded samples ``[f * hop, f * hop + n_fft)``, so
        frames ``[f0, f1)`` are ``from_padded(padded[:, f0 * hop : f1 * hop + n_fft - hop])``:
        chunked computation gives the same frames as whole-signal computation.
        """
        spec = torch.stft(padded, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=False, normalized=False, onesided=True, return_complex=True)
        magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + MAGNITUDE_EPS)
        return torch.log(torch.clamp(self.mel_basis @ magnitude, min=LOG_CLIP))
