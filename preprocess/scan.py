"""Scan folders for audio, keep the readable files of at least ``min_duration`` seconds, write a filelist
(the work of ``python preprocess/generate_filelist.py`` / ``dcae filelist``, :mod:`dcae.cli.filelist`).

Files are probed in parallel (header metadata only unless ``decode``); corrupt ones are reported and
left out. The output holds absolute paths, sorted, one per line, and is written atomically; while
the scan runs, progress is saved every ``flush_every`` valid files to ``OUT.partial``. A validation
fraction also writes a validation list: by default OUT with ``train`` in its name replaced by
``val`` (``filelists/train.txt`` -> ``filelists/val.txt``), else with ``_val`` added (``all.txt`` ->
``all_val.txt``). Transcripts can come from text files beside the audio (``transcript_ext``: LibriTTS's
``X.normalized.txt`` for ``X.wav``), and the validation part can also be written as a TTS test list in
Seed-TTS-eval's format (``test_list``, :mod:`dcae.corpus.test_list`). Messages for the user go to ``log``
one line at a time (default: :func:`echo`).
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

from dcae.corpus.test_list import make_test_list, write_test_list
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
    no_transcript: list[Path] = field(default_factory=list)
    test_lines: int = 0

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


def transcript_path(audio: Path, transcript_ext: str) -> Path:
    """The transcript beside ``audio``: its name with ``transcript_ext`` in place of the audio extension
    (``X.wav``, ``.normalized.txt`` -> ``X.normalized.txt``; the leading dot may be left out)."""
    return audio.with_name(audio.stem + "." + transcript_ext.lstrip("."))


def read_transcript(audio: Path, transcript_ext: str) -> str | None:
    """The transcript of ``audio`` from the text file beside it, its lines joined by spaces; None when that
    file is missing, unreadable, not UTF-8 or blank."""
    try:
        text = transcript_path(audio, transcript_ext).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text or None


def generate_filelist(paths: list[str | Path], out: Path, exts: str = DEFAULT_EXTS, workers: int | None = None,
                      min_duration: float = 10.0, flush_every: int = 1000, val_fraction: float = 0.0,
                      seed: int = 0, val_out: Path | None = None, decode: bool = False,
                      progress: bool = True, log: Log = echo, speaker_from_folder: bool = False,
                      transcript_ext: str | None = None, test_list: Path | None = None) -> ScanResult:
    """Scan, probe, report the counts and write the filelist(s); returns the scan result.

    ``speaker_from_folder``: lines ``path||SPEAKER`` with the speaker id from the folder layout
    (:func:`folder_speaker`); files without one are written as bare paths and counted in the summary.
    ``transcript_ext``: lines ``path|text`` with the text from the file beside the audio
    (:func:`transcript_path`); audio without one is left out (counted, not probed).
    ``test_list`` (with ``val_fraction``): the validation part also as a TTS test list, each line the
    utterance's transcript to say in the voice of another utterance of its speaker
    (:func:`dcae.corpus.test_list.make_test_list`); ``result.test_lines`` says how many lines it got
    (none written when there are none)."""
    out = Path(out).expanduser().resolve()
    files = find_audio(list(paths), parse_exts(exts), log)
    transcripts: dict[Path, str] = {}
    no_transcript: list[Path] = []
    if transcript_ext:
        for f in files:
            text = read_transcript(f, transcript_ext)
            if text is None:
                no_transcript.append(f)
            else:
                transcripts[f] = text
        files = [f for f in files if f in transcripts]
        log(f"Found {len(files) + len(no_transcript)} audio files, {len(no_transcript)} without a transcript "
            f"(*.{transcript_ext.lstrip('.')} beside it) left out; validating {len(files)}...")
    else:
        log(f"Found {len(files)} audio files, validating...")
    partial_path = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = scan(files, min_duration, workers or os.cpu_count() or 1, decode, partial_path, flush_every, progress,
                  log)
    result.no_transcript = no_transcript
    valid = sorted(r.path for r in result.valid)
    train, val = split_train_val(valid, val_fraction, seed)
    speaker: dict[Path, str | None] = {}
    if speaker_from_folder:
        roots = sorted((Path(p).expanduser().resolve() for p in paths if Path(p).expanduser().is_dir()),
                       key=lambda r: len(r.parts), reverse=True)  # the deepest root that holds a file names its speaker
        speaker = {f: folder_speaker(f, roots) for f in valid}

    def entries(part: list[Path]) -> list[FilelistEntry]:
        return [FilelistEntry(f, text=transcripts.get(f), speaker=speaker.get(f)) for f in part]

    write_filelist(out, entries(train))
    if val_fraction > 0:
        val_out = Path(val_out) if val_out else default_val_path(out)
        write_filelist(val_out, entries(val))
    if speaker_from_folder:
        unnamed = sum(1 for name in speaker.values() if name is None)
        log(f"{len(set(speaker.values()) - {None})} speakers from the folder layout"
            + (f"; {unnamed} files directly in an input folder have none" if unnamed else ""))
    partial_path.unlink(missing_ok=True)
    log(f"{len(result.valid)} valid ({result.hours:.2f} h = {result.hours * 3600:.0f} s), {len(result.corrupt)} "
        f"corrupt or unsupported, {len(result.too_short)} shorter than {min_duration:g} s"
        + (f", {len(no_transcript)} without a transcript" if transcript_ext else ""))
    log(f"Wrote {len(train)} files to {out}" + (f" and {len(val)} validation files to {val_out}" if val_fraction > 0 else ""))
    if test_list is not None:
        durations = {r.path: r.duration for r in result.valid}
        lines, left_out = make_test_list(entries(val), entries(train), seed, durations)
        result.test_lines = len(lines)
        why = "; ".join(f"{n} with {reason}" for reason, n in left_out.items())
        if lines:
            write_test_list(test_list, lines)
            log(f"Wrote a test list of {len(lines)} utterances to {test_list}" + (f" (left out: {why})" if why else ""))
        else:
            log(f"error: {test_list}: no validation utterance could go in the test list" + (f" ({why})" if why else ""))
    return result
