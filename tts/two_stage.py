"""Two-stage synthesis end to end: text -> speech tokens (token-lm run) -> latents (token-flow run)
-> audio (DC-AE decoder + BigVGAN), every stage streaming into the next.

    lm, flow = load_run("runs/token-lm"), load_run("runs/token-flow")
    check_pair(lm, flow)
    wrapper = DCAEInferenceWrapper(...)
    prompt = prompt_from_audio(wrapper, load_tokenizer("runs/fsq"), audio, 16000)    # optional voice prompt
    for chunk in speak(lm, flow, wrapper, "Hello there.", prompt=prompt, prompt_text="..."):
        play(chunk)                                   # (samples,) at wrapper.sample_rate, while the LM still writes

    # text arriving in pieces (bistream LM): speech starts before the sentence is complete
    for chunk in speak(lm, flow, wrapper, llm_pieces(), text_stream=True): ...

The LM's tokens go one by one into :func:`tts.streaming.stream_audio`, so the first latent chunk is
generated as soon as the LM has written the tokens it spans (plus the flow's lookahead), and the
first audio as soon as the decoder has its lookahead: long before the LM has finished.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch

from tts.run import TTSRun
from tts.token_flow.streaming import stream_audio, stream_latents
from tts.synthesize import SynthesisError
from tts.token_lm.synthesis import stream_speech_tokens, stream_tokens_from_text


@dataclass
class VoicePrompt:
    """A voice to continue: its latent (D, P) in the AE's space and its speech tokens (N,)."""

    latent: torch.Tensor
    tokens: torch.Tensor


def check_pair(lm: TTSRun, flow: TTSRun) -> None:
    """The LM's tokens must be what the flow model reads: same token rate, ids in its range."""
    if lm.kind != "token-lm":
        raise SynthesisError(f"{lm.directory}: --checkpoint must be a token-lm run for --flow, got a {lm.kind} run")
    if flow.kind != "token-flow":
        raise SynthesisError(f"{flow.directory}: --flow must be a token-flow run, got a {flow.kind} run")
    if abs(lm.token_rate - flow.token_rate) > 1e-6 * flow.token_rate:
        raise SynthesisError(f"{flow.directory}: reads tokens at {flow.token_rate:g}/s but {lm.directory} writes "
                             f"{lm.token_rate:g}/s (trained on different tokenizers)")
    if lm.model.cfg.codebook_size > flow.model.cfg.vocab_size:
        raise SynthesisError(f"{flow.directory}: takes {flow.model.cfg.vocab_size} token ids but {lm.directory} "
                             f"writes up to {lm.model.cfg.codebook_size}")


def prompt_from_audio(wrapper, tokenizer, audio: torch.Tensor, sample_rate: int) -> VoicePrompt:
    """A :class:`VoicePrompt` from audio (samples,): latent with the DC-AE encoder, tokens with ``tokenizer``
    (a :class:`tts.tokenizers.SpeechTokenizer`, the one whose tokens the runs were trained on)."""
    latent = wrapper.encode(audio.reshape(1, -1), sample_rate)[0].float().cpu()
    tokens = tokenizer.tokenize(audio.reshape(-1), sample_rate)[0].cpu()
    return VoicePrompt(latent, tokens)


def speech_token_source(lm: TTSRun, text: str | Iterable[str], *, text_stream: bool = False,
                        prompt_text: str | None = None, prompt: VoicePrompt | None = None, seed: int | None = 0,
                        **lm_options: Any) -> Iterator[int]:
    """The LM's speech tokens one by one: ``text`` whole, or (``text_stream``) an iterable of text pieces."""
    prompt_tokens = None if prompt is None else prompt.tokens
    if text_stream:
        pieces = [text] if isinstance(text, str) else text
        return stream_tokens_from_text(lm, pieces, prompt_text, prompt_tokens, seed, **lm_options)
    if not isinstance(text, str):
        raise SynthesisError("a text iterable needs text_stream=True (a bistream run)")
    return stream_speech_tokens(lm, text, prompt_text, prompt_tokens, seed, **lm_options)


def _counted(tokens: Iterator[int], on_token: Callable[[int], None] | None) -> Iterator[int]:
    for token in tokens:
        if on_token is not None:
            on_token(token)
        yield token


def speak_latents(lm: TTSRun, flow: TTSRun, text: str | Iterable[str], *, text_stream: bool = False,
                  prompt_text: str | None = None, prompt: VoicePrompt | None = None, seed: int | None = 0,
                  lm_options: dict[str, Any] | None = None, flow_options: dict[str, Any] | None = None,
                  on_token: Callable[[int], None] | None = None) -> Iterator[torch.Tensor]:
    """Latent chunks (D, n) in the AE's space as the LM writes tokens (options as :func:`speak`)."""
    check_pair(lm, flow)
    tokens = speech_token_source(lm, text, text_stream=text_stream, prompt_text=prompt_text, prompt=prompt,
                                 seed=seed, **(lm_options or {}))
    yield from stream_latents(flow, _counted(tokens, on_token), **_flow_options(prompt, seed, flow_options))


def speak(lm: TTSRun, flow: TTSRun, wrapper, text: str | Iterable[str], *, text_stream: bool = False,
          prompt_text: str | None = None, prompt: VoicePrompt | None = None, seed: int | None = 0,
          lm_options: dict[str, Any] | None = None, flow_options: dict[str, Any] | None = None,
          lookahead: int | None = None, on_token: Callable[[int], None] | None = None,
          on_latent: Callable[[torch.Tensor], None] | None = None) -> Iterator[torch.Tensor]:
    """Audio chunks (samples,) at ``wrapper.sample_rate`` for ``text``.

    ``lm_options``: :func:`tts.token_lm_synthesis.generation_options` keywords (sampling, cfg_scale,
    min_ratio, max_ratio); ``flow_options``: :func:`tts.streaming.open_stream` keywords (chunk_frames,
    steps, cfg_scale, temperature); ``lookahead``: the decoder's (None: exact); ``on_token`` /
    ``on_latent``: called with each speech token / latent chunk (D, n) as it is made."""
    check_pair(lm, flow)
    tokens = speech_token_source(lm, text, text_stream=text_stream, prompt_text=prompt_text, prompt=prompt,
                                 seed=seed, **(lm_options or {}))
    yield from stream_audio(flow, wrapper, _counted(tokens, on_token), lookahead=lookahead, on_latent=on_latent,
                            **_flow_options(prompt, seed, flow_options))


def _flow_options(prompt: VoicePrompt | None, seed: int | None, options: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(options or {})
    out.setdefault("seed", 0 if seed is None else seed)
    if prompt is not None:
        out.update(prompt=prompt.latent, prompt_tokens=prompt.tokens)
    return out
