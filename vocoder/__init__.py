"""BigVGAN-v2: the vocoder (:mod:`vocoder.bigvgan_loader`), its log-mel front end (:mod:`vocoder.mel`),
its receptive field (:mod:`vocoder.field`) and stage-by-stage windows (:mod:`vocoder.staged`).

The loader (BigVGAN's generator, hub access) is imported on first use, so data-loading workers
that only need the mel front end do not pay for it. Audio decoding and encoding is :mod:`dcae.audio`.
"""
from vocoder.mel import MelSpectrogram, load_bigvgan_config

_LOADER_NAMES = ("Vocoder", "load_vocoder", "save_vocoder_folder")

__all__ = ["MelSpectrogram", "load_bigvgan_config", *_LOADER_NAMES]


def __getattr__(name: str):
    if name in _LOADER_NAMES:
        from vocoder import bigvgan_loader

        return getattr(bigvgan_loader, name)
    raise AttributeError(f"module 'vocoder' has no attribute {name!r}")
