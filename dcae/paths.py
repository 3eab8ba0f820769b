"""Which files the commands take and where their outputs go: the audio file extensions
(:data:`AUDIO_EXTENSIONS`, the one list), input folders mirrored under an output folder
(:func:`collect_jobs`; broken symbolic links are listed, for the caller to name), and outputs that two inputs would share (:func:`colliding_outputs`), which
every command refuses before writing anything; a file name for any key (:func:`safe_stem`). Light to
import (no torch)."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

# audio files the commands pick up in folders, filelists scans and shards (decoded by FFmpeg or libsndfile)
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".aifc", ".alac", ".wma",
                    ".webm", ".mp4")


def safe_stem(key: str) -> str:
    """A file name stem for ``key`` (an utterance or speaker id): the key itself when it is letters,
    digits, ``.``, ``_``, ``-`` (at most 120), else those characters of it (80 at most) and a hash of the
    whole key, so two keys never share a stem."""
    if re.fullmatch(r"[A-Za-z0-9._-]{1,120}", key):
        return key
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', key)[:80]}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:10]}"


def is_broken_link(path: Path) -> bool:
    """A symbolic link whose target does not exist (listed in a folder, named as unreadable by the caller)."""
    return path.is_symlink() and not path.exists()


def missing_reason(path: Path) -> str:
    """Why ``path`` cannot be read: "file not found", or "broken symbolic link (to TARGET)"."""
    return f"broken symbolic link (to {os.readlink(path)})" if is_broken_link(path) else "file not found"


def collect_jobs(inputs: Sequence[str], output: str, extensions: set[str], out_suffix: str) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs. Folders are searched recursively and mirrored under OUT.

    One input file with an OUT that has a suffix writes exactly OUT; otherwise OUT is a folder.
    """
    out = Path(output)
    if len(inputs) == 1 and Path(inputs[0]).is_file() and out.suffix and not out.is_dir():
        return [(Path(inputs[0]), out)]
    jobs = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*")
                           if (p.is_file() or is_broken_link(p)) and p.suffix.lower() in extensions)
            jobs += [(f, (out / f.relative_to(path)).with_suffix(out_suffix)) for f in files]
        else:  # a missing file is the caller's to report
            jobs.append((path, (out / path.name).with_suffix(out_suffix)))
    return jobs


def colliding_outputs(jobs: list[tuple[Path, Path]]) -> list[tuple[Path, Path, Path]]:
    """(first input, second input, output) for every output file that two different inputs would write
    (``x.wav`` and ``x.mp3`` in one folder, or the same name in two input folders)."""
    writer: dict[str, Path] = {}
    clashes = []
    for src, dst in jobs:
        key = os.path.normcase(os.path.abspath(dst))
        first = writer.setdefault(key, src)
        if os.path.abspath(first) != os.path.abspath(src):
            clashes.append((first, src, dst))
    return clashes
