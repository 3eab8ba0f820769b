"""``dcae reconstruct`` / ``encode`` / ``decode``: audio <-> 5.4 Hz latents <-> audio, for files or folders
(also ``python inference.py reconstruct|encode|decode ...``). The work is :class:`dcae.pipeline.DCAEInferenceWrapper`'s.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import click
import torch
from tqdm import tqdm

from dcae.audio import AUDIO_EXTENSIONS, AudioError, check_output_suffix, load_checked_audio, save_audio
from dcae.cli.options import build_wrapper, fail, model_options
from dcae.corpus import (
    LATENT_EXTENSION,
    LatentFileError,
    LatentMeta,
    load_latent,
    other_autoencoder_warning,
    save_latent,
    weights_hash,
)
from dcae.paths import collect_jobs, colliding_outputs


def prepare_jobs(inputs: Sequence[str], output: str, extensions: set[str], out_suffix: str) -> tuple[list[tuple[Path, Path]], int]:
    """The jobs of a command, checked before any model is looked up or loaded: an explicit output file
    must have a writable format, no two inputs may write one output (exit 2, nothing written), and
    missing inputs are reported (one line each). Returns (jobs whose input exists, number missing);
    exits 1 when no input is left."""
    jobs = collect_jobs(inputs, output, extensions, out_suffix)
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
    present = [(src, dst) for src, dst in jobs if src.is_file()]
    for src, _ in jobs:
        if not src.is_file():
            click.echo(f"error: {src}: file not found", err=True)
    if not present:
        if not jobs:
            click.echo("error: no input files found", err=True)
        sys.exit(1)
    return present, len(jobs) - len(present)


def run_jobs(jobs: list[tuple[Path, Path]], force: bool, process, what: str, failed: int = 0) -> None:
    """Apply ``process(src, dst)`` to every job with a progress bar; one line per failure; exit 1 if any
    (``failed``: failures already reported, such as missing inputs)."""
    skipped, already_failed = 0, failed
    for src, dst in tqdm(jobs, desc=what, unit="file", file=sys.stderr, disable=len(jobs) < 2):
        if dst.exists() and not force:
            skipped += 1
            continue
        try:
            process(src, dst)
        except (AudioError, LatentFileError) as e:
            failed += 1
            tqdm.write(f"error: {e}", file=sys.stderr)
        except (ValueError, RuntimeError) as e:
            failed += 1
            tqdm.write(f"error: {src}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}",
                       file=sys.stderr)
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


@click.command("reconstruct")
@with_io
def reconstruct_command(inputs, output, force, ae_model, ae_config, vocoder, device, precision):
    """Audio -> latent -> audio (22050 Hz, same length as the input), for files or folders.

    Folders are mirrored as WAV; one output file is written in the format its extension names
    (.wav, .flac, or anything FFmpeg encodes: .mp3, .ogg, .m4a, .opus ...)."""
    jobs, missing = prepare_jobs(inputs, output, AUDIO_EXTENSIONS, ".wav")
    wrapper = build_wrapper(ae_model, ae_config, vocoder, device, precision)

    def process(src: Path, dst: Path) -> None:
        audio = load_checked_audio(src, wrapper.sample_rate)
        save_audio(dst, wrapper(audio, wrapper.sample_rate)[0], wrapper.sample_rate)

    run_jobs(jobs, force, process, "reconstruct", missing)


@click.command("encode")
@click.option("--bf16-latents", is_flag=True, help="Store latents as bfloat16 (default float32).")
@with_io
def encode_command(bf16_latents, inputs, output, force, ae_model, ae_config, vocoder, device, precision):
    """Audio files -> latent files (.safetensors: 'latent' (80, frames) + metadata). No vocoder weights
    needed: --vocoder (a folder, its config.json or a hub id) only gives the mel settings."""
    jobs, missing = prepare_jobs(inputs, output, AUDIO_EXTENSIONS, LATENT_EXTENSION)
    wrapper = build_wrapper(ae_model, ae_config, vocoder, device, precision, with_vocoder=False)
    model_hash = weights_hash(wrapper.ae_model_path)
    dtype = torch.bfloat16 if bf16_latents else torch.float32

    def process(src: Path, dst: Path) -> None:
        audio = load_checked_audio(src, wrapper.sample_rate)
        latent = wrapper.encode(audio, wrapper.sample_rate)[0]
        meta = LatentMeta(sample_rate=wrapper.sample_rate, hop_length=wrapper.hop_length,
                          frame_rate=wrapper.frame_rate, num_samples=int(audio.shape[-1]), model=model_hash)
        save_latent(dst, latent, meta, dtype=dtype)

    run_jobs(jobs, force, process, "encode", missing)


@click.command("decode")
@with_io
def decode_command(inputs, output, force, ae_model, ae_config, vocoder, device, precision):
    """Latent files (.safetensors) -> audio files (22050 Hz, trimmed to the encoded length; folders as
    WAV, one output file in its extension's format). Latents whose metadata names other AE weights
    than --ae-model are decoded with a one-line warning."""
    jobs, missing = prepare_jobs(inputs, output, {LATENT_EXTENSION}, ".wav")
    wrapper = build_wrapper(ae_model, ae_config, vocoder, device, precision)
    model_hash = weights_hash(wrapper.ae_model_path)
    warned: set[str] = set()

    def process(src: Path, dst: Path) -> None:
        latent, meta = load_latent(src)
        if latent.shape[0] != wrapper.latent_dim:
            raise LatentFileError(f"{src}: latent has {latent.shape[0]} dims, the model expects {wrapper.latent_dim}")
        if not bool(torch.isfinite(latent).all()):
            raise LatentFileError(f"{src}: latent contains NaN or Inf values")
        warning = other_autoencoder_warning(src, meta.model, wrapper.ae_model_path, model_hash)
        if warning and meta.model not in warned:  # once per foreign model
            warned.add(meta.model)
            tqdm.write(warning, file=sys.stderr)
        save_audio(dst, wrapper.decode(latent.unsqueeze(0), num_samples=meta.num_samples)[0], wrapper.sample_rate)

    run_jobs(jobs, force, process, "decode", missing)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Speech <-> 5.4 Hz DC-AE latents (same commands as `dcae reconstruct|encode|decode`)."""


cli.add_command(reconstruct_command)
cli.add_command(encode_command)
cli.add_command(decode_command)
