"""The token-flow branch of ``dcae tts`` (:mod:`tts.cli`): a token file -> latent and/or audio,
offline or streamed chunk by chunk."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import click
import torch

from tts.run import TTSRun
from tts.token_flow.streaming import DEFAULT_CHUNK_FRAMES, stream_audio, stream_latents
from tts.synthesize import SynthesisError, check_tokens, load_token_file, read_token_file, synthesize_tokens

TOKEN_OPTIONS_HELP = {
    "stream": "Token-flow runs: generate chunk by chunk (block-causal attention, as for a live token stream) "
              "and, with -o, decode audio while the chunks come; prints when the first audio was ready.",
    "chunk_frames": f"Token-flow runs (token-lm runs with --flow): latent frames per chunk (--stream: default "
                    f"{DEFAULT_CHUNK_FRAMES}; without --stream, N > 0 gives the same chunked result offline, default "
                    f"full context).",
    "lookahead": "--stream with -o (token-flow runs, token-lm runs with --flow): decoder lookahead in latent frames, "
                 "0 (soonest audio) .. the decoder's receptive field (the default: exact).",
}



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


def token_flow_outputs(run: TTSRun, wrapper, tokens_file: Path, prompt: torch.Tensor | None,
                       prompt_tokens_file: Path | None, *, frames: int | None, max_frames: int | None, stream: bool,
                       chunk_frames: int | None, lookahead: int | None, seed: int, steps: int | None,
                       cfg_scale: float | None, temperature: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(latent (D, T), audio (samples,) or None without ``wrapper``). Raises :class:`SynthesisError`.
    Which options apply where, and the range of ``chunk_frames``, :mod:`tts.cli` has checked."""
    tokens = load_token_file(run, tokens_file)
    prompt_tokens = (None if prompt_tokens_file is None else  # its length is checked against the prompt latent
                     check_tokens(run, read_token_file(prompt_tokens_file, run), str(prompt_tokens_file)))
    options = dict(prompt=prompt, prompt_tokens=prompt_tokens, seed=seed, steps=steps, cfg_scale=cfg_scale,
                   temperature=temperature)
    if not stream:
        latent = synthesize_tokens(run, tokens, frames=frames, max_frames=max_frames, chunk_frames=chunk_frames or 0,
                                   **options)
        return latent, None if wrapper is None else wrapper.decode(latent[None])[0]
    if frames is not None or max_frames is not None:
        raise SynthesisError("--frames/--max-frames do not apply to --stream: the token count sets the length")
    options["chunk_frames"] = chunk_frames or DEFAULT_CHUNK_FRAMES
    if wrapper is not None and lookahead is not None and wrapper.max_lookahead is not None \
            and not 0 <= lookahead <= wrapper.max_lookahead:
        raise SynthesisError(f"--lookahead must be 0..{wrapper.max_lookahead} latent frames (the decoder's "
                             f"receptive field), got {lookahead}")
    read = [0]
    started = time.perf_counter()

    def token_source():  # the file's tokens one at a time, as a language model would write them
        for token in tokens.tolist():
            read[0] += 1
            yield token

    latents: list[torch.Tensor] = []
    if wrapper is None:
        latents = list(stream_latents(run, token_source(), **options))
        return torch.cat(latents, dim=1), None
    chunks = stream_audio(run, wrapper, token_source(), lookahead=lookahead, on_latent=latents.append, **options)
    audio, first = gather_audio(chunks, started, lambda: read[0])
    if first is not None:
        click.echo(f"streaming: first audio after {first[0]:.2f} s, with {first[1]} of {tokens.numel()} tokens read",
                   err=True)
    return torch.cat(latents, dim=1), audio
