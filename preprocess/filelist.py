"""Filelists: UTF-8 text files with one utterance per line, ``path``, ``path|text`` or ``path|text|speaker``.

``path`` is an audio file; ``text`` (optional) is its transcript, kept verbatim by later stages
(latent export, TTS); ``speaker`` (optional) is a speaker id, carried into the export's manifest
rows and shards (``speaker``). Blank lines are skipped. The first ``|`` ends the path; on a line
with two or more ``|`` the last one starts the speaker id, so a transcript may itself contain
``|`` when the line ends with a speaker field (possibly empty: ``a.wav|x | y|``); the writer adds
that empty field itself; ``path||speaker`` has no transcript. Relative paths are resolved against the filelist's own folder, so a corpus
can ship its filelist next to its audio and be moved as a whole.

Wherever a filelist is read, an audio corpus in shards can stand instead (a folder of WebDataset
``.tar`` or Parquet audio shards, or one such file, :mod:`dcae.audio_shards`): its utterances
(``SHARD::KEY``) with their transcripts are the entries.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from dcae.atomic import atomic_write_text
from dcae.audio_shards import ShardAudioError, is_audio_shards, shard_utterances
from dcae.paths import AUDIO_EXTENSIONS

SEPARATOR = "|"
DEFAULT_EXTS = ",".join(e.lstrip(".") for e in AUDIO_EXTENSIONS)  # what a folder scan picks up (dcae filelist)


@dataclass(frozen=True)
class FilelistEntry:
    """One filelist line: an audio path, its optional transcript and optional speaker id."""

    path: Path
    text: str | None = None
    speaker: str | None = None

    def to_line(self) -> str:
        if self.speaker is None and SEPARATOR not in (self.text or ""):
            return str(self.path) if self.text is None else f"{self.path}{SEPARATOR}{self.text}"
        return SEPARATOR.join((str(self.path), self.text or "", self.speaker or ""))


class FilelistError(ValueError):
    """A filelist that cannot be read; the message is one line naming the file and the reason."""


def parse_line(line: str, root: Path | None = None) -> FilelistEntry | None:
    """Parse one line; returns None for a blank line. ``root`` anchors relative paths."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    path_part, sep, text = line.partition(SEPARATOR)
    path = Path(path_part.strip()).expanduser()
    if root is not None and not path.is_absolute():
        path = root / path
    speaker = None
    if SEPARATOR in text:
        text, _, speaker = text.rpartition(SEPARATOR)
        speaker = speaker.strip() or None
        if not text and speaker is not None:
            sep = ""  # path||speaker: no transcript
    return FilelistEntry(path=path, text=text if sep else None, speaker=speaker)


def read_filelist(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[FilelistEntry]:
    """Read a filelist. Relative paths are taken relative to ``root`` (default: the filelist's folder).

    Raises FilelistError if the file is missing, not UTF-8, or a line has an empty path.
    ``path`` may also be an audio corpus in shards (module docstring).
    """
    path = Path(path)
    if is_audio_shards(path):
        try:
            return [FilelistEntry(Path(u.name), u.text) for u in shard_utterances(path)]
        except ShardAudioError as e:
            raise FilelistError(str(e)) from None
    anchor = Path(root) if root is not None else path.resolve().parent
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FilelistError(f"{path}: filelist not found") from None
    except UnicodeDecodeError as e:
        raise FilelistError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise FilelistError(f"{path}: cannot read filelist ({e.strerror})") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if line.strip() and not line.partition(SEPARATOR)[0].strip():
            raise FilelistError(f"{path}: line {number} has text but no audio path")
        entry = parse_line(line, anchor)
        if entry is not None:
            entries.append(entry)
    return entries


def write_filelist(path: str | os.PathLike, entries: Iterable[FilelistEntry | str | os.PathLike]) -> None:
    """Write entries (FilelistEntry or bare paths) atomically, one per line."""
    lines = []
    for entry in entries:
        if not isinstance(entry, FilelistEntry):
            entry = FilelistEntry(Path(entry))
        if "\n" in str(entry.path) or SEPARATOR in str(entry.path):
            raise FilelistError(f"{entry.path}: a path in a filelist cannot contain '|' or a newline")
        if entry.text is not None and "\n" in entry.text:
            raise FilelistError(f"{entry.path}: a transcript in a filelist cannot contain a newline")
        if entry.speaker is not None and (SEPARATOR in entry.speaker or "\n" in entry.speaker):
            raise FilelistError(f"{entry.path}: a speaker id in a filelist cannot contain '|' or a newline")
        lines.append(entry.to_line() + "\n")
    atomic_write_text(path, "".join(lines))
