"""Parquet shards: a corpus as a few files of a few hundred MB, which pyarrow, Hugging Face
``datasets``, DuckDB, pandas, Spark and Ray Data read with no code of ours (DESIGN.md, Formats).

    DIR/shards/<name>.parquet    one row per utterance (:data:`SCHEMA`), row groups of ``ROW_GROUP_ROWS`` rows
    DIR/shards.json              {"shards": [{"path": "shards/<name>.parquet", "rows": N, "frames": F}, ...]}
    DIR/stats.json               per-dimension mean / std of the latents (as the per-file layout's)

Columns: ``id`` (string), ``text`` (string, may be empty), ``audio_path`` (string), ``num_frames``
(int), ``duration`` (float), ``latent`` (list of D lists of ``num_frames`` float32: the same
(D, frames) array as a latent file), and when the corpus has them ``tokens`` (list of int),
``token_rate`` (float), ``speaker`` (string), ``speaker_embedding`` (list of float).

Each file's key-value metadata ``dcae`` holds JSON: the latent geometry (``sample_rate``,
``hop_length``, ``frame_rate``, ``latent_dim``), the AE weights' hash (``model``), the token
settings when it has tokens (``token_rate``, ``tokenizer``, ``codebook_size``, ``tokens_model``)
and the sums of its latents (``stats``), so ``stats.json`` is a merge of the footers. Readers
accept shards written by other tools in this schema: missing metadata takes the DC-AE's values and
missing sums are computed when needed. ``shards.json`` is optional for readers: without it they list
the folder.

A shard file is written whole to a temporary name and renamed (:func:`write_shard`), so a shard is
either complete or absent; a truncated or corrupt file found by a reader is named in one line and
left out (:func:`index_shards`).
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dcae.atomic import atomic_path, atomic_write_json
from dcae.corpus.defaults import DEFAULT_SHARD_MB, ROW_GROUP_ROWS
from dcae.corpus.latent_file import DEFAULT_FRAME_RATE, DEFAULT_HOP_LENGTH, DEFAULT_SAMPLE_RATE
from dcae.corpus.stats import RunningStats

SHARDS_DIR = "shards"
INDEX_FILE = "shards.json"
META_KEY = b"dcae"

BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.string()),
    pa.field("audio_path", pa.string()),
    pa.field("num_frames", pa.int64(), nullable=False),
    pa.field("duration", pa.float64()),
    pa.field("latent", pa.list_(pa.list_(pa.float32())), nullable=False),
]
OPTIONAL_FIELDS = {
    "tokens": pa.field("tokens", pa.list_(pa.int32())),
    "token_rate": pa.field("token_rate", pa.float64()),
    "speaker": pa.field("speaker", pa.string()),
    "speaker_embedding": pa.field("speaker_embedding", pa.list_(pa.float32())),
}
SCHEMA = pa.schema(BASE_FIELDS + list(OPTIONAL_FIELDS.values()))


class ShardError(ValueError):
    """A shard or shard folder that cannot be used (one line: which file, and why)."""


@dataclass
class ShardRow:
    """One utterance as a shard holds it. ``latent``: (D, frames) float32; ``tokens``: (N,) ints."""

    id: str
    latent: np.ndarray
    text: str = ""
    audio_path: str = ""
    duration: float | None = None
    tokens: np.ndarray | None = None
    token_rate: float | None = None
    speaker: str | None = None
    speaker_embedding: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.latent.shape[-1])

    @property
    def nbytes(self) -> int:
        return self.latent.nbytes + (0 if self.tokens is None else 4 * self.tokens.size) + 64 + len(self.text)


def _nested_floats(arrays: Sequence[np.ndarray]) -> pa.Array:
    """(D_i, T_i) float arrays -> list<list<float32>>: row i holds D_i lists of T_i values."""
    inner_lengths = np.concatenate([np.full(a.shape[0], a.shape[1], dtype=np.int64) for a in arrays]) \
        if arrays else np.zeros(0, np.int64)
    inner_offsets = np.concatenate([[0], np.cumsum(inner_lengths)]).astype(np.int32)
    outer_offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])]).astype(np.int32)
    values = pa.array(np.concatenate([np.ascontiguousarray(a, np.float32).ravel() for a in arrays])
                      if arrays else np.zeros(0, np.float32), pa.float32())
    return pa.ListArray.from_arrays(pa.array(outer_offsets), pa.ListArray.from_arrays(pa.array(inner_offsets), values))


def _flat_lists(arrays: Sequence[np.ndarray | None], value_type: pa.DataType, dtype: np.dtype) -> pa.Array:
    """1-D arrays (or None: a null row) -> list<value_type>."""
    return pa.array([None if a is None else np.asarray(a, dtype) for a in arrays], pa.list_(value_type))


def rows_table(rows: Sequence[ShardRow]) -> pa.Table:
    """The rows as a table of :data:`SCHEMA`'s columns (optional ones only when some row has them)."""
    columns = {
        "id": pa.array([r.id for r in rows], pa.string()),
        "text": pa.array([r.text or "" for r in rows], pa.string()),
        "audio_path": pa.array([r.audio_path or "" for r in rows], pa.string()),
        "num_frames": pa.array([r.num_frames for r in rows], pa.int64()),
        "duration": pa.array([r.duration for r in rows], pa.float64()),
        "latent": _nested_floats([r.latent for r in rows]),
    }
    if any(r.tokens is not None for r in rows):
        columns["tokens"] = _flat_lists([r.tokens for r in rows], pa.int32(), np.int32)
        columns["token_rate"] = pa.array([r.token_rate for r in rows], pa.float64())
    if any(r.speaker is not None for r in rows):
        columns["speaker"] = pa.array([r.speaker for r in rows], pa.string())
    if any(r.speaker_embedding is not None for r in rows):
        columns["speaker_embedding"] = _flat_lists([r.speaker_embedding for r in rows], pa.float32(), np.float32)
    schema = pa.schema([f for f in SCHEMA if f.name in columns])
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def write_shard(path: Path, rows: Sequence[ShardRow], meta: dict[str, Any],
                row_group_rows: int = ROW_GROUP_ROWS) -> dict[str, Any]:
    """Write ``rows`` as one Parquet file, atomically, with ``meta`` plus the rows' latent sums in its
    metadata; returns its index entry (``path`` relative to the shard folder's parent)."""
    stats = RunningStats(int(rows[0].latent.shape[0]))
    for row in rows:
        stats.add_array(row.latent)
    table = rows_table(rows)
    footer = {**meta, "latent_dim": stats.dim, "stats": stats.to_dict()}
    table = table.replace_schema_metadata({META_KEY: json.dumps(footer).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_rows, compression="zstd")
    return {"path": f"{path.parent.name}/{path.name}", "rows": len(rows), "frames": stats.count}


@dataclass
class ShardInfo:
    """A readable shard: where it is, its rows per row group, frames, and its ``dcae`` metadata."""

    path: Path
    row_groups: list[int]
    frames: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.row_groups)


def shard_meta(metadata: dict[bytes, bytes] | None) -> dict[str, Any]:
    """The ``dcae`` metadata of a shard's schema, with the DC-AE's values where it has none."""
    meta = {}
    if metadata and META_KEY in metadata:
        try:
            meta = json.loads(metadata[META_KEY])
        except ValueError:
            meta = {}
    meta.setdefault("sample_rate", DEFAULT_SAMPLE_RATE)
    meta.setdefault("hop_length", DEFAULT_HOP_LENGTH)
    meta.setdefault("frame_rate", DEFAULT_FRAME_RATE)
    meta.setdefault("model", "")
    return meta


def read_shard_info(path: Path) -> ShardInfo:
    """A shard's footer (no data is read). Raises :class:`ShardError` for a truncated or corrupt file,
    or one without the required columns."""
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise ShardError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())[:160]})") from None
    names = set(parquet.schema_arrow.names)
    missing = [f.name for f in BASE_FIELDS if f.name in ("id", "num_frames", "latent") and f.name not in names]
    if missing:
        raise ShardError(f"{path}: not a latent shard (no {', '.join(missing)} column)")
    metadata = parquet.metadata
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    meta = shard_meta(parquet.schema_arrow.metadata)
    frames = int(meta["stats"]["count"]) if "stats" in meta else \
        int(sum(pq.read_table(path, columns=["num_frames"]).column(0).to_numpy()))
    return ShardInfo(path, groups, frames, meta)


def shard_paths(root: Path) -> list[Path]:
    """The shard files of a shard folder ``root``: those ``shards.json`` lists, else ``root/shards/*.parquet``."""
    index = root / INDEX_FILE
    if index.is_file():
        try:
            entries = json.loads(index.read_text())["shards"]
            return [root / entry["path"] for entry in entries]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ShardError(f"{index}: not a shard index ({e})") from None
    return sorted((root / SHARDS_DIR).glob("*.parquet"))


def index_shards(root: Path, listed: bool = True) -> tuple[list[ShardInfo], list[str]]:
    """(readable shards of ``root``, one line per shard left out and why). ``listed=False``: every file of
    ``root/shards/`` whatever ``shards.json`` says (a writer resuming: the files are the truth)."""
    shards, problems = [], []
    paths = shard_paths(root) if listed else sorted((root / SHARDS_DIR).glob("*.parquet"))
    for path in paths:
        try:
            shards.append(read_shard_info(path))
        except ShardError as e:
            problems.append(str(e))
        except FileNotFoundError:
            problems.append(f"{path}: listed in {root / INDEX_FILE} but missing")
    return shards, problems


def is_shard_folder(path: Path) -> bool:
    """A folder holding ``shards.json`` or ``shards/*.parquet``."""
    return path.is_dir() and ((path / INDEX_FILE).is_file() or any((path / SHARDS_DIR).glob("*.parquet")))


def write_index(root: Path, shards: Iterable[ShardInfo]) -> dict[str, Any]:
    """``root/shards.json`` for ``shards`` (paths relative to ``root``) and ``root/stats.json`` from their
    footers' sums (computed from the data for shards without them). Returns the totals."""
    shards = list(shards)
    stats: RunningStats | None = None
    entries = []
    for shard in shards:
        entries.append({"path": shard.path.relative_to(root).as_posix(), "rows": shard.rows, "frames": shard.frames})
        part = RunningStats.from_dict(shard.meta["stats"]) if "stats" in shard.meta else shard_stats(shard.path)
        if stats is None:
            stats = RunningStats(part.dim)
        stats.merge(part)
    atomic_write_json(root / INDEX_FILE, {"shards": entries})
    rows = sum(s.rows for s in shards)
    if stats is not None:
        stats.finish().save(root / "stats.json", num_utterances=rows)
    return {"shards": len(shards), "utterances": rows, "frames": stats.count if stats else 0}


def shard_stats(path: Path) -> RunningStats:
    """The latent sums of a shard without them in its metadata (another tool's), from its data."""
    parquet = pq.ParquetFile(path)
    stats: RunningStats | None = None
    for i in range(parquet.num_row_groups):
        for latent in latent_arrays(parquet.read_row_group(i, columns=["latent"]).column(0)):
            stats = stats or RunningStats(latent.shape[0])
            stats.add_array(latent)
    return stats or RunningStats(1)


def latent_arrays(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """A ``latent`` column -> one (D, frames) float32 array per row (views into one buffer)."""
    outer = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    outer_offsets = outer.offsets.to_numpy()
    inner = outer.values
    inner_offsets = inner.offsets.to_numpy()
    values = inner.values.to_numpy(zero_copy_only=False)
    if not values.flags.writeable:  # Arrow's buffer is read-only: one copy per column, so torch can own the rows
        values = values.copy()
    dims = np.diff(outer_offsets)
    starts, stops = inner_offsets[outer_offsets[:-1]], inner_offsets[outer_offsets[1:]]
    frames = (stops - starts) // np.maximum(dims, 1)
    ragged = np.diff(inner_offsets) != np.repeat(frames, dims)  # every list of a row has the row's length
    if ragged.any():
        row = int(np.repeat(np.arange(len(dims)), dims)[np.argmax(ragged)])
        raise ShardError(f"row {row}: the latent's {dims[row]} lists have different lengths")
    return [values[start:stop].reshape(dim, n) for start, stop, dim, n in zip(starts, stops, dims, frames)]


def list_arrays(column: pa.ChunkedArray | pa.Array, dtype: np.dtype) -> list[np.ndarray | None]:
    """A list column (``tokens``, ``speaker_embedding``) -> one 1-D array per row (None for a null row)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = array.offsets.to_numpy()
    values = array.values.to_numpy(zero_copy_only=False).astype(dtype)  # a writable copy
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return [values[offsets[r]:offsets[r + 1]] if valid[r] else None for r in range(len(array))]


_OPEN: "OrderedDict[tuple[int, str], pq.ParquetFile]" = OrderedDict()  # (pid, path) -> open file: footers parse once
OPEN_FILES = 2  # a footer of 2,000 row groups holds ~15 MB: a few open files per process


def _open(path: Path) -> pq.ParquetFile:
    """A shard opened once per process (its footer, ~2,000 row groups' metadata, takes ~30 ms to parse);
    keyed by pid so that forked DataLoader workers open their own."""
    key = (os.getpid(), str(path))
    if key in _OPEN:
        _OPEN.move_to_end(key)
        return _OPEN[key]
    parquet = _OPEN[key] = pq.ParquetFile(path)
    while len(_OPEN) > OPEN_FILES:
        _OPEN.popitem(last=False)
    return parquet


def read_rows(path: Path, row_group: int, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Row group ``row_group`` of a shard as dicts: ``latent`` (D, frames) float32 arrays, ``tokens`` /
    ``speaker_embedding`` 1-D arrays, the rest as Python values. ``columns``: only these (default: all).
    Raises :class:`ShardError` (one line) when the data cannot be read."""
    try:
        parquet = _open(path)
        names = [c for c in (columns or parquet.schema_arrow.names) if c in parquet.schema_arrow.names]
        table = parquet.read_row_group(row_group, columns=names)
    except (OSError, pa.ArrowException) as e:
        raise ShardError(f"{path}: row group {row_group} unreadable ({' '.join(str(e).split())[:160]})") from None
    data: dict[str, list] = {}
    for name in table.column_names:
        column = table.column(name)
        if name == "latent":
            data[name] = latent_arrays(column)
        elif name == "tokens":
            data[name] = list_arrays(column, np.int64)
        elif name == "speaker_embedding":
            data[name] = list_arrays(column, np.float32)
        else:
            data[name] = column.to_pylist()
    return [{name: values[i] for name, values in data.items()} for i in range(table.num_rows)]


def read_ids(path: Path) -> list[str]:
    """The ``id`` column of a shard (for resuming: which utterances it holds)."""
    return pq.read_table(path, columns=["id"]).column(0).to_pylist()


def next_shard_path(folder: Path, prefix: str) -> Path:
    """``folder/<prefix><n>.parquet`` with ``n`` one past the highest taken (a name is never reused)."""
    taken = [int(p.stem[len(prefix):]) for p in folder.glob(f"{prefix}*.parquet") if p.stem[len(prefix):].isdigit()]
    return folder / f"{prefix}{max(taken, default=-1) + 1:05d}.parquet"


class ShardWriter:
    """Rows in, shard files out: a shard is written (atomically) once the rows held reach ``max_bytes``
    of data, and by :meth:`flush`. ``prefix`` names this writer's files (``<prefix>00000.parquet`` ...)."""

    def __init__(self, folder: Path, prefix: str, meta: dict[str, Any], max_mb: float = DEFAULT_SHARD_MB,
                 row_group_rows: int = ROW_GROUP_ROWS):
        self.folder, self.prefix, self.meta = folder, prefix, meta
        self.max_bytes = max(1, int(max_mb * 2**20))
        self.row_group_rows = row_group_rows
        self.rows: list[ShardRow] = []
        self.held = 0
        self.written: list[dict[str, Any]] = []
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, row: ShardRow) -> list[str]:
        """Hold ``row``; the ids of the rows a shard written now holds (empty when none was written)."""
        self.rows.append(row)
        self.held += row.nbytes
        return self.flush() if self.held >= self.max_bytes else []

    def flush(self) -> list[str]:
        """Write the rows held as a shard; their ids."""
        if not self.rows:
            return []
        rows, self.rows, self.held = self.rows, [], 0
        self.written.append(write_shard(next_shard_path(self.folder, self.prefix), rows, self.meta,
                                        self.row_group_rows))
        return [row.id for row in rows]


def replace_columns(path: Path, columns: dict[str, pa.Array], meta: dict[str, Any],
                    row_group_rows: int = ROW_GROUP_ROWS) -> None:
    """Rewrite a shard (atomically) with ``columns`` added or replaced (in :data:`SCHEMA`'s order) and
    ``meta`` merged into its ``dcae`` metadata (``dcae tokens`` filling in a corpus's tokens)."""
    table = pq.read_table(path)
    footer = {**shard_meta(table.schema.metadata), **meta}
    data = {name: table.column(name) for name in table.column_names}
    data.update(columns)
    names = [f.name for f in SCHEMA if f.name in data] + [n for n in data if n not in SCHEMA.names]
    fields = [SCHEMA.field(n) if n in SCHEMA.names else table.schema.field(n) for n in names]
    out = pa.Table.from_arrays([data[n] for n in names], schema=pa.schema(fields))
    out = out.replace_schema_metadata({META_KEY: json.dumps(footer).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(out, tmp, row_group_size=row_group_rows, compression="zstd")


def token_columns(tokens: Sequence[np.ndarray | None], token_rate: float) -> dict[str, pa.Array]:
    """``tokens`` and ``token_rate`` columns for a shard's rows (None: that row has no tokens)."""
    return {"tokens": _flat_lists(tokens, pa.int32(), np.int32),
            "token_rate": pa.array([None if t is None else token_rate for t in tokens], pa.float64())}
