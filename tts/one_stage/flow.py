"""Non-autoregressive flow-matching TTS: a DiT over ``[text tokens ; latent frames]`` that turns noise
into the whole latent sequence for a given text and total length (F5-TTS-style infilling).

The objective and the samplers are :mod:`tts.flow_matching` (time s from 0 = noise to 1 = data,
velocity x1 - x0). Training masks a random span (``infill_min``..``infill_max`` of each
utterance) and asks for it given the rest as a prompt, so at sampling a latent prompt sets the voice.

Opt-ins:
- ``immiscible``: noise of the batch is assigned to samples by a linear assignment before interpolation.
- ``contrastive_weight``: contrastive flow matching, minus ``w *`` the error against another sample's
  velocity target.
- ``meanflow``: MeanFlow average-velocity training: the model also takes an end time e >= s and
  predicts u = (x_e - x_s) / (e - s) (target v + (e - s) du/ds by a JVP), so it can sample in a few
  (even one) steps.
- ``time_schedule``: training times ``uniform`` (default), ``logit_normal`` or ``cosine``.
Alignment prior (``aligned_positions``): text token i of L sits at rotary position (i + 0.5) T / L - 0.5,
on the frame axis, so each character starts near its expected frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tts import flow_matching as fm
from tts.layers import AdaLNOutput, BackboneConfig, Block, TimeEmbedding, rope_angles


@dataclass
class FlowConfig(fm.SequenceFlowConfig, BackboneConfig):
    aligned_positions: bool = True
    text_on_frames: bool = True
    infill_min: float = 0.7
    infill_max: float = 1.0
    drop_audio: float = 0.3
    drop_all: float = 0.2


class FlowTTS(nn.Module):
    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.cfg = cfg
        self.text_emb = nn.Embedding(cfg.vocab_size, cfg.width)
        self.frame_in = nn.Linear(2 * cfg.latent_dim + 1, cfg.width)
        self.time = TimeEmbedding(cfg.width, scale=cfg.time_scale)
        self.interval = TimeEmbedding(cfg.width, scale=cfg.time_scale) if cfg.meanflow else None
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.ff_mult, cfg.dropout, adaptive=True)
                                    for _ in range(cfg.layers))
        self.out = AdaLNOutput(cfg.width, cfg.latent_dim)

    def _positions(self, text_mask: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Rotary positions (B, L + T) for right-padded text (B, L) and frames (B, T)."""
        text_len = text_mask.sum(1, keepdim=True).float().clamp_min(1)
        frames = frame_mask.sum(1, keepdim=True).float()
        i = torch.arange(text_mask.shape[1], device=text_mask.device).float()[None]
        text = (i + 0.5) * frames / text_len - 0.5 if self.cfg.aligned_positions else i - text_len
        j = torch.arange(frame_mask.shape[1], device=frame_mask.device).float()[None].expand(frame_mask.shape[0], -1)
        return torch.cat([text, j], dim=1)

    @staticmethod
    def _stretched_text(emb: torch.Tensor, text_mask: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Text embeddings (B, L, C) spread evenly over the valid frames: frame j of T gets token
        floor((j + 0.5) L / T) -> (B, T, C)."""
        text_len = text_mask.sum(1, keepdim=True).float().clamp_min(1)
        frames = frame_mask.sum(1, keepdim=True).float().clamp_min(1)
        j = torch.arange(frame_mask.shape[1], device=emb.device).float()[None]
        index = ((j + 0.5) * text_len / frames).floor().long().clamp(max=emb.shape[1] - 1)
        index = torch.minimum(index, text_len.long() - 1).clamp_min(0)
        return torch.gather(emb, 1, index[..., None].expand(-1, -1, emb.shape[2])) * frame_mask[..., None]

    def velocity(self, x: torch.Tensor, s: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor,
                 text: torch.Tensor, text_mask: torch.Tensor, text_visible: torch.Tensor, frame_mask: torch.Tensor,
                 end: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity (or MeanFlow average velocity up to ``end`` (B,)) for noisy frames x (B, T, D) at
        times s (B,), with prompt ``cond`` (B, T, D) known where ``cond_mask`` (B, T), text (B, L) with
        mask (B, L) of which ``text_visible`` (B, L) may be attended, valid frames (B, T) -> (B, T, D)."""
        c = self.time(s)
        if self.interval is not None:
            c = c + self.interval(end - s if end is not None else torch.zeros_like(s))
        frames = self.frame_in(torch.cat([x, cond * cond_mask[..., None], cond_mask[..., None].to(x.dtype)], -1))
        if self.cfg.text_on_frames:
            frames = frames + self._stretched_text(self.text_emb(text) * text_visible[..., None], text_mask, frame_mask)
        h = torch.cat([self.text_emb(text), frames], dim=1)
        rope = rope_angles(self._positions(text_mask, frame_mask), self.cfg.width // self.cfg.heads)
        key_valid = torch.cat([text_visible, frame_mask], dim=1)
        mask = key_valid[:, None, None, :]
        for block in self.blocks:
            h = block(h, rope, mask, c)
        return self.out(h[:, text.shape[1]:], c)

    # ----- training ------------------------------------------------------------------------
    def _infill_mask(self, lengths: torch.Tensor, t_max: int) -> torch.Tensor:
        """(B, T) True on a random span of ``infill_min..infill_max`` of each utterance."""
        frac = torch.empty(lengths.shape, device=lengths.device).uniform_(self.cfg.infill_min, self.cfg.infill_max)
        span = (frac * lengths).round().long().clamp(min=1)
        span = torch.minimum(span, lengths)
        start = (torch.rand(lengths.shape, device=lengths.device) * (lengths - span + 1)).floor().long()
        j = torch.arange(t_max, device=lengths.device)[None]
        return (j >= start[:, None]) & (j < (start + span)[:, None])

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, latent: torch.Tensor,
                latent_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses for text (B, L) right-padded with mask (B, L), latent (B, T, D) right-padded with mask (B, T)."""
        cfg = self.cfg
        b = latent.shape[0]
        infill = self._infill_mask(latent_mask.sum(1), latent.shape[1]) & latent_mask
        r = torch.rand(b, device=latent.device) if self.training else torch.ones(b, device=latent.device)
        cond_mask = latent_mask & ~infill & (r >= cfg.drop_all + cfg.drop_audio)[:, None]
        text_visible = text_mask & (r >= cfg.drop_all)[:, None]
        noise = torch.randn_like(latent)
        if cfg.immiscible:
            noise = fm.immiscible_noise(latent, noise, latent_mask)
        s = fm.sample_time(b, cfg.time_schedule, latent.device)
        velocity = fm.velocity_target(noise, latent)
        args = (latent, cond_mask, text, text_mask, text_visible, latent_mask)
        if not cfg.meanflow:
            pred = self.velocity(fm.interpolate(noise, latent, s), s, *args)
            loss, flow, contrast = fm.contrastive_flow_loss(pred, velocity, infill, cfg.contrastive_weight)
            out = {"loss": loss, "fm": flow.detach()}
            return out if contrast is None else {**out, "contrast": contrast.detach()}
        # MeanFlow: a fraction of samples get an interval [s, e], the rest e = s (plain flow matching)
        s, end = fm.meanflow_times(s, cfg.meanflow_ratio, cfg.time_schedule)
        u, target = fm.meanflow_target(lambda x_, s_, e_: self.velocity(x_, s_, *args, end=e_),
                                       fm.interpolate(noise, latent, s), s, end, velocity)
        err = fm.masked_mse_per_sample(u, target, infill)  # (B,)
        return {"loss": fm.adaptive_loss(err), "meanflow": err.mean().detach()}

    # ----- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, text: list[int] | torch.Tensor, num_frames: int, prompt: torch.Tensor | None = None,
               steps: int = 32, temperature: float = 1.0, cfg_scale: float = 2.0, sway: float = -1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """New frames (num_frames, D) for ``text`` token ids (prompt's text first when ``prompt`` (P, D)
        is given). ``sway`` < 0 spends more of the ``steps`` near the noise end (F5-TTS sway sampling)."""
        device = self.text_emb.weight.device
        d = self.cfg.latent_dim
        prompt = torch.zeros(0, d, device=device) if prompt is None else prompt.to(device)
        total = prompt.shape[0] + num_frames
        rows = fm.guidance_rows(cfg_scale)
        text = torch.as_tensor(text, dtype=torch.long, device=device)[None].expand(rows, -1)
        text_mask = torch.ones_like(text, dtype=torch.bool)
        text_visible = text_mask.clone()
        text_visible[1:] = False
        cond = torch.zeros(rows, total, d, device=device)
        cond[:, : prompt.shape[0]] = prompt
        cond_mask = torch.zeros(rows, total, dtype=torch.bool, device=device)
        cond_mask[0, : prompt.shape[0]] = True
        frame_mask = torch.ones(rows, total, dtype=torch.bool, device=device)

        def velocity(x: torch.Tensor, s0: float, s1: float | None = None) -> torch.Tensor:
            s = torch.full((rows,), s0, device=device)
            end = None if s1 is None else torch.full((rows,), s1, device=device)
            return self.velocity(x, s, cond, cond_mask, text, text_mask, text_visible, frame_mask, end)

        integrate = fm.meanflow_sample if self.cfg.meanflow else fm.euler_sample  # MeanFlow: the step's end time
        x = fm.start_noise((1, total, d), temperature, generator, device)
        x = integrate(fm.guided(velocity, cfg_scale), x, fm.time_grid(steps, "sway", sway, device))
        return x[0, prompt.shape[0]:]
