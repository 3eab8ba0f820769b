"""Mel-spectrogram discriminators for adversarial DC-AE training.

Both look at a mel ``(B, n_mels, T)`` as a one-channel image ``(B, 1, T, n_mels)`` (time as
height, mel bins as width) and return ``(score, feature_maps)``:

* :class:`MultiBandMelDiscriminator` runs a separate small conv stack on each of ten equal
  mel-frequency bands, joins the bands along frequency and scores every (frame, bin) position.
* :class:`PatchMelDiscriminator` is a PatchGAN: strided 4x4 convs that score overlapping patches.

:class:`MelDiscriminator` holds one of each. Module and parameter names follow the reference
trainer's ``AEDiscriminator`` exactly, so its ``discriminator_*.pt`` files load here and ours there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

LEAKY_SLOPE = 0.1
DEFAULT_BANDS: tuple[tuple[float, float], ...] = tuple((i / 10, (i + 1) / 10) for i in range(10))

ScoreAndFeatures = tuple[Tensor, list[Tensor]]


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> nn.Module:
    return weight_norm(nn.Conv2d(in_ch, out_ch, kernel, stride, padding=padding))


def mel_as_image(mel: Tensor) -> Tensor:
    """``(B, n_mels, T)`` -> ``(B, 1, T, n_mels)``."""
    if mel.ndim != 3:
        raise ValueError(f"expected a mel of shape (B, n_mels, T), got {tuple(mel.shape)}")
    return mel.unsqueeze(1).transpose(2, 3)


class MultiBandMelDiscriminator(nn.Module):
    """Per-band 3x3 conv stacks (5 layers, 32 channels) and a shared 3x3 output conv.

    Output score: ``(B, 1, T, n_mels)``; feature maps: layers 2-5 of every band, then the score.
    """

    def __init__(self, n_mel_bins: int = 80, bands: tuple[tuple[float, float], ...] = DEFAULT_BANDS,
                 channels: int = 32, layers: int = 5):
        super().__init__()
        self.bands = [(int(lo * n_mel_bins), int(hi * n_mel_bins)) for lo, hi in bands]

        def stack() -> nn.ModuleList:
            return nn.ModuleList([_conv(1 if i == 0 else channels, channels, 3, 1, 1) for i in range(layers)])

        self.band_convs = nn.ModuleList([stack() for _ in self.bands])
        self.conv_post = _conv(channels, 1, 3, 1, 1)

    def forward(self, mel: Tensor) -> ScoreAndFeatures:
        image = mel_as_image(mel)
        features: list[Tensor] = []
        band_outputs = []
        for (lo, hi), convs in zip(self.bands, self.band_convs):
            x = image[..., lo:hi]
            for i, conv in enumerate(convs):
                x = F.leaky_relu(conv(x), LEAKY_SLOPE)
                if i > 0:
                    features.append(x)
            band_outputs.append(x)
        score = self.conv_post(torch.cat(band_outputs, dim=-1))
        features.append(score)
        return score, features


class PatchMelDiscriminator(nn.Module):
    """PatchGAN: five stride-2 4x4 convs (32 -> 512 channels) and a 4x4 output conv.

    Feature maps: conv layers 2-5, then the score. Needs at least 32 frames and 32 mel bins.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256, 512)):
        super().__init__()
        ins = (1, *channels[:-1])
        self.convs = nn.ModuleList([_conv(i, o, 4, 2, 1) for i, o in zip(ins, channels)])
        self.conv_post = _conv(channels[-1], 1, 4, 1, 1)

    def forward(self, mel: Tensor) -> ScoreAndFeatures:
        x = mel_as_image(mel)
        features: list[Tensor] = []
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            if i > 0:
                features.append(x)
        score = self.conv_post(x)
        features.append(score)
        return score, features


class MelDiscriminator(nn.Module):
    """The multiband and the PatchGAN discriminator, applied to one mel ``(B, n_mels, T)``.

    ``forward(mel)`` returns ``(scores, feature_maps)``: one entry per discriminator.
    """

    def __init__(self, n_mel_bins: int = 80):
        super().__init__()
        self.discriminators = nn.ModuleList([MultiBandMelDiscriminator(n_mel_bins), PatchMelDiscriminator()])

    def forward(self, mel: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        scores, features = [], []
        for d in self.discriminators:
            score, fmap = d(mel)
            scores.append(score)
            features.append(fmap)
        return scores, features
