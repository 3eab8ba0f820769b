"""The latent file format (DESIGN.md): one safetensors file per utterance.

Tensor ``latent`` of shape (80, frames), float32 (or bfloat16 on request), with string
metadata ``sample_rate``, ``hop_length``, ``frame_rate``, ``num_samples`` and ``model``
(a short hash of the AE weights that made it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .utils.atomic import atomic_save_safetensors

LATENT_KEY = "latent"


@dataclass(frozen=True)
class LatentMeta:
    sample_rate: int
    hop_length: int
    frame_rate: float
    num_samples: int
    model: str

    def to_strings(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_strings(cls, meta: dict[str, str]) -> "LatentMeta":
        return cls(sample_rate=int(meta["sample_rate"]), hop_length=int(meta["hop_length"]),
                   frame_rate=float(meta["frame_rate"]), num_samples=int(meta["num_samples"]),
                   model=meta.get("model", ""))


class LatentFileError(ValueError):
    """A latent file that is missing, truncated or not in our format."""


def save_latent(path: str | Path, latent: torch.Tensor, meta: LatentMeta, dtype: torch.dtype = torch.float32) -> None:
    """Atomically write ``latent`` (D, frames) with ``meta``."""
    if latent.ndim != 2:
        raise ValueError(f"latent must be (D, frames), got shape {tuple(latent.shape)}")
    atomic_save_safetensors({LATENT_KEY: latent.detach().to("cpu", dtype)}, path, metadata=meta.to_strings())


def check_complete(path: Path) -> None:
    """Raise :class:`LatentFileError` unless the file holds every byte its header promises
    (safetensors maps a truncated file without complaint and reads zeros past its end)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                raise LatentFileError(f"{path}: truncated or not a safetensors file")
            header = json.loads(f.read(header_len))
    except OSError as e:
        raise LatentFileError(f"{path}: cannot read ({e.strerror})") from None
    except (ValueError, UnicodeDecodeError):
        raise LatentFileError(f"{path}: corrupt safetensors header") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size != 8 + header_len + end:
        raise LatentFileError(f"{path}: truncated ({size} bytes, header promises {8 + header_len + end})")


def load_latent(path: str | Path, dtype: torch.dtype | None = torch.float32) -> tuple[torch.Tensor, LatentMeta]:
    """Read a latent file -> (latent (D, frames), metadata). Raises :class:`LatentFileError`."""
    from safetensors import safe_open

    path = Path(path)
    check_complete(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            if LATENT_KEY not in f.keys():
                raise LatentFileError(f"{path}: no '{LATENT_KEY}' tensor (keys: {list(f.keys())})")
            latent = f.get_tensor(LATENT_KEY).clone()  # own the memory: no view of the mapped file
            meta = LatentMeta.from_strings(f.metadata() or {})
    except LatentFileError:
        raise
    except (KeyError, ValueError) as e:
        raise LatentFileError(f"{path}: missing latent metadata ({e})") from None
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for bad files
        raise LatentFileError(f"{path}: not a readable latent file ({type(e).__name__}: {e})") from None
    return (latent.to(dtype) if dtype is not None else latent), meta


def weights_hash(path: str | Path, length: int = 16) -> str:
    """Short sha256 of a weights file, stored as ``model`` in latent metadata."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]
