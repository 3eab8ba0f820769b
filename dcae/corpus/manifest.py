"""``manifest.jsonl``: one JSON object per utterance (DESIGN.md, Formats).

Required keys ``id``, ``latent_path``, ``num_frames``; usually ``audio_path``, ``duration``,
``text``; for speech-token models ``token_path``, ``num_tokens``, ``token_rate``; with speaker
embeddings ``speaker_path``. The file paths (``PATH_KEYS``) are stored relative to the manifest's
folder (or absolute); :func:`read_manifest` makes them absolute.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from dcae.atomic import atomic_write_text
from dcae.corpus.latent_file import DEFAULT_FRAME_RATE

REQUIRED_KEYS = ("id", "latent_path", "num_frames")
PATH_KEYS = ("latent_path", "token_path", "speaker_path")
MANIFEST_KEYS = ("id", "audio_path", "latent_path", "num_frames", "duration", "text", "token_path", "num_tokens",
                 "token_rate", "speaker", "speaker_path")


class ManifestError(ValueError):
    """A manifest or stats file that cannot be used; the message names the file and the reason."""


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``manifest.jsonl`` with the file paths (``PATH_KEYS``) made absolute.
    Raises :class:`ManifestError` (one line naming the file, line and reason)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read manifest ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: manifest is not UTF-8 text") from None
    base = str(path.parent.resolve())  # resolved once: a resolve per row took 50 s for a million rows
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ManifestError(f"{path}:{lineno}: not a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise ManifestError(f"{path}:{lineno}: row lacks {', '.join(missing)}")
        for key in PATH_KEYS:
            if row.get(key):
                row[key] = os.path.normpath(os.path.join(base, row[key]))
        rows.append(row)
    if not rows:
        raise ManifestError(f"{path}: manifest has no rows")
    return rows


def write_manifest(path: str | Path, rows: Iterable[dict[str, Any]], keys: Sequence[str] = MANIFEST_KEYS) -> None:
    """Atomically write ``rows`` as JSON lines, each with the ``keys`` it has, in that order."""
    atomic_write_text(path, "".join(json.dumps({k: r[k] for k in keys if k in r}, ensure_ascii=False) + "\n"
                                    for r in rows))


def read_raw_rows(manifest: Path) -> list[dict[str, Any]]:
    """The manifest's rows as written (paths not resolved), for the rewrite. :func:`read_manifest` has
    checked the file already."""
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def audio_path_of(row: dict[str, Any], root: Path) -> Path | None:
    """A row's ``audio_path`` (relative paths are relative to the manifest's folder), or None."""
    value = row.get("audio_path")
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else root / path


def row_seconds(row: dict[str, Any]) -> float:
    """A row's audio length: its ``duration``, else its latent frames at the DC-AE frame rate."""
    if row.get("duration") is not None:
        return float(row["duration"])
    return int(row["num_frames"]) / DEFAULT_FRAME_RATE
