"""Batch synthesis of a TTS test list (``id|prompt_text|prompt_wav|target_text`` lines, Seed-TTS-eval's
format, :mod:`dcae.corpus.test_list`): what ``dcae tts --checkpoint RUN [--flow RUN] --list LIST -o DIR``
runs. The runs, the DC-AE decoder + vocoder and the prompt tokenizer are loaded once; every line
becomes ``DIR/<id>.wav`` (22.05 kHz)::

    synth = open_list_synthesis(run, LMOptions(flow=flow_dir, tokenizer=fsq_dir), ListSettings(seed=0),
                                device, make_wrapper)
    lines, bad = read_test_list("test.lst")
    summary = synthesise_list(synth, "test.lst", lines, bad, "out/")

Two voices (``ListSettings.voice``):

- ``prompt``: the line's prompt audio and its transcript are a voice prompt to continue. One-stage runs
  (``ar``, ``flow``) take its DC-AE latent; a token-lm run + token-flow run take its speech tokens
  (the runs' tokenizer) and latent (:func:`tts.two_stage.prompt_from_audio`).
- ``reference``: the prompt audio is a zero-shot speaker reference with no transcript, read by the
  learnable speaker encoder of the token-lm and/or token-flow run (``--speaker-encoder learnable``).

Resumable and deterministic: a line whose ``DIR/<id>.wav`` exists is skipped (audio is written
atomically, so an existing file is complete), and each line's seed comes from the run's seed and the
line's id (:func:`line_seed`), not its position, so a resumed run makes the same audio as an
uninterrupted one. ``DIR/synthesis.json`` records the settings; another run into the folder with other
settings is refused. Lines that cannot be used (the list's bad lines, unreadable or silent prompt audio,
too few speech tokens ...) are reported one line each, listed in ``DIR/failed.jsonl``, and the others go on.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from dcae.atomic import atomic_write_text
from dcae.audio import AudioError, load_checked_audio, save_audio
from dcae.corpus.job import JobError, record_settings
from dcae.corpus.test_list import BadLine, TestLine
from dcae.progress import progress_bar
from tts.one_stage.synthesis import synthesize
from tts.run import RunError, TTSRun, load_run
from tts.speakers.reference import reference_from_audio
from tts.synthesis import DEFAULT_CFG, DEFAULT_STEPS, SynthesisError
from tts.two_stage import (
    LMOptions,
    check_pair,
    lm_generation_options,
    prompt_from_audio,
    prompt_tokenizer,
    speak_offline,
    tokenizer_spec,
)

VOICES = ("prompt", "reference")
SETTINGS_FILE = "synthesis.json"
FAILED_FILE = "failed.jsonl"
Log = Callable[[str], None]


def line_seed(seed: int, utt_id: str) -> int:
    """The seed of the line ``utt_id`` in a run with ``seed``: the same wherever the line is in the list
    and whichever lines were made before it (31 bits of SHA-256 of both)."""
    digest = hashlib.sha256(f"{seed}\0{utt_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class ListSettings:
    """How every line is made: the voice mode, the base seed, the flow sampler (one-stage run, or the
    token-flow run after a token LM), and what decodes the audio (``decoder``: recorded as given, e.g.
    the AE weights, config and vocoder, each through :func:`recorded_path`, and the precision)."""

    voice: str = "prompt"
    seed: int = 0
    steps: int | None = None
    cfg_scale: float | None = None
    temperature: float = 1.0
    max_frames: int | None = None  # one-stage runs: a cap on each line's frames
    chunk_frames: int | None = None  # token-flow: block-causal chunks (None/0: full context)
    decoder: dict[str, Any] = field(default_factory=dict)  # e.g. {"ae_model": recorded_path(...), ...}
    precision: str = "fp32"


@dataclass
class ListSummary:
    """What :func:`synthesise_list` did: lines synthesised now, skipped (already there), failed."""

    synthesised: int
    skipped: int
    failed: int
    out_dir: Path

    def line(self) -> str:
        return (f"{self.synthesised} line{'' if self.synthesised == 1 else 's'} synthesised, {self.skipped} skipped "
                f"(already there), {self.failed} failed -> {self.out_dir}")


class ListSynthesis:
    """A run (or token-lm + token-flow pair) ready to speak test lines; the decoder and the prompt
    tokenizer are loaded on first use (:meth:`load`), once. Made by :func:`open_list_synthesis`."""

    def __init__(self, run: TTSRun, flow: TTSRun | None, settings: ListSettings, lm_args: LMOptions,
                 tokenizer_spec: str | None, make_wrapper: Callable[[TTSRun], Any]):
        self.run, self.flow, self.settings, self.lm_args = run, flow, settings, lm_args
        self.tokenizer_spec = tokenizer_spec
        self._make_wrapper = make_wrapper
        self.wrapper = self.tokenizer = None

    @property
    def decoding_run(self) -> TTSRun:
        """The run whose latents the decoder turns into audio."""
        return self.run if self.flow is None else self.flow

    def record(self) -> dict[str, Any]:
        """The settings written to ``DIR/synthesis.json``: a rerun into the folder must match them."""
        s, run, flow = self.settings, self.run, self.flow
        sampler = flow.kind if flow is not None else run.kind
        out = {"checkpoint": str(run.directory.resolve()), "step": run.step,
               "flow": None if flow is None else str(flow.directory.resolve()),
               "flow_step": None if flow is None else flow.step,
               "list_voice": s.voice, "seed": s.seed,
               "steps": s.steps or DEFAULT_STEPS[sampler],
               "cfg_scale": DEFAULT_CFG[sampler] if s.cfg_scale is None else s.cfg_scale,
               "temperature": s.temperature, "max_frames": s.max_frames, "chunk_frames": s.chunk_frames or 0,
               "tokenizer": None if self.tokenizer_spec is None else recorded_path(self.tokenizer_spec)}
        if flow is not None:
            out["lm_sampling"] = asdict(lm_generation_options(self.lm_args, run)["sampling"])
            out["lm_cfg_scale"] = 1.0 if self.lm_args.lm_cfg_scale is None else self.lm_args.lm_cfg_scale
        out["decoder"] = dict(s.decoder)
        out["precision"] = s.precision
        return out

    def load(self) -> None:
        """The DC-AE decoder + vocoder and (prompt voice after a token LM) the tokenizer, once."""
        if self.wrapper is None:
            self.wrapper = self._make_wrapper(self.decoding_run)
        if self.tokenizer is None and self.tokenizer_spec is not None:
            self.tokenizer = prompt_tokenizer(self.tokenizer_spec, self.run)

    def speak(self, line: TestLine) -> torch.Tensor:
        """The audio (samples,) at the decoder's rate for one line. Raises :class:`SynthesisError` (one line)."""
        self.load()
        seed, s = line_seed(self.settings.seed, line.id), self.settings
        if s.voice == "prompt" and not line.prompt_text:
            raise SynthesisError("empty prompt_text: the prompt voice continues the prompt audio from its "
                                 "transcript (--list-voice reference needs none)")
        if self.flow is None:
            latent = reference_from_audio(self.wrapper, line.prompt_wav, what="prompt audio")
            new = synthesize(self.run, line.target_text, prompt=latent, prompt_text=line.prompt_text, seed=seed,
                             steps=s.steps, temperature=s.temperature, cfg_scale=s.cfg_scale,
                             max_frames=s.max_frames).cpu()
            if new.shape[1] == 0:
                raise SynthesisError("the model stopped before making any frame")
            return self.wrapper.decode(new[None])[0]
        flow_options = dict(steps=s.steps, cfg_scale=s.cfg_scale, temperature=s.temperature)
        if s.voice == "reference":
            reference = reference_from_audio(self.wrapper, line.prompt_wav, what="prompt audio")
            lm_options = lm_generation_options(self.lm_args, self.run, speaker_reference=reference)
            if self.flow.model.speaker_encoder is not None:
                flow_options["speaker_reference"] = reference
            speech = speak_offline(self.run, self.flow, self.wrapper, line.target_text, seed=seed,
                                   lm_options=lm_options, flow_options=flow_options, chunk_frames=s.chunk_frames)
        else:
            try:
                audio = load_checked_audio(line.prompt_wav, self.tokenizer.sample_rate)
            except AudioError as e:
                raise SynthesisError(f"prompt audio: {e}") from None
            prompt = prompt_from_audio(self.wrapper, self.tokenizer, audio, self.tokenizer.sample_rate)
            if prompt.latent.shape[-1] == 0 or prompt.tokens.numel() == 0:
                raise SynthesisError(f"prompt audio {line.prompt_wav}: too short for one latent frame "
                                     f"({1 / self.wrapper.frame_rate:.2f} s)")
            speech = speak_offline(self.run, self.flow, self.wrapper, line.target_text, prompt=prompt,
                                   prompt_text=line.prompt_text, seed=seed,
                                   lm_options=lm_generation_options(self.lm_args, self.run),
                                   flow_options=flow_options, chunk_frames=s.chunk_frames)
        return speech.audio


def recorded_path(value: str | Path | None) -> str | None:
    """A file or folder as its absolute path (a rerun from another folder compares equal), anything else
    (a hub id, None: the default) as given."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else str(value)


def open_list_synthesis(run: TTSRun, lm_args: LMOptions, settings: ListSettings, device: torch.device | str,
                        make_wrapper: Callable[[TTSRun], Any]) -> ListSynthesis:
    """Check that ``run`` (and ``lm_args.flow`` after a token-lm run, loaded here) can speak a test list in
    ``settings.voice``; ``make_wrapper(run)`` gives the decoder when the first line is made. Raises
    :class:`SynthesisError` (one line) before loading the decoder."""
    if settings.voice not in VOICES:
        raise SynthesisError(f"--list-voice {settings.voice}: not one of {', '.join(VOICES)}")
    where = run.directory
    if run.kind == "token-flow":
        raise SynthesisError(f"{where}: a token-flow run speaks speech tokens, not a test list's text: give a "
                             f"token-lm run as --checkpoint and this one as --flow")
    flow = spec = None
    if run.kind == "token-lm":
        if lm_args.flow is None:
            raise SynthesisError(f"{where}: --list makes audio: give --flow FLOW_RUN (a token-flow run) after a "
                                 f"token-lm run")
        if settings.max_frames is not None:
            raise SynthesisError("--max-frames does not apply to a token-lm run: the LM decides the length")
        if lm_args.text_stream:
            raise SynthesisError("--text-stream does not apply to --list (each line's text is whole)")
        if settings.voice == "prompt":
            spec = tokenizer_spec(lm_args, run, what="--list-voice prompt")  # before loading any model
        try:
            flow = load_run(lm_args.flow, device)
        except RunError as e:
            raise SynthesisError(str(e)) from None
        check_pair(run, flow)
        if settings.voice == "reference" and run.model.speaker_encoder is None and flow.model.speaker_encoder is None:
            raise SynthesisError(f"{where}, {flow.directory}: --list-voice reference needs a token-lm or token-flow run "
                                 f"trained with --speaker-encoder learnable (neither was; --list-voice prompt "
                                 f"continues the prompt instead)")
    elif settings.voice == "reference":
        raise SynthesisError(f"{where}: --list-voice reference needs a run trained with --speaker-encoder learnable "
                             f"(a token-lm and/or token-flow run; a {run.kind} run has no speaker encoder): use "
                             f"--list-voice prompt")
    return ListSynthesis(run, flow, settings, lm_args, spec, make_wrapper)


def _default_log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def synthesise_list(synth: ListSynthesis, list_path: str | Path, lines: list[TestLine], bad: list[BadLine],
                    out_dir: str | Path, log: Log | None = None) -> ListSummary:
    """Every line of a test list (read with :func:`dcae.corpus.test_list.read_test_list`) to
    ``out_dir/<id>.wav``: lines already there are skipped, each failure (``bad`` and the lines that
    fail now) is logged as ``error: LIST:LINE (id): reason`` and written to ``out_dir/failed.jsonl``.
    Raises :class:`SynthesisError` (one line, nothing made) when ``out_dir`` holds audio made with other
    settings, or audio without ``synthesis.json``."""
    log = log or _default_log
    list_path, out_dir = Path(list_path), Path(out_dir)
    settings_file = out_dir / SETTINGS_FILE
    made_before = [line for line in lines if (out_dir / line.output_name).exists()]
    if made_before and not settings_file.is_file():
        raise SynthesisError(f"{out_dir} holds {made_before[0].output_name} but no {SETTINGS_FILE} (audio made "
                             f"otherwise): use another -o folder, or remove its audio")
    settings = synth.record()
    try:
        record_settings(settings_file, settings, True, lambda previous, changed: (
            f"{out_dir} holds audio made with other settings ("
            + "; ".join(f"{k}: {previous.get(k)!r}, now {settings.get(k)!r}" for k in changed)
            + f"): use another -o folder, or remove {out_dir} to remake it"))
    except JobError as e:
        raise SynthesisError(str(e)) from None
    failures = [(b.lineno, b.id, b.reason) for b in bad]
    for lineno, utt, reason in failures:
        log(f"error: {BadLine(lineno, utt, reason).describe(list_path)}")
    there = {line.id for line in made_before}
    pending = [line for line in lines if line.id not in there]
    made = 0
    bar = progress_bar(pending, unit="line", desc="tts", dynamic_ncols=True)
    for line in bar:
        try:
            audio = synth.speak(line)
            save_audio(out_dir / line.output_name, audio, synth.wrapper.sample_rate)
        except (SynthesisError, AudioError) as e:
            failures.append((line.lineno, line.id, str(e)))
            log(f"error: {BadLine(line.lineno, line.id, str(e)).describe(list_path)}")
            continue
        made += 1
    bar.close()
    failed_file = out_dir / FAILED_FILE
    if failures:
        failures.sort()
        atomic_write_text(failed_file, "".join(json.dumps({"line": n, "id": utt, "reason": reason}) + "\n"
                                               for n, utt, reason in failures))
    else:
        failed_file.unlink(missing_ok=True)
    return ListSummary(made, len(made_before), len(failures), out_dir)
