"""Token-to-latent flow matching (stage 2 of the two-stage TTS): speech tokens -> DC-AE latents.

    tokens (N,) --TokenEncoder (lookahead conv + transformer; one per attention mode)--> (N, C)
            --LengthRegulator (span pooling at tokens_per_frame, any ratio)--> (T, C) on the frame grid
    [noisy frames x_s ; prompt frames ; prompt mask] -> Linear + frame features
            --DiT blocks (adaLN on flow time + attention mode [+ MeanFlow interval] [+ speaker])--> velocity (T, D)

- Prompt infilling: the first ``P`` frames of the sequence are a known prompt latent (its tokens
  precede the new tokens), the rest is generated. Training draws a prefix of up to ``prompt_max``
  of each utterance as the prompt (none with probability ``drop_prompt``); the loss covers the rest.
- Classifier-free guidance: with probability ``drop_cond`` a sample loses its tokens, prompt and
  speaker; sampling combines the conditional and unconditional velocities (:mod:`tts.flow_matching`).
- Speaker embedding (optional, ``speaker_dim`` > 0): a vector per utterance added to the adaLN
  condition, e.g. a speaker-verification embedding of the prompt speaker (Resemblyzer's 256-d
  d-vector, CAM++'s 192-d x-vector) computed offline and listed per manifest row; or MiniMax-Speech's
  learnable speaker encoder (``speaker_encoder="learnable"``, :mod:`tts.speakers.learnable`): a
  reference clip's latents pooled into the vector, trained jointly, dropped with the other conditions.
- Chunk-aware attention (:mod:`tts.chunk_attention`): per-sample full-context or block-causal masks
  ("unified" training), so one model serves offline synthesis (full context) and streaming
  (chunked; :class:`tts.token_flow_stream.TokenFlowStream` equals :meth:`TokenFlowModel.sample`
  with the same ``chunk_frames``). Keeping the full-context mode as good as a full-context-only model
  (measured on a synthetic task where frames depend on later tokens, docs/two_stage.md) takes three
  things: a token encoder for each mode (``separate_encoders``: the bidirectional one carries most of
  the future context), a learned mode embedding in the adaLN condition (and in the encoders' input),
  and most samples in full context (``full_context_prob`` 0.7). Starting noise is fixed per frame
  position (:mod:`tts.frame_noise`).
- The shared objective options (:mod:`tts.flow_matching`): training-time schedule, immiscible
  noise, contrastive flow matching, MeanFlow; sampling grids uniform / sway / cosine.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tts import flow_matching as fm
from tts.layers import AdaLNOutput, BackboneConfig, Block, LayerCache, TimeEmbedding, rope_angles
from tts.speakers.learnable import SpeakerConditioning
from tts.token_flow.chunk_attention import FULL_CONTEXT, frame_mask, sample_chunks
from tts.token_flow.encoder import TokenEncoder
from tts.token_flow.frame_noise import frame_noise
from tts.token_flow.length_regulator import LengthRegulator, batch_spans, frame_spans, frames_for_tokens


@dataclass
class TokenFlowConfig(fm.SequenceFlowConfig, BackboneConfig):
    """``vocab_size``: codebook size of the tokenizer; ``latent_dim``: 80 for the DC-AE; ``layers``: DiT blocks."""

    tokens_per_frame: float = 4.0  # token_rate / frame_rate (4.644 for 25 Hz S3 tokens, 4 for our FSQ tokenizer)
    prompt_ratio_tolerance: float = 0.2  # a prompt may have up to this much more tokens per frame than the corpus
    encoder_layers: int = 3
    lookahead: int = 3  # tokens the encoder reads ahead
    separate_encoders: bool = True  # a token encoder of its own for each mode (full / chunked)
    speaker_dim: int = 0  # size of an optional speaker embedding (0: none)
    speaker_encoder: str = "none"  # none | learnable (MiniMax-Speech: a reference clip's latents -> a vector, trained jointly)
    speaker_layers: int = 2  # learnable speaker encoder: transformer blocks
    reference_frames: int = 64  # learnable speaker encoder: training references are crops of at most this many frames
    chunk_sizes: list[int] = field(default_factory=lambda: [1, 2, 4])
    full_context_prob: float = 0.7
    prompt_max: float = 0.5
    drop_prompt: float = 0.3
    drop_cond: float = 0.2


def _guidance_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """(1, ...) -> (rows, ...): the conditional row, then a zero (unconditional) row when guiding."""
    return t if rows == 1 else torch.cat([t, torch.zeros_like(t)])


class TokenFlowModel(SpeakerConditioning, nn.Module):
    def __init__(self, cfg: TokenFlowConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.encoder = TokenEncoder(cfg.vocab_size, w, cfg.encoder_layers, cfg.heads, cfg.ff_mult, cfg.dropout,
                                    cfg.lookahead)
        self.chunk_encoder = (TokenEncoder(cfg.vocab_size, w, cfg.encoder_layers, cfg.heads, cfg.ff_mult, cfg.dropout,
                                           cfg.lookahead) if cfg.separate_encoders else None)
        self.regulator = LengthRegulator(w, cfg.tokens_per_frame * (1 + cfg.prompt_ratio_tolerance))
        self.frame_in = nn.Linear(2 * cfg.latent_dim + 1, w)
        self.time = TimeEmbedding(w, scale=cfg.time_scale)
        self.mode = nn.Embedding(2, w)  # attention mode: 0 full context, 1 chunked
        self.interval = TimeEmbedding(w, scale=cfg.time_scale) if cfg.meanflow else None
        self._speaker_modules(cfg, w, cfg.heads)
        self.blocks = nn.ModuleList(Block(w, cfg.heads, cfg.ff_mult, cfg.dropout, adaptive=True)
                                    for _ in range(cfg.layers))
        self.out = AdaLNOutput(w, cfg.latent_dim)

    @property
    def device(self) -> torch.device:
        return self.frame_in.weight.device

    def num_frames(self, num_tokens: int) -> int:
        """Frames for ``num_tokens`` new tokens: round(num_tokens / token_rate * frame_rate)."""
        return frames_for_tokens(num_tokens, self.cfg.tokens_per_frame)

    # ----- the network -----------------------------------------------------------------------
    def frame_features(self, tokens: torch.Tensor, token_valid: torch.Tensor, causal: torch.Tensor,
                       spans: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N) with valid mask (B, N), causal encoder (B,) bool, frame spans (B, T, 2) -> (B, T, C)."""
        if self.chunk_encoder is None or (not self.training and not bool(causal.any())):
            h = self.encoder(tokens, token_valid, causal)
        elif not self.training and bool(causal.all()):
            h = self.chunk_encoder(tokens, token_valid, causal)
        else:  # training: both run, so every parameter takes part in each step (DDP)
            h = torch.where(causal[:, None, None], self.chunk_encoder(tokens, token_valid, causal),
                            self.encoder(tokens, token_valid, causal))
        return self.regulator(h, token_valid, spans)

    @property
    def streaming_encoder(self) -> TokenEncoder:
        """The token encoder of chunked mode (causal)."""
        return self.chunk_encoder if self.chunk_encoder is not None else self.encoder

    def velocity(self, x: torch.Tensor, s: torch.Tensor, features: torch.Tensor, prompt: torch.Tensor,
                 prompt_mask: torch.Tensor, attn_mask: torch.Tensor | None, chunked: torch.Tensor, start: int = 0,
                 speaker: torch.Tensor | None = None, end: torch.Tensor | None = None,
                 caches: list[LayerCache] | None = None) -> torch.Tensor:
        """Velocity (or MeanFlow average velocity up to ``end`` (B,)) of frames [start, start + T).

        x (B, T, D) noisy frames at times s (B,); features (B, T, C) from :meth:`frame_features`;
        prompt (B, T, D) known where prompt_mask (B, T); attn_mask (B, 1, T, T) or None (all keys);
        chunked (B,) bool: the attention mode (block-causal or full); speaker (B, speaker_dim);
        ``caches`` (one per block): keys/values of earlier frames, extended with these frames' -> (B, T, D).
        """
        c = self.time(s) + self.mode(chunked.long())
        if self.interval is not None:
            c = c + self.interval(end - s if end is not None else torch.zeros_like(s))
        if self.speaker is not None and speaker is None and self.speaker_encoder is not None:
            speaker = torch.zeros(x.shape[0], self.speaker_size, device=x.device)  # no reference: as dropped
        if self.speaker is not None and speaker is not None:
            c = c + self.speaker(speaker.to(c.dtype))
        h = self.frame_in(torch.cat([x, prompt * prompt_mask[..., None], prompt_mask[..., None].to(x.dtype)], -1))
        h = h + features
        positions = torch.arange(start, start + x.shape[1], device=x.device)[None].expand(x.shape[0], -1)
        rope = rope_angles(positions, self.cfg.width // self.cfg.heads)
        for i, block in enumerate(self.blocks):
            h = block(h, rope, attn_mask, c, None if caches is None else caches[i])
        return self.out(h, c)

    # ----- training --------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor, latent: torch.Tensor,
                latent_mask: torch.Tensor, speaker: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                reference_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Losses for tokens (B, N) right-padded with mask (B, N), latents (B, T, D) right-padded with
        mask (B, T), optional speaker embeddings (B, speaker_dim), or with the learnable encoder the
        references' normalised latents (B, R, D) right-padded with mask (B, R)."""
        cfg = self.cfg
        b, t, _ = latent.shape
        device = latent.device
        train = self.training
        chunk = (sample_chunks(b, cfg.chunk_sizes, cfg.full_context_prob, device) if train
                 else torch.full((b,), FULL_CONTEXT, dtype=torch.long, device=device))
        lengths = latent_mask.sum(1)
        prompt_frames = (torch.rand(b, device=device) * cfg.prompt_max * lengths).floor().long()
        if train:
            prompt_frames = torch.where(torch.rand(b, device=device) < cfg.drop_prompt, 0, prompt_frames)
        prompt_frames = torch.minimum(prompt_frames, lengths - 1).clamp_min(0)
        keep = (torch.rand(b, device=device) >= cfg.drop_cond) if train else torch.ones(b, dtype=torch.bool, device=device)
        j = torch.arange(t, device=device)[None]
        prompt_mask = (j < prompt_frames[:, None]) & latent_mask & keep[:, None]
        generate = latent_mask & (j >= prompt_frames[:, None])
        spans = batch_spans(t, cfg.tokens_per_frame).expand(b, -1, -1)
        features = self.frame_features(tokens, token_mask, chunk > 0, spans) * keep[:, None, None]
        if self.speaker_encoder is not None and reference is not None:
            speaker = self.speaker_encoder(reference, reference_mask)
        if speaker is not None:
            speaker = speaker * keep[:, None]
        attn = frame_mask(chunk, latent_mask)
        noise = torch.randn_like(latent)
        if cfg.immiscible:
            noise = fm.immiscible_noise(latent, noise, latent_mask)
        s = fm.sample_time(b, cfg.time_schedule, device)
        velocity = fm.velocity_target(noise, latent)
        args = (features, latent, prompt_mask, attn, chunk > 0)
        if not cfg.meanflow:
            pred = self.velocity(fm.interpolate(noise, latent, s), s, *args, speaker=speaker)
            loss, flow, contrast = fm.contrastive_flow_loss(pred, velocity, generate, cfg.contrastive_weight)
            out = {"loss": loss, "fm": flow.detach()}
            return out if contrast is None else {**out, "contrast": contrast.detach()}
        s, end = fm.meanflow_times(s, cfg.meanflow_ratio, cfg.time_schedule)
        u, target = fm.meanflow_target(lambda x_, s_, e_: self.velocity(x_, s_, *args, speaker=speaker, end=e_),
                                       fm.interpolate(noise, latent, s), s, end, velocity)
        err = fm.masked_mse_per_sample(u, target, generate)
        return {"loss": fm.adaptive_loss(err), "meanflow": err.mean().detach()}

    # ----- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, tokens: torch.Tensor | list[int], num_frames: int | None = None,
               prompt: torch.Tensor | None = None, prompt_tokens: torch.Tensor | list[int] | None = None,
               chunk_frames: int = FULL_CONTEXT, steps: int = 10, grid: str = "sway", sway: float = -1.0,
               cfg_scale: float = 1.0, temperature: float = 1.0, seed: int = 0,
               speaker: torch.Tensor | None = None) -> torch.Tensor:
        """New frames (num_frames, D), normalised, for ``tokens`` (N,) after an optional prompt
        (latent (P, D) normalised + its tokens (Np,)). ``num_frames`` defaults to
        :meth:`num_frames` of N. ``chunk_frames`` 0: full context; else block-causal chunks (what
        :class:`~tts.token_flow_stream.TokenFlowStream` computes chunk by chunk). Noise is fixed per
        frame position by ``seed``. ``grid``: uniform | sway (``sway``) | cosine time grid of ``steps``."""
        device = self.device
        d = self.cfg.latent_dim
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        prompt_tokens = torch.as_tensor([] if prompt_tokens is None else prompt_tokens, dtype=torch.long).reshape(-1)
        prompt = torch.zeros(0, d) if prompt is None else prompt.float()
        n_new = self.num_frames(tokens.numel()) if num_frames is None else num_frames
        p, total = prompt.shape[0], prompt.shape[0] + n_new
        all_tokens = torch.cat([prompt_tokens, tokens]).to(device)[None]
        rows = fm.guidance_rows(cfg_scale)
        spans = frame_spans(0, total, self.cfg.tokens_per_frame, p, prompt_tokens.numel())[None]
        chunk = torch.full((1,), chunk_frames, dtype=torch.long, device=device)
        features = self.frame_features(all_tokens, torch.ones_like(all_tokens, dtype=torch.bool), chunk > 0, spans)
        known = torch.zeros(1, total, d, device=device)
        known[0, :p] = prompt.to(device)
        known_mask = torch.zeros(1, total, dtype=torch.bool, device=device)
        known_mask[0, :p] = True
        cond = _Condition(self, rows, _guidance_rows(features, rows), _guidance_rows(known, rows),
                          _guidance_rows(known_mask, rows), None if speaker is None else
                          _guidance_rows(speaker.reshape(1, -1).to(device), rows))
        attn = frame_mask(chunk.expand(rows), torch.ones(rows, total, dtype=torch.bool, device=device))
        x = frame_noise(seed, 0, total, d, temperature, device)[None]
        x = integrate(self, cond.velocity(attn, chunked=chunk_frames > 0), x, steps, grid, sway, cfg_scale)
        return x[0, p:]


class _Condition:
    """The conditioning of one sampling call, rows [conditional, unconditional], for a range of frames."""

    def __init__(self, model: TokenFlowModel, rows: int, features: torch.Tensor, prompt: torch.Tensor,
                 prompt_mask: torch.Tensor, speaker: torch.Tensor | None, start: int = 0):
        self.model, self.rows, self.start = model, rows, start
        self.features, self.prompt, self.prompt_mask, self.speaker = features, prompt, prompt_mask, speaker

    def velocity(self, attn: torch.Tensor | None, chunked: bool, caches: list[list[LayerCache]] | None = None):
        """A velocity ``fn(x (rows, T, D), s[, e])`` for the samplers in the given attention mode; with
        ``caches`` (one list of block caches per integration step), call k uses and extends ``caches[k]``."""
        calls = iter(range(len(caches))) if caches is not None else None
        device = self.features.device
        mode = torch.full((self.rows,), chunked, dtype=torch.bool, device=device)

        def fn(x: torch.Tensor, s0: float, s1: float | None = None) -> torch.Tensor:
            s = torch.full((self.rows,), s0, device=device)
            end = None if s1 is None else torch.full((self.rows,), s1, device=device)
            step_caches = None if calls is None else caches[next(calls)]
            return self.model.velocity(x, s, self.features, self.prompt, self.prompt_mask, attn, mode, self.start,
                                       self.speaker, end, step_caches)

        return fn


def integrate(model: TokenFlowModel, velocity, x: torch.Tensor, steps: int, grid: str, sway: float,
              cfg_scale: float) -> torch.Tensor:
    """Run the sampler of ``model`` (Euler, or MeanFlow jumps) with guidance on x (1, T, D) -> (1, T, D)."""
    times = fm.time_grid(steps, grid, sway)
    sampler = fm.meanflow_sample if model.cfg.meanflow else fm.euler_sample
    return sampler(fm.guided(velocity, cfg_scale), x, times)
