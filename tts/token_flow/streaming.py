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

Two layers: :class:`TokenFlowStream` works on the model in its normalised latent space; a run's
stream (:func:`open_stream`, :class:`RunTokenStream`) checks the ids and de-normalises the chunks.

How a chunk is made: frame chunk k (frames [kC, (k+1)C) of [prompt ; new], C = ``chunk_frames``) is
generated once the tokens its frames span, plus the encoder's ``lookahead``, have arrived. The
causal token encoder runs incrementally (keys/values cached); the DiT integrates chunk k's ODE
alone, attending at each integration step to the earlier chunks' keys/values *of that step* (one
cache per step and block). Starting noise is fixed per frame position, so the concatenated chunks
equal ``model.sample(tokens, prompt=..., chunk_frames=C, seed=...)`` (block-causal offline) and
``synthesize_tokens(run, tokens, chunk_frames=C, seed=S)`` to float rounding. Memory: steps x blocks
x frames x 2 x width values per guidance row for the caches.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from tts import flow_matching as fm
from tts.layers import LayerCache
from tts.run import TTSRun
from tts.speakers.reference import speaker_vector
from tts.synthesis import DEFAULT_CFG, DEFAULT_STEPS, SynthesisError
from tts.token_flow import DEFAULT_CHUNK_FRAMES
from tts.token_flow.frame_noise import frame_noise
from tts.token_flow.inputs import check_tokens, frames_for, token_prompt
from tts.token_flow.length_regulator import frame_spans
from tts.token_flow.model import TokenFlowModel, _Condition, _guidance_rows, integrate


def as_token_ids(tokens: torch.Tensor | Sequence[int] | int) -> list[int]:
    """One id, a sequence of ids or a tensor (any shape) -> a list of ints."""
    if isinstance(tokens, int):
        return [tokens]
    return [int(t) for t in torch.as_tensor(tokens, dtype=torch.long).reshape(-1).tolist()]


class TokenFlowStream:
    """Incremental token-to-latent generation (module docstring) in the model's normalised latent
    space; :class:`RunTokenStream` wraps it for a run (de-normalised chunks, audio)."""

    def __init__(self, model: TokenFlowModel, chunk_frames: int = 2, prompt: torch.Tensor | None = None,
                 prompt_tokens: torch.Tensor | Sequence[int] | None = None, steps: int = 10, grid: str = "sway",
                 sway: float = -1.0, cfg_scale: float = 1.0, temperature: float = 1.0, seed: int = 0,
                 speaker: torch.Tensor | None = None):
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be at least 1 for streaming, got {chunk_frames}")
        fm.time_grid(steps, grid, sway)  # checks steps and grid
        self.model = model.eval()
        self.cfg = model.cfg
        self.chunk = chunk_frames
        self.steps, self.grid, self.sway, self.cfg_scale = steps, grid, sway, cfg_scale
        self.temperature, self.seed = temperature, seed
        self.rows = fm.guidance_rows(cfg_scale)
        device = model.device
        self.prompt = torch.zeros(0, self.cfg.latent_dim) if prompt is None else prompt.float()
        self.prompt_frames = self.prompt.shape[0]
        self.tokens = as_token_ids([] if prompt_tokens is None else prompt_tokens)
        self.prompt_token_count = len(self.tokens)
        self.speaker = None if speaker is None else _guidance_rows(speaker.reshape(1, -1).to(device), self.rows)
        self.features = torch.zeros(1, 0, self.cfg.width, device=device)  # encoder output of tokens so far
        self.encoder_cache = model.streaming_encoder.new_cache()
        self.step_caches = [[LayerCache() for _ in model.blocks] for _ in range(steps)]
        self.done = 0  # frames of [prompt ; new] generated
        self.total: int | None = None  # known once the token stream ended

    @property
    def new_tokens(self) -> int:
        return len(self.tokens) - self.prompt_token_count

    @property
    def ended(self) -> bool:
        return self.total is not None

    @torch.no_grad()
    def push(self, tokens: torch.Tensor | Sequence[int] | int) -> list[torch.Tensor]:
        """Add tokens; returns the new-frame chunks (n, D) that became ready (often none)."""
        if self.ended:
            raise RuntimeError("push after finish: the token stream has ended")
        ids = as_token_ids(tokens)
        bad = [t for t in ids if not 0 <= t < self.cfg.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} out of range: the model has {self.cfg.vocab_size} token ids")
        self.tokens.extend(ids)
        return self._advance()

    @torch.no_grad()
    def finish(self) -> list[torch.Tensor]:
        """End the token stream: the remaining chunks, up to round(new tokens / tokens_per_frame) new frames."""
        if not self.ended:
            self.total = self.prompt_frames + self.model.num_frames(self.new_tokens)
        return self._advance()

    # ----------------------------------------------------------------------------------------
    def _encode(self) -> None:
        ready = len(self.tokens) if self.ended else max(0, len(self.tokens) - self.cfg.lookahead)
        done = self.features.shape[1]
        if ready > done:
            ids = torch.tensor(self.tokens, dtype=torch.long, device=self.model.device)[None]
            new = self.model.streaming_encoder.extend(ids, done, ready, self.encoder_cache)
            self.features = torch.cat([self.features, new], dim=1)

    def _spans(self, start: int, stop: int) -> torch.Tensor:
        return frame_spans(start, stop, self.cfg.tokens_per_frame, self.prompt_frames, self.prompt_token_count)

    def _next_stop(self) -> int | None:
        """End of the next chunk if it can be generated now, else None."""
        stop = self.done + self.chunk
        if self.ended:
            stop = min(stop, self.total)
            return stop if stop > self.done and self.total > self.prompt_frames else None
        needed = math.ceil(float(self._spans(stop - 1, stop)[0, 1]))  # tokens the chunk's last frame overlaps
        return stop if self.features.shape[1] >= needed else None

    def _advance(self) -> list[torch.Tensor]:
        self._encode()
        out = []
        while (stop := self._next_stop()) is not None:
            frames = self._generate(self.done, stop)
            self.done = stop
            if frames.shape[0]:
                out.append(frames)
        return out

    def _generate(self, start: int, stop: int) -> torch.Tensor:
        """Frames [start, stop) of the sequence; returns the new (non-prompt) ones, (n, D)."""
        model, device, d = self.model, self.model.device, self.cfg.latent_dim
        valid = torch.ones(self.features.shape[:2], dtype=torch.bool, device=device)
        features = model.regulator(self.features, valid, self._spans(start, stop)[None])
        known = torch.zeros(1, stop - start, d, device=device)
        known_mask = torch.zeros(1, stop - start, dtype=torch.bool, device=device)
        in_prompt = max(0, min(stop, self.prompt_frames) - start)
        known[0, :in_prompt] = self.prompt[start: start + in_prompt].to(device)
        known_mask[0, :in_prompt] = True
        cond = _Condition(model, self.rows, _guidance_rows(features, self.rows), _guidance_rows(known, self.rows),
                          _guidance_rows(known_mask, self.rows), self.speaker, start=start)
        x = frame_noise(self.seed, start, stop, d, self.temperature, device)[None]
        x = integrate(model, cond.velocity(None, True, self.step_caches), x, self.steps, self.grid, self.sway, self.cfg_scale)
        return x[0, in_prompt:]


# ---------------------------------------------------------------------------------------- a run's stream
TokenChunk = torch.Tensor | Sequence[int] | int


class RunTokenStream:
    """:class:`TokenFlowStream` for a run: token ids are checked and the chunks
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
        :class:`~tts.synthesis.NoFrameError` when too few for one latent frame."""
        if self.stream.new_tokens == 0:
            raise SynthesisError("the token stream was empty")
        frames_for(self.run, self.stream.new_tokens, "the token stream: ")
        return self._out(self.stream.finish())


def open_stream(run: TTSRun, prompt: torch.Tensor | None = None, prompt_tokens: TokenChunk | None = None,
                chunk_frames: int = DEFAULT_CHUNK_FRAMES, seed: int = 0, steps: int | None = None,
                cfg_scale: float | None = None, temperature: float = 1.0, grid: str = "sway",
                speaker: torch.Tensor | None = None, speaker_reference: torch.Tensor | None = None) -> RunTokenStream:
    """A push-style stream (module docstring). ``prompt``: latent (D, P) in the AE's space with its
    ``prompt_tokens`` (Np,); ``speaker``: (speaker_dim,) for runs trained with speaker embeddings;
    ``speaker_reference``: a reference latent (D, R) for runs with a learnable speaker encoder."""
    if run.kind != "token-flow":
        raise SynthesisError(f"{run.directory}: streaming from tokens needs a token-flow run, not {run.kind}")
    if chunk_frames < 1:
        raise SynthesisError(f"chunk frames must be at least 1 for streaming, got {chunk_frames}")
    prompt_n, prompt_ids = token_prompt(run, prompt, None if prompt_tokens is None else
                                        torch.as_tensor(prompt_tokens, dtype=torch.long))
    stream = TokenFlowStream(run.model, chunk_frames, prompt_n, prompt_ids, steps=steps or DEFAULT_STEPS["token-flow"],
                             grid=grid, sway=0.0 if run.model.cfg.meanflow else -1.0,
                             cfg_scale=DEFAULT_CFG["token-flow"] if cfg_scale is None else cfg_scale,
                             temperature=temperature, seed=seed,
                             speaker=speaker_vector(run, speaker, speaker_reference))
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
