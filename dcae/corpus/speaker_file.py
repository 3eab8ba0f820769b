"""Speaker embedding files: safetensors with a float tensor ``embedding`` of shape (S,), named by a
manifest row's ``speaker_path`` (relative to the manifest's folder, like ``latent_path``)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from dcae.corpus.manifest import ManifestError
from dcae.corpus.tensor_file import TensorFileError, read_tensor, write_tensor
from dcae.paths import safe_stem

SPEAKER_KEY = "embedding"
SPEAKERS_DIR = "speakers"  # an export folder's speaker embeddings: speakers/<ab>/<id>.safetensors


def speaker_relpath(uid: str) -> str:
    """Where an utterance's speaker embedding lives, relative to the export folder (beside its latent and tokens)."""
    digest = hashlib.sha1(uid.encode("utf-8")).hexdigest()
    return f"{SPEAKERS_DIR}/{digest[:2]}/{safe_stem(uid)}.safetensors"


def save_speaker_embedding(path: str | Path, embedding: torch.Tensor, metadata: dict[str, str] | None = None) -> None:
    """Atomically write a speaker file: ``embedding`` (S,) float32 with string ``metadata``."""
    write_tensor(path, SPEAKER_KEY, embedding.detach().float().reshape(-1).contiguous(), dict(metadata or {}))


def load_speaker_embedding(path: str | Path, speaker_dim: int | None = None) -> torch.Tensor:
    """The float tensor ``embedding`` (S,) of a speaker file; with ``speaker_dim``, S must equal it.
    Raises :class:`ManifestError` (one line naming the file)."""
    return read_speaker_file(path, speaker_dim)[0]


def read_speaker_file(path: str | Path, speaker_dim: int | None = None) -> tuple[torch.Tensor, dict[str, str]]:
    """:func:`load_speaker_embedding` with the file's string metadata."""
    try:
        emb, meta = read_tensor(path, SPEAKER_KEY)
    except TensorFileError as e:
        raise ManifestError(f"speaker embedding {e}") from None
    if emb.ndim != 1 or not emb.dtype.is_floating_point:
        raise ManifestError(f"speaker embedding {path}: '{SPEAKER_KEY}' must be a 1-D float tensor (S,), got "
                            f"{str(emb.dtype).replace('torch.', '')} {tuple(emb.shape)}")
    if speaker_dim is not None and emb.numel() != speaker_dim:
        raise ManifestError(f"speaker embedding {path}: {emb.numel()} values, --speaker-dim is {speaker_dim}")
    return emb.float(), meta
