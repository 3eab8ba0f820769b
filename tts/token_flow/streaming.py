"""Streaming synthesis with a token-flow run: speech tokens in chunks -> latent chunks -> audio chunks.

    run = load_run("runs/token-flow")
    wrapper = DCAEInferenceWrapper(...)                     # DC-AE decoder + BigVGAN
    for audio in stream_audio(run, wrapper, token_source):  # token_source: any iterable of token ids
        play(audio)                                         # (samples,) float at wrapper.sample_rate

``token_source`` yields one id (int), a list of ids or a LongTensor at a time, in any grouping: a
language model writing tokens one by one can be passed as a generator. Nothing waits for the end:
latent chunk k (``chunk_frames`` frames) is generated as soon as the tokens its frames span (plus
the token encoder's lookahead) have arrived, and the decoder turns latent frames into audio as soon
as ``lookahead`` later latent frames are there (:meth:`DCAEInferenceWrapper.stream_decode`; the
default, the decoder's receptive field, is exact; 0 starts audio soonest).

Push style, for a caller that owns the loop (e.g. interleaving with LM decoding)::

    stream = open_stream(run, prompt=..., prompt_tokens=..., seed=0)
    for token in lm: latents += stream.push(token)          # lists of (D, n) chunks, often empty
    latents += stream.finish()

The chunks equal ``synthesize_tokens(run, tokens, chunk_frames=C, seed=S)`` for the same C and S.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from tts.run import TTSRun
from tts.synthesize import (DEFAULT_CFG, DEFAULT_STEPS, SynthesisError, check_tokens, frames_for, speaker_vector,
                            token_prompt)
from tts.token_flow.stream import TokenFlowStream

DEFAULT_CHUNK_FRAMES = 2  # latent frames per streamed chunk (2 x 186 ms)

TokenChunk = torch.Tensor | Sequence[int] | int


class RunTokenStream:
    """:class:`~tts.token_flow_stream.TokenFlowStream` for a run: token ids are checked and the chunks
    come out de-normalised, (D, n) in the AE's latent space, on the CPU."""

    def __init__(self, run: TTSRun, stream: TokenFlowStream):
        self.run, self.stream = run, stream

    def _out(self, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.run.stats.denormalize(c.cpu()).T.contiguous() for c in chunks]

    def push(self, tokens: TokenChunk) -> list[torch.Tensor]:
        """Add token ids; the latent chunks (D, n) that became ready."""
        return self._out(self.stream.push(check_tokens(self.run, [tokens] if isinstance(tokens, int) else tokens)))

    def finish(self) -> list[torch.Tensor]:
        """End of the tokens: the remaining latent chunks. :class:`SynthesisError` when no token came,
        :class:`~tts.synthesize.NoFrameError` when too few for one latent frame."""
        if self.stream.new_tokens == 0:
            raise SynthesisError("the token stream was empty")
        frames_for(self.run, self.stream.new_tokens, "the token stream: ")
        return self._out(self.stream.finish())


def open_stream(run: TTSRun, prompt: torch.Tensor | None = None, prompt_tokens: TokenChunk | None = None,
                chunk_frames: int = DEFAULT_CHUNK_FRAMES, seed: int = 0, steps: int | None = None,
                cfg_scale: float | None = None, temperature: float = 1.0, grid: str = "sway",
                speaker: torch.Tensor | None = None) -> RunTokenStream:
    """A push-style stream (module docstring). ``prompt``: latent (D, P) in the AE's space with its
    ``prompt_tokens`` (Np,); ``speaker``: (speaker_dim,) for runs trained with speaker embeddings."""
    if run.kind != "token-flow":
        raise SynthesisError(f"{run.directory}: streaming from tokens needs a token-flow run, not {run.kind}")
    if chunk_frames < 1:
        raise SynthesisError(f"chunk frames must be at least 1 for streaming, got {chunk_frames}")
    prompt_n, prompt_ids = token_prompt(run, prompt, None if prompt_tokens is None else
                                        torch.as_tensor(prompt_tokens, dtype=torch.long))
    stream = TokenFlowStream(run.model, chunk_frames, prompt_n, prompt_ids, steps=steps or DEFAULT_STEPS["token-flow"],
                             grid=grid, sway=0.0 if run.model.cfg.meanflow else -1.0,
                             cfg_scale=DEFAULT_CFG["token-flow"] if cfg_scale is None else cfg_scale,
                             temperature=temperature, seed=seed, speaker=speaker_vector(run, speaker))
    return RunTokenStream(run, stream)


def stream_latents(run: TTSRun, token_chunks: Iterable[TokenChunk], **options: Any) -> Iterator[torch.Tensor]:
    """Token chunks in (any iterable of ids / lists / tensors), latent chunks (D, n) out as soon as they
    are ready; ``options`` as :func:`open_stream`. Raises :class:`SynthesisError` for no tokens at all,
    or too few for one latent frame (:meth:`RunTokenStream.finish`)."""
    stream = open_stream(run, **options)
    for tokens in token_chunks:
        yield from stream.push(tokens)
    yield from stream.finish()


def stream_audio(run: TTSRun, wrapper, token_chunks: Iterable[TokenChunk], lookahead: int | None = None,
                 decode_frames: int | None = None, on_latent: Callable[[torch.Tensor], None] | None = None,
                 **options: Any) -> Iterator[torch.Tensor]:
    """Token chunks in, audio chunks (samples,) at ``wrapper.sample_rate`` out: :func:`stream_latents`
    through ``wrapper.stream_decode`` (a :class:`inference.DCAEInferenceWrapper` with its vocoder).
    ``lookahead``: decoder lookahead in latent frames, 0 .. ``wrapper.max_lookahead`` (None: exact);
    ``decode_frames``: latent frames the decoder turns into mel at a time (default: ``chunk_frames``);
    ``on_latent``: called with each latent chunk (D, n) as it is made (e.g. to keep the latent)."""
    if wrapper.latent_dim != run.stats.dim:
        raise SynthesisError(f"{run.directory}: the run makes {run.stats.dim}-d latents but the autoencoder "
                             f"takes {wrapper.latent_dim}-d")
    decode_frames = decode_frames or options.get("chunk_frames", DEFAULT_CHUNK_FRAMES)

    def latents() -> Iterator[torch.Tensor]:
        for chunk in stream_latents(run, token_chunks, **options):
            if on_latent is not None:
                on_latent(chunk)
            yield chunk[None]

    for audio in wrapper.stream_decode(latents(), chunk_frames=decode_frames, lookahead=lookahead):
        yield audio[0]
