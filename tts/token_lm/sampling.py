"""Drawing one discrete token from a language model's logits (the text-to-token LM, :mod:`tts.token_lm`).

    settings = SamplingSettings(temperature=1.0, top_k=25, top_p=0.8, ras_window=10, ras_ratio=0.1)
    token = sample_next(logits, history, settings, generator)     # logits (V,) -> int

- ``filter_logits``: temperature, then top-k (keep the k largest), then top-p (nucleus: the smallest
  set of most likely tokens whose probability reaches p); the rest get -inf.
- ``draw``: one draw by inverting the cumulative distribution with one uniform number from
  ``generator``: the same seed and (nearly) the same logits give the same token, which is what makes
  KV-cached and uncached sampling agree token for token.
- Repetition-aware sampling (CosyVoice 2's RAS): the token drawn from the filtered distribution is
  kept unless it already occurs at least ``ras_ratio * ras_window`` times among the last
  ``ras_window`` tokens; then it is drawn again from the full (unfiltered, temperature-scaled)
  distribution, which breaks the loops that nucleus sampling falls into.
- ``style="cosyvoice"``: CosyVoice 2's own sampler (``ras_sampling``), draw for draw: the nucleus
  (top-p, capped at top-k, on a stable sort) drawn with ``torch.multinomial``; a token repeated too
  often is excluded and the next one drawn from the rest of the full distribution. With the same seed
  it gives CosyVoice's tokens (``tests/tts/token_lm/test_cosyvoice_reference.py``); KV-cached and
  uncached runs can then differ where two probabilities differ in the last bits.
- ``guided_logits``: classifier-free guidance on log-probabilities,
  ``log p_u + scale * (log p_c - log p_u)`` (scale 1: the conditional row alone).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

STYLES = ("toolkit", "cosyvoice")


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 1.0  # logits are divided by it; 0 = greedy (argmax)
    top_k: int = 25  # keep the k most likely tokens (0: all)
    top_p: float = 0.8  # then the smallest set reaching this probability (1: all)
    ras_window: int = 10  # repetition-aware sampling: recent tokens looked at (0: off)
    ras_ratio: float = 0.1  # ... redraw from the full distribution when the token fills this share of them
    style: str = "toolkit"  # toolkit (inverse-CDF draws) | cosyvoice (CosyVoice 2's ras_sampling, draw for draw)

    def check(self) -> None:
        """Raise ValueError (one line) for settings that cannot sample."""
        if self.style not in STYLES:
            raise ValueError(f"sampling style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be >= 0 (0: no limit), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.ras_window < 0 or not 0 < self.ras_ratio <= 1:
            raise ValueError(f"RAS window must be >= 0 and ratio in (0, 1], got {self.ras_window}, {self.ras_ratio}")


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """(..., V) logits -> temperature-scaled logits with every token outside top-k / top-p set to -inf.
    The most likely token always stays. ``temperature`` must be > 0 here."""
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the more likely tokens
        drop_sorted = before >= top_p  # the first token has 0 before it: always kept
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(logits: torch.Tensor, generator: torch.Generator | None = None) -> int:
    """One token from the distribution softmax(logits) (V,), by inverse CDF with one uniform number."""
    probs = logits.float().softmax(-1).cpu()
    u = torch.rand((), generator=generator, device=generator.device if generator is not None else "cpu").item()
    cdf = probs.cumsum(-1)
    index = int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])]), right=True)[0])
    index = min(index, probs.numel() - 1)
    while probs[index] == 0 and index > 0:  # u landed on the top edge: step back onto a possible token
        index -= 1
    return index


def repeats(history: Sequence[int], token: int, window: int) -> int:
    """How often ``token`` occurs among the last ``window`` tokens of ``history``."""
    return sum(1 for t in list(history)[-window:] if t == token) if window else 0


def sample_next(logits: torch.Tensor, history: Sequence[int], settings: SamplingSettings,
                generator: torch.Generator | None = None) -> int:
    """The next token for logits (V,) given the tokens generated so far (module docstring)."""
    if settings.temperature == 0:
        return int(torch.argmax(logits))
    if settings.style == "cosyvoice":
        return cosyvoice_ras(logits, history, settings, generator)
    token = draw(filter_logits(logits, settings.temperature, settings.top_k, settings.top_p), generator)
    if settings.ras_window and repeats(history, token, settings.ras_window) >= settings.ras_ratio * settings.ras_window:
        token = draw(filter_logits(logits, settings.temperature), generator)
    return token


def cosyvoice_ras(logits: torch.Tensor, history: Sequence[int], settings: SamplingSettings,
                  generator: torch.Generator | None = None) -> int:
    """CosyVoice 2's repetition-aware sampling on logits (V,) (module docstring): the same draws from the
    same random stream as its ``ras_sampling`` (``cosyvoice/utils/common.py``)."""
    scores = (logits.float() / settings.temperature).log_softmax(-1)
    probs, order = scores.softmax(-1).sort(descending=True, stable=True)
    top_k = settings.top_k or probs.numel()
    kept, total = 0, probs.new_zeros(())  # the nucleus: add tokens while the float32 running sum is below top-p
    while kept < min(top_k, probs.numel()) and total < settings.top_p:
        total = total + probs[kept]
        kept += 1
    token = int(order[torch.multinomial(probs[:kept], 1, replacement=True, generator=generator)])
    window = list(history)[-settings.ras_window:] if settings.ras_window else []
    if settings.ras_window and sum(t == token for t in window) >= settings.ras_window * settings.ras_ratio:
        scores = scores.clone()
        scores[token] = float("-inf")
        token = int(torch.multinomial(scores.softmax(-1), 1, replacement=True, generator=generator))
    return token


def guided_logits(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Rows [conditional, unconditional] (2, V) -> guided log-probabilities (V,); one row (1, V) -> itself."""
    if logits.shape[0] == 1 or scale == 1.0:
        return logits[0].float()
    cond, uncond = logits.float().log_softmax(-1)
    guided = uncond + scale * (cond - uncond)
    return guided.masked_fill(torch.isinf(cond) & (cond < 0), float("-inf"))
