"""A resumable latent store: per-utterance latent files + manifest + corpus statistics.

Layout of an export folder ``DIR``::

    DIR/export.json                 settings of the export (model hash, mel config, dtype)
    DIR/latents/ab/<name>-<hash>.safetensors   one file per utterance (:mod:`dcae.corpus.latent_file`)
    DIR/parts/<W>x<R>.jsonl         manifest rows of rank R's share in a W-process run
    DIR/parts/<W>x<R>.stats.json    that part's running sums, covering its first ``rows`` rows
    DIR/parts/<W>x<R>.failed.jsonl  inputs of that share that could not be exported in that run
    DIR/manifest.jsonl, DIR/stats.json, DIR/failed.jsonl    merged at the end

Crash safety: a latent file is written atomically first, then its row is appended to the part,
then the part's statistics snapshot is replaced atomically; rows past the snapshot are ignored.

Resuming: the latent files are the truth, the committed rows a record of them. Every run starts
each rank's part afresh (:meth:`StorePart.start`) with the utterances of its share whose latent
file is complete (and has the frames of the newest committed row, when there is one), their
statistics summed from those files, and then encodes the rest. So a part never holds an utterance
twice, nor one whose latent broke, whatever earlier runs (of any world size) left; the merge reads
only the parts of the run that finished, so every utterance ends up in the manifest and in the
statistics exactly once, whenever a process was killed and however the rerun is sharded. Parts of
other world sizes are removed after a merge (:func:`prune_parts`).
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

from dcae.atomic import atomic_write_json, atomic_write_text
from dcae.corpus.latent_file import LatentFileError, LatentMeta, load_latent
from dcae.corpus.manifest import write_manifest
from dcae.corpus.stats import RunningStats
from dcae.jsonl import read_jsonl


def utterance_id(audio_path: str | Path) -> str:
    """Stable, unique id: the file's stem plus a short hash of its absolute path."""
    path = Path(audio_path).expanduser().resolve()
    digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:80] or "utt"
    return f"{stem}-{digest}"


def latent_relpath(uid: str) -> str:
    """Where an utterance's latent lives, relative to the store (sharded by hash prefix)."""
    return f"latents/{uid[-10:-8]}/{uid}.safetensors"


def _committed_rows(stats_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A part's statistics snapshot and the rows it covers (rows written after it are dropped)."""
    snapshot = json.loads(stats_path.read_text())
    rows_path = stats_path.with_name(stats_path.name.replace(".stats.json", ".jsonl"))
    return snapshot, read_jsonl(rows_path)[: int(snapshot["rows"])]


class StoreError(ValueError):
    """Export parts that cannot be merged (the message is one line for the user)."""


def read_complete_latent(path: Path) -> tuple[torch.Tensor, LatentMeta] | None:
    """A complete latent file's (latent (D, frames) in its stored dtype, metadata), or None when it is
    missing, truncated or not a latent file."""
    try:
        return load_latent(path, dtype=None)
    except LatentFileError:
        return None


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
    def start(cls, root: Path, name: str, dim: int, rows: Iterable[dict[str, Any]] = (),
              stats: RunningStats | None = None) -> "StorePart":
        """This run's part ``name``, replacing whatever an earlier run left under that name: ``rows``
        (their latent files verified by the caller) with ``stats``, their sums (None: nothing summed).
        The part's failures are cleared: this run tries those inputs again.

        The rows file is replaced before the snapshot: a kill in between leaves a part whose rows and
        sums disagree, which no merge reads (the merge waits for every rank of one run to finish) and
        the next run starts afresh again; its rows are only used as hints checked against the files."""
        part = cls(root=root, name=name, dim=dim, rows=list(rows), stats=stats or RunningStats(dim))
        part.rows_path.parent.mkdir(parents=True, exist_ok=True)
        part.failed_path.unlink(missing_ok=True)
        atomic_write_text(part.rows_path, "".join(json.dumps(r) + "\n" for r in part.rows))
        part._snapshot()
        return part

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
        self._snapshot()

    def _snapshot(self) -> None:
        atomic_write_json(self.stats_path, {"rows": len(self.rows), "stats": self.stats.to_dict()})

    def record_failure(self, uid: str, audio_path: str | None, reason: str) -> None:
        """Record that utterance ``uid`` could not be done in this run, and why."""
        with open(self.failed_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"id": uid, "audio_path": audio_path, "error": reason}) + "\n")


PART_NAME = re.compile(r"(\d+)x(\d+)\.")  # <W>x<R>. at the start of every file of a part


def _part_snapshots(root: Path, world_size: int | None = None) -> list[Path]:
    """The statistics snapshots of ``root``'s parts (of ``world_size`` only, when given), least recently
    committed first."""
    parts = root / "parts"
    if not parts.is_dir():
        return []
    pattern = "*.stats.json" if world_size is None else f"{world_size}x*.stats.json"
    return sorted(parts.glob(pattern), key=lambda p: (p.stat().st_mtime_ns, p.name))


def done_rows(root: Path) -> dict[str, dict[str, Any]]:
    """The newest committed row of each id in ``root``'s parts (any earlier world size): parts are read
    from the least to the most recently committed, rows in commit order, and a later row of an id
    replaces an earlier one (an utterance redone after its file broke)."""
    out: dict[str, dict[str, Any]] = {}
    for stats_path in _part_snapshots(root):
        for row in _committed_rows(stats_path)[1]:
            out[row["id"]] = row
    return out


def part_rows(root: Path, world_size: int) -> dict[str, dict[str, Any]]:
    """The committed rows of the parts of ``world_size`` (one run), by id."""
    return {row["id"]: row for stats_path in _part_snapshots(root, world_size)
            for row in _committed_rows(stats_path)[1]}


def part_failures(root: Path, world_size: int) -> dict[str, dict[str, Any]]:
    """The failures the parts of ``world_size`` recorded (``{"id", "audio_path", "error"}``), by id."""
    failed: dict[str, dict[str, Any]] = {}
    for path in sorted((root / "parts").glob(f"{world_size}x*.failed.jsonl")):
        for row in read_jsonl(path):
            failed[row["id"]] = row
    return failed


def prune_parts(root: Path, world_size: int) -> None:
    """Remove the parts of other world sizes than ``world_size`` (superseded once that run merged)."""
    parts = root / "parts"
    for path in parts.iterdir() if parts.is_dir() else ():
        match = PART_NAME.match(path.name)
        if match and int(match[1]) != world_size:
            path.unlink(missing_ok=True)


TOKEN_FIELDS = ("token_path", "num_tokens", "token_rate")


def _previous_added_fields(root: Path) -> dict[str, dict[str, Any]]:
    """Fields later commands added to the current ``manifest.jsonl`` rows (``dcae tokens``: the token
    fields; ``dcae speakers``: ``speaker_path``) whose file exists, by id."""
    kept: dict[str, dict[str, Any]] = {}
    for row in read_jsonl(root / "manifest.jsonl"):
        for fields, path_key in ((TOKEN_FIELDS, "token_path"), (("speaker_path",), "speaker_path")):
            if all(k in row for k in fields) and (root / row[path_key]).is_file():
                kept.setdefault(row["id"], {}).update({k: row[k] for k in fields})
    return kept


def merge_parts(root: Path, order: Iterable[str], dim: int, world_size: int | None = None) -> dict[str, Any]:
    """Write ``manifest.jsonl`` (rows in ``order`` of ids), ``stats.json`` and ``failed.jsonl`` from the
    parts of ``world_size`` (None: every part).

    Fields that ``dcae tokens`` and ``dcae speakers`` added to the previous manifest are carried over
    (their file exists).
    An id in two parts (or twice in one) raises :class:`StoreError` rather than keeping one row: a part's
    statistics are sums that cannot drop one utterance's frames, so they would count twice. The exporter
    starts its parts afresh every run, so this takes parts edited or mixed by hand; rerunning the export
    rebuilds them from the latent files."""
    rows: dict[str, dict[str, Any]] = {}
    where: dict[str, Path] = {}
    stats = RunningStats(dim)
    for stats_path in _part_snapshots(root, world_size):
        snapshot, part_rows = _committed_rows(stats_path)
        for row in part_rows:
            if row["id"] in rows:
                raise StoreError(f"{stats_path}: utterance {row['id']} is also in {where[row['id']].name}, so its "
                                 f"frames would count twice in stats.json; rerun the export (it rebuilds its parts "
                                 f"from the latent files)")
            rows[row["id"]], where[row["id"]] = row, stats_path
        stats.merge(RunningStats.from_dict(snapshot["stats"]))
    tokens = _previous_added_fields(root)  # a rerun of the export keeps the tokens and speakers added to its rows
    ordered = [{**rows[i], **tokens.get(i, {})} for i in order if i in rows]
    write_manifest(root / "manifest.jsonl", ordered)
    stats.finish().save(root / "stats.json", num_utterances=len(ordered))
    failed: dict[str, dict[str, Any]] = {}
    prefix = "" if world_size is None else f"{world_size}x"
    for path in sorted((root / "parts").glob(f"{prefix}*.failed.jsonl")):
        for row in read_jsonl(path):
            failed[row["id"]] = row
    still_failed = [r for uid, r in failed.items() if uid not in rows]
    atomic_write_text(root / "failed.jsonl", "".join(json.dumps(r) + "\n" for r in still_failed))
    return {"utterances": len(ordered), "frames": stats.count, "failed": len(still_failed)}
