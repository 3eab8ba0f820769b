"""Speech <-> 5.4 Hz latents: ``DCAEInferenceWrapper`` and the ``reconstruct`` / ``encode`` / ``decode`` CLI.

Python::

    from inference import DCAEInferenceWrapper
    w = DCAEInferenceWrapper()                       # published weights (Hugging Face cache)
    z = w.encode(audio, sample_rate)                 # (B, samples) -> (B, 80, frames)
    y = w.decode(z, num_samples=audio.shape[-1])     # (B, 80, frames) -> (B, samples) at 22050 Hz

Shell: ``dcae reconstruct IN... -o OUT`` (same as ``python inference.py reconstruct ...``).

Long signals are processed in windows of ``chunk_frames`` latent frames plus ``context_frames``
on each side (more than the measured receptive field of the default DCAE and BigVGAN), so memory
is bounded and the result equals whole-signal processing to float rounding.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, NoReturn, Sequence

import click
import torch
import torch.nn as nn

from dcae import load_dcae
from dcae.cli_options import model_options
from dcae.hub import ModelNotFound, resolve_ae_config, resolve_ae_model, resolve_models
from vocoder.audio import AudioError, check_audio, check_output_suffix, load_audio, resample, save_audio
from vocoder.bigvgan_loader import load_vocoder
from vocoder.mel import MelSpectrogram, load_bigvgan_config

# Receptive fields measured (autograd, random weights) in latent frames of 16 mel frames:
# default DCAE encoder +-13, decoder +-14; BigVGAN +-33 mel frames (~2 latent frames).
DEFAULT_CONTEXT_FRAMES = 24
DEFAULT_ENCODE_CHUNK = 128   # latent frames per encoder window (~24 s of audio)
DEFAULT_DECODE_CHUNK = 64    # latent frames per decoder/vocoder window (~12 s of audio)
# BigVGAN itself runs in windows of 432 mel frames (~5 s) with 40 frames of context (> its +-33):
# the same samples as one pass, and on CPU faster than one pass over ~10 s (smaller working set;
# 16.4 s vs 25 s for 864 frames in fp32 on 2 cores, see benchmarks/RESULTS.md).
VOCODER_WINDOW = 432
VOCODER_CONTEXT = 40


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class DCAEInferenceWrapper(nn.Module):
    """Audio (22050 Hz) <-> latent (B, 80, frames) at ``frame_rate`` = 22050 / 256 / 16 Hz.

    ``ae_model_path`` / ``ae_config_path`` / ``vocoder_model_path`` default to the published
    weights (``dcae.hub``). ``precision``: "fp32", "bf16" (CPU/GPU) or "fp16" (GPU only).
    ``with_vocoder=False`` skips BigVGAN's weights (enough for :meth:`encode`: only its mel
    config is read, from ``vocoder_model_path`` when it is a folder, else the packaged one).
    """

    def __init__(self, ae_model_path: str | Path | None = None, ae_config_path: str | Path | None = None,
                 vocoder_model_path: str | Path | None = None, precision: str = "fp32",
                 device: str | torch.device | None = None, *, with_vocoder: bool = True,
                 context_frames: int = DEFAULT_CONTEXT_FRAMES):
        super().__init__()
        device = torch.device(device) if device is not None else default_device()
        self.ae_model_path = resolve_ae_model(ae_model_path)
        self.ae_model = load_dcae(self.ae_model_path, resolve_ae_config(ae_config_path), device, precision)
        if with_vocoder:
            self.vocoder_model = load_vocoder(vocoder_model_path, device, precision)
            self.transform = self.vocoder_model.mel
        else:
            self.vocoder_model = None
            local = vocoder_model_path is not None and Path(vocoder_model_path).is_dir()
            self.transform = MelSpectrogram(load_bigvgan_config(vocoder_model_path if local else None)).to(device)
        self.precision = precision
        self.context_frames = context_frames
        self.sample_rate = self.transform.sample_rate
        self.hop_length = self.transform.hop_length
        self.compression = self.ae_model.compression
        self.padding_factor = self.hop_length * self.compression
        self.frame_rate = self.sample_rate / self.padding_factor
        self.latent_channel = self.ae_model.config.latent_channels
        self.mel_comp_channel = self.transform.n_mels // self.compression
        self.latent_dim = self.latent_channel * self.mel_comp_channel

    @property
    def device(self) -> torch.device:
        return self.transform.mel_basis.device

    def num_frames(self, num_samples: int) -> int:
        """Latent frames for ``num_samples`` audio samples at 22050 Hz (the signal is zero-padded up)."""
        return max(1, math.ceil(num_samples / self.padding_factor))

    # ---------------------------------------------------------------- encode
    @torch.inference_mode()
    def encode(self, audio: torch.Tensor | Sequence[torch.Tensor], sample_rate: int, return_1d: bool = True,
               chunk_frames: int = DEFAULT_ENCODE_CHUNK) -> torch.Tensor | list[torch.Tensor]:
        """Audio (B, samples) or (samples,) at ``sample_rate`` -> latent (B, 80, frames) or (B, 16, 5, frames).

        ``frames = ceil(samples_22k / 4096)``. A list of 1-D clips of different lengths gives a
        list of latents (80, frames_i), each equal to encoding that clip alone.
        """
        if isinstance(audio, (list, tuple)):
            return [self.encode(a.reshape(1, -1), sample_rate, return_1d, chunk_frames)[0] for a in audio]
        if audio.ndim == 1:
            audio = audio.unsqueeze(0)
        if sample_rate != self.sample_rate:
            audio = resample(audio, sample_rate, self.sample_rate)
        frames = self.num_frames(audio.shape[-1])
        audio = torch.nn.functional.pad(audio.float(), (0, frames * self.padding_factor - audio.shape[-1]))
        padded = self.transform.pad(audio)  # BigVGAN's reflect padding of the whole signal
        tail = self.transform.n_fft - self.hop_length
        parts = []
        for start, stop, w0, w1 in chunk_windows(frames, chunk_frames, self.context_frames):
            window = padded[:, w0 * self.padding_factor: w1 * self.padding_factor + tail].to(self.device)
            latent = self.ae_model.encode(self.transform.from_padded(window))
            parts.append(latent[..., start - w0: stop - w0].float())
        latent = torch.cat(parts, dim=-1)
        return latent.flatten(1, 2) if return_1d else latent

    # ---------------------------------------------------------------- decode
    @torch.inference_mode()
    def decode(self, latent: torch.Tensor, num_samples: int | None = None,
               chunk_frames: int = DEFAULT_DECODE_CHUNK) -> torch.Tensor:
        """Latent (B, 80, T), (B, 16, 5, T) or (80, T) -> audio (B, T * 4096) at 22050 Hz.

        ``num_samples`` trims the output to the original length (see :meth:`encode`).
        """
        audio = torch.cat(list(self.stream_decode([latent], chunk_frames)), dim=-1)
        return audio[..., :num_samples] if num_samples is not None else audio

    @torch.inference_mode()
    def stream_decode(self, latent_chunks: Iterable[torch.Tensor],
                      chunk_frames: int = DEFAULT_DECODE_CHUNK) -> Iterator[torch.Tensor]:
        """Streaming decode: latent chunks (B, 80, n_i) in, audio chunks (B, m_j * 4096) out.

        Audio for a latent frame is emitted once ``context_frames`` later frames have arrived
        (or the stream ended); the concatenated output equals :meth:`decode` of the whole latent.
        """
        if self.vocoder_model is None:
            raise RuntimeError("this DCAEInferenceWrapper was built with with_vocoder=False; it cannot decode")
        context = self.context_frames
        buffer: torch.Tensor | None = None  # latent frames [buffer_start, received)
        buffer_start = emitted = received = 0
        for chunk in latent_chunks:
            chunk = self._as_4d(chunk)
            buffer = chunk if buffer is None else torch.cat([buffer, chunk], dim=-1)
            received += chunk.shape[-1]
            while received - emitted >= chunk_frames + context:
                yield self._decode_window(buffer, buffer_start, emitted, emitted + chunk_frames, received)
                emitted += chunk_frames
                drop = max(0, emitted - context) - buffer_start
                buffer, buffer_start = buffer[..., drop:], buffer_start + drop
        while emitted < received:
            stop = min(received, emitted + chunk_frames)
            yield self._decode_window(buffer, buffer_start, emitted, stop, received)
            emitted = stop

    def _decode_window(self, buffer: torch.Tensor, buffer_start: int, start: int, stop: int, known: int) -> torch.Tensor:
        """Audio (B, (stop - start) * 4096) for latent frames [start, stop), with context from the buffer."""
        w0, w1 = max(0, start - self.context_frames), min(known, stop + self.context_frames)
        latent = buffer[..., w0 - buffer_start: w1 - buffer_start].to(self.device)
        audio = self.vocode(self.ae_model.decode(latent))
        return audio[..., (start - w0) * self.padding_factor: (stop - w0) * self.padding_factor].cpu()

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel (B, n_mels, T) -> audio (B, T * hop) with BigVGAN, in windows equal to one whole pass."""
        parts = []
        for start, stop, w0, w1 in chunk_windows(mel.shape[-1], VOCODER_WINDOW, VOCODER_CONTEXT):
            audio = self.vocoder_model(mel[..., w0:w1])
            parts.append(audio[..., (start - w0) * self.hop_length: (stop - w0) * self.hop_length])
        return torch.cat(parts, dim=-1)

    def _as_4d(self, latent: torch.Tensor) -> torch.Tensor:
        if latent.ndim == 2:
            latent = latent.unsqueeze(0)
        if latent.ndim == 3:
            latent = latent.reshape(latent.shape[0], self.latent_channel, self.mel_comp_channel, latent.shape[-1])
        if latent.ndim != 4 or latent.shape[1:3] != (self.latent_channel, self.mel_comp_channel):
            raise ValueError(f"latent must be (B, {self.latent_dim}, T) or (B, {self.latent_channel}, "
                             f"{self.mel_comp_channel}, T), got {tuple(latent.shape)}")
        return latent.float()

    @torch.inference_mode()
    def forward(self, audio: torch.Tensor | Sequence[torch.Tensor], sample_rate: int) -> torch.Tensor | list[torch.Tensor]:
        """Reconstruct: audio -> latent -> audio at 22050 Hz, with the (resampled) input's length."""
        if isinstance(audio, (list, tuple)):
            return [self.forward(a.reshape(1, -1), sample_rate)[0] for a in audio]
        if audio.ndim == 1:
            audio = audio.unsqueeze(0)
        length = math.ceil(audio.shape[-1] * self.sample_rate / sample_rate)
        return self.decode(self.encode(audio, sample_rate), num_samples=length)


def chunk_windows(total: int, chunk: int, context: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, stop, window_start, window_stop) covering [0, total) in chunks with context.

    A signal that fits in one chunk plus its context is one window: exactly whole-signal processing.
    """
    if total <= chunk + 2 * context:
        yield 0, total, 0, total
        return
    for start in range(0, total, chunk):
        stop = min(total, start + chunk)
        yield start, stop, max(0, start - context), min(total, stop + context)


# ==================================================================== CLI
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm", ".mp4"}
LATENT_EXTENSION = ".safetensors"


def fail(message: str, code: int = 2) -> NoReturn:
    """End the command with one ``error:`` line (exit code 2: nothing was done)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def collect_jobs(inputs: Sequence[str], output: str, extensions: set[str], out_suffix: str) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs. Folders are searched recursively and mirrored under OUT.

    One input file with an OUT that has a suffix writes exactly OUT; otherwise OUT is a folder.
    """
    out = Path(output)
    if len(inputs) == 1 and Path(inputs[0]).is_file() and out.suffix and not out.is_dir():
        return [(Path(inputs[0]), out)]
    jobs = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            jobs += [(f, (out / f.relative_to(path)).with_suffix(out_suffix)) for f in files]
        else:  # a missing file is reported by prepare_jobs
            jobs.append((path, (out / path.name).with_suffix(out_suffix)))
    return jobs


def colliding_outputs(jobs: list[tuple[Path, Path]]) -> list[tuple[Path, Path, Path]]:
    """(first input, second input, output) for every output file that two different inputs would write
    (``x.wav`` and ``x.mp3`` in one folder, or the same name in two input folders)."""
    writer: dict[str, Path] = {}
    clashes = []
    for src, dst in jobs:
        key = os.path.normcase(os.path.abspath(dst))
        first = writer.setdefault(key, src)
        if os.path.abspath(first) != os.path.abspath(src):
            clashes.append((first, src, dst))
    return clashes


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
    from tqdm import tqdm

    from dcae.latents import LatentFileError

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


def build_wrapper(ae_model, ae_config, vocoder, device, precision, with_vocoder: bool = True) -> DCAEInferenceWrapper:
    """The wrapper for a command; model problems end the command with one line and exit code 2.
    Every model file is resolved first, so that offline one line names all files to fetch."""
    from dcae import CheckpointError

    try:
        model, config, vocoder_dir = resolve_models(ae_model, ae_config, vocoder, vocoder_weights=with_vocoder)
        return DCAEInferenceWrapper(model, config, vocoder_dir, precision=precision, device=device,
                                    with_vocoder=with_vocoder)
    except (ModelNotFound, CheckpointError, ValueError) as e:
        fail(str(e))


def other_autoencoder_warning(source: str | Path, made_by: str, model_path: str | Path, model_hash: str) -> str | None:
    """One ``warning:`` line when latents recorded as made by the AE weights ``made_by`` (a hash; "" =
    unknown) are decoded with other weights, else None. Only a warning: the same weights in another
    file format, or a decoder fine-tuned on a frozen encoder, hash differently but decode right."""
    if not made_by or made_by == model_hash:
        return None
    return (f"warning: {source} was made by the autoencoder {made_by}, but {model_path} is {model_hash}: "
            "the audio is only right if they share one latent space")


def load_checked_audio(path: Path, sample_rate: int) -> torch.Tensor:
    audio = load_audio(path, sample_rate)
    check_audio(audio, path)
    return audio


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
    from dcae.latents import LatentMeta, save_latent, weights_hash

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
    from tqdm import tqdm

    from dcae.latents import LatentFileError, load_latent, weights_hash

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

if __name__ == "__main__":
    cli()
