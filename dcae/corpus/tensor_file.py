"""One named tensor in a safetensors file: atomic write, truncation check, one-line errors.

The latent file (:mod:`dcae.corpus.latent_file`) and the token file (:mod:`dcae.corpus.token_file`) are
both such files; this module holds what they share.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from dcae.atomic import atomic_save_safetensors


class TensorFileError(ValueError):
    """A file that is missing, truncated or not in the expected format; the message names the file."""


def check_complete(path: str | Path, error: type[TensorFileError] = TensorFileError) -> None:
    """Raise ``error`` unless the file holds every byte its header promises (safetensors maps a
    truncated file without complaint and reads zeros past its end)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            raw_header = f.read(header_len) if 0 < header_len <= size - 8 else None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None
    if raw_header is None:
        raise error(f"{path}: truncated or not a safetensors file")
    try:
        header = json.loads(raw_header)
    except (ValueError, UnicodeDecodeError):
        raise error(f"{path}: corrupt safetensors header") from None
    try:
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (AttributeError, KeyError, TypeError, IndexError):
        raise error(f"{path}: corrupt safetensors header") from None
    if size != 8 + header_len + end:
        raise error(f"{path}: truncated ({size} bytes, header promises {8 + header_len + end})")


def read_tensor(path: str | Path, key: str,
                error: type[TensorFileError] = TensorFileError) -> tuple[torch.Tensor, dict[str, str]]:
    """Tensor ``key`` of a complete safetensors file and its string metadata ({} when it has none)."""
    from safetensors import safe_open

    path = Path(path)
    check_complete(path, error)
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            if key not in keys:
                raise error(f"{path}: no '{key}' tensor (keys: {keys})")
            tensor = f.get_tensor(key).clone()  # own the memory: no view of the mapped file
            metadata = dict(f.metadata() or {})
    except TensorFileError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for bad files
        raise error(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    return tensor, metadata


def write_tensor(path: str | Path, key: str, tensor: torch.Tensor, metadata: dict[str, str]) -> None:
    """Atomically write ``tensor`` (moved to CPU) as ``key`` with string ``metadata``."""
    atomic_save_safetensors({key: tensor.detach().cpu()}, path, metadata=metadata)
