"""Text -> latents with a loaded one-stage run (``ar`` or ``flow``, :func:`tts.run.load_run`), in the AE's latent space.

    run = load_run("runs/tts-ar")
    latent = synthesize(run, "hello world", seed=0)             # (D, frames), de-normalised
    for frame in stream_frames(run, "hello world"): ...          # AR only: (D,) frames one by one
    latent, audio = stream_to_audio(wrapper, stream_frames(run, "hello world"))   # AR frames decoded as they come

A voice prompt is a latent (D, P) in the AE's latent space plus its transcript; the result holds
only the new frames. Without ``frames`` the AR model stops by itself and the flow model takes
``frames_per_token`` times the number of text tokens (the prompt's own rate when there is a prompt).
"""
from __future__ import annotations

import sys
from typing import Iterable, Iterator

import torch

from tts.run import TTSRun
from tts.synthesis import DEFAULT_CFG, DEFAULT_STEPS, SynthesisError, seeded_generator

STREAM_CHUNK = 8  # AR frames handed to the decoder at a time when writing audio


def _prepare(run: TTSRun, text: str, prompt: torch.Tensor | None, prompt_text: str | None
             ) -> tuple[list[int], list[int], torch.Tensor | None]:
    """(prompt token ids, target token ids, normalised prompt (P, D) or None)."""
    if not run.takes_text:
        raise SynthesisError(f"{run.directory}: a {run.kind} run takes speech tokens (--tokens), not text")
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
                                  generator=seeded_generator(seed, device)):
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
    """New latent frames for ``text``: (D, frames) in the AE's latent space (ready for its decoder).
    ``frames`` fixes the length; else ``max_frames`` caps it (AR: where it stops at the latest;
    flow: the duration rule of :func:`target_frames`)."""
    if run.kind == "ar":
        out = list(stream_frames(run, text, prompt, prompt_text, frames, seed, steps, temperature, cfg_scale, max_frames))
        return torch.stack(out, dim=1) if out else torch.zeros(run.stats.dim, 0)
    prompt_ids, target, prompt_n = _prepare(run, text, prompt, prompt_text)
    n = frames or min(target_frames(run, text, prompt, prompt_text), max_frames or sys.maxsize)
    device = next(run.model.parameters()).device
    latent = run.model.sample(prompt_ids + target, n, prompt_n, steps=steps or DEFAULT_STEPS["flow"],
                              temperature=temperature, cfg_scale=DEFAULT_CFG["flow"] if cfg_scale is None else cfg_scale,
                              sway=0.0 if run.model.cfg.meanflow else -1.0, generator=seeded_generator(seed, device))
    return run.stats.denormalize(latent).T.contiguous()


def stream_to_audio(wrapper, frames: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode AR frames (D,) chunk by chunk as they arrive, with ``wrapper.stream_decode``:
    -> (latent (D, T), audio (samples,))."""
    latent: list[torch.Tensor] = []

    def chunks():
        buffer = []
        for frame in frames:
            latent.append(frame.cpu())
            buffer.append(frame.cpu())
            if len(buffer) == STREAM_CHUNK:
                yield torch.stack(buffer, dim=1)[None]
                buffer = []
        if buffer:
            yield torch.stack(buffer, dim=1)[None]

    pieces = [a[0] for a in wrapper.stream_decode(chunks())]
    if not latent:
        raise SynthesisError("the model stopped before making any frame")
    return torch.stack(latent, dim=1), torch.cat(pieces, dim=-1)
