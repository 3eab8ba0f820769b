"""Continuous autoregressive TTS: a causal transformer over ``[text tokens ; <bos> ; latent frames]``
whose state at each step conditions a small rectified-flow head that draws the next latent frame,
plus a stop head (the continuous-AR / "AR + diffusion head" recipe). The head's objective and its
Euler sampler are :mod:`tts.flow_matching`, on per-frame vectors (N, D).

Sequence slots: text (left-padded, L), then speech slot 0 = ``<bos>``, slot j = frame j-1.
The state at speech slot j predicts frame j, and the stop head says whether slot j is the end.
Classifier-free guidance: in training the text is hidden from attention with probability
``cond_drop``; at sampling the unconditional row hides it, and the flow head's velocities are
mixed as ``v_u + cfg_scale * (v_c - v_u)``.

Alignment prior (``frames_per_token = r``): text token i sits at rotary position i and speech slot j
at position j / r, so the relative position between a frame and "its" character is near 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from tts import flow_matching as fm
from tts.layers import AdaLNOutput, BackboneConfig, Block, LayerCache, TimeEmbedding, rope_angles


@dataclass
class ARConfig(fm.FlowObjectiveConfig, BackboneConfig):
    head_width: int = 256
    head_layers: int = 3
    frames_per_token: float | None = None
    flow_samples: int = 4
    stop_weight: float = 1.0
    cond_drop: float = 0.1


class _HeadBlock(nn.Module):
    """Residual MLP block modulated (shift, scale, gate) by a condition vector: (N, W), (N, W) -> (N, W)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(cond).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class FlowHead(nn.Module):
    """Velocity of one latent frame: noisy frame (N, D), flow time (N,), state (N, C) -> (N, D)."""

    def __init__(self, latent_dim: int, state_width: int, width: int, layers: int):
        super().__init__()
        self.inp = nn.Linear(latent_dim, width)
        self.time = TimeEmbedding(width)
        self.state = nn.Linear(state_width, width)
        self.blocks = nn.ModuleList(_HeadBlock(width) for _ in range(layers))
        self.out = AdaLNOutput(width, latent_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        cond = self.state(state) + self.time(t)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, cond)
        return self.out(h[:, None], cond)[:, 0]


class ARTTS(nn.Module):
    def __init__(self, cfg: ARConfig):
        super().__init__()
        self.cfg = cfg
        self.text_emb = nn.Embedding(cfg.vocab_size, cfg.width)
        self.frame_in = nn.Linear(cfg.latent_dim, cfg.width)
        self.bos = nn.Parameter(torch.randn(cfg.width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.ff_mult, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width)
        self.stop = nn.Linear(cfg.width, 1)
        self.head = FlowHead(cfg.latent_dim, cfg.width, cfg.head_width, cfg.head_layers)

    # ----- positions and masks -------------------------------------------------------------
    def _positions(self, text_len: torch.Tensor, width: int, slots: torch.Tensor, with_text: bool) -> torch.Tensor:
        """Rotary positions (B, [width +] n) for left-padded text of lengths (B,) and speech ``slots`` (n,)."""
        text_len = text_len.float()[:, None]
        r = self.cfg.frames_per_token
        speech = slots.float()[None] / r if r else text_len + slots.float()[None]
        speech = speech.expand(text_len.shape[0], -1)
        if not with_text:
            return speech
        text = torch.arange(width, device=text_len.device).float()[None] - (width - text_len)
        return torch.cat([text, speech], dim=1)

    def _run(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
             caches: list[LayerCache] | None = None) -> torch.Tensor:
        """Backbone: (B, S, C) -> normalised states (B, S, C)."""
        rope = rope_angles(positions, self.cfg.width // self.cfg.heads)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, cache=None if caches is None else caches[i])
        return self.norm(x)

    @staticmethod
    def _prefix_mask(key_valid: torch.Tensor) -> torch.Tensor:
        """Causal mask over a full sequence (B, 1, S, S); every query may see itself."""
        s = key_valid.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool, device=key_valid.device).tril()
        return ((causal[None] & key_valid[:, None, :]) | torch.eye(s, dtype=torch.bool, device=key_valid.device))[:, None]

    def _states(self, text: torch.Tensor, text_mask: torch.Tensor, text_keys: torch.Tensor, frames: torch.Tensor,
                frame_valid: torch.Tensor, caches: list[LayerCache] | None = None) -> torch.Tensor:
        """States of speech slots 0..n: text (B, L) left-padded with mask (B, L), of which ``text_keys``
        (B, L) are visible, frames (B, n, D) with validity (B, n) -> (B, n + 1, C)."""
        b, width = text.shape
        x = torch.cat([self.text_emb(text), self.bos.expand(b, 1, -1), self.frame_in(frames)], dim=1)
        slots = torch.arange(frames.shape[1] + 1, device=text.device)
        positions = self._positions(text_mask.sum(1), width, slots, True)
        ones = torch.ones(b, 1, dtype=torch.bool, device=text.device)
        key_valid = torch.cat([text_keys, ones, frame_valid], dim=1)
        return self._run(x, positions, self._prefix_mask(key_valid), caches)[:, width:]

    # ----- training ------------------------------------------------------------------------
    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, latent: torch.Tensor,
                latent_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses for text (B, L) left-padded with mask (B, L), latent (B, T, D) right-padded with mask (B, T)."""
        b, t_max, d = latent.shape
        keep = torch.rand(b, device=text.device) >= (self.cfg.cond_drop if self.training else 0.0)
        text_keys = text_mask & keep[:, None]
        h = self._states(text, text_mask, text_keys, latent, latent_mask)  # (B, T + 1, C)
        # flow head on every real frame, with several flow times per frame
        state = h[:, :t_max][latent_mask].repeat(self.cfg.flow_samples, 1)  # (N, C)
        target = latent[latent_mask].repeat(self.cfg.flow_samples, 1)  # (N, D)
        tau = fm.sample_time(state.shape[0], self.cfg.time_schedule, latent.device)
        noise = torch.randn_like(target)
        pred = self.head(fm.interpolate(noise, target, tau), tau, state)
        flow = fm.masked_mse(pred, fm.velocity_target(noise, target))
        # stop head: slot j is the end iff j == length
        lengths = latent_mask.sum(1)
        slots = torch.arange(t_max + 1, device=latent.device)[None]
        stop_valid = slots <= lengths[:, None]
        logits = self.stop(h).squeeze(-1)
        stop = F.binary_cross_entropy_with_logits(logits[stop_valid], (slots == lengths[:, None]).float()[stop_valid])
        return {"loss": flow + self.cfg.stop_weight * stop, "flow": flow.detach(), "stop": stop.detach()}

    # ----- sampling ------------------------------------------------------------------------
    def _sample_frame(self, state: torch.Tensor, grid: torch.Tensor, temperature: float, cfg_scale: float,
                      generator: torch.Generator | None) -> torch.Tensor:
        """Euler-integrate the flow head over ``grid`` (K + 1,) from noise, for states (R, C) (row 1:
        unconditional, when ``cfg_scale`` != 1) -> (D,)."""
        def velocity(x: torch.Tensor, s: float) -> torch.Tensor:
            return self.head(x, torch.full((x.shape[0],), s, device=x.device), state)

        x = fm.start_noise((1, self.cfg.latent_dim), temperature, generator, state.device)
        return fm.euler_sample(fm.guided(velocity, cfg_scale), x, grid)[0]

    @torch.no_grad()
    def stream(self, text: list[int] | torch.Tensor, prompt: torch.Tensor | None = None, max_frames: int = 500,
               min_frames: int = 1, steps: int = 10, temperature: float = 1.0, cfg_scale: float = 1.0,
               stop_threshold: float = 0.5, generator: torch.Generator | None = None,
               use_cache: bool = True) -> Iterator[torch.Tensor]:
        """Yield new latent frames (D,) one by one for ``text`` (token ids; include the prompt's text
        first when a ``prompt`` (P, D) continues a voice). Stops at the stop head or ``max_frames``."""
        device = self.bos.device
        text = torch.as_tensor(text, dtype=torch.long, device=device)[None]
        rows = fm.guidance_rows(cfg_scale)
        text = text.expand(rows, -1)
        text_mask = torch.ones_like(text, dtype=torch.bool)
        text_keys = text_mask.clone()
        text_keys[1:] = False  # the unconditional row sees no text
        prompt = torch.zeros(0, self.cfg.latent_dim, device=device) if prompt is None else prompt.to(device)
        frames = prompt[None].expand(rows, -1, -1)
        caches = [LayerCache() for _ in self.blocks] if use_cache else None
        valid = torch.ones(rows, frames.shape[1], dtype=torch.bool, device=device)
        state = self._states(text, text_mask, text_keys, frames, valid, caches)[:, -1]
        key_valid = torch.cat([text_keys, torch.ones(rows, 1 + frames.shape[1], dtype=torch.bool, device=device)], 1)
        grid = fm.time_grid(steps, device=device)
        for j in range(max_frames):
            if j >= min_frames and torch.sigmoid(self.stop(state[0])).item() > stop_threshold:
                return
            frame = self._sample_frame(state, grid, temperature, cfg_scale, generator)
            yield frame
            frames = torch.cat([frames, frame.expand(rows, 1, -1)], dim=1)
            if caches is None:
                valid = torch.ones(rows, frames.shape[1], dtype=torch.bool, device=device)
                state = self._states(text, text_mask, text_keys, frames, valid)[:, -1]
                continue
            key_valid = torch.cat([key_valid, torch.ones(rows, 1, dtype=torch.bool, device=device)], dim=1)
            slot = torch.tensor([frames.shape[1]], device=device)
            positions = self._positions(text_mask.sum(1), text.shape[1], slot, with_text=False)
            x = self.frame_in(frame.expand(rows, 1, -1))
            state = self._run(x, positions, key_valid[:, None, None, :], caches)[:, -1]

    def generate(self, text: list[int] | torch.Tensor, prompt: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """All new frames at once: (frames, D)."""
        frames = list(self.stream(text, prompt, **kwargs))
        if not frames:
            return torch.zeros(0, self.cfg.latent_dim, device=self.bos.device)
        return torch.stack(frames)
