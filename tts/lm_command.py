"""The token-lm branch of ``dcae tts`` (:mod:`tts.cli`): text -> speech tokens (``--out-tokens``), and
with ``--flow FLOW_RUN`` on to latents (``--out-latent``) and audio (``-o``, ``--stream``)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click
import torch

from tts.run import RunError, TTSRun, load_run
from tts.synthesize import NoFrameError, SynthesisError, frames_for, read_token_file, synthesize_tokens
from tts.token_command import gather_audio
from tts.token_lm.sampling import SamplingSettings
from tts.two_stage import VoicePrompt, check_pair, prompt_from_audio, speak, speech_token_source

LM_OPTIONS_HELP = {
    "out_tokens": "token-lm runs: write the generated speech tokens here (.safetensors token file).",
    "flow": "token-lm runs: a token-flow run folder that turns the tokens into latents (for --out-latent / -o).",
    "prompt_audio": "token-lm runs with --flow: audio whose voice to continue (with --prompt-text); its tokens come "
                    "from --tokenizer, its latent from the DC-AE.",
    "tokenizer": "With --prompt-audio: 's3' or the FSQ tokenizer run folder that made the runs' tokens "
                 "(default: s3 when the runs were trained on S3Tokenizer tokens).",
    "text_stream": "token-lm runs trained with --bistream: hand the text over piece by piece (a piece per "
                   "character; '--text -' reads standard input as it arrives), speech starting before the text ends.",
    "top_k": "token-lm runs: sample among the k most likely tokens (0: all).",
    "top_p": "token-lm runs: then among the most likely tokens reaching this probability (1: all).",
    "lm_temperature": "token-lm runs: temperature of the token distribution (0: greedy).",
    "lm_cfg_scale": "token-lm runs trained with --cond-drop: guidance on the text (1: off).",
}
TOO_FEW = "the LM wrote too few speech tokens: "


@dataclass
class LMArgs:
    """The options of ``dcae tts`` that concern token-lm runs."""

    out_tokens: Path | None = None
    flow: Path | None = None
    prompt_audio: Path | None = None
    tokenizer: str | None = None
    text_stream: bool = False
    top_k: int | None = None
    top_p: float | None = None
    lm_temperature: float | None = None
    lm_cfg_scale: float | None = None

    def given(self) -> list[str]:
        """The flags given (to refuse them for other run kinds)."""
        return ["--" + name.replace("_", "-") for name, value in vars(self).items()
                if value not in (None, False)]


def _sampling(args: LMArgs) -> SamplingSettings:
    base = SamplingSettings()
    return SamplingSettings(temperature=base.temperature if args.lm_temperature is None else args.lm_temperature,
                            top_k=base.top_k if args.top_k is None else args.top_k,
                            top_p=base.top_p if args.top_p is None else args.top_p,
                            ras_window=base.ras_window, ras_ratio=base.ras_ratio)


def _text_pieces(text: str):
    """``-``: standard input as it arrives (line by line); else the text a character at a time."""
    if text == "-":
        for line in sys.stdin:
            yield line
    else:
        yield from text


def _tokenizer_spec(args: LMArgs, lm: TTSRun) -> str:
    """The tokenizer for --prompt-audio: --tokenizer, else s3 when the run's tokens are S3Tokenizer's."""
    spec = args.tokenizer or ("s3" if str(lm.latent_info.get("tokenizer", "")).startswith("s3") else None)
    if spec is None:
        raise SynthesisError(f"--prompt-audio: give --tokenizer FSQ_RUN, the tokenizer that made the tokens "
                             f"{lm.directory} was trained on ({lm.latent_info.get('tokenizer') or 'unknown'})")
    return spec


def _prompt(args: LMArgs, lm: TTSRun, flow: TTSRun | None, wrapper, prompt_latent: torch.Tensor | None,
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
        from inference import load_checked_audio
        from tts.tokenizers import load_tokenizer

        spec = _tokenizer_spec(args, lm)
        tokenizer = load_tokenizer(spec, device="cpu")
        if abs(tokenizer.token_rate - lm.token_rate) > 1e-6 * lm.token_rate:
            raise SynthesisError(f"--tokenizer {spec}: writes {tokenizer.token_rate:g} tokens/s but {lm.directory} "
                                 f"was trained on {lm.token_rate:g}/s")
        audio = load_checked_audio(args.prompt_audio, tokenizer.sample_rate)
        return prompt_from_audio(wrapper, tokenizer, audio, tokenizer.sample_rate)
    if prompt_tokens_file is None:
        raise SynthesisError("--prompt-latent needs --prompt-tokens (the speech tokens of the same audio)")
    if flow is not None and prompt_latent is None:
        raise SynthesisError("--prompt-tokens with --flow needs --prompt-latent too (or use --prompt-audio)")
    return VoicePrompt(prompt_latent, read_token_file(prompt_tokens_file, lm))


def two_stage_outputs(lm: TTSRun, args: LMArgs, *, text: str | None, prompt_text: str | None,
                      prompt_latent: torch.Tensor | None, prompt_tokens_file: Path | None, tokens_file: Path | None,
                      want_latent: bool, want_audio: bool, stream: bool, chunk_frames: int | None,
                      lookahead: int | None, seed: int, steps: int | None, cfg_scale: float | None,
                      temperature: float, frames: int | None, max_frames: int | None, device: torch.device,
                      make_wrapper: Callable[[TTSRun], Any]) -> tuple[torch.Tensor, TTSRun | None,
                                                                       torch.Tensor | None, torch.Tensor | None, Any]:
    """(tokens (N,), flow run or None, latent (D, T) or None, audio (samples,) or None, wrapper or None).
    Raises :class:`SynthesisError` (one line)."""
    if text is None or tokens_file is not None:
        raise SynthesisError(f"{lm.directory}: a token-lm run speaks --text (not --tokens)")
    if frames is not None or max_frames is not None:
        raise SynthesisError("--frames/--max-frames do not apply to a token-lm run: the LM decides the length")
    if (want_latent or want_audio) and args.flow is None:
        raise SynthesisError("--out-latent and -o need --flow FLOW_RUN (a token-flow run) after a token-lm run")
    if args.flow is None and (stream or args.prompt_audio is not None or prompt_latent is not None):
        raise SynthesisError("--stream, --prompt-audio and --prompt-latent need --flow FLOW_RUN")
    if args.prompt_audio is not None:
        _tokenizer_spec(args, lm)  # before loading any model
        if not args.prompt_audio.is_file():
            raise SynthesisError(f"--prompt-audio {args.prompt_audio}: file not found")
    flow = wrapper = None
    if args.flow is not None:
        try:
            flow = load_run(args.flow, device)
        except RunError as e:
            raise SynthesisError(str(e)) from None
        check_pair(lm, flow)
        if want_audio or args.prompt_audio is not None:
            wrapper = make_wrapper(flow)
    prompt = _prompt(args, lm, flow, wrapper, prompt_latent, prompt_tokens_file, prompt_text)
    if args.text_stream and not lm.model.cfg.bistream:
        raise SynthesisError(f"{lm.directory}: --text-stream needs a run trained with --bistream")
    lm_options = dict(sampling=_sampling(args), cfg_scale=1.0 if args.lm_cfg_scale is None else args.lm_cfg_scale)
    if text == "-" and not args.text_stream:
        text = sys.stdin.read()
    source = _text_pieces(text) if args.text_stream else text
    flow_options = dict(steps=steps, cfg_scale=cfg_scale, temperature=temperature)
    written: list[int] = []
    started = time.perf_counter()
    if flow is None or not stream:
        tokens = torch.tensor(list(speech_token_source(lm, source, text_stream=args.text_stream,
                                                       prompt_text=prompt_text, prompt=prompt, seed=seed,
                                                       **lm_options)), dtype=torch.long)
        if tokens.numel() == 0:
            raise SynthesisError("the LM wrote no speech tokens")
        if flow is None:
            return tokens, None, None, None, None
        frames_for(flow, tokens.numel(), TOO_FEW)
        latent = synthesize_tokens(flow, tokens, prompt=None if prompt is None else prompt.latent,
                                   prompt_tokens=None if prompt is None else prompt.tokens, seed=seed,
                                   chunk_frames=chunk_frames or 0, **flow_options)
        audio = wrapper.decode(latent[None])[0] if want_audio else None
        return tokens, flow, latent, audio, wrapper
    if chunk_frames is not None:
        flow_options["chunk_frames"] = chunk_frames
    latents: list[torch.Tensor] = []
    try:
        if not want_audio:
            from tts.two_stage import speak_latents

            latents = list(speak_latents(lm, flow, source, text_stream=args.text_stream, prompt_text=prompt_text,
                                         prompt=prompt, seed=seed, lm_options=lm_options, flow_options=flow_options,
                                         on_token=written.append))
            return torch.tensor(written, dtype=torch.long), flow, torch.cat(latents, dim=1), None, None
        chunks = speak(lm, flow, wrapper, source, text_stream=args.text_stream, prompt_text=prompt_text,
                       prompt=prompt, seed=seed, lm_options=lm_options, flow_options=flow_options,
                       lookahead=lookahead, on_token=written.append, on_latent=latents.append)
        audio, first = gather_audio(chunks, started, lambda: len(written))
    except NoFrameError:
        frames_for(flow, len(written), TOO_FEW)  # the same refusal, said of the LM
        raise
    if first is not None:
        click.echo(f"streaming: first audio after {first[0]:.2f} s, when the LM had written {first[1]} of "
                   f"{len(written)} tokens", err=True)
    return torch.tensor(written, dtype=torch.long), flow, torch.cat(latents, dim=1), audio, wrapper


def save_token_output(path: Path, tokens: torch.Tensor, lm: TTSRun) -> None:
    """The generated tokens as a token file with the run's rate, tokenizer and codebook size."""
    from dcae.corpus import save_tokens

    extra = {"codebook_size": lm.model.cfg.codebook_size}
    if lm.latent_info.get("tokenizer"):
        extra["tokenizer"] = lm.latent_info["tokenizer"]
    save_tokens(path, tokens, lm.token_rate, extra=extra)
