"""``dcae tts``: synthesise latents (or audio) with a trained TTS run folder: text for a one-stage run
(:mod:`tts.one_stage.synthesis`), speech tokens for a token-flow run (:mod:`tts.token_flow.synthesis`),
text -> speech tokens for a token-lm run, and on through a token-flow run with ``--flow``
(:mod:`tts.two_stage`); with ``--list LIST -o DIR`` every line of a test list (:mod:`tts.batch_synthesis`)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from dcae.cli.options import build_wrapper, fail, given_flags, lookahead_option, model_options
from tts.token_flow import DEFAULT_CHUNK_FRAMES

if TYPE_CHECKING:
    from dcae.corpus import LatentMeta
    from tts.two_stage import LMOptions

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
LIST_HELP = ("A test list to synthesise, one 'id|prompt_text|prompt_wav|target_text' line per utterance (Seed-TTS-eval's "
             "format): each line to DIR/<id>.wav with -o DIR (lines already there are skipped; settings in "
             "DIR/synthesis.json, failures in DIR/failed.jsonl). One-stage runs, or a token-lm run with --flow.")
LIST_VOICES = ("prompt", "reference")  # tts.batch_synthesis.VOICES (not imported here: it loads torch)
LIST_VOICE_HELP = ("With --list: 'prompt' continues each line's prompt_wav from its prompt_text (a token-lm run: its "
                   "tokens from --tokenizer); 'reference' reads prompt_wav as a zero-shot speaker reference with no "
                   "transcript (runs trained with --speaker-encoder learnable).")
STREAM_HELP = ("Token-flow runs: generate chunk by chunk (block-causal attention, as for a live token stream) and, "
               "with -o, decode audio while the chunks come; prints when the first audio was ready.")
CHUNK_FRAMES_HELP = (f"Token-flow runs (token-lm runs with --flow): latent frames per chunk (--stream: default "
                     f"{DEFAULT_CHUNK_FRAMES}; without --stream, N > 0 gives the same chunked result offline, default "
                     f"full context).")


def given_lm_options(options: LMOptions) -> list[str]:
    """The token-lm flags set in ``options`` (to refuse them for other run kinds)."""
    return ["--" + f.name.replace("_", "-") for f in fields(options) if getattr(options, f.name) not in (None, False)]


@dataclass(frozen=True)
class _Asked:
    """What a ``dcae tts`` command line asks for, as :data:`APPLIES` reads it."""

    kind: str | None  # the run's: ar, flow, token-flow, token-lm; None before it is loaded (then rules that
    # read it do not refuse: they are checked again once it is)
    flow: bool  # --flow (token-lm runs: on to latents)
    stream: bool
    audio: bool  # -o
    prompt_audio: bool
    speaker_audio: bool = False
    list: bool = False  # --list (a test list into the folder -o)
    list_voice: str = "prompt"


# Where each option takes effect: (parameter names, applies?, where). A given option that does not
# apply is refused in one line (exit 2) rather than silently ignored.
APPLIES: list[tuple[tuple[str, ...], Callable[[_Asked], bool], str]] = [
    (("text", "tokens_file", "frames", "prompt_latent", "prompt_text", "prompt_tokens", "prompt_audio", "out_latent",
      "out_tokens", "stream", "text_stream", "speaker_audio", "speaker_latent", "speaker_embedding"),
     lambda a: not a.list,
     "without --list only: the test list gives each line's text and voice (--list-voice prompt|reference)"),
    (("list_voice",), lambda a: a.list, "with --list only"),
    (("lookahead",), lambda a: a.stream and a.audio,
     "to --stream with -o only (the streaming decoder's lookahead; the offline decode is exact)"),
    (("chunk_frames",), lambda a: a.kind in (None, "token-flow") or (a.kind == "token-lm" and a.flow),
     "to token-flow runs (token-lm runs: with --flow) only: the token-flow model's chunks"),
    (("steps", "cfg_scale", "temperature"), lambda a: a.kind != "token-lm" or a.flow,
     "to a token-lm run with --flow only: they set the flow model's sampler (the LM's: --lm-temperature, "
     "--lm-cfg-scale, --top-k, --top-p)"),
    (("tokenizer_spec",),
     lambda a: a.prompt_audio or (a.list and a.list_voice == "prompt" and a.kind in (None, "token-lm")),
     "with --prompt-audio only (or --list with a token-lm run and --list-voice prompt): it makes the prompt "
     "audio's tokens"),
    (("ae_model", "ae_config", "vocoder", "precision"), lambda a: a.audio or a.prompt_audio or a.speaker_audio,
     "with -o (or --prompt-audio, --speaker-audio) only: they load the DC-AE"),
    (("speaker_audio", "speaker_latent"), lambda a: a.kind in (None, "token-flow", "token-lm"),
     "to token-flow and token-lm runs (or a token-lm run's --flow) trained with --speaker-encoder learnable only"),
    (("speaker_embedding",), lambda a: a.kind in (None, "token-flow", "token-lm"),
     "to token-flow and token-lm runs (or a token-lm run's --flow) trained with --speaker-dim only"),
]


def refuse_inapplicable(ctx: click.Context, asked: _Asked) -> None:
    """End the command with one line for the first given option of :data:`APPLIES` that does not apply."""
    for names, applies, where in APPLIES:
        given = given_flags(ctx, names)
        if given and not applies(asked):
            fail(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} {where}")


def _latent_meta(info: dict, frames: int) -> LatentMeta:
    from dcae.corpus import LatentMeta

    return LatentMeta(sample_rate=int(info["sample_rate"]), hop_length=int(info["hop_length"]),
                      frame_rate=float(info["frame_rate"]),
                      num_samples=round(frames * float(info["sample_rate"]) / float(info["frame_rate"])),
                      model=str(info.get("model", "")))


@click.command("tts")
@click.option("--checkpoint", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="TTS run folder written by python -m tts.train (newest checkpoint is used).")
@click.option("--step", type=int, default=None, help="Use the checkpoint of this step instead of the newest.")
@click.option("--text", default=None, help="Text to speak (text runs: ar, flow).")
@click.option("--list", "test_list", type=click.Path(dir_okay=False, path_type=Path), default=None, help=LIST_HELP)
@click.option("--list-voice", type=click.Choice(LIST_VOICES), default="prompt", show_default=True, help=LIST_VOICE_HELP)
@click.option("--tokens", "tokens_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Speech-token file to speak (token-flow runs): the latent gets "
                   "round(num_tokens / token_rate * frame_rate) frames.")
@click.option("--frames", type=int, default=None,
              help="Number of latent frames to make (default: AR stops by itself; flow uses its duration rule).")
@click.option("--prompt-latent", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Latent file (.safetensors from dcae encode/export) whose voice to continue.")
@click.option("--prompt-text", default=None, help="Transcript of --prompt-latent (text runs: needed with it).")
@click.option("--prompt-tokens", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Speech-token file of --prompt-latent's audio (token-flow runs: needed with it).")
@click.option("--out-tokens", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=LM_OPTIONS_HELP["out_tokens"])
@click.option("--flow", "flow_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=LM_OPTIONS_HELP["flow"])
@click.option("--prompt-audio", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=LM_OPTIONS_HELP["prompt_audio"])
@click.option("--tokenizer", "tokenizer_spec", default=None, help=LM_OPTIONS_HELP["tokenizer"])
@click.option("--speaker-audio", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Zero-shot voice with no transcript: audio of the speaker (its DC-AE latent), read by the learnable "
                   "speaker encoder of the token-flow and/or token-lm run trained with --speaker-encoder learnable.")
@click.option("--speaker-latent", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The same from a latent file (.safetensors from dcae encode/export).")
@click.option("--speaker-embedding", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A fixed speaker embedding (a dcae speakers file: speakers/by_speaker/NAME.safetensors, or one "
                   "row's) for token-flow / token-lm runs trained with --speaker-dim.")
@click.option("--text-stream", is_flag=True, help=LM_OPTIONS_HELP["text_stream"])
@click.option("--top-k", type=int, default=None, help=LM_OPTIONS_HELP["top_k"] + " [default: 25]")
@click.option("--top-p", type=float, default=None, help=LM_OPTIONS_HELP["top_p"] + " [default: 0.8]")
@click.option("--lm-temperature", type=float, default=None, help=LM_OPTIONS_HELP["lm_temperature"] + " [default: 1]")
@click.option("--lm-cfg-scale", type=float, default=None, help=LM_OPTIONS_HELP["lm_cfg_scale"])
@click.option("--stream", is_flag=True, help=STREAM_HELP)
@click.option("--chunk-frames", type=int, default=None, help=CHUNK_FRAMES_HELP)
@lookahead_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=int, default=None, help="Flow steps (default: 10 for AR frames, 32 for the flow model, 10 for token-flow).")
@click.option("--cfg-scale", type=float, default=None, help="Classifier-free guidance (1: none; default 1.5 AR, 2.0 flow, 1.5 token-flow).")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Scale of the starting noise.")
@click.option("--max-frames", type=int, default=None,
              help="At most this many frames (AR: stops earlier by itself; flow: caps its duration rule).")
@click.option("--out-latent", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the latent (80, frames) here (.safetensors).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write audio here, in the format its extension names (.wav, .flac, .mp3, .ogg ...); "
                   "decodes with --ae-model/--ae-config/--vocoder (a warning if the run's latents were "
                   "made by other AE weights). With --list: the folder for the list's audio.")
@model_options
@click.pass_context
def tts_command(ctx: click.Context, run_dir: Path, step: int | None, text: str | None, test_list: Path | None,
                list_voice: str, tokens_file: Path | None,
                frames: int | None, prompt_latent: Path | None, prompt_text: str | None, prompt_tokens: Path | None,
                out_tokens: Path | None, flow_dir: Path | None, prompt_audio: Path | None, tokenizer_spec: str | None,
                speaker_audio: Path | None, speaker_latent: Path | None, speaker_embedding: Path | None, text_stream: bool, top_k: int | None, top_p: float | None, lm_temperature: float | None,
                lm_cfg_scale: float | None, stream: bool,
                chunk_frames: int | None, lookahead: int | None, seed: int, steps: int | None,
                cfg_scale: float | None, temperature: float, max_frames: int | None, out_latent: Path | None,
                output: Path | None, ae_model: str | None, ae_config: str | None, vocoder: str | None,
                device: str | None, precision: str) -> None:
    """Synthesize latents or audio with a trained TTS run: --text for text runs (ar, flow), --tokens
    for token-flow runs (add --stream to generate and decode chunk by chunk), --text for token-lm runs
    (--out-tokens; with --flow FLOW_RUN on to --out-latent / -o, --stream through every stage).
    --list LIST -o DIR: every line of a test list to DIR/<id>.wav."""

    from tts.two_stage import LMOptions

    lm_args = LMOptions(out_tokens, flow_dir, prompt_audio, tokenizer_spec, text_stream, top_k, top_p, lm_temperature,
                        lm_cfg_scale)
    if test_list is not None:
        _synthesise_list(ctx, run_dir, step, test_list, list_voice, output, lm_args, seed=seed, steps=steps,
                         cfg_scale=cfg_scale, temperature=temperature, max_frames=max_frames,
                         chunk_frames=chunk_frames, ae_model=ae_model, ae_config=ae_config, vocoder=vocoder,
                         device=device, precision=precision)
        return

    from dcae.audio import AudioError, check_output_suffix
    from dcae.corpus import LatentFileError, ManifestError, load_latent
    from dcae.corpus.speaker_file import load_speaker_embedding
    from tts.one_stage.synthesis import stream_frames, stream_to_audio, synthesize
    from tts.speakers.reference import reference_from_audio
    from tts.synthesis import SynthesisError
    from tts.token_flow.synthesis import speak_token_file
    from tts.token_lm.synthesis import save_token_output
    from tts.two_stage import speak_text

    if out_latent is None and output is None and out_tokens is None:
        fail("give --out-latent F.safetensors and/or -o out.wav (--out-tokens F.safetensors for a token-lm run)")
    if out_tokens is not None and out_tokens.suffix.lower() != ".safetensors":
        fail(f"{out_tokens}: token files are .safetensors")
    if frames is not None and frames < 1:
        fail("--frames must be at least 1")
    if max_frames is not None and (max_frames < 1 or (frames is not None and frames > max_frames)):
        fail(f"--max-frames must be at least 1 and at least --frames (got {max_frames})")
    if out_latent is not None and out_latent.suffix.lower() != ".safetensors":
        fail(f"{out_latent}: latent files are .safetensors")
    if output is not None and output.is_dir():
        fail(f"-o {output}: a folder; give an audio file name (out.wav), or --list LIST to fill a folder")
    if output is not None:
        try:
            check_output_suffix(output)
        except AudioError as e:
            fail(str(e))
    run, tts_device = _load_run(run_dir, device, step)
    refuse_inapplicable(ctx, _Asked(run.kind, flow=flow_dir is not None, stream=stream, audio=output is not None,
                                    prompt_audio=prompt_audio is not None, speaker_audio=speaker_audio is not None))
    if speaker_audio is not None and speaker_latent is not None:
        fail("give --speaker-audio or --speaker-latent, not both")
    reference = embedding = None
    if speaker_latent is not None:
        try:
            reference, _ = load_latent(speaker_latent)
        except LatentFileError as e:
            fail(f"--speaker-latent: {e}")
    if speaker_embedding is not None:
        try:
            embedding = load_speaker_embedding(speaker_embedding)
        except ManifestError as e:
            fail(f"--speaker-embedding: {e}")
    if chunk_frames is not None and chunk_frames < (1 if stream else 0):
        fail(f"--chunk-frames must be at least {1 if stream else 0}{' with --stream' if stream else ''}, "
             f"got {chunk_frames}")
    if run.kind == "token-lm":
        prompt = None
        try:
            if prompt_latent is not None:
                prompt, _ = load_latent(prompt_latent)
            speech = speak_text(
                run, lm_args, text=text, prompt_text=prompt_text, prompt_latent=prompt, prompt_tokens_file=prompt_tokens,
                tokens_file=tokens_file, want_latent=out_latent is not None, want_audio=output is not None,
                stream=stream, chunk_frames=chunk_frames, lookahead=lookahead, seed=seed, steps=steps,
                cfg_scale=cfg_scale, temperature=temperature, frames=frames, max_frames=max_frames, device=tts_device,
                make_wrapper=lambda flow: _audio_wrapper(flow, flow.directory, ae_model, ae_config, vocoder, device,
                                                         precision), speaker_audio=speaker_audio, speaker_latent=reference,
                speaker_embedding=embedding)
        except (SynthesisError, LatentFileError) as e:
            fail(str(e))
        tokens, flow = speech.tokens, speech.flow
        if speech.first_audio is not None:
            click.echo(f"streaming: first audio after {speech.first_audio[0]:.2f} s, when the LM had written "
                       f"{speech.first_audio[1]} of {tokens.numel()} tokens", err=True)
        if out_tokens is not None:
            save_token_output(out_tokens, tokens, run)
        _write_outputs(flow, speech.latent, speech.audio, speech.wrapper, out_latent, output)
        seconds = tokens.numel() / run.token_rate
        click.echo(f"{tokens.numel()} speech tokens ({seconds:.2f} s) from token-lm run step {run.step}"
                   + ("" if flow is None else
                      f", {speech.latent.shape[1]} latent frames from token-flow run step {flow.step}"), err=True)
        return
    if given_lm_options(lm_args):
        fail(f"{', '.join(given_lm_options(lm_args))}: for token-lm runs (this is a {run.kind} run)")
    if run.takes_text and (text is None or tokens_file is not None or prompt_tokens is not None or stream):
        fail(f"{run_dir}: a {run.kind} run speaks --text (not --tokens, --prompt-tokens or --stream)")
    if not run.takes_text and (tokens_file is None or text is not None or prompt_text is not None):
        fail(f"{run_dir}: a {run.kind} run speaks --tokens F.safetensors (not --text or --prompt-text)")
    prompt = None
    if prompt_latent is not None:
        try:
            prompt, _ = load_latent(prompt_latent)
        except LatentFileError as e:
            fail(str(e))
    args = dict(prompt=prompt, prompt_text=prompt_text, frames=frames, seed=seed, steps=steps,
                temperature=temperature, cfg_scale=cfg_scale, max_frames=max_frames)
    if (speaker_audio is not None or reference is not None) and getattr(run.model, "speaker_encoder", None) is None:
        fail(f"{run_dir}: --speaker-audio/--speaker-latent need a run trained with --speaker-encoder learnable")
    if speaker_audio is not None and not speaker_audio.is_file():
        fail(f"--speaker-audio {speaker_audio}: file not found")
    if embedding is not None and (getattr(run.model, "speaker_encoder", None) is not None
                                  or not getattr(run.model, "speaker_size", 0)):
        fail(f"{run_dir}: --speaker-embedding needs a run trained with --speaker-dim (a fixed speaker embedding)")
    wrapper = None
    if output is not None or speaker_audio is not None:
        wrapper = _audio_wrapper(run, run_dir, ae_model, ae_config, vocoder, device, precision)
    try:
        if speaker_audio is not None:
            reference = reference_from_audio(wrapper, speaker_audio)
        if output is None:
            wrapper = None  # it only read the speaker's audio
        if not run.takes_text:
            speech = speak_token_file(run, wrapper, tokens_file, prompt, prompt_tokens, frames=frames,
                                      max_frames=max_frames, stream=stream, chunk_frames=chunk_frames,
                                      lookahead=lookahead, seed=seed, steps=steps, cfg_scale=cfg_scale,
                                      temperature=temperature, speaker_reference=reference, speaker=embedding)
            latent, audio = speech.latent, speech.audio
            if speech.first_audio is not None:
                click.echo(f"streaming: first audio after {speech.first_audio[0]:.2f} s, with {speech.first_audio[1]} "
                           f"of {speech.tokens} tokens read", err=True)
        elif wrapper is not None and run.kind == "ar":
            latent, audio = stream_to_audio(wrapper, stream_frames(run, text, **args))
        else:
            latent = synthesize(run, text, **args).cpu()
            audio = wrapper.decode(latent[None])[0] if wrapper is not None else None
    except SynthesisError as e:
        fail(str(e))
    _write_outputs(run, latent, audio, wrapper, out_latent, output)
    seconds = latent.shape[1] / float(run.latent_info["frame_rate"])
    click.echo(f"{latent.shape[1]} latent frames ({seconds:.2f} s) from {run.kind} run step {run.step}", err=True)


def _synthesise_list(ctx: click.Context, run_dir: Path, step: int | None, test_list: Path, voice: str,
                     output: Path | None, lm_args: LMOptions, *, seed: int, steps: int | None, cfg_scale: float | None,
                     temperature: float, max_frames: int | None, chunk_frames: int | None, ae_model, ae_config,
                     vocoder, device, precision) -> None:
    """``--list LIST -o DIR``: usage refused before any model is loaded, then :mod:`tts.batch_synthesis`."""

    from dcae.corpus.test_list import TestListError, read_test_list
    from tts.batch_synthesis import ListSettings, open_list_synthesis, recorded_path, synthesise_list
    from tts.synthesis import SynthesisError

    if output is None:
        fail("--list needs -o DIR: the folder for <id>.wav, synthesis.json and failed.jsonl")
    if output.exists() and not output.is_dir():
        fail(f"-o {output}: with --list, -o is a folder, and this is a file")
    if output.suffix and not output.is_dir():
        fail(f"-o {output}: with --list, -o is a folder (for <id>.wav files), not a file name ending in {output.suffix}")
    asked = dict(flow=lm_args.flow is not None, stream=False, audio=True, prompt_audio=False, list=True,
                 list_voice=voice)
    refuse_inapplicable(ctx, _Asked(None, **asked))
    if max_frames is not None and max_frames < 1:
        fail(f"--max-frames must be at least 1 (got {max_frames})")
    if chunk_frames is not None and chunk_frames < 0:
        fail(f"--chunk-frames must be at least 0, got {chunk_frames}")
    try:
        lines, bad = read_test_list(test_list)
    except TestListError as e:
        fail(str(e))
    run, tts_device = _load_run(run_dir, device, step)
    refuse_inapplicable(ctx, _Asked(run.kind, **asked))
    if run.kind != "token-lm" and given_lm_options(lm_args):
        fail(f"{', '.join(given_lm_options(lm_args))}: for token-lm runs (this is a {run.kind} run)")
    settings = ListSettings(voice=voice, seed=seed, steps=steps, cfg_scale=cfg_scale, temperature=temperature,
                            max_frames=max_frames, chunk_frames=chunk_frames, precision=precision,
                            decoder={"ae_model": recorded_path(ae_model), "ae_config": recorded_path(ae_config),
                                     "vocoder": recorded_path(vocoder)})
    try:
        synth = open_list_synthesis(run, lm_args, settings, tts_device, lambda decoding: _audio_wrapper(
            decoding, decoding.directory, ae_model, ae_config, vocoder, device, precision))
        summary = synthesise_list(synth, test_list, lines, bad, output)
    except SynthesisError as e:
        fail(str(e))
    click.echo(summary.line(), err=True)
    if summary.failed:
        sys.exit(1)


def _load_run(run_dir: Path, device: str | None, step: int | None):
    """The run (one-line error otherwise) and the device it was loaded on (default: CUDA when there is one)."""
    import torch

    from tts.run import RunError, load_run

    tts_device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return load_run(run_dir, tts_device, step), tts_device
    except RunError as e:
        fail(str(e))


def _audio_wrapper(run, run_dir: Path, ae_model, ae_config, vocoder, device, precision):
    """The DC-AE decoder + vocoder for a run's latents (one-line errors; a warning for other AE weights)."""
    from dcae.corpus import other_autoencoder_warning, weights_hash

    wrapper = build_wrapper(ae_model, ae_config, vocoder, device, precision)
    if wrapper.latent_dim != run.stats.dim:
        fail(f"{run_dir}: the run makes {run.stats.dim}-d latents but the autoencoder takes {wrapper.latent_dim}-d")
    warning = other_autoencoder_warning(f"{run_dir} (its training latents)", str(run.latent_info.get("model", "")),
                                        wrapper.ae_model_path, weights_hash(wrapper.ae_model_path))
    if warning:
        click.echo(warning, err=True)
    return wrapper


def _write_outputs(run, latent, audio, wrapper, out_latent: Path | None, output: Path | None) -> None:
    from dcae.audio import save_audio
    from dcae.corpus import save_latent

    if out_latent is not None:
        save_latent(out_latent, latent, _latent_meta(run.latent_info, latent.shape[1]))
    if output is not None:
        save_audio(output, audio, wrapper.sample_rate)
