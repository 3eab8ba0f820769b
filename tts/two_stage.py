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

The LM's tokens go one by one into :func:`tts.token_flow.streaming.stream_audio`, so the first latent
chunk is generated as soon as the LM has written the tokens it spans (plus the flow's lookahead),
and the first audio as soon as the decoder has its lookahead: long before the LM has finished.

:func:`speak_text` is what ``dcae tts --checkpoint LM_RUN [--flow FLOW_RUN]`` runs: the options of the
LM (:class:`LMOptions`), a voice prompt from audio (``--prompt-audio``: its tokens from the runs'
tokenizer, its latent from the DC-AE) or from files, offline or streamed.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from dcae.audio import load_checked_audio
from tts.run import RunError, TTSRun, load_run
from tts.speakers.reference import reference_from_audio
from tts.synthesis import NoFrameError, SynthesisError, gather_audio, read_token_file
from tts.token_flow.inputs import frames_for
from tts.token_flow.streaming import stream_audio, stream_latents
from tts.token_flow.synthesis import synthesize_tokens
from tts.token_lm.sampling import SamplingSettings
from tts.token_lm.synthesis import stream_speech_tokens, stream_tokens_from_text
from tts.tokenizers import load_tokenizer
from tts.tokenizers.fsq_run import FSQTokenizerRunError
from tts.tokenizers.s3_weights import S3TokenizerUnavailable


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

    ``lm_options``: :func:`tts.token_lm.synthesis.generation_options` keywords (sampling, cfg_scale,
    min_ratio, max_ratio); ``flow_options``: :func:`tts.token_flow.streaming.open_stream` keywords (chunk_frames,
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


# ---------------------------------------------------------------------------------------- dcae tts
TOO_FEW = "the LM wrote too few speech tokens: "


@dataclass
class LMOptions:
    """How the token LM runs in :func:`speak_text` (the token-lm options of ``dcae tts``)."""

    out_tokens: Path | None = None  # where the command writes the tokens (kept here so refusals see it)
    flow: Path | None = None  # a token-flow run folder: on to latents and audio
    prompt_audio: Path | None = None  # audio whose voice to continue (with prompt_text)
    tokenizer: str | None = None  # "s3" or an FSQ run folder: the prompt audio's tokens
    text_stream: bool = False  # hand the text over piece by piece (bistream runs)
    top_k: int | None = None
    top_p: float | None = None
    lm_temperature: float | None = None
    lm_cfg_scale: float | None = None


@dataclass
class TwoStageSpeech:
    """What :func:`speak_text` made: the speech tokens (N,), the flow run and latent (D, T) when there
    was one, the audio (samples,) and decoder when asked for, and for a stream with audio when its
    first chunk came (seconds, tokens the LM had written by then)."""

    tokens: torch.Tensor
    flow: TTSRun | None = None
    latent: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    wrapper: Any = None
    first_audio: tuple[float, int] | None = None


def _sampling(args: LMOptions, lm: TTSRun) -> SamplingSettings:
    """The flags over the run's own settings (a CosyVoice 2 folder: CosyVoice's sampler), else the defaults."""
    base = SamplingSettings(**lm.latent_info.get("sampling", {}))
    return SamplingSettings(temperature=base.temperature if args.lm_temperature is None else args.lm_temperature,
                            top_k=base.top_k if args.top_k is None else args.top_k,
                            top_p=base.top_p if args.top_p is None else args.top_p,
                            ras_window=base.ras_window, ras_ratio=base.ras_ratio, style=base.style)


def _text_pieces(text: str):
    """``-``: standard input as it arrives (line by line); else the text a character at a time."""
    if text == "-":
        for line in sys.stdin:
            yield line
    else:
        yield from text


def tokenizer_spec(args: LMOptions, lm: TTSRun, what: str = "--prompt-audio") -> str:
    """The tokenizer for --prompt-audio: --tokenizer, else s3 when the run's tokens are S3Tokenizer's
    (``what``: the option or mode named in the refusal)."""
    spec = args.tokenizer or ("s3" if str(lm.latent_info.get("tokenizer", "")).startswith("s3") else None)
    if spec is None:
        raise SynthesisError(f"{what}: give --tokenizer FSQ_RUN, the tokenizer that made the tokens "
                             f"{lm.directory} was trained on ({lm.latent_info.get('tokenizer') or 'unknown'})")
    return spec


def prompt_tokenizer(spec: str, lm: TTSRun):
    """The :class:`~tts.tokenizers.SpeechTokenizer` ``spec`` names (``s3`` or an FSQ run folder), on the CPU,
    checked to write tokens at the rate ``lm`` was trained on. Raises :class:`SynthesisError` (one line)."""
    try:
        tokenizer = load_tokenizer(spec, device="cpu")
    except (FSQTokenizerRunError, S3TokenizerUnavailable) as e:
        raise SynthesisError(f"--tokenizer {spec}: {e}") from None
    if abs(tokenizer.token_rate - lm.token_rate) > 1e-6 * lm.token_rate:
        raise SynthesisError(f"--tokenizer {spec}: writes {tokenizer.token_rate:g} tokens/s but {lm.directory} "
                             f"was trained on {lm.token_rate:g}/s")
    return tokenizer


def lm_generation_options(args: LMOptions, lm: TTSRun, speaker_reference: torch.Tensor | None = None,
                          speaker: torch.Tensor | None = None) -> dict[str, Any]:
    """The LM keywords of :func:`speech_token_source` from the token-lm flags: the sampler, the guidance,
    and a speaker reference (D, R) / fixed embedding (S,) where the LM run takes one."""
    return dict(sampling=_sampling(args, lm), cfg_scale=1.0 if args.lm_cfg_scale is None else args.lm_cfg_scale,
                speaker_reference=speaker_reference if lm.model.speaker_encoder is not None else None,
                speaker=speaker if lm.model.cfg.speaker_dim else None)


def speak_offline(lm: TTSRun, flow: TTSRun | None, wrapper, text: str | Iterable[str], *, text_stream: bool = False,
                  prompt_text: str | None = None, prompt: VoicePrompt | None = None, seed: int = 0,
                  lm_options: dict[str, Any] | None = None, flow_options: dict[str, Any] | None = None,
                  chunk_frames: int | None = None, want_audio: bool = True) -> TwoStageSpeech:
    """Text -> all the speech tokens, then (with ``flow``) the whole latent at once, then (``want_audio``)
    the audio with ``wrapper``: the offline path of :func:`speak_text`, with the runs, decoder and
    options already loaded (``lm_options``: :func:`lm_generation_options`; ``flow_options``:
    :func:`tts.token_flow.synthesis.synthesize_tokens` keywords). Raises :class:`SynthesisError` (the LM
    wrote no tokens, or too few for one latent frame)."""
    tokens = torch.tensor(list(speech_token_source(lm, text, text_stream=text_stream, prompt_text=prompt_text,
                                                   prompt=prompt, seed=seed, **(lm_options or {}))),
                          dtype=torch.long)
    if tokens.numel() == 0:
        raise SynthesisError("the LM wrote no speech tokens")
    if flow is None:
        return TwoStageSpeech(tokens)
    frames_for(flow, tokens.numel(), TOO_FEW)
    latent = synthesize_tokens(flow, tokens, prompt=None if prompt is None else prompt.latent,
                               prompt_tokens=None if prompt is None else prompt.tokens, seed=seed,
                               chunk_frames=chunk_frames or 0, **(flow_options or {}))
    audio = wrapper.decode(latent[None])[0] if want_audio else None
    return TwoStageSpeech(tokens, flow, latent, audio, wrapper)


def _prompt(args: LMOptions, lm: TTSRun, flow: TTSRun | None, wrapper, prompt_latent: torch.Tensor | None,
            prompt_tokens_file: Path | None, prompt_text: str | None) -> VoicePrompt | None:
    if args.prompt_audio is None and prompt_latent is None and prompt_tokens_file is None:
        if prompt_text is not None:
            raise SynthesisError("--prompt-text goes with --prompt-audio (or --prompt-tokens [--prompt-latent])")
        return None
    if prompt_text is None:
        raise SynthesisError("a voice prompt needs its transcript (--prompt-text)")
    if args.prompt_audio is not None:
        if prompt_latent is not None or prompt_tokens_file is not None:
            raise SynthesisError("give --prompt-audio or --prompt-latent/--prompt-tokens, not both")
        if wrapper is None:
            raise SynthesisError("--prompt-audio needs --flow and -o or --out-latent (the DC-AE encodes the prompt)")
        spec = tokenizer_spec(args, lm)
        tokenizer = prompt_tokenizer(spec, lm)
        audio = load_checked_audio(args.prompt_audio, tokenizer.sample_rate)
        return prompt_from_audio(wrapper, tokenizer, audio, tokenizer.sample_rate)
    if prompt_tokens_file is None:
        raise SynthesisError("--prompt-latent needs --prompt-tokens (the speech tokens of the same audio)")
    if flow is not None and prompt_latent is None:
        raise SynthesisError("--prompt-tokens with --flow needs --prompt-latent too (or use --prompt-audio)")
    return VoicePrompt(prompt_latent, read_token_file(prompt_tokens_file, lm))


def speak_text(lm: TTSRun, args: LMOptions, *, text: str | None, prompt_text: str | None,
               prompt_latent: torch.Tensor | None, prompt_tokens_file: Path | None, tokens_file: Path | None,
               want_latent: bool, want_audio: bool, stream: bool, chunk_frames: int | None,
               lookahead: int | None, seed: int, steps: int | None, cfg_scale: float | None,
               temperature: float, frames: int | None, max_frames: int | None, device: torch.device,
               make_wrapper: Callable[[TTSRun], Any], speaker_audio: Path | None = None,
               speaker_latent: torch.Tensor | None = None,
               speaker_embedding: torch.Tensor | None = None) -> TwoStageSpeech:
    """Text -> speech tokens with a token-lm run, and with ``args.flow`` on to latents and audio
    (``make_wrapper(flow_run)`` gives the decoder), offline or streamed through every stage. A zero-shot
    voice with no transcript: ``speaker_audio`` / ``speaker_latent`` (a latent (D, R)), read by the
    learnable speaker encoder of the LM run and/or the flow run, whichever has one; a fixed
    ``speaker_embedding`` (S,) goes to each run trained with ``--speaker-dim``.
    ``text`` "-" reads standard input. Raises :class:`SynthesisError` (one line)."""
    if text is None or tokens_file is not None:
        raise SynthesisError(f"{lm.directory}: a token-lm run speaks --text (not --tokens)")
    if frames is not None or max_frames is not None:
        raise SynthesisError("--frames/--max-frames do not apply to a token-lm run: the LM decides the length")
    if (want_latent or want_audio) and args.flow is None:
        raise SynthesisError("--out-latent and -o need --flow FLOW_RUN (a token-flow run) after a token-lm run")
    if args.flow is None and (stream or args.prompt_audio is not None or prompt_latent is not None):
        raise SynthesisError("--stream, --prompt-audio and --prompt-latent need --flow FLOW_RUN")
    if speaker_audio is not None and speaker_latent is not None:
        raise SynthesisError("give --speaker-audio or --speaker-latent, not both")
    lm_learns = lm.model.speaker_encoder is not None
    wants_reference = speaker_audio is not None or speaker_latent is not None
    if wants_reference and args.flow is None and not lm_learns:
        raise SynthesisError(f"{lm.directory}: --speaker-audio/--speaker-latent need a run trained with "
                             f"--speaker-encoder learnable (this token-lm run was not; or give --flow with one)")
    if speaker_audio is not None and not speaker_audio.is_file():
        raise SynthesisError(f"--speaker-audio {speaker_audio}: file not found")
    if args.prompt_audio is not None:
        tokenizer_spec(args, lm)  # before loading any model
        if not args.prompt_audio.is_file():
            raise SynthesisError(f"--prompt-audio {args.prompt_audio}: file not found")
    flow = wrapper = None
    flow_learns = False
    if args.flow is not None:
        try:
            flow = load_run(args.flow, device)
        except RunError as e:
            raise SynthesisError(str(e)) from None
        check_pair(lm, flow)
        flow_learns = flow.model.speaker_encoder is not None
        if wants_reference and not (flow_learns or lm_learns):
            raise SynthesisError(f"{flow.directory}: --speaker-audio/--speaker-latent need a token-flow (or token-lm) "
                                 f"run trained with --speaker-encoder learnable")
        if want_audio or args.prompt_audio is not None or speaker_audio is not None:
            wrapper = make_wrapper(flow)
    if speaker_audio is not None:
        speaker_latent = reference_from_audio(wrapper if wrapper is not None else make_wrapper(lm), speaker_audio)
    lm_fixed = bool(lm.model.cfg.speaker_dim)
    flow_fixed = flow is not None and not flow_learns and bool(flow.model.speaker_size)
    if speaker_embedding is not None and not (lm_fixed or flow_fixed):
        raise SynthesisError(f"{lm.directory}: --speaker-embedding needs a token-lm or token-flow run trained with "
                             f"--speaker-dim (a fixed speaker embedding)")
    prompt = _prompt(args, lm, flow, wrapper, prompt_latent, prompt_tokens_file, prompt_text)
    if args.text_stream and not lm.model.cfg.bistream:
        raise SynthesisError(f"{lm.directory}: --text-stream needs a run trained with --bistream")
    lm_options = lm_generation_options(args, lm, speaker_latent, speaker_embedding)
    if text == "-" and not args.text_stream:
        text = sys.stdin.read()
    source = _text_pieces(text) if args.text_stream else text
    flow_options = dict(steps=steps, cfg_scale=cfg_scale, temperature=temperature,
                        speaker_reference=speaker_latent if flow_learns else None,
                        speaker=speaker_embedding if flow_fixed else None)
    written: list[int] = []
    started = time.perf_counter()
    if flow is None or not stream:
        return speak_offline(lm, flow, wrapper, source, text_stream=args.text_stream, prompt_text=prompt_text,
                             prompt=prompt, seed=seed, lm_options=lm_options, flow_options=flow_options,
                             chunk_frames=chunk_frames, want_audio=want_audio)
    if chunk_frames is not None:
        flow_options["chunk_frames"] = chunk_frames
    latents: list[torch.Tensor] = []
    try:
        if not want_audio:
            latents = list(speak_latents(lm, flow, source, text_stream=args.text_stream, prompt_text=prompt_text,
                                         prompt=prompt, seed=seed, lm_options=lm_options, flow_options=flow_options,
                                         on_token=written.append))
            return TwoStageSpeech(torch.tensor(written, dtype=torch.long), flow, torch.cat(latents, dim=1))
        chunks = speak(lm, flow, wrapper, source, text_stream=args.text_stream, prompt_text=prompt_text,
                       prompt=prompt, seed=seed, lm_options=lm_options, flow_options=flow_options,
                       lookahead=lookahead, on_token=written.append, on_latent=latents.append)
        audio, first = gather_audio(chunks, started, lambda: len(written))
    except NoFrameError:
        frames_for(flow, len(written), TOO_FEW)  # the same refusal, said of the LM
        raise
    return TwoStageSpeech(torch.tensor(written, dtype=torch.long), flow, torch.cat(latents, dim=1), audio, wrapper,
                          first)
