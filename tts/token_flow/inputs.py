"""What a token-flow run accepts (:func:`tts.run.load_run`): token ids in its range, enough tokens for
one latent frame, a token file at its token rate, a voice prompt (latent + its tokens) at the
corpus's tokens per frame, a speaker embedding of its size or a speaker reference (audio or latent)
for a learnable speaker encoder. Each check raises a one-line
:class:`~tts.synthesis.SynthesisError`; offline synthesis (:mod:`tts.token_flow.synthesis`) and
streaming (:mod:`tts.token_flow.streaming`) both use them.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import torch

from dcae.audio import AudioError, load_checked_audio
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


def reference_from_audio(wrapper, path: str | Path) -> torch.Tensor:
    """A speaker reference from audio: its DC-AE latent (D, R) (``wrapper``: a
    :class:`dcae.pipeline.DCAEInferenceWrapper`). Raises :class:`SynthesisError` naming the file."""
    try:
        audio = load_checked_audio(path, wrapper.sample_rate)
    except AudioError as e:
        raise SynthesisError(f"--speaker-audio: {e}") from None
    latent = wrapper.encode(audio, wrapper.sample_rate)[0]
    if latent.shape[-1] == 0:
        raise SynthesisError(f"--speaker-audio {path}: too short for one latent frame ({1 / wrapper.frame_rate:.2f} s)")
    return latent.float().cpu()


def speaker_vector(run: TTSRun, speaker: torch.Tensor | None, reference: torch.Tensor | None = None
                   ) -> torch.Tensor | None:
    """The speaker vector the run is conditioned on: a fixed embedding (S,) checked against the run, or
    for a learnable speaker encoder the vector of ``reference`` (the reference's latent (D, R), as a
    latent file holds it). None: none (runs without speakers ignore a fixed one)."""
    model = run.model
    if reference is not None:
        if model.speaker_encoder is None:
            raise SynthesisError(f"{run.directory}: a speaker reference needs a run trained with --speaker-encoder "
                                 f"learnable" + (" (this one takes a fixed speaker embedding)" if model.speaker_size
                                                 else ""))
        reference = torch.as_tensor(reference, dtype=torch.float32)
        if reference.ndim != 2 or reference.shape[0] != model.cfg.latent_dim or reference.shape[1] == 0:
            raise SynthesisError(f"speaker reference: expected a latent ({model.cfg.latent_dim}, frames), "
                                 f"got {tuple(reference.shape)}")
        if not torch.isfinite(reference).all():
            raise SynthesisError("speaker reference: the latent holds NaN or Inf")
        return model.encode_speaker(run.stats.normalize(reference.T))
    size = model.speaker_size
    if speaker is None or size == 0:
        return None
    speaker = torch.as_tensor(speaker, dtype=torch.float32).reshape(-1)
    if speaker.numel() != size:
        raise SynthesisError(f"speaker embedding has {speaker.numel()} values, the run takes {size}")
    return speaker
