"""BigVGAN-v2: the vocoder (:mod:`vocoder.bigvgan_loader`), its log-mel front end (:mod:`vocoder.mel`),
its receptive field (:mod:`vocoder.field`) and stage-by-stage windows (:mod:`vocoder.staged`).

The loader (BigVGAN's generator, hub access) is imported on first use, so data-loading workers
that only need the mel front end do not pay for it. Audio decoding and encoding is :mod:`dcae.audio`.
"""
from dcae.lazy import lazy_exports
from vocoder.mel import MelSpectrogram, load_bigvgan_config

_LOADER = {name: "vocoder.bigvgan_loader" for name in ("Vocoder", "load_vocoder", "save_vocoder_folder")}

__all__ = ["MelSpectrogram", "load_bigvgan_config", *_LOADER]

__getattr__, __dir__ = lazy_exports(__name__, _LOADER)
