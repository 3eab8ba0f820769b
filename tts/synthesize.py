"""Text (or speech tokens) -> latents with a loaded run (:func:`tts.run.load_run`), in the AE's latent space.

    run = load_run("runs/tts-ar")
    latent = synthesize(run, "hello world", seed=0)             # (D, frames), de-normalised
    for frame in stream_frames(run, "hello world"): ...          # AR only: (D,) frames one by one

    run = load_run("runs/token-flow")
    tokens = load_token_file(run, "utt.safetensors")            # LongTensor (N,), rate, ids and length checked
    latent = synthesize_tokens(run, tokens, seed=0)             # (D, round(N / token_rate * frame_rate))

A voice prompt is a latent (D, P) in the AE's latent space plus its transcript (text models) or its
speech tokens (token models); the result holds only the new frames. Without ``frames`` the AR model
stops by itself, the flow model takes ``frames_per_token`` times the number of text tokens (the
prompt's own rate when there is a prompt) and the token-flow model round(N / token_rate * frame_rate).
Streaming token-flow synthesis (tokens in chunks -> latent / audio chunks) is :mod:`tts.streaming`.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Iterator

import torch

from tts.run import TTSRun

DEFAULT_STEPS = {"ar": 10, "flow": 32, "token-flow": 10}
DEFAULT_CFG = {"ar": 1.5, "flow": 2.0, "token-flow": 1.5}


class SynthesisError(ValueError):
    """Inputs that cannot be synthesised (empty text, prompt without transcript, wrong latent size)."""


class NoFrameError(SynthesisError):
    """Too few speech tokens for one latent frame (token-flow runs)."""


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


def seeded_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (``None``: a fresh random seed)."""
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


# ----- speech tokens -> latents (token-flow runs) ---------------------------------------------
def _need_token_run(run: TTSRun) -> None:
    if run.kind != "token-flow":
        raise SynthesisError(f"{run.directory}: a {run.kind} run takes text, not speech tokens")


def check_tokens(run: TTSRun, tokens: torch.Tensor | list[int], what: str = "tokens") -> torch.Tensor:
    """``tokens`` as a LongTensor (N,) whose ids the run's model takes, else :class:`SynthesisError`."""
    _need_token_run(run)
    tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
    vocab = run.model.cfg.vocab_size
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        bad = int(tokens.max()) if int(tokens.max()) >= vocab else int(tokens.min())
        raise SynthesisError(f"{what}: token id {bad} out of range (the run takes ids 0..{vocab - 1})")
    return tokens


def frames_for(run: TTSRun, num_tokens: int, what: str = "") -> int:
    """Latent frames a token-flow run makes of ``num_tokens`` new tokens, round(N / token_rate * frame_rate);
    :class:`NoFrameError` (one line, starting with ``what``) when that is none."""
    frames = run.model.num_frames(num_tokens)
    if frames < 1:
        need = next(n for n in itertools.count(max(1, num_tokens + 1)) if run.model.num_frames(n) >= 1)
        raise NoFrameError(f"{what}{num_tokens} token{'' if num_tokens == 1 else 's'} make no latent frame at "
                           f"{run.token_rate:g} tokens/s (one frame needs at least {need})")
    return frames


def read_token_file(path: str | Path, run: TTSRun) -> torch.Tensor:
    """A token file's ids (N,), refused in one line (:class:`SynthesisError`) when unreadable or written
    at another token rate than ``run`` (a token-flow or token-lm run) was trained on."""
    from dcae.corpus import TokenFileError, load_tokens

    try:
        tokens, meta = load_tokens(path)
    except TokenFileError as e:
        raise SynthesisError(str(e)) from None
    if meta.token_rate is not None and abs(meta.token_rate - run.token_rate) > 1e-6 * run.token_rate:
        raise SynthesisError(f"{path}: tokens at {meta.token_rate:g}/s but the run was trained on "
                             f"{run.token_rate:g}/s ({run.latent_info.get('tokenizer') or 'another tokenizer'})")
    return tokens


def load_token_file(run: TTSRun, path: str | Path) -> torch.Tensor:
    """The ids (N,) of a token file to speak, checked against the token-flow run: same token rate, ids in
    range, enough tokens for at least one latent frame."""
    _need_token_run(run)
    tokens = read_token_file(path, run)
    if tokens.numel() == 0:
        raise SynthesisError(f"{path}: no tokens")
    frames_for(run, tokens.numel(), f"{path}: ")
    return check_tokens(run, tokens, str(path))


def token_prompt(run: TTSRun, prompt: torch.Tensor | None, prompt_tokens: torch.Tensor | list[int] | None
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(normalised prompt (P, D), prompt tokens (Np,)) from a prompt latent (D, P) in the AE's space and
    its tokens; both or neither. The prompt's tokens per frame must be within the model's tolerance."""
    if prompt is None and prompt_tokens is None:
        return None, None
    if prompt is None or prompt_tokens is None:
        raise SynthesisError("a prompt needs both its latent (--prompt-latent) and its speech tokens (--prompt-tokens)")
    dim = run.stats.dim
    if prompt.ndim != 2 or prompt.shape[0] != dim or prompt.shape[1] == 0:
        raise SynthesisError(f"prompt latent must be ({dim}, frames), got {tuple(prompt.shape)}")
    prompt_tokens = check_tokens(run, prompt_tokens, "prompt tokens")
    cfg = run.model.cfg
    ratio = prompt_tokens.numel() / prompt.shape[1]
    high = cfg.tokens_per_frame * (1 + cfg.prompt_ratio_tolerance)
    if not cfg.tokens_per_frame / (1 + cfg.prompt_ratio_tolerance) <= ratio <= high:
        raise SynthesisError(f"the prompt has {prompt_tokens.numel()} tokens for {prompt.shape[1]} latent frames "
                             f"({ratio:.2f} per frame; the run expects {cfg.tokens_per_frame:.2f}): are the prompt "
                             f"latent and tokens of the same audio?")
    return run.stats.normalize(prompt.T.float()), prompt_tokens


def speaker_vector(run: TTSRun, speaker: torch.Tensor | None) -> torch.Tensor | None:
    """A speaker embedding (S,) checked against the run (None: none; runs without speakers ignore it)."""
    size = run.model.cfg.speaker_dim
    if speaker is None or size == 0:
        return None
    speaker = torch.as_tensor(speaker, dtype=torch.float32).reshape(-1)
    if speaker.numel() != size:
        raise SynthesisError(f"speaker embedding has {speaker.numel()} values, the run takes {size}")
    return speaker


@torch.no_grad()
def synthesize_tokens(run: TTSRun, tokens: torch.Tensor | list[int], prompt: torch.Tensor | None = None,
                      prompt_tokens: torch.Tensor | list[int] | None = None, frames: int | None = None,
                      chunk_frames: int = 0, seed: int = 0, steps: int | None = None, cfg_scale: float | None = None,
                      temperature: float = 1.0, grid: str = "sway", speaker: torch.Tensor | None = None,
                      max_frames: int | None = None) -> torch.Tensor:
    """New latent frames for speech ``tokens`` (N,): (D, frames) in the AE's latent space, ``frames``
    defaulting to round(N / token_rate * frame_rate) (:class:`NoFrameError` when that is none), at most
    ``max_frames`` (an explicit ``frames`` wins). ``chunk_frames`` 0 uses full context (offline); C > 0
    the block-causal chunks that :mod:`tts.streaming` generates (same seed: same numbers)."""
    tokens = check_tokens(run, tokens)
    if tokens.numel() == 0:
        raise SynthesisError("no tokens to synthesise")
    if frames is None:
        frames = min(max_frames or sys.maxsize, frames_for(run, tokens.numel()))
    prompt_n, prompt_tokens = token_prompt(run, prompt, prompt_tokens)
    latent = run.model.sample(tokens, frames, prompt_n, prompt_tokens, chunk_frames=chunk_frames,
                              steps=steps or DEFAULT_STEPS["token-flow"], grid=grid,
                              sway=0.0 if run.model.cfg.meanflow else -1.0,
                              cfg_scale=DEFAULT_CFG["token-flow"] if cfg_scale is None else cfg_scale,
                              temperature=temperature, seed=seed, speaker=speaker_vector(run, speaker))
    return run.stats.denormalize(latent.cpu()).T.contiguous()
