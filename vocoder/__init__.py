"""BigVGAN-v2 vocoder loading, its log-mel front end, and audio decode/encode helpers."""
from .audio import AudioError, AudioInfo, audio_info, check_audio, load_audio, resample, save_audio
from .bigvgan_loader import Vocoder, load_vocoder, save_vocoder_folder
from .mel import MelSpectrogram, load_bigvgan_config

__all__ = ["AudioError", "AudioInfo", "audio_info", "check_audio", "load_audio", "resample", "save_audio",
           "Vocoder", "load_vocoder", "save_vocoder_folder", "MelSpectrogram", "load_bigvgan_config"]
