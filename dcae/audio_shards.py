"""Audio in shards, as large speech corpora are distributed, read in place (nothing is extracted):

- **WebDataset tar shards** (Emilia's layout): members ``<key>.<audio extension>`` and ``<key>.json``
  (``{"text": ..., "speaker": ...}``) one after the other in each ``.tar``;
- **Parquet** files with an ``audio`` column (the bytes of an audio file, or the ``{"bytes", "path"}``
  struct of Hugging Face ``datasets``' Audio feature) beside ``id`` (or ``key``) and ``text``.

An utterance in a shard is named ``SHARD::KEY`` (:data:`MEMBER`), a string that filelists, error
lines and manifests (``audio_path``) carry like a file path: :func:`dcae.audio.load_audio` and
:func:`dcae.audio.audio_info` read such a name from its shard, and
:func:`preprocess.filelist.read_filelist` lists a shard folder's utterances (``dcae export --filelist
DIR``, the DC-AE trainer's ``--train-dataset-path DIR``).

Each process indexes a shard once (a tar's member offsets; a Parquet file's ids), reads a tar member
by seeking to it, and keeps the last Parquet row group it read (rows are read in order by export;
write Parquet with small row groups for the random access of training).
"""
from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dcae.paths import AUDIO_EXTENSIONS

MEMBER = "::"  # SHARD::KEY
SHARD_SUFFIXES = (".tar", ".parquet")


class ShardAudioError(ValueError):
    """An audio shard or member that cannot be read (one line: which, and why)."""


@dataclass(frozen=True)
class ShardUtterance:
    """One utterance of an audio shard: its name (``SHARD::KEY``), transcript and speaker (None: none)."""

    name: str
    text: str | None
    speaker: str | None


def split_member(path: str | Path) -> tuple[Path, str] | None:
    """``SHARD::KEY`` -> (shard path, key); None for an ordinary path."""
    text = str(path)
    shard, sep, key = text.partition(MEMBER)
    if not sep or not shard.endswith(SHARD_SUFFIXES):
        return None
    return Path(shard), key


def is_audio_shards(path: str | Path) -> bool:
    """A ``.tar`` / ``.parquet`` file, or a folder holding some (an audio corpus in shards)."""
    path = Path(path)
    if path.is_file():
        return path.suffix in SHARD_SUFFIXES
    return path.is_dir() and any(p.suffix in SHARD_SUFFIXES for p in path.iterdir())


# ---------------------------------------------------------------------------------------- tar
_TAR_INDEX: dict[str, dict[str, tuple[int, int, str]]] = {}  # shard -> key -> (data offset, size, member name)


def _tar_index(shard: Path) -> dict[str, tuple[int, int, str]]:
    key = str(shard)
    if key not in _TAR_INDEX:
        index: dict[str, tuple[int, int, str]] = {}
        try:
            with tarfile.open(shard, "r:") as tar:
                for member in tar:
                    if member.isfile():
                        index[member.name] = (member.offset_data, member.size, member.name)
        except (OSError, tarfile.TarError) as e:
            raise ShardAudioError(f"{shard}: not a readable tar shard ({e})") from None
        _TAR_INDEX[key] = index
    return _TAR_INDEX[key]


def _grouped(index: dict[str, tuple[int, int, str]]) -> dict[str, dict[str, str]]:
    """WebDataset grouping: key (the member name up to the first dot of its last part) -> suffix -> member."""
    groups: dict[str, dict[str, str]] = {}
    for name in index:
        posix = PurePosixPath(name)
        stem, dot, suffix = posix.name.partition(".")
        groups.setdefault(str(posix.parent / stem) if str(posix.parent) != "." else stem, {})["." + suffix] = name
    return groups


def _read_tar(shard: Path, member: str) -> bytes:
    offset, size, _ = _tar_index(shard)[member]
    with open(shard, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _tar_utterances(shard: Path) -> list[ShardUtterance]:
    out = []
    for key, members in sorted(_grouped(_tar_index(shard)).items()):
        audio = [members[s] for s in AUDIO_EXTENSIONS if s in members]
        if not audio:
            continue
        meta: dict[str, Any] = {}
        if ".json" in members:
            try:
                meta = json.loads(_read_tar(shard, members[".json"]))
            except ValueError:
                meta = {}
        out.append(ShardUtterance(f"{shard}{MEMBER}{audio[0]}", _text(meta.get("text")), _text(meta.get("speaker"))))
    return out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------------------------------- parquet
_PARQUET_INDEX: dict[str, dict[str, tuple[int, int]]] = {}  # shard -> key -> (row group, index in it)
_PARQUET_GROUP: dict[str, Any] = {}  # the last row group read: {"key": (shard, group), "audio": [...]}
ID_COLUMNS = ("id", "key", "__key__", "path")


def _parquet_file(shard: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(shard)
    except Exception as e:  # noqa: BLE001 - pyarrow raises OSError and ArrowInvalid
        raise ShardAudioError(f"{shard}: not a readable Parquet file ({' '.join(str(e).split())[:160]})") from None


def _id_column(shard: Path, names: list[str]) -> str:
    if "audio" not in names:
        raise ShardAudioError(f"{shard}: no 'audio' column (an audio shard holds the audio files' bytes)")
    for name in ID_COLUMNS:
        if name in names:
            return name
    raise ShardAudioError(f"{shard}: no id column (one of {', '.join(ID_COLUMNS)})")


def _parquet_rows(shard: Path) -> tuple[Any, str]:
    parquet = _parquet_file(shard)
    return parquet, _id_column(shard, parquet.schema_arrow.names)


def _parquet_index(shard: Path) -> dict[str, tuple[int, int]]:
    key = str(shard)
    if key not in _PARQUET_INDEX:
        parquet, id_name = _parquet_rows(shard)
        index = {}
        for group in range(parquet.num_row_groups):
            ids = parquet.read_row_group(group, columns=[id_name]).column(0).to_pylist()
            index.update({str(uid): (group, i) for i, uid in enumerate(ids)})
        _PARQUET_INDEX[key] = index
    return _PARQUET_INDEX[key]


def _audio_bytes(value: Any) -> bytes:
    if isinstance(value, dict):  # Hugging Face datasets' Audio feature: {"bytes": ..., "path": ...}
        value = value.get("bytes")
    if not value:
        raise ValueError("no audio bytes")
    return bytes(value)


def _read_parquet(shard: Path, key: str) -> bytes:
    try:
        group, index = _parquet_index(shard)[key]
    except KeyError:
        raise ShardAudioError(f"{shard}{MEMBER}{key}: no such utterance in the shard") from None
    cached = _PARQUET_GROUP.get("key")
    if cached != (str(shard), group):
        column = _parquet_file(shard).read_row_group(group, columns=["audio"]).column(0).to_pylist()
        _PARQUET_GROUP.update(key=(str(shard), group), audio=column)
    return _audio_bytes(_PARQUET_GROUP["audio"][index])


def _parquet_utterances(shard: Path) -> list[ShardUtterance]:
    parquet, id_name = _parquet_rows(shard)
    names = parquet.schema_arrow.names
    out = []
    for group in range(parquet.num_row_groups):
        columns = [c for c in (id_name, "text", "speaker") if c in names]
        table = parquet.read_row_group(group, columns=columns)
        ids = table.column(id_name).to_pylist()
        texts = table.column("text").to_pylist() if "text" in names else [None] * len(ids)
        speakers = table.column("speaker").to_pylist() if "speaker" in names else [None] * len(ids)
        out += [ShardUtterance(f"{shard}{MEMBER}{uid}", _text(t), _text(s)) for uid, t, s in zip(ids, texts, speakers)]
    return out


# ---------------------------------------------------------------------------------------- the interface
def member_bytes(shard: Path, key: str) -> bytes:
    """The bytes of utterance ``key`` of ``shard`` (an audio file's bytes). Raises :class:`ShardAudioError`."""
    if not shard.is_file():
        raise ShardAudioError(f"{shard}: shard not found")
    if shard.suffix == ".tar":
        if key not in _tar_index(shard):
            raise ShardAudioError(f"{shard}{MEMBER}{key}: no such member in the shard")
        return _read_tar(shard, key)
    try:
        return _read_parquet(shard, key)
    except ValueError as e:
        if isinstance(e, ShardAudioError):
            raise
        raise ShardAudioError(f"{shard}{MEMBER}{key}: {e}") from None


def shard_utterances(path: str | Path) -> list[ShardUtterance]:
    """The utterances of an audio shard, or of every shard in a folder (sorted by name)."""
    path = Path(path)
    shards = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in SHARD_SUFFIXES)
    out = []
    for shard in shards:
        out += _tar_utterances(shard) if shard.suffix == ".tar" else _parquet_utterances(shard)
    return out
