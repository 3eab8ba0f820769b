"""What a token-flow run accepts (:func:`tts.run.load_run`): token ids in its range, enough tokens for
one latent frame, a token file at its token rate, a voice prompt (latent + its tokens) at the
corpus's tokens per frame (speaker embeddings and references: :mod:`tts.speakers.reference`).
Each check raises a one-line
:class:`~tts.synthesis.SynthesisError`; offline synthesis (:mod:`tts.token_flow.synthesis`) and
streaming (:mod:`tts.token_flow.streaming`) both use them.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import torch

from tts.run import TTSRun
from tts.synthesis import NoFrameError, SynthesisError, read_token_file


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
