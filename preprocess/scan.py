"""Scan folders for audio, keep the readable files of at least ``min_duration`` seconds, write a filelist
(the work of ``python preprocess/generate_filelist.py`` / ``dcae filelist``, :mod:`dcae.cli.filelist`).

Files are probed in parallel (header metadata only unless ``decode``); corrupt ones are reported and
left out. The output holds absolute paths, sorted, one per line, and is written atomically; while
the scan runs, progress is saved every ``flush_every`` valid files to ``OUT.partial``. A validation
fraction also writes a validation list: by default OUT with ``train`` in its name replaced by
``val`` (``filelists/train.txt`` -> ``filelists/val.txt``), else with ``_val`` added (``all.txt`` ->
``all_val.txt``). Messages for the user go to ``log`` one line at a time (default: :func:`echo`).
"""
from __future__ import annotations

import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from dcae.paths import is_broken_link, missing_reason
from dcae.progress import progress_bar
from preprocess.filelist import DEFAULT_EXTS, SEPARATOR, FilelistEntry, write_filelist
from preprocess.probe import ProbeResult, probe_file

PROBE_CHUNK = 32  # files per task sent to a worker

Log = Callable[[str], None]


def echo(message: str) -> None:
    """The default ``log``: warnings, errors and corrupt files to stderr, the rest to stdout."""
    print(message, file=sys.stderr if message.startswith(("warning:", "error:", "corrupt:")) else sys.stdout)


def parse_exts(exts: str) -> set[str]:
    """``"wav, .FLAC"`` -> ``{".wav", ".flac"}``."""
    return {"." + e.strip().lower().lstrip(".") for e in exts.split(",") if e.strip()}


def find_audio(paths: list[str | Path], exts: set[str], log: Log = echo) -> list[Path]:
    """Audio files under ``paths`` (files or folders, searched recursively), resolved, unique, sorted.

    Symlinked folders are not followed (no cycles); missing paths are reported on stderr.
    """
    found: set[Path] = set()
    for given in paths:
        root = Path(given).expanduser()
        if root.is_file():
            if root.suffix.lower() in exts:
                found.add(root.resolve())
            continue
        if not root.is_dir():
            log(f"warning: {given}: no such file or folder, skipped")
            continue
        for folder, subfolders, names in os.walk(root, onerror=lambda e: log(
                f"warning: {e.filename}: cannot list folder ({e.strerror})")):
            subfolders.sort()
            for name in names:
                if Path(name).suffix.lower() not in exts:
                    continue
                path = Path(folder) / name
                if is_broken_link(path):
                    log(f"warning: {path}: {missing_reason(path)}, skipped")
                else:
                    found.add(path.resolve())
    return sorted(found)


@dataclass
class ScanResult:
    valid: list[ProbeResult] = field(default_factory=list)
    corrupt: list[ProbeResult] = field(default_factory=list)
    too_short: list[ProbeResult] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return sum(r.duration for r in self.valid) / 3600.0


def _probe(args: tuple[Path, float, bool]) -> ProbeResult:
    return probe_file(*args)


def _init_worker() -> None:
    torch.set_num_threads(1)


def scan(files: list[Path], min_duration: float, workers: int, decode: bool = False,
         partial_path: Path | None = None, flush_every: int = 1000, progress: bool = True, log: Log = echo
         ) -> ScanResult:
    """Probe ``files`` with ``workers`` processes; sort them into valid / corrupt / too short."""
    result = ScanResult()
    unlistable = [f for f in files if SEPARATOR in str(f) or "\n" in str(f)]
    for f in unlistable:
        result.corrupt.append(ProbeResult(f, "corrupt", 0.0, f"path contains '{SEPARATOR}' or a newline, "
                                                             "which a filelist cannot hold"))
        log(f"corrupt: {f}: {result.corrupt[-1].reason}")
    skipped = set(unlistable)
    tasks = [(f, min_duration, decode) for f in files if f not in skipped]
    pending: list[str] = []
    partial = partial_path.open("w", encoding="utf-8") if partial_path is not None else None

    def collect(probed: ProbeResult) -> None:
        getattr(result, probed.status).append(probed)
        if probed.status == "corrupt":
            bar.clear()
            log(f"corrupt: {probed.path}: {probed.reason}")
            bar.refresh()
        elif probed.status == "valid" and partial is not None:
            pending.append(f"{probed.path}\n")
            if len(pending) >= flush_every:
                partial.writelines(pending)
                partial.flush()
                pending.clear()

    try:
        with progress_bar(total=len(tasks), desc="Validating", unit="file", disable=not progress) as bar:
            if workers <= 1 or len(tasks) <= PROBE_CHUNK:
                for task in tasks:
                    collect(_probe(task))
                    bar.update()
            else:
                with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
                    for probed in pool.map(_probe, tasks, chunksize=PROBE_CHUNK):
                        collect(probed)
                        bar.update()
    finally:
        if partial is not None:
            partial.writelines(pending)
            partial.close()
    return result


def split_train_val(paths: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Shuffle with ``seed`` and hold out ``round(len * val_fraction)`` files (at least 1 if > 0)."""
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    n_val = min(len(shuffled), max(1, round(len(shuffled) * val_fraction))) if val_fraction > 0 else 0
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def default_val_path(out: Path) -> Path:
    """``lists/train.txt`` -> ``lists/val.txt``, ``lists/libri_train.txt`` -> ``lists/libri_val.txt``,
    ``lists/all.txt`` -> ``lists/all_val.txt``."""
    stem = out.stem.replace("train", "val") if "train" in out.stem else f"{out.stem}_val"
    return out.with_name(f"{stem}{out.suffix or '.txt'}")


def folder_speaker(path: Path, roots: list[Path]) -> str | None:
    """The speaker id of a file found under one of ``roots`` laid out as ``ROOT/SPEAKER/...``: the name of
    the first folder below the root (LibriTTS ``ROOT/SPEAKER/CHAPTER/x.wav``, VCTK ``wav48/SPEAKER/x.wav``);
    None for a file directly in a root or given by itself."""
    for root in roots:
        try:
            parts = path.relative_to(root).parts
        except ValueError:
            continue
        return parts[0] if len(parts) >= 2 else None
    return None


def generate_filelist(paths: list[str | Path], out: Path, exts: str = DEFAULT_EXTS, workers: int | None = None,
                      min_duration: float = 10.0, flush_every: int = 1000, val_fraction: float = 0.0,
                      seed: int = 0, val_out: Path | None = None, decode: bool = False,
                      progress: bool = True, log: Log = echo, speaker_from_folder: bool = False) -> ScanResult:
    """Scan, probe, report the counts and write the filelist(s); returns the scan result.

    ``speaker_from_folder``: lines ``path||SPEAKER`` with the speaker id from the folder layout
    (:func:`folder_speaker`); files without one are written as bare paths and counted in the summary."""
    out = Path(out).expanduser().resolve()
    files = find_audio(list(paths), parse_exts(exts), log)
    log(f"Found {len(files)} audio files, validating...")
    partial_path = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = scan(files, min_duration, workers or os.cpu_count() or 1, decode, partial_path, flush_every, progress,
                  log)
    valid = sorted(r.path for r in result.valid)
    train, val = split_train_val(valid, val_fraction, seed)
    speaker: dict[Path, str | None] = {}
    if speaker_from_folder:
        roots = sorted((Path(p).expanduser().resolve() for p in paths if Path(p).expanduser().is_dir()),
                       key=lambda r: len(r.parts), reverse=True)  # the deepest root that holds a file names its speaker
        speaker = {f: folder_speaker(f, roots) for f in valid}
    write_filelist(out, [FilelistEntry(f, speaker=speaker.get(f)) for f in train])
    if val_fraction > 0:
        val_out = Path(val_out) if val_out else default_val_path(out)
        write_filelist(val_out, [FilelistEntry(f, speaker=speaker.get(f)) for f in val])
    if speaker_from_folder:
        unnamed = sum(1 for name in speaker.values() if name is None)
        log(f"{len(set(speaker.values()) - {None})} speakers from the folder layout"
            + (f"; {unnamed} files directly in an input folder have none" if unnamed else ""))
    partial_path.unlink(missing_ok=True)
    log(f"{len(result.valid)} valid ({result.hours:.2f} h = {result.hours * 3600:.0f} s), {len(result.corrupt)} "
        f"corrupt or unsupported, {len(result.too_short)} shorter than {min_duration:g} s")
    log(f"Wrote {len(train)} files to {out}" + (f" and {len(val)} validation files to {val_out}" if val_fraction > 0 else ""))
    return result
