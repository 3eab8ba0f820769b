"""Pair reference and degraded audio files by their path relative to their folders.

``ref/spk1/a.wav`` pairs with ``deg/spk1/a.wav``; when the extensions differ
(``ref/spk1/a.flac`` vs ``deg/spk1/a.wav``) the files still pair, as long as the match is unique.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dcae.paths import AUDIO_EXTENSIONS, is_broken_link

DEFAULT_EXTS = tuple(e.lstrip(".") for e in AUDIO_EXTENSIONS)


@dataclass(frozen=True)
class Pair:
    """One file to score: ``name`` is the relative path shown in reports."""

    name: str
    ref: Path
    deg: Path


@dataclass
class Pairing:
    pairs: list[Pair] = field(default_factory=list)
    missing_deg: list[str] = field(default_factory=list)  # references with no degraded partner
    missing_ref: list[str] = field(default_factory=list)  # degraded files with no reference
    ambiguous: list[str] = field(default_factory=list)    # same name with several extensions


def list_audio(root: Path, exts: tuple[str, ...] = DEFAULT_EXTS) -> dict[str, Path]:
    """Relative POSIX path -> file, for every audio file under ``root`` (recursively); broken symbolic
    links too, so that scoring names them rather than leaving them out."""
    suffixes = {"." + e.lower().lstrip(".") for e in exts}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if (p.is_file() or is_broken_link(p)) and p.suffix.lower() in suffixes}


def _by_stem(files: dict[str, Path]) -> tuple[dict[str, str], set[str]]:
    """Relative path without extension -> relative path; and the stems that occur more than once."""
    stems: dict[str, str] = {}
    duplicates = set()
    for rel in files:
        stem = rel.rsplit(".", 1)[0]
        if stem in stems:
            duplicates.add(stem)
        stems[stem] = rel
    return stems, duplicates


def pair_folders(ref_dir: Path, deg_dir: Path, exts: tuple[str, ...] = DEFAULT_EXTS) -> Pairing:
    """Pair the audio files of two folder trees by relative path (extension may differ)."""
    refs, degs = list_audio(Path(ref_dir), exts), list_audio(Path(deg_dir), exts)
    ref_stems, ref_dup = _by_stem(refs)
    deg_stems, deg_dup = _by_stem(degs)
    result = Pairing()
    matched_degs = set()
    for rel, ref_path in refs.items():
        if rel in degs:
            deg_rel = rel
        else:
            stem = rel.rsplit(".", 1)[0]
            if stem in ref_dup or stem in deg_dup:
                result.ambiguous.append(rel)
                continue
            deg_rel = deg_stems.get(stem)
        if deg_rel is None:
            result.missing_deg.append(rel)
            continue
        matched_degs.add(deg_rel)
        result.pairs.append(Pair(rel, ref_path, degs[deg_rel]))
    ambiguous_stems = {a.rsplit(".", 1)[0] for a in result.ambiguous}
    result.missing_ref = [rel for rel in degs
                          if rel not in matched_degs and rel.rsplit(".", 1)[0] not in ambiguous_stems]
    return result
