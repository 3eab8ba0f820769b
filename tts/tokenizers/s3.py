"""S3Tokenizer v2 (CosyVoice 2's ``speech_tokenizer_v2_25hz``): 16 kHz audio -> 25 Hz tokens, 6561 codes.

The model and its log-mel front end are the ``s3tokenizer`` package's own (README, "Extras":
the ``[s3]`` extra and ``pip install --no-deps s3tokenizer==0.3.0``); this module adds the :class:`~tts.tokenizers.base.SpeechTokenizer`
interface around them: any input sample rate (resampled with :func:`dcae.audio.resample`),
batches of clips of any lengths, and audio longer than the model's 30 s window (overlapping
windows, :mod:`tts.tokenizers.windows`).

    tok = S3Tokenizer.from_pretrained()            # fetches the weights once (see s3_weights)
    tokens = tok.tokenize([a, b], 22050)           # [LongTensor (N_a,), LongTensor (N_b,)], 25 per second

Token count: ``ceil((samples_16k // 160) / 4)`` (the package's mel has ``samples // 160`` frames at
100 Hz, the encoder downsamples 4x), i.e. 25 per second of audio.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from tts.tokenizers.base import SpeechTokenizer
from tts.tokenizers.s3_weights import DEFAULT_FLAG, MODEL_NAME, build_s3_model, import_s3tokenizer, load_s3_model
from tts.tokenizers.windows import plan_windows

SAMPLE_RATE = 16000
HOP_LENGTH = 160           # mel frames at 100 Hz
FRAMES_PER_TOKEN = 4       # two stride-2 convolutions
WINDOW_FRAMES = 3000       # 30 s: the longest input the model was trained on
OVERLAP_FRAMES = 400       # 4 s, as the package's own long-audio path
MIN_SAMPLES = HOP_LENGTH * FRAMES_PER_TOKEN  # one token (40 ms at 16 kHz)


class S3Tokenizer(SpeechTokenizer):
    """Speech tokenizer around the package's ``S3TokenizerV2`` model.

    Args:
        model: an ``s3tokenizer.model_v2.S3TokenizerV2`` (e.g. from :func:`load_s3_model`, or built on
            random weights from a ``ModelConfig`` for tests); ``None`` builds the published
            architecture with random weights.
        max_windows_per_forward: how many (<= 30 s) windows go through the encoder at once; bounds
            memory for long recordings and big batches without changing any token.
    """

    name = f"s3tokenizer:{MODEL_NAME}"
    sample_rate = SAMPLE_RATE
    token_rate = SAMPLE_RATE / HOP_LENGTH / FRAMES_PER_TOKEN  # 25.0

    def __init__(self, model=None, max_windows_per_forward: int = 8):
        super().__init__()
        self._s3 = import_s3tokenizer()
        self.model = build_s3_model() if model is None else model
        self.model.eval()
        self.n_mels = int(self.model.config.n_mels)
        self.codebook_size = int(self.model.config.n_codebook_size)
        if max_windows_per_forward < 1:
            raise ValueError(f"max_windows_per_forward must be >= 1, got {max_windows_per_forward}")
        self.max_windows_per_forward = int(max_windows_per_forward)

    @classmethod
    def from_pretrained(cls, model_path: str | Path | None = None, cache_dir: str | Path | None = None,
                        device: str | torch.device = "cpu", flag: str = DEFAULT_FLAG,
                        max_windows_per_forward: int = 8) -> "S3Tokenizer":
        """The published weights (see :func:`~tts.tokenizers.s3_weights.load_s3_model`; ``flag`` is the
        option named in the one-line error when they cannot be had)."""
        model = load_s3_model(model_path, cache_dir, flag)
        return cls(model, max_windows_per_forward).to(device)

    def num_tokens(self, num_samples: int, sample_rate: int) -> int:
        samples = math.ceil(num_samples * SAMPLE_RATE / sample_rate)
        return math.ceil((samples // HOP_LENGTH) / FRAMES_PER_TOKEN)

    def log_mel(self, clip: torch.Tensor) -> torch.Tensor:
        """The package's log-mel of one 16 kHz clip (samples,) -> (n_mels, samples // 160)."""
        return self._s3.log_mel_spectrogram(clip, n_mels=self.n_mels)

    def _tokenize_clips(self, clips: list[torch.Tensor]) -> list[torch.Tensor]:
        pieces = []  # (clip index, window index, window, mel slice (n_mels, frames))
        for i, clip in enumerate(clips):
            if clip.numel() < MIN_SAMPLES:
                raise ValueError(f"clip {i}: too short for S3Tokenizer ({clip.numel()} samples at 16 kHz, "
                                 f"need at least {MIN_SAMPLES})")
            mel = self.log_mel(clip)  # per clip: the package normalises by the clip's own maximum
            for k, w in enumerate(plan_windows(mel.shape[-1], WINDOW_FRAMES, OVERLAP_FRAMES, FRAMES_PER_TOKEN)):
                pieces.append((i, k, w, mel[:, w.start:w.end]))
        pieces.sort(key=lambda p: -p[3].shape[-1])  # similar lengths together: less padding
        kept: list[dict[int, torch.Tensor]] = [{} for _ in clips]  # per clip: window index -> kept tokens
        for b in range(0, len(pieces), self.max_windows_per_forward):
            group = pieces[b:b + self.max_windows_per_forward]
            mels, lengths = self._s3.padding([p[3] for p in group])
            codes, code_lens = self.model.quantize(mels.to(self.device), lengths.to(self.device))
            for (i, k, w, mel), code, n in zip(group, codes, code_lens.tolist()):
                if n != math.ceil(mel.shape[-1] / FRAMES_PER_TOKEN):
                    raise RuntimeError(f"S3Tokenizer gave {n} tokens for {mel.shape[-1]} mel frames")
                kept[i][k] = code[w.keep_start:w.keep_end].long()
        return [torch.cat([windows[k] for k in sorted(windows)]) for windows in kept]
