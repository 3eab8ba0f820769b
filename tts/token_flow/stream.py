"""Chunk-by-chunk generation with a :class:`~tts.token_flow_model.TokenFlowModel`: push tokens as a
language model writes them, get latent chunks as soon as they are determined.

    stream = TokenFlowStream(model, chunk_frames=2, prompt=p, prompt_tokens=pt, seed=0)
    for token in lm_tokens():                 # one id, a list or a tensor at a time
        for chunk in stream.push(token):      # (n, D) normalised new frames, in order
            ...
    for chunk in stream.finish():             # the rest, once the token stream ended
        ...

Frame chunk k (frames [kC, (k+1)C) of [prompt ; new], C = ``chunk_frames``) is generated once the
tokens its frames span, plus the encoder's ``lookahead``, have arrived. The causal token encoder runs
incrementally (keys/values cached); the DiT integrates chunk k's ODE alone, attending at each
integration step to the earlier chunks' keys/values *of that step* (one cache per step and block).
Starting noise is fixed per frame position, so the concatenated chunks equal
``model.sample(tokens, prompt=..., chunk_frames=C, seed=...)`` (block-causal offline) to float rounding.
Memory: steps x blocks x frames x 2 x width values per guidance row for the caches.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from tts import flow_matching as fm
from tts.token_flow.frame_noise import frame_noise
from tts.layers import LayerCache
from tts.token_flow.length_regulator import frame_spans
from tts.token_flow.model import TokenFlowModel, _Condition, _guidance_rows, integrate


def as_token_ids(tokens: torch.Tensor | Sequence[int] | int) -> list[int]:
    """One id, a sequence of ids or a tensor (any shape) -> a list of ints."""
    if isinstance(tokens, int):
        return [tokens]
    return [int(t) for t in torch.as_tensor(tokens, dtype=torch.long).reshape(-1).tolist()]


class TokenFlowStream:
    """Incremental token-to-latent generation (module docstring). Works in the model's normalised
    latent space; :mod:`tts.streaming` wraps it for a run (de-normalised chunks, audio)."""

    def __init__(self, model: TokenFlowModel, chunk_frames: int = 2, prompt: torch.Tensor | None = None,
                 prompt_tokens: torch.Tensor | Sequence[int] | None = None, steps: int = 10, grid: str = "sway",
                 sway: float = -1.0, cfg_scale: float = 1.0, temperature: float = 1.0, seed: int = 0,
                 speaker: torch.Tensor | None = None):
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be at least 1 for streaming, got {chunk_frames}")
        fm.time_grid(steps, grid, sway)  # checks steps and grid
        self.model = model.eval()
        self.cfg = model.cfg
        self.chunk = chunk_frames
        self.steps, self.grid, self.sway, self.cfg_scale = steps, grid, sway, cfg_scale
        self.temperature, self.seed = temperature, seed
        self.rows = fm.guidance_rows(cfg_scale)
        device = model.device
        self.prompt = torch.zeros(0, self.cfg.latent_dim) if prompt is None else prompt.float()
        self.prompt_frames = self.prompt.shape[0]
        self.tokens = as_token_ids([] if prompt_tokens is None else prompt_tokens)
        self.prompt_token_count = len(self.tokens)
        self.speaker = None if speaker is None else _guidance_rows(speaker.reshape(1, -1).to(device), self.rows)
        self.features = torch.zeros(1, 0, self.cfg.width, device=device)  # encoder output of tokens so far
        self.encoder_cache = model.streaming_encoder.new_cache()
        self.step_caches = [[LayerCache() for _ in model.blocks] for _ in range(steps)]
        self.done = 0  # frames of [prompt ; new] generated
        self.total: int | None = None  # known once the token stream ended

    @property
    def new_tokens(self) -> int:
        return len(self.tokens) - self.prompt_token_count

    @property
    def ended(self) -> bool:
        return self.total is not None

    @torch.no_grad()
    def push(self, tokens: torch.Tensor | Sequence[int] | int) -> list[torch.Tensor]:
        """Add tokens; returns the new-frame chunks (n, D) that became ready (often none)."""
        if self.ended:
            raise RuntimeError("push after finish: the token stream has ended")
        ids = as_token_ids(tokens)
        bad = [t for t in ids if not 0 <= t < self.cfg.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} out of range: the model has {self.cfg.vocab_size} token ids")
        self.tokens.extend(ids)
        return self._advance()

    @torch.no_grad()
    def finish(self) -> list[torch.Tensor]:
        """End the token stream: the remaining chunks, up to round(new tokens / tokens_per_frame) new frames."""
        if not self.ended:
            self.total = self.prompt_frames + self.model.num_frames(self.new_tokens)
        return self._advance()

    # ----------------------------------------------------------------------------------------
    def _encode(self) -> None:
        ready = len(self.tokens) if self.ended else max(0, len(self.tokens) - self.cfg.lookahead)
        done = self.features.shape[1]
        if ready > done:
            ids = torch.tensor(self.tokens, dtype=torch.long, device=self.model.device)[None]
            new = self.model.streaming_encoder.extend(ids, done, ready, self.encoder_cache)
            self.features = torch.cat([self.features, new], dim=1)

    def _spans(self, start: int, stop: int) -> torch.Tensor:
        return frame_spans(start, stop, self.cfg.tokens_per_frame, self.prompt_frames, self.prompt_token_count)

    def _next_stop(self) -> int | None:
        """End of the next chunk if it can be generated now, else None."""
        stop = self.done + self.chunk
        if self.ended:
            stop = min(stop, self.total)
            return stop if stop > self.done and self.total > self.prompt_frames else None
        needed = math.ceil(float(self._spans(stop - 1, stop)[0, 1]))  # tokens the chunk's last frame overlaps
        return stop if self.features.shape[1] >= needed else None

    def _advance(self) -> list[torch.Tensor]:
        self._encode()
        out = []
        while (stop := self._next_stop()) is not None:
            frames = self._generate(self.done, stop)
            self.done = stop
            if frames.shape[0]:
                out.append(frames)
        return out

    def _generate(self, start: int, stop: int) -> torch.Tensor:
        """Frames [start, stop) of the sequence; returns the new (non-prompt) ones, (n, D)."""
        model, device, d = self.model, self.model.device, self.cfg.latent_dim
        valid = torch.ones(self.features.shape[:2], dtype=torch.bool, device=device)
        features = model.regulator(self.features, valid, self._spans(start, stop)[None])
        known = torch.zeros(1, stop - start, d, device=device)
        known_mask = torch.zeros(1, stop - start, dtype=torch.bool, device=device)
        in_prompt = max(0, min(stop, self.prompt_frames) - start)
        known[0, :in_prompt] = self.prompt[start: start + in_prompt].to(device)
        known_mask[0, :in_prompt] = True
        cond = _Condition(model, self.rows, _guidance_rows(features, self.rows), _guidance_rows(known, self.rows),
                          _guidance_rows(known_mask, self.rows), self.speaker, start=start)
        x = frame_noise(self.seed, start, stop, d, self.temperature, device)[None]
        x = integrate(model, cond.velocity(None, True, self.step_caches), x, self.steps, self.grid, self.sway, self.cfg_scale)
        return x[0, in_prompt:]
