"""Our own speech tokenizer: a convolutional mel encoder with a finite-scalar-quantization bottleneck.

    mel (B, 80, T) --normalise--> conv + ConvNeXt blocks at 86 Hz --patchify (k = s = f)-->
    ConvNeXt blocks at 86/f Hz --> FSQ (vector_quantize_pytorch.FSQ) --> tokens (B, ceil(T / f))
    tokens --> FSQ codes --> ConvNeXt blocks --unpatchify--> ConvNeXt blocks --> mel (B, 80, ceil(T / f) * f)

Input features are BigVGAN's log-mel (:class:`vocoder.mel.MelSpectrogram`), the same the DC-AE
encodes; the decoder reconstructs that mel. We reconstruct the mel rather than the DC-AE latent
because it needs no trained DC-AE (the tokenizer trains from audio alone, offline, before or
without any autoencoder checkpoint), the tokens then carry what the latents are computed from,
and reconstruction error is measured in the mel units every other part of the project reports.

With the default ``f = 4`` mel frames per token the token rate is 21.53 Hz, exactly 4 tokens per
DC-AE latent frame. All convolutions are masked (:mod:`tts.tokenizers.layers`), so a clip gives the
same tokens alone or in a padded batch; there is no dropout or noise, so tokens are deterministic.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from vector_quantize_pytorch import FSQ

from dcae.errors import ConfigError
from tts.tokenizers.base import SpeechTokenizer
from tts.tokenizers.fsq_config import FSQTokenizerConfig
from tts.tokenizers.layers import ChannelNorm, ConvNeXtBlock1d, length_mask
from vocoder.mel import MelSpectrogram

PAD_TOKEN = -1  # positions past a clip's end in batched ``encode`` output


class FSQEncoder(nn.Module):
    """Normalised mel (B, n_mels, T') with T' a multiple of f -> features (B, C, T' / f)."""

    def __init__(self, cfg: FSQTokenizerConfig):
        super().__init__()
        c = cfg.channels
        self.inp = nn.Conv1d(cfg.n_mels, c, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.frame_blocks = nn.ModuleList(ConvNeXtBlock1d(c, cfg.kernel_size, cfg.mlp_ratio) for _ in range(cfg.frame_blocks))
        self.down = nn.Conv1d(c, c, cfg.mel_frames_per_token, stride=cfg.mel_frames_per_token)
        self.token_blocks = nn.ModuleList(ConvNeXtBlock1d(c, cfg.kernel_size, cfg.mlp_ratio) for _ in range(cfg.token_blocks))
        self.norm = ChannelNorm(c)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        h = self.inp(x * frame_mask)
        for block in self.frame_blocks:
            h = block(h, frame_mask)
        h = self.down(h * frame_mask)
        for block in self.token_blocks:
            h = block(h, token_mask)
        return self.norm(h)


class FSQDecoder(nn.Module):
    """Quantized features (B, C, N) -> normalised mel (B, n_mels, N * f)."""

    def __init__(self, cfg: FSQTokenizerConfig):
        super().__init__()
        c = cfg.channels
        self.token_blocks = nn.ModuleList(ConvNeXtBlock1d(c, cfg.kernel_size, cfg.mlp_ratio) for _ in range(cfg.token_blocks))
        self.up = nn.ConvTranspose1d(c, c, cfg.mel_frames_per_token, stride=cfg.mel_frames_per_token)
        self.frame_blocks = nn.ModuleList(ConvNeXtBlock1d(c, cfg.kernel_size, cfg.mlp_ratio) for _ in range(cfg.frame_blocks))
        self.norm = ChannelNorm(c)
        self.out = nn.Conv1d(c, cfg.n_mels, 1)

    def forward(self, h: torch.Tensor, token_mask: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        for block in self.token_blocks:
            h = block(h, token_mask)
        h = self.up(h * token_mask)
        for block in self.frame_blocks:
            h = block(h, frame_mask)
        return self.out(self.norm(h))


class FSQTokenizer(SpeechTokenizer):
    """Trainable FSQ speech tokenizer (see the module docstring). ``forward`` returns the training losses.

    Shapes: mel (B, n_mels, T), ``lengths`` (B,) valid mel frames (default: all T), tokens (B, N)
    with N = ceil(T / f) and f = ``config.mel_frames_per_token``.
    """

    name = "fsq"

    def __init__(self, config: FSQTokenizerConfig | None = None):
        super().__init__()
        cfg = (config if config is not None else FSQTokenizerConfig()).check()
        self.config = cfg
        self.mel = MelSpectrogram()  # BigVGAN v2 22 kHz log-mel; its buffers are not in the state dict
        if (self.mel.sample_rate, self.mel.hop_length, self.mel.n_mels) != (cfg.sample_rate, cfg.hop_length, cfg.n_mels):
            raise ConfigError(f"FSQ tokenizer config wants {cfg.n_mels} mels at {cfg.sample_rate} Hz hop {cfg.hop_length}, "
                              f"the mel front end gives {self.mel.n_mels} at {self.mel.sample_rate} Hz hop {self.mel.hop_length}")
        self.sample_rate = cfg.sample_rate
        self.token_rate = cfg.token_rate
        self.codebook_size = cfg.codebook_size
        self.frames_per_token = cfg.mel_frames_per_token
        self.encoder = FSQEncoder(cfg)
        self.quantizer = FSQ(levels=list(cfg.levels), dim=cfg.channels, channel_first=True)
        self.decoder = FSQDecoder(cfg)

    # --- lengths and masks ------------------------------------------------------------------------
    def token_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        """(B,) mel frames -> (B,) tokens: ceil(frames / f)."""
        return torch.div(frame_lengths + self.frames_per_token - 1, self.frames_per_token, rounding_mode="floor")

    def _lengths(self, mel: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if mel.ndim != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"mel must be (B, {self.config.n_mels}, T), got shape {tuple(mel.shape)}")
        if lengths is None:
            return torch.full((mel.shape[0],), mel.shape[-1], dtype=torch.long, device=mel.device)
        return lengths.to(mel.device, torch.long)

    # --- encoder / quantizer / decoder ------------------------------------------------------------
    def _quantize(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> quantized features (B, C, N), ids (B, N), token lengths (B,)."""
        n_tokens = math.ceil(mel.shape[-1] / self.frames_per_token)
        x = (mel.float() - self.config.mel_mean) / self.config.mel_std
        x = F.pad(x, (0, n_tokens * self.frames_per_token - mel.shape[-1]))
        token_lengths = self.token_lengths(lengths)
        frame_mask = length_mask(lengths, x.shape[-1])
        token_mask = length_mask(token_lengths, n_tokens)
        quantized, ids = self.quantizer(self.encoder(x, frame_mask, token_mask))
        return quantized, ids.long(), token_lengths

    def _decode_features(self, quantized: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
        token_mask = length_mask(token_lengths, quantized.shape[-1])
        frame_mask = length_mask(token_lengths * self.frames_per_token, quantized.shape[-1] * self.frames_per_token)
        y = self.decoder(quantized, token_mask, frame_mask)
        return y * self.config.mel_std + self.config.mel_mean

    def encode(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, n_mels, T) -> tokens (B, ceil(T / f)) int64 in [0, codebook_size); past a clip's
        ``ceil(lengths[b] / f)`` tokens the row holds ``PAD_TOKEN`` (-1)."""
        lengths = self._lengths(mel, lengths)
        _, ids, token_lengths = self._quantize(mel, lengths)
        valid = length_mask(token_lengths, ids.shape[-1])[:, 0].bool()
        return ids.masked_fill(~valid, PAD_TOKEN)

    def decode(self, tokens: torch.Tensor, token_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, N) -> mel (B, n_mels, N * f); ``token_lengths`` (B,) for padded rows (padding ids ignored)."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be (B, N), got shape {tuple(tokens.shape)}")
        if token_lengths is None:
            token_lengths = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device)
        ids = tokens.long().clamp(0, self.codebook_size - 1)
        quantized = self.quantizer.indices_to_codes(ids)  # (B, C, N): channel_first
        return self._decode_features(quantized, token_lengths.to(tokens.device, torch.long))

    def reconstruct(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, n_mels, T) -> its reconstruction through the tokens (B, n_mels, T)."""
        lengths = self._lengths(mel, lengths)
        quantized, _, token_lengths = self._quantize(mel, lengths)
        return self._decode_features(quantized, token_lengths)[..., :mel.shape[-1]]

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training losses for mel (B, n_mels, T): ``loss`` (L1 of the normalised mel over valid frames)
        and ``mel_l1`` (the same in log-mel units, detached)."""
        lengths = self._lengths(mel, lengths)
        quantized, _, token_lengths = self._quantize(mel, lengths)
        recon = self._decode_features(quantized, token_lengths)[..., :mel.shape[-1]]
        mask = length_mask(lengths, mel.shape[-1])
        l1 = ((recon - mel.float()).abs() * mask).sum() / (mask.sum() * mel.shape[1]).clamp(min=1)
        loss = l1 / self.config.mel_std
        return {"loss": loss, "mel_l1": l1.detach()}

    # --- SpeechTokenizer --------------------------------------------------------------------------
    def num_tokens(self, num_samples: int, sample_rate: int) -> int:
        samples = math.ceil(num_samples * self.sample_rate / sample_rate)
        return math.ceil(self.mel.num_frames(samples) / self.frames_per_token)

    def token_file_metadata(self) -> dict[str, object]:
        return {**super().token_file_metadata(), "levels": ",".join(str(v) for v in self.config.levels)}

    def _tokenize_clips(self, clips: list[torch.Tensor]) -> list[torch.Tensor]:
        min_samples = self.config.hop_length * self.frames_per_token
        for i, clip in enumerate(clips):
            if clip.numel() < min_samples:
                raise ValueError(f"clip {i}: too short for the FSQ tokenizer ({clip.numel()} samples at "
                                 f"{self.sample_rate} Hz, need at least {min_samples})")
        mels = [self.mel(clip)[0] for clip in clips]  # each clip's mel alone: (n_mels, T_i)
        lengths = torch.tensor([m.shape[-1] for m in mels], device=self.device)
        batch = torch.zeros(len(mels), self.config.n_mels, int(lengths.max()), device=self.device)
        for i, m in enumerate(mels):
            batch[i, :, :m.shape[-1]] = m
        tokens = self.encode(batch, lengths)
        return [row[:n] for row, n in zip(tokens, self.token_lengths(lengths).tolist())]
