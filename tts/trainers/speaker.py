"""Speaker embeddings of manifest rows (``--speaker-dim`` S > 0, token-flow and token-lm).

Each row's ``speaker_path`` (relative to the manifest's folder, like ``latent_path``;
:func:`~dcae.corpus.read_manifest` makes it absolute) names a safetensors file holding a float
tensor ``embedding`` of shape (S,).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dcae.corpus import ManifestError


def speaker_paths(manifest: str | Path, rows: list[dict[str, Any]], speaker_dim: int) -> list[Path]:
    """Every row's speaker file ([] when ``speaker_dim`` is 0). Raises :class:`ManifestError` naming the
    first row without ``speaker_path`` or whose file does not exist."""
    if speaker_dim <= 0:
        return []
    paths = []
    for row in rows:
        if not row.get("speaker_path"):
            raise ManifestError(f"{manifest}: row {row['id']} has no speaker_path "
                                f"(--speaker-dim {speaker_dim} needs one per row)")
        path = Path(row["speaker_path"])
        if not path.is_file():
            raise ManifestError(f"{manifest}: row {row['id']}: speaker embedding {path} not found")
        paths.append(path)
    return paths
