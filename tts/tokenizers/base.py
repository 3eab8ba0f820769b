"""The interface every speech tokenizer implements: audio clips -> integer token sequences.

A tokenizer states the rate it wants (``sample_rate``), the rate it emits (``token_rate``, tokens
per second) and the number of distinct ids (``codebook_size``; ids lie in ``[0, codebook_size)``).
:meth:`SpeechTokenizer.tokenize` takes one clip, a list of clips of any lengths, or an equal-length
batch, at any sample rate, and returns one ``LongTensor (N_i,)`` per clip. Its contract:

- batch == single: a clip's tokens do not depend on the other clips tokenized with it;
- deterministic: eval mode (no dropout, no noise), so the same audio gives the same tokens.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from dcae.audio import resample
from dcae.corpus.token_file import save_tokens

AudioInput = torch.Tensor | Sequence[torch.Tensor]


def as_clip_list(audio: AudioInput) -> list[torch.Tensor]:
    """(samples,) -> [one clip]; (B, samples) -> B clips; a list of (samples,) -> itself.

    Raises ValueError (one line) for other shapes and for empty clips.
    """
    if isinstance(audio, torch.Tensor):
        if audio.ndim == 1:
            clips = [audio]
        elif audio.ndim == 2:
            clips = list(audio.unbind(0))
        else:
            raise ValueError(f"audio must be (samples,), (B, samples) or a list of (samples,), got shape {tuple(audio.shape)}")
    else:
        clips = [torch.as_tensor(a) for a in audio]
    if not clips:
        raise ValueError("no audio clips given")
    for i, clip in enumerate(clips):
        if clip.ndim != 1:
            raise ValueError(f"clip {i}: expected a mono waveform (samples,), got shape {tuple(clip.shape)}")
        if clip.numel() == 0:
            raise ValueError(f"clip {i}: empty audio (0 samples)")
    return clips


class SpeechTokenizer(nn.Module, ABC):
    """Audio -> discrete tokens. Subclasses set ``name``, ``sample_rate``, ``token_rate``,
    ``codebook_size`` and implement :meth:`_tokenize_clips`."""

    name: str
    sample_rate: int       # Hz the model works at; inputs are resampled to it
    token_rate: float      # tokens per second
    codebook_size: int     # ids are in [0, codebook_size)

    @abstractmethod
    def _tokenize_clips(self, clips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Clips at ``self.sample_rate`` (float32 (samples,), on the model's device) -> LongTensor (N_i,) each."""

    @abstractmethod
    def num_tokens(self, num_samples: int, sample_rate: int) -> int:
        """How many tokens a clip of ``num_samples`` samples at ``sample_rate`` Hz gives."""

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def tokenize(self, audio: AudioInput, sample_rate: int) -> list[torch.Tensor]:
        """Clips (see :func:`as_clip_list`) at ``sample_rate`` Hz -> one LongTensor (N_i,) per clip, on the CPU.

        Runs in eval mode under ``torch.inference_mode`` (the module's train/eval state is restored).
        """
        clips = [resample(c.detach().float(), int(sample_rate), self.sample_rate).to(self.device)
                 for c in as_clip_list(audio)]
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                tokens = self._tokenize_clips(clips)
        finally:
            self.train(was_training)
        return [t.to("cpu", torch.long) for t in tokens]

    def token_file_metadata(self) -> dict[str, Any]:
        """Extra metadata written into token files (besides ``token_rate``)."""
        return {"tokenizer": self.name, "codebook_size": self.codebook_size}

    def save_tokens(self, path: str | Path, tokens: torch.Tensor) -> None:
        """Write one clip's tokens (N,) as a token file (``dcae.corpus.token_file`` format), atomically."""
        save_tokens(path, tokens, self.token_rate, extra=self.token_file_metadata())
