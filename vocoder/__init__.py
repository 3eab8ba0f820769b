"""BigVGAN-v2 vocoder loading, its log-mel front end, and audio decode/encode helpers.

The loader (BigVGAN's generator, hub access) is imported on first use, so data-loading workers
that only need :mod:`dcae.audio` do not pay for it.
"""
from dcae.audio import AudioError, AudioInfo, audio_info, check_audio, load_audio, resample, save_audio
from vocoder.mel import MelSpectrogram, load_bigvgan_config

_LOADER_NAMES = ("Vocoder", "load_vocoder", "save_vocoder_folder")

__all__ = ["AudioError", "AudioInfo", "audio_info", "check_audio", "load_audio", "resample", "save_audio",
           "MelSpectrogram", "load_bigvgan_config", *_LOADER_NAMES]


def __getattr__(name: str):
    if name in _LOADER_NAMES:
        from vocoder import bigvgan_loader

        return getattr(bigvgan_loader, name)
    raise AttributeError(f"module 'vocoder' has no attribute {name!r}")
