"""Configuration of our FSQ speech tokenizer, and its presets (``tiny``, ``base``).

Token rate: one token per ``mel_frames_per_token`` mel frames of BigVGAN's log-mel (22050 Hz,
hop 256, 86.13 frames/s). A DC-AE latent frame is 16 mel frames, so ``mel_frames_per_token`` must
divide 16 and the token rate is ``16 / mel_frames_per_token`` times the latent frame rate
(22050 / 4096 = 5.383 Hz): 4 mel frames per token = 21.53 tokens/s = 4 tokens per latent frame.
The codebook has ``prod(levels)`` codes (FSQ: each of ``len(levels)`` dimensions is rounded to
one of ``levels[i]`` values).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dcae.audio import DEFAULT_SAMPLE_RATE
from dcae.errors import ConfigError
from tts.presets import load_presets

LATENT_MEL_FRAMES = 16  # mel frames per DC-AE latent frame (hop 256 x 16 = 4096 samples)


@dataclass
class FSQTokenizerConfig:
    """Sizes of :class:`~tts.tokenizers.fsq.FSQTokenizer`. Shapes: mel (B, n_mels, T) -> tokens
    (B, ceil(T / mel_frames_per_token))."""

    n_mels: int = 80
    sample_rate: int = DEFAULT_SAMPLE_RATE  # of the mel front end (vocoder.mel, BigVGAN v2 22 kHz)
    hop_length: int = 256
    mel_frames_per_token: int = 4      # divides 16: an integer number of tokens per latent frame
    channels: int = 256                # width of the convolutional encoder and decoder
    frame_blocks: int = 2              # ConvNeXt blocks at the mel frame rate (encoder and decoder each)
    token_blocks: int = 6              # ConvNeXt blocks at the token rate (encoder and decoder each)
    kernel_size: int = 7               # depthwise kernel of the blocks
    mlp_ratio: int = 3                 # hidden width of the blocks' pointwise MLP, x channels
    levels: list[int] = field(default_factory=lambda: [8, 8, 8, 6, 5])  # FSQ levels; codebook = prod
    mel_mean: float = -6.0             # input normalisation: (mel - mel_mean) / mel_std
    mel_std: float = 2.8

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def token_rate(self) -> float:
        """Tokens per second (21.53 for the default 4 mel frames per token)."""
        return self.frame_rate / self.mel_frames_per_token

    @property
    def tokens_per_latent_frame(self) -> int:
        return LATENT_MEL_FRAMES // self.mel_frames_per_token

    def check(self) -> "FSQTokenizerConfig":
        """Raise :class:`~dcae.errors.ConfigError` (one line) when a field is out of range."""
        if self.mel_frames_per_token < 1 or LATENT_MEL_FRAMES % self.mel_frames_per_token:
            raise ConfigError(f"mel_frames_per_token must divide {LATENT_MEL_FRAMES} (an integer number of tokens "
                              f"per latent frame), got {self.mel_frames_per_token}")
        if not self.levels or any(int(v) < 3 for v in self.levels):
            raise ConfigError(f"levels must be a non-empty list of integers >= 3, got {self.levels}")
        for name in ("n_mels", "sample_rate", "hop_length", "channels", "kernel_size", "mlp_ratio"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.frame_blocks < 0 or self.token_blocks < 0:
            raise ConfigError("frame_blocks and token_blocks must be >= 0")
        if not self.mel_std > 0:
            raise ConfigError(f"mel_std must be positive, got {self.mel_std}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "FSQTokenizerConfig":
        """From a dict (e.g. config.json); unknown keys are an error naming ``source``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown FSQ tokenizer config field(s) {', '.join(unknown)}")
        values = dict(values)
        if "levels" in values:
            values["levels"] = [int(v) for v in values["levels"]]
        return cls(**values).check()


def fsq_preset(name: str, **overrides: Any) -> FSQTokenizerConfig:
    """The ``tiny`` / ``base`` preset (``tts/presets/fsq-tokenizer/NAME.json``; its training fields are
    left out), with field overrides. tiny: 0.18 M parameters, 1000 codes, trains in CPU minutes;
    base: 7.0 M parameters, 15360 codes."""
    presets = load_presets("fsq-tokenizer")
    if name not in presets:
        raise ConfigError(f"unknown FSQ tokenizer preset {name!r} (choose from {', '.join(presets)})")
    names = {f.name for f in fields(FSQTokenizerConfig)}
    values = {k: v for k, v in presets[name].items() if k in names}
    return FSQTokenizerConfig.from_dict({**values, **overrides}, source=f"preset {name}")
