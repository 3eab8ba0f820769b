"""Speech <-> 5.4 Hz latents <-> speech: ``DCAEInferenceWrapper`` (the DC-AE and BigVGAN together).

Python::

    from dcae import DCAEInferenceWrapper             # also: from inference import DCAEInferenceWrapper
    w = DCAEInferenceWrapper()                       # published weights (Hugging Face cache)
    z = w.encode(audio, sample_rate)                 # (B, samples) -> (B, 80, frames)
    y = w.decode(z, num_samples=audio.shape[-1])     # (B, 80, frames) -> (B, samples) at 22050 Hz

Shell: ``dcae reconstruct|encode|decode IN... -o OUT`` (:mod:`dcae.cli.audio`).

Long signals are processed in windows of latent (or mel) frames with context on each side equal to
the receptive field computed from the loaded models, so memory is bounded and the result equals
whole-signal processing to float rounding; a model with a global field (attention along time) is
processed whole. ``stream_decode`` emits audio as latent frames arrive, with a chosen lookahead.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn

from dcae.audio import resample
from dcae.hub import ModelNotFound, resolve_ae_config, resolve_ae_model, resolve_mel_config_dir, resolve_models
from dcae.memory import release_free_memory
from dcae.model.checkpoint import CheckpointError, load_dcae
from dcae.model.field import dcae_receptive_fields
from dcae.receptive_field import ReceptiveField, chunk_windows
from vocoder.bigvgan_loader import load_vocoder
from vocoder.field import vocoder_receptive_field
from vocoder.mel import MelSpectrogram, load_bigvgan_config

# Windows. Their context is the receptive field computed from the loaded models
# (dcae/model/field.py, vocoder/field.py); a model whose field is global (attention
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

    def check_lookahead(self, lookahead: int | None) -> int | None:
        """The streaming decoder's lookahead (:meth:`stream_decode`) checked against this decoder: 0 ..
        ``max_lookahead`` latent frames, None meaning exact (``max_lookahead``; None for a global field,
        which streams only whole). Raises ``ValueError`` with a one-line reason. The one range check of
        ``--lookahead`` wherever a command streams audio."""
        field = self.decoder_field
        if field.is_global:
            if lookahead is not None:
                raise ValueError(f"this decoder's receptive field is global ({field.reason}): it cannot stream "
                                 f"with a bounded lookahead; leave it unset (--lookahead / lookahead=None: decodes "
                                 f"when the stream ends)")
            return None
        if lookahead is None:
            return field.right
        if not 0 <= lookahead <= field.right:
            raise ValueError(f"--lookahead must be 0..{field.right} latent frames (the decoder's receptive field), "
                             f"got {lookahead}")
        return lookahead

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
        lookahead = self.check_lookahead(lookahead)
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
