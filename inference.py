"""Speech <-> 5.4 Hz latents: ``DCAEInferenceWrapper`` and the ``reconstruct`` / ``encode`` / ``decode`` CLI.

Python::

    from inference import DCAEInferenceWrapper
    w = DCAEInferenceWrapper()                       # published weights (Hugging Face cache)
    z = w.encode(audio, sample_rate)                 # (B, samples) -> (B, 80, frames)
    y = w.decode(z, num_samples=audio.shape[-1])     # (B, 80, frames) -> (B, samples) at 22050 Hz

Shell: ``dcae reconstruct IN... -o OUT`` (same as ``python inference.py reconstruct ...``).

Long signals are processed in windows of latent (or mel) frames with context on each side equal to
the receptive field computed from the loaded models, so memory is bounded and the result equals
whole-signal processing to float rounding; a model with a global field (attention along time) is
processed whole. ``stream_decode`` emits audio as latent frames arrive, with a chosen lookahead.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import click
import torch
import torch.nn as nn

from dcae import load_dcae
from dcae.cli_options import fail, model_options
from dcae.hub import ModelNotFound, resolve_ae_config, resolve_ae_model, resolve_mel_config_dir, resolve_models
from dcae.receptive_field import ReceptiveField, chunk_windows, dcae_receptive_fields
from dcae.memory import release_free_memory
from dcae.audio import AudioError, check_audio, check_output_suffix, load_audio, resample, save_audio
from vocoder.bigvgan_loader import load_vocoder
from vocoder.mel import MelSpectrogram, load_bigvgan_config

# Windows. Their context is the receptive field computed from the loaded models
# (dcae/receptive_field.py, vocoder/receptive_field.py); a model whose field is global (attention
# along time) is processed whole: exact, with memory growing with length.
# A DC-AE window holds at most WINDOW_MEMORY bytes of activations, counted as LIVE_ACTIVATIONS
# full-resolution feature maps (measured: an 80-frame window of the default config peaks at ~390 MiB,
# 7.6 maps of 640 KiB per frame), so long audio encodes in < 0.5 GB extra (test_inference_memory.py).
WINDOW_MEMORY = 320 * 2**20
LIVE_ACTIVATIONS = 8
MIN_CHUNK_FRAMES = 16
# BigVGAN runs in windows of VOCODER_WINDOW mel frames (~48 s, for memory) and inside them, on CPU,
# stage by stage in windows its allocator can reuse (vocoder/staged.py: faster than one pass there).
VOCODER_WINDOW = 4096
DEFAULT_STREAM_CHUNK = 4     # latent frames decoded per streaming step (~0.74 s of audio)

Progress = Callable[[str, float, float], None]  # (stage, seconds of audio done, seconds in total)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def feature_bytes_per_frame(channels: Sequence[int], n_mels: int, compression: int, itemsize: int) -> int:
    """Bytes of the largest DC-AE feature map (B=1) per latent frame: stage ``i`` has
    ``channels[i]`` maps of ``n_mels / 2**i`` x ``compression / 2**i`` values per latent frame."""
    return max(c * math.ceil(n_mels / 2**i) * max(1, compression // 2**i) for i, c in enumerate(channels)) * itemsize


def memory_chunk(bytes_per_frame: int, field: ReceptiveField) -> int:
    """Latent frames per window so that a window (chunk + context) stays within WINDOW_MEMORY."""
    frames = WINDOW_MEMORY // (LIVE_ACTIVATIONS * bytes_per_frame)
    return max(MIN_CHUNK_FRAMES, frames - (0 if field.is_global else field.left + field.right))


class DCAEInferenceWrapper(nn.Module):
    """Audio (22050 Hz) <-> latent (B, 80, frames) at ``frame_rate`` = 22050 / 256 / 16 Hz.

    ``ae_model_path`` / ``ae_config_path`` / ``vocoder_model_path`` default to the published
    weights (``dcae.hub``). ``precision``: "auto", "fp32", "bf16" (CPU/GPU) or "fp16" (GPU only).
    ``with_vocoder=False`` skips BigVGAN's weights (enough for :meth:`encode`: only its mel
    config is read: from ``vocoder_model_path`` when it is a folder, its ``config.json`` or a hub id
    (only ``config.json`` is fetched, through the Hugging Face cache), else the packaged one).
    ``vocoder_window``: mel frames per BigVGAN call (default ``VOCODER_WINDOW``).

    Receptive fields, computed from the loaded models (``.left`` / ``.right`` frames of context,
    ``.is_global``): ``encoder_field`` and ``decoder_field`` in latent frames, ``vocoder_field``
    in mel frames. ``max_lookahead`` = ``decoder_field.right``: the lookahead at which
    :meth:`stream_decode` is exact.
    """

    def __init__(self, ae_model_path: str | Path | None = None, ae_config_path: str | Path | None = None,
                 vocoder_model_path: str | Path | None = None, precision: str = "fp32",
                 device: str | torch.device | None = None, *, with_vocoder: bool = True,
                 vocoder_window: int | None = None):
        super().__init__()
        device = torch.device(device) if device is not None else default_device()
        self.ae_model_path = resolve_ae_model(ae_model_path)
        self.ae_model = load_dcae(self.ae_model_path, resolve_ae_config(ae_config_path), device, precision)
        if with_vocoder:
            from vocoder.field import vocoder_receptive_field

            self.vocoder_model = load_vocoder(vocoder_model_path, device, precision)
            self.transform = self.vocoder_model.mel
            self.vocoder_field: ReceptiveField | None = vocoder_receptive_field(self.vocoder_model.generator)
        else:
            self.vocoder_model = None
            self.vocoder_field = None
            mel_config_dir = resolve_mel_config_dir(vocoder_model_path)
            self.transform = MelSpectrogram(load_bigvgan_config(mel_config_dir)).to(device)
        self.precision = precision
        self.vocoder_window = vocoder_window or VOCODER_WINDOW
        self.sample_rate = self.transform.sample_rate
        self.hop_length = self.transform.hop_length
        self.compression = self.ae_model.compression
        self.padding_factor = self.hop_length * self.compression
        self.frame_rate = self.sample_rate / self.padding_factor
        config = self.ae_model.config
        self.latent_channel = config.latent_channels
        self.mel_comp_channel = self.transform.n_mels // self.compression
        self.latent_dim = self.latent_channel * self.mel_comp_channel
        self.encoder_field, self.decoder_field = dcae_receptive_fields(self.ae_model.model)
        itemsize = next(self.ae_model.parameters()).element_size()
        n_mels = self.transform.n_mels
        self.encode_chunk = memory_chunk(feature_bytes_per_frame(
            config.encoder_block_out_channels, n_mels, self.compression, itemsize), self.encoder_field)
        self.decode_chunk = memory_chunk(feature_bytes_per_frame(
            config.decoder_block_out_channels, n_mels, self.compression, itemsize), self.decoder_field)

    @property
    def device(self) -> torch.device:
        return self.transform.mel_basis.device

    @property
    def max_lookahead(self) -> int | None:
        """Latent frames of future context the decoder reads (None: global); exact streaming lookahead."""
        return self.decoder_field.right

    def num_frames(self, num_samples: int) -> int:
        """Latent frames for ``num_samples`` audio samples at 22050 Hz (the signal is zero-padded up)."""
        return max(1, math.ceil(num_samples / self.padding_factor))

    # ---------------------------------------------------------------- encode
    @torch.inference_mode()
    def encode(self, audio: torch.Tensor | Sequence[torch.Tensor], sample_rate: int, return_1d: bool = True,
               chunk_frames: int | None = None, progress: bool | Progress | None = None
               ) -> torch.Tensor | list[torch.Tensor]:
        """Audio (B, samples) or (samples,) at ``sample_rate`` -> latent (B, 80, frames) or (B, 16, 5, frames).

        ``frames = ceil(samples_22k / 4096)``. A list of 1-D clips of different lengths gives a
        list of latents (80, frames_i), each equal to encoding that clip alone. ``chunk_frames``:
        latent frames per window (default: sized for memory, ``encode_chunk``); ``progress``:
        True for a progress bar on stderr, or a callable ``(stage, done_s, total_s)``.
        """
        if isinstance(audio, (list, tuple)):
            return [self.encode(a.reshape(1, -1), sample_rate, return_1d, chunk_frames, progress)[0] for a in audio]
        if audio.ndim == 1:
            audio = audio.unsqueeze(0)
        if sample_rate != self.sample_rate:
            audio = resample(audio, sample_rate, self.sample_rate)
        audio, frames = audio.float(), self.num_frames(audio.shape[-1])
        length = frames * self.padding_factor  # zero-padded to whole latent frames, then BigVGAN's reflect padding
        tail = self.transform.n_fft - self.hop_length
        parts = []
        windows = field_windows(frames, chunk_frames or self.encode_chunk, self.encoder_field)
        for start, stop, w0, w1 in reported(progress, "encode", windows, self.frame_rate):
            window = self.transform.padded_window(audio, w0 * self.padding_factor, w1 * self.padding_factor + tail,
                                                  length).to(self.device)
            latent = self.ae_model.encode(self.transform.from_padded(window))
            parts.append(latent[..., start - w0: stop - w0].float())
            if len(windows) > 1:
                release_free_memory()  # keeps the resident set at one window's worth, however long the audio
        latent = torch.cat(parts, dim=-1)
        return latent.flatten(1, 2) if return_1d else latent

    # ---------------------------------------------------------------- decode
    @torch.inference_mode()
    def decode(self, latent: torch.Tensor, num_samples: int | None = None, chunk_frames: int | None = None,
               progress: bool | Progress | None = None) -> torch.Tensor:
        """Latent (B, 80, T), (B, 16, 5, T) or (80, T) -> audio (B, T * 4096) at 22050 Hz, on the CPU.

        ``num_samples`` trims the output to the original length (see :meth:`encode`);
        ``chunk_frames`` / ``progress`` as in :meth:`encode`.
        """
        self._need_vocoder()
        audio = self.vocode(self.decode_mel(latent, chunk_frames, progress), progress=progress).cpu()
        return audio[..., :num_samples] if num_samples is not None else audio

    @torch.inference_mode()
    def decode_mel(self, latent: torch.Tensor, chunk_frames: int | None = None,
                   progress: bool | Progress | None = None) -> torch.Tensor:
        """Latent (B, 80, T) or (B, 16, 5, T) -> mel (B, n_mels, T * 16), in windows equal to one whole pass."""
        latent = self._as_4d(latent)
        windows = field_windows(latent.shape[-1], chunk_frames or self.decode_chunk, self.decoder_field)
        parts = [self._decode_window(latent, 0, start, stop, w0, w1)
                 for start, stop, w0, w1 in reported(progress, "decode", windows, self.frame_rate)]
        return torch.cat(parts, dim=-1)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor, progress: bool | Progress | None = None) -> torch.Tensor:
        """Mel (B, n_mels, T) -> audio (B, T * hop) with BigVGAN, in windows equal to one whole pass."""
        self._need_vocoder()
        windows = field_windows(mel.shape[-1], self.vocoder_window, self.vocoder_field)
        rate = self.sample_rate / self.hop_length
        return torch.cat([self._vocode_window(mel, 0, start, stop, w0, w1)
                          for start, stop, w0, w1 in reported(progress, "vocode", windows, rate)], dim=-1)

    def _decode_window(self, latent: torch.Tensor, offset: int, start: int, stop: int, w0: int, w1: int) -> torch.Tensor:
        """Mel (B, n_mels, (stop - start) * 16) of latent frames [start, stop) decoded from frames
        [w0, w1); ``latent`` holds frames from ``offset`` on."""
        mel = self.ae_model.decode(latent[..., w0 - offset: w1 - offset].to(self.device))
        return mel[..., (start - w0) * self.compression: (stop - w0) * self.compression].float()

    def _vocode_window(self, mel: torch.Tensor, offset: int, start: int, stop: int, w0: int, w1: int) -> torch.Tensor:
        """Audio (B, (stop - start) * hop) of mel frames [start, stop) from frames [w0, w1)."""
        audio = self.vocoder_model(mel[..., w0 - offset: w1 - offset])
        return audio[..., (start - w0) * self.hop_length: (stop - w0) * self.hop_length]

    # ---------------------------------------------------------------- streaming
    @torch.inference_mode()
    def stream_decode(self, latent_chunks: Iterable[torch.Tensor], chunk_frames: int = DEFAULT_STREAM_CHUNK,
                      lookahead: int | None = None) -> Iterator[torch.Tensor]:
        """Streaming decode: latent chunks (B, 80, n_i) in, audio chunks (B, m_j * 256) out, on the CPU.

        The decoder turns ``chunk_frames`` latent frames into mel as soon as ``lookahead`` later
        frames have arrived (or the stream ended); BigVGAN turns mel into audio as soon as its own
        receptive field (``vocoder_field.right`` mel frames) is there. ``lookahead`` is 0 ..
        ``max_lookahead``; the default, ``max_lookahead``, is exact: the concatenated output
        equals :meth:`decode` of the whole latent. Less lookahead starts audio sooner and is an
        approximation (the decoder sees zeros where later frames would be; benchmarks/decode_stream_latency.py
        measures its error). A decoder with a global field (attention) is exact only whole: with
        the default it decodes when the stream ends; a bounded ``lookahead`` is refused.
        """
        self._need_vocoder()
        field = self.decoder_field
        if field.is_global:
            if lookahead is not None:
                raise ValueError(f"this decoder's receptive field is global ({field.reason}): it cannot stream "
                                 f"with a bounded lookahead; use lookahead=None (decodes when the stream ends)")
        elif lookahead is None:
            lookahead = field.right
        elif not 0 <= lookahead <= field.right:
            raise ValueError(f"lookahead must be 0..{field.right} latent frames (the decoder's receptive field), "
                             f"got {lookahead}")
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        for audio in self._stream_vocode(self._stream_mel(latent_chunks, chunk_frames, lookahead)):
            yield audio.cpu()

    def _stream_mel(self, latent_chunks: Iterable[torch.Tensor], chunk_frames: int,
                    lookahead: int | None) -> Iterator[torch.Tensor]:
        """Latent chunks in, mel chunks (B, n_mels, k * 16) out, each decoded once ``lookahead`` later
        latent frames are known (``None``: global decoder, all at the end)."""
        field = self.decoder_field
        buffer: torch.Tensor | None = None  # latent frames [offset, received)
        offset = done = received = 0
        for chunk in latent_chunks:
            chunk = self._as_4d(chunk)
            buffer = chunk if buffer is None else torch.cat([buffer, chunk], dim=-1)
            received += chunk.shape[-1]
            while lookahead is not None and received - done >= chunk_frames + lookahead:
                stop = done + chunk_frames
                yield self._decode_window(buffer, offset, done, stop, max(0, done - field.left), stop + lookahead)
                done = stop
                drop = max(0, done - field.left) - offset
                buffer, offset = buffer[..., drop:], offset + drop
        if buffer is None or done == received:
            return
        if field.is_global:  # the stream ended: the rest is exact (windows reach the true end)
            yield self.decode_mel(buffer)
            return
        for start, stop, w0, w1 in chunk_windows(received, chunk_frames, field.left, field.right, start=done):
            yield self._decode_window(buffer, offset, start, stop, w0, w1)

    def _stream_vocode(self, mel_chunks: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Mel chunks in, audio chunks out, each mel frame vocoded once its receptive field is known."""
        field = self.vocoder_field
        buffer: torch.Tensor | None = None  # mel frames [offset, received)
        offset = done = received = 0
        for mel in mel_chunks:
            buffer = mel if buffer is None else torch.cat([buffer, mel], dim=-1)
            received += mel.shape[-1]
            if field.is_global or received - field.right <= done:
                continue
            stop = received - field.right
            for window in chunk_windows(stop, self.vocoder_window, field.left, field.right, start=done, known=received):
                yield self._vocode_window(buffer, offset, *window)
            done = stop
            drop = max(0, done - field.left) - offset
            buffer, offset = buffer[..., drop:], offset + drop
        if buffer is None or done == received:
            return
        if field.is_global:
            yield self.vocode(buffer)
            return
        for window in chunk_windows(received, self.vocoder_window, field.left, field.right, start=done):
            yield self._vocode_window(buffer, offset, *window)

    # ---------------------------------------------------------------- helpers
    def _need_vocoder(self) -> None:
        if self.vocoder_model is None:
            raise RuntimeError("this DCAEInferenceWrapper was built with with_vocoder=False; it cannot decode")

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
    def forward(self, audio: torch.Tensor | Sequence[torch.Tensor], sample_rate: int,
                progress: bool | Progress | None = None) -> torch.Tensor | list[torch.Tensor]:
        """Reconstruct: audio -> latent -> audio at 22050 Hz, with the (resampled) input's length."""
        if isinstance(audio, (list, tuple)):
            return [self.forward(a.reshape(1, -1), sample_rate, progress)[0] for a in audio]
        if audio.ndim == 1:
            audio = audio.unsqueeze(0)
        length = math.ceil(audio.shape[-1] * self.sample_rate / sample_rate)
        return self.decode(self.encode(audio, sample_rate, progress=progress), num_samples=length, progress=progress)


class ModelLoadError(ValueError):
    """A model that cannot be found or loaded (one line: which file, and why)."""


def load_wrapper(ae_model: str | Path | None = None, ae_config: str | Path | None = None,
                 vocoder: str | Path | None = None, device: str | torch.device | None = None,
                 precision: str = "fp32", with_vocoder: bool = True) -> DCAEInferenceWrapper:
    """:class:`DCAEInferenceWrapper` from the command flags' values, every model file resolved first (so
    that offline one message names all files to fetch). Raises :class:`ModelLoadError`."""
    from dcae import CheckpointError

    try:
        model, config, vocoder_dir = resolve_models(ae_model, ae_config, vocoder, vocoder_weights=with_vocoder)
        return DCAEInferenceWrapper(model, config, vocoder_dir, precision=precision, device=device,
                                    with_vocoder=with_vocoder)
    except (ModelNotFound, CheckpointError, ValueError) as e:
        raise ModelLoadError(str(e)) from None


def field_windows(total: int, chunk: int, field: ReceptiveField) -> list[tuple[int, int, int, int]]:
    """Windows for a model with receptive field ``field``: one whole window when it is global."""
    if field.is_global:
        return [(0, total, 0, total)]
    return list(chunk_windows(total, chunk, field.left, field.right))


def reported(progress: bool | Progress | None, stage: str, windows: list[tuple[int, int, int, int]],
             frame_rate: float) -> Iterator[tuple[int, int, int, int]]:
    """Iterate ``windows``, reporting seconds of audio done: a tqdm bar on stderr (``progress=True``)
    or calls ``progress(stage, done_s, total_s)``."""
    total = windows[-1][1] / frame_rate if windows else 0.0
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=round(total, 1), desc=stage, unit="s", file=sys.stderr, leave=False,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
    for window in windows:
        yield window
        done = window[1] / frame_rate
        if bar is not None:
            bar.update(round(done, 1) - bar.n)
        elif callable(progress):
            progress(stage, done, total)
    if bar is not None:
        bar.close()


# ==================================================================== CLI
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm", ".mp4"}
LATENT_EXTENSION = ".safetensors"


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

    from dcae.corpus import LatentFileError

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
    """:func:`load_wrapper` for a command: model problems end it with one line and exit code 2."""
    try:
        return load_wrapper(ae_model, ae_config, vocoder, device, precision, with_vocoder)
    except ModelLoadError as e:
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
    from dcae.corpus import LatentMeta, save_latent, weights_hash

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

    from dcae.corpus import LatentFileError, load_latent, weights_hash

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
