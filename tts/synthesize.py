"""Text -> latents with a loaded run (:func:`tts.run.load_run`), in the AE's latent space.

    run = load_run("runs/tts-ar")
    latent = synthesize(run, "hello world", seed=0)             # (D, frames), de-normalised
    for frame in stream_frames(run, "hello world"): ...          # AR only: (D,) frames one by one

A voice prompt is a latent (D, P) in the AE's latent space plus its transcript; the result holds only
the new frames. Without ``frames`` the AR model stops by itself and the flow model takes
``frames_per_token`` times the number of text tokens (the prompt's own rate when there is a prompt).
"""
from __future__ import annotations

from typing import Iterator

import torch

from .run import TTSRun

DEFAULT_STEPS = {"ar": 10, "flow": 32}
DEFAULT_CFG = {"ar": 1.5, "flow": 2.0}


class SynthesisError(ValueError):
    """Inputs that cannot be synthesised (empty text, prompt without transcript, wrong latent size)."""


def _prepare(run: TTSRun, text: str, prompt: torch.Tensor | None, prompt_text: str | None
             ) -> tuple[list[int], list[int], torch.Tensor | None]:
    """(prompt token ids, target token ids, normalised prompt (P, D) or None)."""
    target = run.frontend.encode(text)
    if not target:
        raise SynthesisError("the text is empty")
    if prompt is None:
        return [], target, None
    if not prompt_text:
        raise SynthesisError("a prompt latent needs its transcript (--prompt-text)")
    dim = run.stats.dim
    if prompt.ndim != 2 or prompt.shape[0] != dim:
        raise SynthesisError(f"prompt latent must be ({dim}, frames), got {tuple(prompt.shape)}")
    # the prompt's transcript and the new text are read as one sentence, then split where the text starts
    joined = run.frontend.encode(f"{prompt_text} {text}")
    return joined[: len(joined) - len(target)], target, run.stats.normalize(prompt.T.float())


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def stream_frames(run: TTSRun, text: str, prompt: torch.Tensor | None = None, prompt_text: str | None = None,
                  frames: int | None = None, seed: int | None = 0, steps: int | None = None,
                  temperature: float = 1.0, cfg_scale: float | None = None, max_frames: int | None = None
                  ) -> Iterator[torch.Tensor]:
    """AR model: yield de-normalised latent frames (D,) one by one as they are sampled."""
    if run.kind != "ar":
        raise SynthesisError("streaming needs an AR run (the flow model makes the whole sequence at once)")
    prompt_ids, target, prompt_n = _prepare(run, text, prompt, prompt_text)
    device = next(run.model.parameters()).device
    limit = frames or max_frames or int(4 * run.frames_per_token * len(target) + 20)
    for frame in run.model.stream(prompt_ids + target, prompt_n, max_frames=limit, min_frames=frames or 1,
                                  steps=steps or DEFAULT_STEPS["ar"], temperature=temperature,
                                  cfg_scale=DEFAULT_CFG["ar"] if cfg_scale is None else cfg_scale,
                                  generator=_generator(seed, device)):
        yield run.stats.denormalize(frame)


def target_frames(run: TTSRun, text: str, prompt: torch.Tensor | None = None, prompt_text: str | None = None) -> int:
    """Length rule for the flow model: frames per token (of the prompt, or fitted on the training data) x tokens."""
    _, target, prompt_n = _prepare(run, text, prompt, prompt_text)
    rate = (prompt_n.shape[0] / max(1, len(run.frontend.encode(prompt_text))) if prompt_n is not None
            else run.frames_per_token)
    return max(1, round(rate * len(target)))


@torch.no_grad()
def synthesize(run: TTSRun, text: str, prompt: torch.Tensor | None = None, prompt_text: str | None = None,
               frames: int | None = None, seed: int | None = 0, steps: int | None = None, temperature: float = 1.0,
               cfg_scale: float | None = None, max_frames: int | None = None) -> torch.Tensor:
    """New latent frames for ``text``: (D, frames) in the AE's latent space (ready for its decoder)."""
    if run.kind == "ar":
        out = list(stream_frames(run, text, prompt, prompt_text, frames, seed, steps, temperature, cfg_scale, max_frames))
        return torch.stack(out, dim=1) if out else torch.zeros(run.stats.dim, 0)
    prompt_ids, target, prompt_n = _prepare(run, text, prompt, prompt_text)
    n = frames or target_frames(run, text, prompt, prompt_text)
    device = next(run.model.parameters()).device
    latent = run.model.sample(prompt_ids + target, n, prompt_n, steps=steps or DEFAULT_STEPS["flow"],
                              temperature=temperature, cfg_scale=DEFAULT_CFG["flow"] if cfg_scale is None else cfg_scale,
                              sway=0.0 if run.model.cfg.meanflow else -1.0, generator=_generator(seed, device))
    return run.stats.denormalize(latent).T.contiguous()
