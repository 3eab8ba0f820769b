"""A resumable latent store: per-utterance latent files + manifest + corpus statistics.

Layout of an export folder ``DIR``::

    DIR/export.json                 settings of the export (model hash, mel config, dtype)
    DIR/latents/ab/<name>-<hash>.safetensors   one file per utterance (:mod:`dcae.latents.file`)
    DIR/parts/<W>x<R>.jsonl         manifest rows written by rank R of a W-process run
    DIR/parts/<W>x<R>.stats.json    that part's running sums, covering its first ``rows`` rows
    DIR/parts/<W>x<R>.failed.jsonl  inputs that could not be exported, with the reason
    DIR/manifest.jsonl, DIR/stats.json, DIR/failed.jsonl    merged at the end

Crash safety: a latent file is written atomically first, then its row is appended to the part,
then the part's statistics snapshot is replaced atomically. On restart, rows past the snapshot
are dropped and recovered from their (complete) latent files, so every utterance ends up in the
manifest exactly once and in the statistics exactly once, whenever the process was killed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from dcae.utils.atomic import atomic_write_json, atomic_write_text

from .file import LatentFileError, load_latent
from .manifest import write_manifest
from .stats import RunningStats


def utterance_id(audio_path: str | Path) -> str:
    """Stable, unique id: the file's stem plus a short hash of its absolute path."""
    path = Path(audio_path).expanduser().resolve()
    digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:80] or "utt"
    return f"{stem}-{digest}"


def latent_relpath(uid: str) -> str:
    """Where an utterance's latent lives, relative to the store (sharded by hash prefix)."""
    return f"latents/{uid[-10:-8]}/{uid}.safetensors"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line from a kill: everything after it is dropped
            break
    return rows


def _committed_rows(stats_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A part's statistics snapshot and the rows it covers (rows written after it are dropped)."""
    snapshot = json.loads(stats_path.read_text())
    rows_path = stats_path.with_name(stats_path.name.replace(".stats.json", ".jsonl"))
    return snapshot, _read_jsonl(rows_path)[: int(snapshot["rows"])]


def verify_latent(path: Path, num_frames: int | None = None) -> bool:
    """True if ``path`` is a complete latent file (readable header and data, expected frames)."""
    try:
        latent, _ = load_latent(path, dtype=None)
    except LatentFileError:
        return False
    return num_frames is None or latent.shape[-1] == num_frames


@dataclass
class StorePart:
    """The manifest rows and statistics written by one rank of one run (see module docstring)."""

    root: Path
    name: str
    dim: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    stats: RunningStats | None = None

    @property
    def rows_path(self) -> Path:
        return self.root / "parts" / f"{self.name}.jsonl"

    @property
    def stats_path(self) -> Path:
        return self.root / "parts" / f"{self.name}.stats.json"

    @property
    def failed_path(self) -> Path:
        return self.root / "parts" / f"{self.name}.failed.jsonl"

    @classmethod
    def open(cls, root: Path, name: str, dim: int) -> "StorePart":
        """Load a part, dropping rows written after its last statistics snapshot."""
        part = cls(root=root, name=name, dim=dim)
        if part.stats_path.is_file():
            snapshot, part.rows = _committed_rows(part.stats_path)
            part.stats = RunningStats.from_dict(snapshot["stats"])
        else:
            part.rows, part.stats = [], RunningStats(dim)
        part.rows_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(part.rows_path, "".join(json.dumps(r) + "\n" for r in part.rows))
        return part

    def commit(self, rows: list[dict[str, Any]], latents: list[torch.Tensor]) -> None:
        """Append rows (their latent files already written) and snapshot the statistics."""
        if not rows:
            return
        with open(self.rows_path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
        for latent in latents:
            self.stats.add(latent)
        self.rows.extend(rows)
        atomic_write_json(self.stats_path, {"rows": len(self.rows), "stats": self.stats.to_dict()})

    def record_failure(self, audio_path: str, reason: str) -> None:
        with open(self.failed_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"audio_path": audio_path, "error": reason}) + "\n")


def _part_snapshots(root: Path) -> list[Path]:
    parts = root / "parts"
    return sorted(parts.glob("*.stats.json")) if parts.is_dir() else []


def done_rows(root: Path) -> dict[str, dict[str, Any]]:
    """Every committed row of every part of ``root`` (any earlier world size), by id."""
    out: dict[str, dict[str, Any]] = {}
    for stats_path in _part_snapshots(root):
        for row in _committed_rows(stats_path)[1]:
            out.setdefault(row["id"], row)
    return out


TOKEN_FIELDS = ("token_path", "num_tokens", "token_rate")


def _previous_token_fields(root: Path) -> dict[str, dict[str, Any]]:
    """Token fields (``dcae tokens``) of the current ``manifest.jsonl`` rows whose token file exists, by id."""
    kept: dict[str, dict[str, Any]] = {}
    for row in _read_jsonl(root / "manifest.jsonl"):
        if all(k in row for k in TOKEN_FIELDS) and (root / row["token_path"]).is_file():
            kept[row["id"]] = {k: row[k] for k in TOKEN_FIELDS}
    return kept


def merge_parts(root: Path, order: Iterable[str], dim: int) -> dict[str, Any]:
    """Write ``manifest.jsonl`` (rows in ``order`` of ids), ``stats.json`` and ``failed.jsonl``.

    Token fields that ``dcae tokens`` added to the previous manifest are carried over (their file exists)."""
    rows: dict[str, dict[str, Any]] = {}
    stats = RunningStats(dim)
    for stats_path in _part_snapshots(root):
        snapshot, part_rows = _committed_rows(stats_path)
        duplicates = [r for r in part_rows if r["id"] in rows]
        if duplicates:  # cannot happen through the exporter; guard the statistics anyway
            raise RuntimeError(f"{stats_path}: {len(duplicates)} utterances also exported by another part")
        rows.update((r["id"], r) for r in part_rows)
        stats.merge(RunningStats.from_dict(snapshot["stats"]))
    tokens = _previous_token_fields(root)  # a rerun of the export keeps the tokens added to its rows
    ordered = [{**rows[i], **tokens.get(i, {})} for i in order if i in rows]
    write_manifest(root / "manifest.jsonl", ordered)
    stats.finish().save(root / "stats.json", num_utterances=len(ordered))
    failed: dict[str, dict[str, Any]] = {}
    for path in sorted((root / "parts").glob("*.failed.jsonl")):
        for row in _read_jsonl(path):
            failed[row["audio_path"]] = row
    exported_paths = {r["audio_path"] for r in ordered}
    still_failed = [r for p, r in failed.items() if p not in exported_paths]
    atomic_write_text(root / "failed.jsonl", "".join(json.dumps(r) + "\n" for r in still_failed))
    return {"utterances": len(ordered), "frames": stats.count, "failed": len(still_failed)}
