"""Speech tokens -> latents with a loaded token-flow run (:func:`tts.run.load_run`), in the AE's latent space.

    run = load_run("runs/token-flow")
    tokens = load_token_file(run, "utt.safetensors")            # LongTensor (N,), rate, ids and length checked
    latent = synthesize_tokens(run, tokens, seed=0)             # (D, round(N / token_rate * frame_rate))
    result = speak_token_file(run, wrapper, "utt.safetensors", stream=True)   # latent + audio, streamed

A voice prompt is a latent (D, P) in the AE's latent space plus its speech tokens; the result holds
only the new frames, round(N / token_rate * frame_rate) of them unless given. Streaming (tokens in
chunks -> latent / audio chunks): :mod:`tts.token_flow.streaming`.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tts.run import TTSRun
from tts.speakers.reference import speaker_vector
from tts.synthesis import DEFAULT_CFG, DEFAULT_STEPS, SynthesisError, gather_audio, read_token_file
from tts.token_flow import DEFAULT_CHUNK_FRAMES
from tts.token_flow.inputs import check_tokens, frames_for, load_token_file, token_prompt
from tts.token_flow.streaming import stream_audio, stream_latents


@torch.no_grad()
def synthesize_tokens(run: TTSRun, tokens: torch.Tensor | list[int], prompt: torch.Tensor | None = None,
                      prompt_tokens: torch.Tensor | list[int] | None = None, frames: int | None = None,
                      chunk_frames: int = 0, seed: int = 0, steps: int | None = None, cfg_scale: float | None = None,
                      temperature: float = 1.0, grid: str = "sway", speaker: torch.Tensor | None = None,
                      max_frames: int | None = None, speaker_reference: torch.Tensor | None = None) -> torch.Tensor:
    """New latent frames for speech ``tokens`` (N,): (D, frames) in the AE's latent space, ``frames``
    defaulting to round(N / token_rate * frame_rate) (:class:`NoFrameError` when that is none), at most
    ``max_frames`` (an explicit ``frames`` wins). ``chunk_frames`` 0 uses full context (offline); C > 0
    the block-causal chunks that :mod:`tts.streaming` generates (same seed: same numbers).
    ``speaker``: a fixed speaker embedding (S,); ``speaker_reference``: a reference latent (D, R) for a
    run with a learnable speaker encoder (no transcript needed)."""
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
                              temperature=temperature, seed=seed,
                              speaker=speaker_vector(run, speaker, speaker_reference))
    return run.stats.denormalize(latent.cpu()).T.contiguous()


@dataclass
class Speech:
    """What :func:`speak_token_file` made: the latent (D, T), the audio (samples,) when a decoder was
    given, the file's token count, and for a stream with audio when its first chunk came (seconds,
    tokens read by then)."""

    latent: torch.Tensor
    audio: torch.Tensor | None = None
    tokens: int = 0
    first_audio: tuple[float, int] | None = None


def speak_token_file(run: TTSRun, wrapper, tokens_file: str | Path, prompt: torch.Tensor | None = None,
                     prompt_tokens_file: str | Path | None = None, *, frames: int | None = None,
                     max_frames: int | None = None, stream: bool = False, chunk_frames: int | None = None,
                     lookahead: int | None = None, seed: int = 0, steps: int | None = None,
                     cfg_scale: float | None = None, temperature: float = 1.0,
                     speaker_reference: torch.Tensor | None = None, speaker: torch.Tensor | None = None) -> Speech:
    """A token file -> latent and, with ``wrapper`` (a :class:`dcae.pipeline.DCAEInferenceWrapper`), audio;
    offline (``chunk_frames`` 0/None: full context) or streamed chunk by chunk (``stream``: the file's
    tokens fed one at a time, as a language model would write them; ``lookahead``: the decoder's).
    ``speaker_reference``: a reference latent (D, R) for a run with a learnable speaker encoder;
    ``speaker``: a fixed embedding (S,) for a run trained with one. Raises :class:`SynthesisError`."""
    tokens = load_token_file(run, tokens_file)
    prompt_tokens = (None if prompt_tokens_file is None else  # its length is checked against the prompt latent
                     check_tokens(run, read_token_file(prompt_tokens_file, run), str(prompt_tokens_file)))
    options = dict(prompt=prompt, prompt_tokens=prompt_tokens, seed=seed, steps=steps, cfg_scale=cfg_scale,
                   temperature=temperature, speaker_reference=speaker_reference, speaker=speaker)
    if not stream:
        latent = synthesize_tokens(run, tokens, frames=frames, max_frames=max_frames, chunk_frames=chunk_frames or 0,
                                   **options)
        return Speech(latent, None if wrapper is None else wrapper.decode(latent[None])[0], tokens.numel())
    if frames is not None or max_frames is not None:
        raise SynthesisError("--frames/--max-frames do not apply to --stream: the token count sets the length")
    options["chunk_frames"] = chunk_frames or DEFAULT_CHUNK_FRAMES
    if wrapper is not None:
        try:
            wrapper.check_lookahead(lookahead)
        except ValueError as e:
            raise SynthesisError(str(e)) from None
    read = [0]
    started = time.perf_counter()

    def token_source():  # the file's tokens one at a time, as a language model would write them
        for token in tokens.tolist():
            read[0] += 1
            yield token

    if wrapper is None:
        return Speech(torch.cat(list(stream_latents(run, token_source(), **options)), dim=1), None, tokens.numel())
    latents: list[torch.Tensor] = []
    chunks = stream_audio(run, wrapper, token_source(), lookahead=lookahead, on_latent=latents.append, **options)
    audio, first = gather_audio(chunks, started, lambda: read[0])
    return Speech(torch.cat(latents, dim=1), audio, tokens.numel(), first)
