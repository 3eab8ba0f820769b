"""The latent file format (DESIGN.md, Formats): one safetensors file per utterance.

Tensor ``latent`` of shape (D, frames) (D = 80 for the DC-AE), float32 or bfloat16, with string
metadata ``sample_rate``, ``hop_length``, ``frame_rate``, ``num_samples`` and ``model`` (a short
hash of the AE weights that made it)::

    save_latent("u1.safetensors", latent, LatentMeta(22050, 256, 22050 / 4096, num_samples, weights_hash(ckpt)))
    latent, meta = load_latent("u1.safetensors")     # (D, frames) float32, LatentMeta

Readers accept files made by other tools: missing metadata takes the DC-AE's values (22050 Hz,
hop 256, 22050 / 4096 frames per second, ``num_samples`` from the frame count, ``model`` "").
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from dcae.audio import DEFAULT_SAMPLE_RATE
from dcae.corpus.defaults import LATENT_EXTENSION  # noqa: F401 - importable from here too
from dcae.corpus.tensor_file import TensorFileError, read_tensor, write_tensor
from dcae.corpus.tensor_file import check_complete as _check_complete

LATENT_KEY = "latent"
DEFAULT_HOP_LENGTH = 256
DEFAULT_FRAME_RATE = DEFAULT_SAMPLE_RATE / 4096  # 256-sample mel hop x 16 (DC-AE time compression)


class LatentFileError(TensorFileError):
    """A latent file that is missing, truncated or not in our format; the message names the file."""


@dataclass(frozen=True)
class LatentMeta:
    sample_rate: int
    hop_length: int
    frame_rate: float  # latent frames per second
    num_samples: int  # audio length the latent was made from
    model: str  # hash of the AE weights ("" when unknown)

    def to_strings(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_strings(cls, meta: dict[str, str], num_frames: int) -> "LatentMeta":
        """Metadata as stored; a missing entry takes the DC-AE default (``num_samples``: the
        duration of ``num_frames``). Raises ``ValueError`` naming an entry that is not a number."""
        sample_rate = _number(meta, "sample_rate", int, DEFAULT_SAMPLE_RATE)
        frame_rate = _number(meta, "frame_rate", float, DEFAULT_FRAME_RATE)
        num_samples = _number(meta, "num_samples", int, None, zero_ok=True)
        return cls(sample_rate=sample_rate, hop_length=_number(meta, "hop_length", int, DEFAULT_HOP_LENGTH),
                   frame_rate=frame_rate, model=meta.get("model", ""),
                   num_samples=round(num_frames * sample_rate / frame_rate) if num_samples is None else num_samples)


def _number(meta: dict[str, str], key: str, kind: type, default: float | None, zero_ok: bool = False):
    """``meta[key]`` as a positive (or zero) ``kind``, or ``default`` when absent."""
    if key not in meta:
        return default
    try:
        value = kind(float(meta[key]))
    except (ValueError, OverflowError):
        value = -1
    if not (math.isfinite(value) and (value > 0 or (zero_ok and value == 0))):
        raise ValueError(f"bad latent metadata {key}={meta[key]!r} (want a {'non-negative' if zero_ok else 'positive'} number)")
    return value


def save_latent(path: str | Path, latent: torch.Tensor, meta: LatentMeta, dtype: torch.dtype = torch.float32) -> None:
    """Atomically write ``latent`` (D, frames) with ``meta``."""
    if latent.ndim != 2:
        raise ValueError(f"latent must be (D, frames), got shape {tuple(latent.shape)}")
    write_tensor(path, LATENT_KEY, latent.to(dtype), meta.to_strings())


def check_complete(path: str | Path) -> None:
    """Raise :class:`LatentFileError` unless the file holds every byte its header promises."""
    _check_complete(path, LatentFileError)


def load_latent(path: str | Path, dtype: torch.dtype | None = torch.float32) -> tuple[torch.Tensor, LatentMeta]:
    """Read a latent file -> (latent (D, frames), metadata). Raises :class:`LatentFileError`."""
    latent, metadata = read_tensor(path, LATENT_KEY, LatentFileError)
    if latent.ndim != 2 or not latent.dtype.is_floating_point:
        raise LatentFileError(f"{path}: '{LATENT_KEY}' must be a floating-point (D, frames) tensor, "
                              f"got {latent.dtype} of shape {tuple(latent.shape)}")
    try:
        meta = LatentMeta.from_strings(metadata, latent.shape[1])
    except ValueError as e:
        raise LatentFileError(f"{path}: {e}") from None
    return (latent.to(dtype) if dtype is not None else latent), meta


def weights_hash(path: str | Path, length: int = 16) -> str:
    """Short sha256 of a weights file, stored as ``model`` in latent metadata."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def other_autoencoder_warning(source: str | Path, made_by: str, model_path: str | Path, model_hash: str) -> str | None:
    """One ``warning:`` line when latents recorded as made by the AE weights ``made_by`` (a hash; "" =
    unknown) are decoded with other weights, else None. Only a warning: the same weights in another
    file format, or a decoder fine-tuned on a frozen encoder, hash differently but decode right."""
    if not made_by or made_by == model_hash:
        return None
    return (f"warning: {source} was made by the autoencoder {made_by}, but {model_path} is {model_hash}: "
            "the audio is only right if they share one latent space")
