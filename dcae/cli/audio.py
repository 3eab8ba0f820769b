"""``dcae reconstruct`` / ``encode`` / ``decode``: audio <-> 5.4 Hz latents <-> audio, for files or folders
(also ``python inference.py reconstruct|encode|decode ...``). The work is :class:`dcae.pipeline.DCAEInferenceWrapper`'s.

Every input is checked before any model is looked up or loaded: missing files, broken links and
files whose header cannot be read are named one line each up front (a single input file is decoded
and checked whole first: unreadable, empty, silent, NaN); the rest is processed.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from dcae.cli.options import build_wrapper, fail, model_options
from dcae.corpus.defaults import LATENT_EXTENSION
from dcae.paths import AUDIO_EXTENSIONS


def _one_line(error: Exception, src: Path) -> str:
    text = str(error).strip()
    return text if text.startswith(str(src)) else f"{src}: {text.splitlines()[0] if text else type(error).__name__}"


def prepare_jobs(inputs: Sequence[str], output: str, extensions: Sequence[str], out_suffix: str,
                 check: Callable[[Path, bool], Any] | None = None
                 ) -> tuple[list[tuple[Path, Path]], int, dict[Path, Any]]:
    """The jobs of a command, checked before any model is looked up or loaded: an explicit output file
    must have a writable format, no two inputs may write one output (exit 2, nothing written); missing
    inputs, broken links and inputs ``check(src, whole)`` refuses are reported (one line each) and left
    out (``whole``: the run has one input, which may be read whole and kept). Returns (jobs left,
    number refused, what ``check`` returned for each input, when not None); exits 1 when no input is
    left."""
    from dcae.audio import AudioError, check_output_suffix
    from dcae.paths import collect_jobs, colliding_outputs, missing_reason

    jobs = collect_jobs(inputs, output, set(extensions), out_suffix)
    if len(jobs) == 1 and jobs[0][1] == Path(output):  # one explicit output file
        if out_suffix == LATENT_EXTENSION and Path(output).suffix.lower() != LATENT_EXTENSION:
            fail(f"{output}: latent files are .safetensors (give -o NAME.safetensors or a folder)")
        if out_suffix != LATENT_EXTENSION:
            try:
                check_output_suffix(output)
            except AudioError as e:
                fail(str(e))
    clashes = colliding_outputs(jobs)
    if clashes:
        first, second, dst = clashes[0]
        more = f" (and {len(clashes) - 1} more such pairs)" if len(clashes) > 1 else ""
        fail(f"{first} and {second} would both write {dst}{more}; rename one, or run them into different -o folders")
    present, checked = [], {}
    for src, dst in jobs:
        if not src.is_file():
            click.echo(f"error: {src}: {missing_reason(src)}", err=True)
        elif check is not None:
            try:
                kept = check(src, len(jobs) == 1)
                if kept is not None:
                    checked[src] = kept
                present.append((src, dst))
            except (AudioError, ValueError) as e:
                click.echo(f"error: {_one_line(e, src)}", err=True)
        else:
            present.append((src, dst))
    if not present:
        if not jobs:
            click.echo("error: no input files found", err=True)
        sys.exit(1)
    return present, len(jobs) - len(present), checked


def audio_check(sample_rate: int) -> Callable[[Path, bool], Any]:
    """What :func:`prepare_jobs` checks of an audio input: a single input is decoded and checked whole
    (and kept, so it is decoded once); in a run of several every file's header is read (a file that
    decodes but is silent or NaN is found when it is processed, one line too)."""
    from dcae.audio import audio_info, load_checked_audio

    def check(src: Path, whole: bool):
        if whole:
            return load_checked_audio(src, sample_rate), sample_rate
        audio_info(src)
        return None

    return check


def run_jobs(jobs: list[tuple[Path, Path]], force: bool, process, what: str, failed: int = 0) -> None:
    """Apply ``process(src, dst)`` to every job with a progress bar; one line per failure, written above
    the bar; exit 1 if any (``failed``: failures already reported, such as missing inputs)."""
    from tqdm import tqdm

    from dcae.audio import AudioError
    from dcae.corpus.latent_file import LatentFileError
    from dcae.progress import progress_bar

    skipped, already_failed = 0, failed
    for src, dst in progress_bar(jobs, desc=what, unit="file", disable=len(jobs) < 2):
        if dst.exists() and not force:
            skipped += 1
            continue
        try:
            process(src, dst)
        except (AudioError, LatentFileError, ValueError, RuntimeError) as e:
            failed += 1
            tqdm.write(f"error: {_one_line(e, src)}", file=sys.stderr)
    done = len(jobs) - skipped - (failed - already_failed)
    click.echo(f"{what}: {done} written, {skipped} skipped (exist; -f to overwrite), {failed} failed", err=True)
    if failed:
        sys.exit(1)


common_io = [
    click.argument("inputs", nargs=-1, required=True, metavar="IN..."),
    click.option("-o", "--output", required=True, metavar="OUT",
                 help="Output file (one input; its extension picks the format) or folder."),
    click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs (default: skip them)."),
]


def with_io(f):
    for decorator in reversed(common_io):
        f = decorator(f)
    return model_options(f)


def _checked_audio(checked: dict[Path, Any], src: Path, sample_rate: int):
    from dcae.audio import load_checked_audio

    decoded = checked.pop(src, None)  # (audio, rate) when the inputs were checked by decoding (a single file)
    if decoded is not None and decoded[1] == sample_rate:
        return decoded[0]
    return load_checked_audio(src, sample_rate)


@click.command("reconstruct")
@with_io
def reconstruct_command(inputs, output, force, ae_model, ae_config, vocoder, device, precision):
    """Audio -> latent -> audio (22050 Hz, same length as the input), for files or folders.

    Folders are mirrored as WAV; one output file is written in the format its extension names
    (.wav, .flac, or anything FFmpeg encodes: .mp3, .ogg, .m4a, .opus ...)."""
    from dcae.audio import DEFAULT_SAMPLE_RATE, save_audio

    jobs, refused, checked = prepare_jobs(inputs, output, AUDIO_EXTENSIONS, ".wav", audio_check(DEFAULT_SAMPLE_RATE))
    wrapper = build_wrapper(ae_model, ae_config, vocoder, device, precision)

    def process(src: Path, dst: Path) -> None:
        audio = _checked_audio(checked, src, wrapper.sample_rate)
        save_audio(dst, wrapper(audio, wrapper.sample_rate)[0], wrapper.sample_rate)

    run_jobs(jobs, force, process, "reconstruct", refused)


@click.command("encode")
@click.option("--bf16-latents", is_flag=True, help="Store latents as bfloat16 (default float32).")
@with_io
def encode_command(bf16_latents, inputs, output, force, ae_model, ae_config, vocoder, device, precision):
    """Audio files -> latent files (.safetensors: 'latent' (80, frames) + metadata). No vocoder weights
    needed: --vocoder (a folder, its config.json or a hub id) only gives the mel settings."""
    import torch

    from dcae.audio import DEFAULT_SAMPLE_RATE
    from dcae.corpus.latent_file import LatentMeta, save_latent, weights_hash

    jobs, refused, checked = prepare_jobs(inputs, output, AUDIO_EXTENSIONS, LATENT_EXTENSION,
                                          audio_check(DEFAULT_SAMPLE_RATE))
    wrapper = build_wrapper(ae_model, ae_config, vocoder, device, precision, with_vocoder=False)
    model_hash = weights_hash(wrapper.ae_model_path)
    dtype = torch.bfloat16 if bf16_latents else torch.float32

    def process(src: Path, dst: Path) -> None:
        audio = _checked_audio(checked, src, wrapper.sample_rate)
        latent = wrapper.encode(audio, wrapper.sample_rate)[0]
        meta = LatentMeta(sample_rate=wrapper.sample_rate, hop_length=wrapper.hop_length,
                          frame_rate=wrapper.frame_rate, num_samples=int(audio.shape[-1]), model=model_hash)
        save_latent(dst, latent, meta, dtype=dtype)

    run_jobs(jobs, force, process, "encode", refused)


@click.command("decode")
@with_io
def decode_command(inputs, output, force, ae_model, ae_config, vocoder, device, precision):
    """Latent files (.safetensors) -> audio files (22050 Hz, trimmed to the encoded length; folders as
    WAV, one output file in its extension's format). Latents whose metadata names other AE weights
    than --ae-model are decoded with a one-line warning."""
    import torch
    from tqdm import tqdm

    from dcae.audio import save_audio
    from dcae.corpus.latent_file import (
        LatentFileError,
        check_complete,
        load_latent,
        other_autoencoder_warning,
        weights_hash,
    )

    def finite(src: Path):
        latent, meta = load_latent(src)
        if not bool(torch.isfinite(latent).all()):
            raise LatentFileError(f"{src}: latent contains NaN or Inf values")
        return latent, meta

    def check(src: Path, whole: bool):
        """A single latent is read and checked whole (and kept); several: each file's header and size."""
        if whole:
            return finite(src)
        check_complete(src)
        return None

    jobs, refused, checked = prepare_jobs(inputs, output, (LATENT_EXTENSION,), ".wav", check)
    wrapper = build_wrapper(ae_model, ae_config, vocoder, device, precision)
    model_hash = weights_hash(wrapper.ae_model_path)
    warned: set[str] = set()

    def process(src: Path, dst: Path) -> None:
        latent, meta = checked.pop(src, None) or finite(src)
        if latent.shape[0] != wrapper.latent_dim:
            raise LatentFileError(f"{src}: latent has {latent.shape[0]} dims, the model expects {wrapper.latent_dim}")
        warning = other_autoencoder_warning(src, meta.model, wrapper.ae_model_path, model_hash)
        if warning and meta.model not in warned:  # once per foreign model
            warned.add(meta.model)
            tqdm.write(warning, file=sys.stderr)
        save_audio(dst, wrapper.decode(latent.unsqueeze(0), num_samples=meta.num_samples)[0], wrapper.sample_rate)

    run_jobs(jobs, force, process, "decode", refused)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Speech <-> 5.4 Hz DC-AE latents (same commands as `dcae reconstruct|encode|decode`)."""


cli.add_command(reconstruct_command)
cli.add_command(encode_command)
cli.add_command(decode_command)
