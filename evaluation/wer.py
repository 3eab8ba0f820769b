"""Word and character error rates of transcripts against the target texts, with the text normalisation
the field uses, counted by ``jiwer``.

Two normalisations (``--wer-normalizer``):

- ``whisper`` (default): Whisper's English text normaliser (transformers' copy of OpenAI's
  ``EnglishTextNormalizer``: lower case, punctuation and fillers removed, contractions and numbers
  spelled one way, British spellings mapped to American ones with the map in the ASR folder's
  ``normalizer.json`` when it has one). For ``zh``: Whisper's ``BasicTextNormalizer`` (lower case,
  punctuation and symbols to spaces), then characters.
- ``seed-tts-eval``: what Seed-TTS-eval's ``run_wer.py`` does: every punctuation mark removed except
  the apostrophe (we remove Unicode categories P* and S*: a superset of its ASCII +
  Chinese punctuation list), then lower case (``en``) or characters (``zh``). Seed-TTS-eval's tables
  report the **mean of the per-utterance rates**: ``summary.json`` has it as ``wer_utterance_mean``.

A language's unit: ``en`` (and every other language written with spaces) counts words; ``zh`` (and
``ja``) counts characters (CER), spaces dropped. The corpus rate is total errors / total reference
units (the rate of the whole test set as one text), not a mean of per-file rates.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

NORMALIZERS = ("whisper", "seed-tts-eval")
CHARACTER_LANGUAGES = ("zh", "ja")

Normalizer = Callable[[str], str]


@dataclass(frozen=True)
class Errors:
    """Edit operations of one hypothesis against its reference, in words (or characters)."""

    substitutions: int
    deletions: int
    insertions: int
    reference_units: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float | None:
        """errors / reference units (None for an empty reference)."""
        return self.errors / self.reference_units if self.reference_units else None


def uses_characters(language: str) -> bool:
    """Whether ``language`` is scored in characters (CER) rather than words (WER)."""
    return language in CHARACTER_LANGUAGES


def _drop_punctuation(text: str) -> str:
    """Every Unicode punctuation or symbol character but the apostrophe, removed."""
    return "".join(c for c in text if c == "'" or unicodedata.category(c)[0] not in "PS")


@lru_cache(maxsize=8)
def _whisper_english(spelling: tuple[tuple[str, str], ...]) -> Normalizer:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer(dict(spelling))


def _whisper_basic() -> Normalizer:
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    return BasicTextNormalizer()


def normalizer(kind: str, language: str, spelling: dict[str, str] | None = None) -> Normalizer:
    """The text normalisation ``kind`` (:data:`NORMALIZERS`) for ``language``; ``spelling``: Whisper's
    British -> American map (``normalizer.json``), used by the ``whisper`` English normaliser."""
    if kind not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {kind!r} (choose from {', '.join(NORMALIZERS)})")
    if kind == "seed-tts-eval":
        if uses_characters(language):
            return _drop_punctuation
        return lambda text: _drop_punctuation(text).lower()
    if language == "en":
        return _whisper_english(tuple(sorted((spelling or {}).items())))
    return _whisper_basic()


def units(text: str, language: str) -> list[str]:
    """A normalised text as the units it is scored in: words, or characters for ``zh``/``ja``."""
    if uses_characters(language):
        return [c for c in text if not c.isspace()]
    return text.split()


def count_errors(reference: str, hypothesis: str, language: str = "en",
                 normalize: Normalizer | None = None) -> Errors:
    """Substitutions, deletions and insertions of ``hypothesis`` against ``reference`` (both normalised by
    ``normalize`` first), counted by ``jiwer`` over words or characters (:func:`units`)."""
    import jiwer

    if normalize is not None:
        reference, hypothesis = normalize(reference), normalize(hypothesis)
    ref, hyp = units(reference, language), units(hypothesis, language)
    if not ref:
        return Errors(0, 0, len(hyp), 0)
    if not hyp:
        return Errors(0, len(ref), 0, len(ref))
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return Errors(out.substitutions, out.deletions, out.insertions, len(ref))


def corpus_rate(errors: Iterable[Errors]) -> float | None:
    """Total errors / total reference units over a test set (None when there are no reference units)."""
    errors = list(errors)
    total = sum(e.reference_units for e in errors)
    return sum(e.errors for e in errors) / total if total else None


def utterance_mean(errors: Iterable[Errors]) -> float | None:
    """The mean of the per-utterance rates (Seed-TTS-eval's figure); utterances with an empty reference
    are left out."""
    rates = [e.rate for e in errors if e.rate is not None]
    return sum(rates) / len(rates) if rates else None
