"""Where a batch command's outputs go: input folders mirrored under an output folder
(:func:`collect_jobs`), and outputs that two inputs would share (:func:`colliding_outputs`), which
every command refuses before writing anything."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


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
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
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
