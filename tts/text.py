"""Text front end: text -> token ids, with the vocabulary saved in the run folder (``vocab.json``).

Kinds:
- ``chars``: one token per Unicode character seen in the training texts (unknown ones -> ``<unk>``).
- ``bytes``: one token per UTF-8 byte (fixed 256-symbol vocabulary, nothing is unknown).
- ``phonemes``: espeak-ng phonemes through the ``phonemizer`` package, one token per phoneme
  symbol seen in training (``pip install phonemizer`` and the ``espeak-ng`` system package).
Id 0 is padding and id 1 is unknown in every kind.
"""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from dcae.atomic import atomic_write_json

PAD, UNK = "<pad>", "<unk>"
SPECIALS = (PAD, UNK)
KINDS = ("chars", "bytes", "phonemes")


class FrontendError(ValueError):
    """A text front end that cannot be built or loaded; the message says why."""


def _phonemize(texts: list[str], language: str) -> list[str]:
    try:
        from phonemizer import phonemize
    except ImportError:
        raise FrontendError("text_frontend=phonemes needs the phonemizer package: pip install phonemizer "
                            "(and the espeak-ng system package)") from None
    try:
        return phonemize(texts, language=language, backend="espeak", strip=True, preserve_punctuation=True,
                         with_stress=True)
    except RuntimeError as e:  # phonemizer raises RuntimeError when espeak-ng is missing
        raise FrontendError(f"phonemizer could not run espeak-ng ({e}); install the espeak-ng system package") from None


class TextFrontend:
    """Maps text to a list of token ids. Build with :meth:`fit` on the training texts, or :meth:`load`."""

    def __init__(self, kind: str = "chars", symbols: list[str] | None = None, lowercase: bool = True,
                 language: str = "en-us"):
        if kind not in KINDS:
            raise FrontendError(f"unknown text front end {kind!r} (choose from {', '.join(KINDS)})")
        self.kind = kind
        self.lowercase = lowercase
        self.language = language
        if kind == "bytes":
            symbols = [f"<0x{b:02x}>" for b in range(256)]
        self.symbols = list(SPECIALS) + [s for s in (symbols or []) if s not in SPECIALS]
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def normalize(self, text: str) -> str:
        text = unicodedata.normalize("NFC", " ".join(text.split()))
        return text.lower() if self.lowercase else text

    def units(self, texts: list[str]) -> list[list[str]]:
        """Texts -> lists of symbols (characters, byte names or phoneme characters)."""
        texts = [self.normalize(t) for t in texts]
        if self.kind == "bytes":
            return [[f"<0x{b:02x}>" for b in t.encode("utf-8")] for t in texts]
        if self.kind == "phonemes":
            texts = _phonemize(texts, self.language)
        return [list(t) for t in texts]

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        unk = self.index[UNK]
        return [[self.index.get(u, unk) for u in units] for units in self.units(texts)]

    @classmethod
    def fit(cls, texts: list[str], kind: str = "chars", lowercase: bool = True, language: str = "en-us") -> "TextFrontend":
        """Vocabulary of every symbol in ``texts`` (sorted, so the same corpus gives the same ids)."""
        probe = cls(kind, lowercase=lowercase, language=language)
        if kind == "bytes":
            return probe
        seen = sorted({u for units in probe.units(texts) for u in units})
        return cls(kind, seen, lowercase=lowercase, language=language)

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, {"kind": self.kind, "lowercase": self.lowercase, "language": self.language,
                                 "symbols": self.symbols})

    @classmethod
    def load(cls, path: str | Path) -> "TextFrontend":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["kind"], data["symbols"], lowercase=data["lowercase"], language=data["language"])
        except OSError as e:
            raise FrontendError(f"{path}: cannot read vocabulary ({e.strerror})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise FrontendError(f"{path}: not a vocabulary file ({e})") from None
