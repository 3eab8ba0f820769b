"""Speaker embedding files: safetensors with a float tensor ``embedding`` of shape (S,), named by a
manifest row's ``speaker_path`` (relative to the manifest's folder, like ``latent_path``)."""
from __future__ import annotations

from pathlib import Path

import torch

from dcae.corpus.manifest import ManifestError
from dcae.corpus.tensor_file import TensorFileError, read_tensor

SPEAKER_KEY = "embedding"


def load_speaker_embedding(path: str | Path, speaker_dim: int | None = None) -> torch.Tensor:
    """The float tensor ``embedding`` (S,) of a speaker file; with ``speaker_dim``, S must equal it.
    Raises :class:`ManifestError` (one line naming the file)."""
    try:
        emb, _ = read_tensor(path, SPEAKER_KEY)
    except TensorFileError as e:
        raise ManifestError(f"speaker embedding {e}") from None
    if emb.ndim != 1 or not emb.dtype.is_floating_point:
        raise ManifestError(f"speaker embedding {path}: '{SPEAKER_KEY}' must be a 1-D float tensor (S,), got "
                            f"{str(emb.dtype).replace('torch.', '')} {tuple(emb.shape)}")
    if speaker_dim is not None and emb.numel() != speaker_dim:
        raise ManifestError(f"speaker embedding {path}: {emb.numel()} values, --speaker-dim is {speaker_dim}")
    return emb.float()
