"""TTS test lists in Seed-TTS-eval's line format, read by ``dcae tts --list`` (batch synthesis) and
``dcae evaluate --tts-list`` (scoring what it made).

One utterance per line, ``|``-separated::

    id|prompt_text|prompt_wav|target_text
    id|prompt_text|prompt_wav|target_text|target_wav      (F5-TTS's LibriSpeech lists add the ground truth)

``prompt_wav`` (and ``target_wav``) are relative to the list's folder, or absolute. The generated audio
of line ``id`` is ``<generated folder>/<id>.wav`` (Seed-TTS-eval's convention), or ``<safe stem>.wav``
when the id is not a plain file name (:func:`dcae.paths.safe_stem`). Empty lines and lines starting with
``#`` are skipped. Light to import (no torch).

Writing one from a corpus split (``dcae filelist --val-fraction F --test-list OUT``): :func:`make_test_list`
pairs each held-out utterance with a prompt, another utterance of the same speaker, and
:func:`write_test_list` writes the lines.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence

from dcae.atomic import atomic_write_text
from dcae.paths import missing_reason, safe_stem

FIELDS = "id|prompt_text|prompt_wav|target_text[|target_wav]"


class TestListError(ValueError):
    """A test list that cannot be read at all (one line naming the file and the reason)."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class TestLine:
    """One utterance of a test list: what to say (``target_text``) in whose voice (``prompt_wav``, whose
    transcript is ``prompt_text``); ``target_wav`` the recorded target when the list names it."""

    __test__ = False

    id: str
    prompt_text: str
    prompt_wav: Path
    target_text: str
    target_wav: Path | None = None
    lineno: int = 0

    @property
    def output_name(self) -> str:
        """The generated file's name in the output folder: ``<id>.wav``."""
        return f"{safe_stem(self.id)}.wav"


@dataclass(frozen=True)
class BadLine:
    """A line that cannot be used: where it is and why."""

    lineno: int
    id: str
    reason: str

    def describe(self, path: Path) -> str:
        return f"{path}:{self.lineno}" + (f" ({self.id})" if self.id else "") + f": {self.reason}"


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def read_test_list(path: str | Path, check_files: bool = True) -> tuple[list[TestLine], list[BadLine]]:
    """The usable lines of a test list, and the bad ones with their reasons (wrong field count, empty id
    or target text, a repeated id, and with ``check_files`` a prompt audio file that does not exist).

    Raises :class:`TestListError` when the file cannot be read or has no line at all."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first id
    except OSError as e:
        raise TestListError(f"{path}: cannot read the test list ({e.strerror})") from None
    except UnicodeDecodeError:
        raise TestListError(f"{path}: the test list is not UTF-8 text") from None
    base = path.parent
    lines: list[TestLine] = []
    bad: list[BadLine] = []
    seen: set[str] = set()
    stems: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("|")
        if len(parts) not in (4, 5):
            bad.append(BadLine(lineno, parts[0].strip() if len(parts) > 1 else "",
                               f"{len(parts)} fields, expected 4 or 5 ({FIELDS})"))
            continue
        utt, prompt_text, prompt_wav, target_text = (p.strip() for p in parts[:4])
        target_wav = parts[4].strip() if len(parts) == 5 else ""
        reason = None
        if not utt:
            reason = "empty id"
        elif utt in seen:
            reason = "id repeated (an earlier line has it)"
        elif stems.get(safe_stem(utt), utt) != utt:
            reason = f"id gives the same file name as {stems[safe_stem(utt)]!r}"
        elif not target_text:
            reason = "empty target text"
        elif not prompt_wav:
            reason = "empty prompt_wav"
        elif check_files and not _resolve(prompt_wav, base).is_file():
            missing = _resolve(prompt_wav, base)
            reason = f"prompt audio {missing}: {'a folder' if missing.is_dir() else missing_reason(missing)}"
        if reason:
            bad.append(BadLine(lineno, utt, reason))
            continue
        seen.add(utt)
        stems[safe_stem(utt)] = utt
        lines.append(TestLine(utt, prompt_text, _resolve(prompt_wav, base), target_text,
                              _resolve(target_wav, base) if target_wav else None, lineno))
    if not lines and not bad:
        raise TestListError(f"{path}: the test list has no lines ({FIELDS})")
    return lines, bad


# ==================================================================== writing
PROMPT_SECONDS = (3.0, 10.0)  # prompts of this length are preferred (Seed-TTS-eval's are 3-10 s)


class Utterance(Protocol):
    """What :func:`make_test_list` reads of an utterance (a filelist entry has it)."""

    path: Path
    text: str | None
    speaker: str | None


def _usable_text(text: str | None) -> bool:
    return bool(text and text.strip()) and "|" not in text and "\n" not in text


def make_test_list(targets: Sequence[Utterance], others: Sequence[Utterance] = (), seed: int = 0,
                   durations: Mapping[Path, float] | None = None) -> tuple[list[TestLine], Counter]:
    """A test line for each of ``targets`` (the held-out utterances): say its transcript in the voice of
    a prompt, another utterance of the same speaker, with its transcript; the target's own recording is
    the line's ``target_wav``. Prompts come from the other targets when the speaker has some, else from
    ``others`` (the training part), preferring ones of 3-10 s (``durations``, seconds per path), drawn
    with ``seed``. Utterances without a speaker id count as one speaker (a single-speaker corpus).

    Returns the lines (in ``targets``' order; ids are the file stems, made unique) and how many targets
    were left out, by reason: no transcript (or one holding ``|``), no other utterance of the speaker."""
    rng = random.Random(seed)
    durations = durations or {}
    by_speaker: dict[str | None, tuple[list[Utterance], list[Utterance]]] = {}
    for group, utterances in ((0, targets), (1, others)):
        for u in utterances:
            if _usable_text(u.text):
                by_speaker.setdefault(u.speaker, ([], []))[group].append(u)
    lines: list[TestLine] = []
    left_out: Counter = Counter()
    used: set[str] = set()
    for target in targets:
        if not _usable_text(target.text):
            left_out["no transcript"] += 1
            continue
        held, trained = by_speaker[target.speaker]
        candidates = [u for u in held if u.path != target.path] or [u for u in trained if u.path != target.path]
        if not candidates:
            left_out["no other utterance of the speaker"] += 1
            continue
        low, high = PROMPT_SECONDS
        preferred = [u for u in candidates if low <= durations.get(Path(u.path), 0.0) <= high]
        prompt = rng.choice(preferred or candidates)
        uid = base = safe_stem(Path(target.path).stem) or "utt"
        n = 1
        while uid in used:
            n += 1
            uid = f"{base}-{n}"
        used.add(uid)
        lines.append(TestLine(uid, prompt.text.strip(), Path(prompt.path), target.text.strip(), Path(target.path),
                              len(lines) + 1))
    return lines, left_out


def write_test_list(path: str | Path, lines: Iterable[TestLine]) -> None:
    """Write ``lines`` atomically, ``id|prompt_text|prompt_wav|target_text[|target_wav]`` each, paths as
    given. A field holding ``|`` or a newline raises ``ValueError``."""
    out = []
    for line in lines:
        fields = [line.id, line.prompt_text, str(line.prompt_wav), line.target_text]
        if line.target_wav is not None:
            fields.append(str(line.target_wav))
        for value in fields:
            if "|" in value or "\n" in value:
                raise ValueError(f"{path}: test line {line.id!r}: a field cannot hold '|' or a newline: {value!r}")
        out.append("|".join(fields) + "\n")
    atomic_write_text(path, "".join(out))
