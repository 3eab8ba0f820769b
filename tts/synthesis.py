"""What synthesis with any run shares: its errors, the default sampler settings, seeded generators,
reading a token file against a run, and gathering a stream of audio chunks.

The synthesis of each kind lives with its model: text -> latents in :mod:`tts.one_stage.synthesis`,
speech tokens -> latents in :mod:`tts.token_flow.synthesis` (streaming: :mod:`tts.token_flow.streaming`),
text -> speech tokens in :mod:`tts.token_lm.synthesis`, and both stages chained in :mod:`tts.two_stage`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import torch

from dcae.corpus import TokenFileError, load_tokens
from tts.run import TTSRun

DEFAULT_STEPS = {"ar": 10, "flow": 32, "token-flow": 10}
DEFAULT_CFG = {"ar": 1.5, "flow": 2.0, "token-flow": 1.5}


class SynthesisError(ValueError):
    """Inputs that cannot be synthesised (empty text, prompt without transcript, wrong latent size)."""


class NoFrameError(SynthesisError):
    """Too few speech tokens for one latent frame (token-flow runs)."""


def seeded_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (``None``: a fresh random seed)."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def read_token_file(path: str | Path, run: TTSRun) -> torch.Tensor:
    """A token file's ids (N,), refused in one line (:class:`SynthesisError`) when unreadable or written
    at another token rate than ``run`` (a token-flow or token-lm run) was trained on."""
    try:
        tokens, meta = load_tokens(path)
    except TokenFileError as e:
        raise SynthesisError(str(e)) from None
    if meta.token_rate is not None and abs(meta.token_rate - run.token_rate) > 1e-6 * run.token_rate:
        raise SynthesisError(f"{path}: tokens at {meta.token_rate:g}/s but the run was trained on "
                             f"{run.token_rate:g}/s ({run.latent_info.get('tokenizer') or 'another tokenizer'})")
    return tokens




def gather_audio(chunks: Iterable[torch.Tensor], started: float, tokens_so_far: Callable[[], int]
                 ) -> tuple[torch.Tensor, tuple[float, int] | None]:
    """Concatenate a stream's audio chunks (samples,) -> (samples,); also (seconds since ``started``,
    ``tokens_so_far()``) when the first chunk came out (``None`` for an empty stream). A decoder
    refusing the lookahead (``ValueError``) becomes a one-line :class:`SynthesisError`."""
    pieces, first = [], None
    try:
        for audio in chunks:
            if first is None:
                first = (time.perf_counter() - started, tokens_so_far())
            pieces.append(audio)
    except ValueError as e:
        if isinstance(e, SynthesisError):
            raise
        raise SynthesisError(str(e)) from None
    if not pieces:
        raise SynthesisError("the stream made no audio")
    return torch.cat(pieces, dim=-1), first
