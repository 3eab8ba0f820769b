"""Sampling speech tokens from a :class:`~tts.token_lm.TokenLM`: the whole text at once (plain) or text
arriving in pieces (bistream), both token by token with a KV cache.

    tokens = list(generate_plain(model, text_ids, options=GenerationOptions(...), generator=g))

    stream = BistreamGenerator(model, options=..., generator=g)
    for ids in text_pieces:                    # text ids as they arrive (any number at a time)
        for token in stream.push(ids): ...     # speech tokens as soon as a text chunk is complete
    for token in stream.finish(): ...          # the rest, once the text has ended

A speaker prompt is its text ids (``prompt_text``, read before the text) and its speech tokens
(``prompt_speech``, fed as the first speech tokens, never returned). Lengths count only new tokens:
``<eos>`` is masked until ``ceil(min_ratio * L)`` tokens and generation stops at
``ceil(max_ratio * L)``, L the number of new text ids. In bistream mode the chunks follow the
layout (:mod:`tts.token_lm_layout`): after each N text ids exactly M speech tokens are drawn
(``<eos>`` and ``<fill>`` masked), the prompt's tokens taking the first places.

With ``SamplingSettings(style="cosyvoice")`` the loop makes CosyVoice 2's own decisions (its
``Qwen2LM.inference`` / ``inference_bistream``), so a model in its layout draws its tokens: ``<fill>``
is not masked (plain: any id >= C ends the speech; bistream: a drawn ``<fill>`` ends the chunk early),
and the repetition window counts the ``<fill>`` ids too. Two places where CosyVoice's bistream loop
leaves its own training layout are not followed: a prompt of exactly k*M tokens (CosyVoice then
draws M tokens before the next text chunk; here the chunk comes first) and the end of the text
(CosyVoice feeds the last speech token a second time before the remaining text; here once).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import torch

from tts.token_lm.model import TokenLM
from tts.token_lm.sampling import SamplingSettings, guided_logits, sample_next


@dataclass
class GenerationOptions:
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    cfg_scale: float = 1.0  # classifier-free guidance on the text (1: off; needs a model trained with cond_drop)
    min_ratio: float = 0.0  # at least this many new speech tokens per new text id
    max_ratio: float = 20.0  # at most this many
    prompt_text: list[int] = field(default_factory=list)  # the prompt's text ids
    prompt_speech: list[int] = field(default_factory=list)  # the prompt's speech tokens
    speaker: torch.Tensor | None = None  # (speaker_dim,) for models trained with speaker embeddings
    use_cache: bool = True  # KV cache (False recomputes every step: same tokens, slower)

    def length_bounds(self, text_len: int) -> tuple[int, int]:
        """(min, max) new speech tokens for ``text_len`` new text ids."""
        high = max(1, math.ceil(self.max_ratio * text_len))
        return min(high, math.ceil(self.min_ratio * text_len)), high


class _Sampler:
    """The decoder, the generated tokens and the logits at the last position."""

    def __init__(self, model: TokenLM, options: GenerationOptions, generator: torch.Generator | None):
        options.sampling.check()
        self.model, self.options, self.generator = model.eval(), options, generator
        self.vocab = model.cfg.vocab
        bad = [t for t in options.prompt_speech if not 0 <= t < self.vocab.codebook]
        if bad:
            raise ValueError(f"prompt speech token {bad[0]} out of range (the model has {self.vocab.codebook})")
        rows = 1 if options.cfg_scale == 1.0 else 2
        self.decoder = model.decoder(rows, options.speaker, options.use_cache)
        self.cosyvoice = options.sampling.style == "cosyvoice"
        self.logits: torch.Tensor | None = None
        self.out: list[int] = []
        self.history: list[int] = []  # what repetition-aware sampling looks back on (cosyvoice: <fill> too)

    def feed(self, ids: list[int], is_text: bool) -> None:
        if ids:
            self.logits = self.decoder.feed(ids, is_text)

    def feed_speech(self, tokens: list[int]) -> None:
        self.feed(self.vocab.speech(tokens), False)

    def sample(self, allow_eos: bool) -> int:
        """The next speech token, fed back into the model; or an id >= C (``<eos>``; cosyvoice style: any
        of its special ids), not fed."""
        logits = guided_logits(self.logits, self.options.cfg_scale).clone()
        if not self.cosyvoice:
            logits[self.vocab.fill] = float("-inf")
        if not allow_eos:
            logits[self.vocab.eos] = float("-inf")
        token = sample_next(logits, self.history, self.options.sampling, self.generator)
        if token < self.vocab.codebook:
            self.out.append(token)
            self.history.append(token)
            self.feed_speech([token])
        return token

    def until_eos(self, text_len: int) -> Iterator[int]:
        low, high = self.options.length_bounds(text_len)
        while len(self.out) < high:
            token = self.sample(allow_eos=len(self.out) >= low)
            if token >= self.vocab.codebook:
                return
            yield token


@torch.no_grad()
def generate_plain(model: TokenLM, text: list[int], options: GenerationOptions | None = None,
                   generator: torch.Generator | None = None) -> Iterator[int]:
    """Speech tokens for text ids (L,) read whole (``<plain>`` layout), yielded one by one."""
    options = options or GenerationOptions()
    if not text:
        raise ValueError("no text ids to speak")
    s = _Sampler(model, options, generator)
    s.feed([s.vocab.plain], False)
    s.feed(options.prompt_text + list(text), True)
    s.feed([s.vocab.sos] + s.vocab.speech(options.prompt_speech), False)
    yield from s.until_eos(len(text))


class BistreamGenerator:
    """Text ids in pieces -> speech tokens as soon as each text chunk is complete (module docstring)."""

    def __init__(self, model: TokenLM, options: GenerationOptions | None = None,
                 generator: torch.Generator | None = None):
        options = options or GenerationOptions()
        cfg = model.cfg
        if not cfg.bistream:
            raise ValueError("this model was not trained on the bistream layout (train with --bistream)")
        self.n, self.m = cfg.text_chunk, cfg.speech_chunk
        covered = self.m * (len(options.prompt_text) // self.n)
        if len(options.prompt_speech) < covered:  # else tokens drawn while reading the prompt's text come out
            raise ValueError(f"the prompt has {len(options.prompt_speech)} speech tokens for {len(options.prompt_text)} "
                             f"text ids; the bistream layout ({self.n} : {self.m}) needs at least {covered}")
        self.s = _Sampler(model, options, generator)
        self.pending = list(options.prompt_text)  # text ids not fed yet
        self.forced = list(options.prompt_speech)  # prompt tokens that take the next speech places
        self.text_ids = 0  # new text ids received
        self.ended = False
        self.due = 0  # speech places left in the current chunk
        self.drawn = False  # a token of the current chunk was drawn (not a prompt token)
        self.s.feed([self.s.vocab.bistream], False)

    @property
    def generated(self) -> list[int]:
        return self.s.out

    def push(self, ids: list[int]) -> Iterator[int]:
        """Add new text ids (taken at once); returns an iterator over the speech tokens that can be drawn
        now (M per complete chunk of N). Tokens not drawn yet are drawn by the next push or finish."""
        if self.ended:
            raise RuntimeError("push after finish: the text has ended")
        self.pending.extend(ids)
        self.text_ids += len(ids)
        return self._drain()

    @torch.no_grad()
    def _drain(self) -> Iterator[int]:
        while self.due:
            yield from self._speech(1)
        while len(self.pending) >= self.n:
            chunk, self.pending = self.pending[: self.n], self.pending[self.n:]
            self.s.feed(chunk, True)
            self.due, self.drawn = self.m, False
            while self.due:
                yield from self._speech(1)

    def _speech(self, count: int) -> Iterator[int]:
        for _ in range(count):
            self.due -= 1
            if self.forced:
                self.s.feed_speech([self.forced.pop(0)])
                continue
            token = self.s.sample(allow_eos=False)
            if token >= self.s.vocab.codebook:  # cosyvoice style only: a drawn <fill> ends the chunk
                if token != self.s.vocab.fill:
                    raise ValueError(f"the model drew id {token} (neither a speech token nor <fill>) inside a chunk")
                self.due = 0
            else:
                self.drawn = True
                yield token
            if self.due == 0 and self.s.cosyvoice and (self.drawn or token == self.s.vocab.fill):
                self.s.history.append(self.s.vocab.fill)  # CosyVoice counts the chunk's <fill> as generated

    def finish(self) -> Iterator[int]:
        """The text has ended: returns an iterator over the rest (remaining chunks, the last text ids and
        ``<turn>``, then tokens up to ``<eos>``)."""
        if self.ended:
            raise RuntimeError("finish called twice")
        if self.text_ids == 0:
            raise ValueError("no text ids to speak")
        self.ended = True
        return self._end()

    @torch.no_grad()
    def _end(self) -> Iterator[int]:
        yield from self._drain()
        self.s.feed(self.pending, True)
        self.pending = []
        self.s.feed([self.s.vocab.turn], False)
        if self.forced:
            self.s.feed_speech(self.forced)
            self.forced = []
        yield from self.s.until_eos(self.text_ids)


def generate_bistream(model: TokenLM, pieces, options: GenerationOptions | None = None,
                      generator: torch.Generator | None = None) -> Iterator[int]:
    """Speech tokens for text ids arriving as ``pieces`` (an iterable of id lists), yielded one by one."""
    stream = BistreamGenerator(model, options, generator)
    for ids in pieces:
        yield from stream.push(list(ids))
    yield from stream.finish()
