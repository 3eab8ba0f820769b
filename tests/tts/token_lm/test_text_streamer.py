"""tts.token_lm_synthesis.TextStreamer: text pushed a character at a time is encoded only when the
committed part grows, and hands the LM exactly the ids that encoding the committed text whole at every
push would (the straightforward rule, written out below as the reference)."""
from __future__ import annotations

import re

import pytest

from tests.tts.token_lm.test_model import small_model
from tts.run import TTSRun
from tts.text import TextFrontend
from tts.token_lm.synthesis import TextStreamer

TEXTS = ["abc def  gab\tcafe", "  a b  c ", "bad cab", "fed"]


class CountingFrontend(TextFrontend):
    """Characters, counted per encode call; ``kind`` "phonemes" makes the streamer commit whole words
    as it does for espeak (which is not needed here)."""

    def __init__(self, kind: str):
        super().__init__("chars", list("abcdefg "))
        self.kind, self.calls = kind, 0

    def units(self, texts):
        self.calls += len(texts)
        return [list(self.normalize(t)) for t in texts]


class EveryPushStreamer(TextStreamer):
    """The reference: the committed text re-encoded whole at every push."""

    def _ids(self, final):
        full = self.prefix + self.text
        if not final:
            cut = (max((m.start() for m in re.finditer(r"\s", full)), default=-1)
                   if self.run.frontend.kind == "phonemes" else len(full) - 1)
            if cut <= len(self.prefix) - 1:
                return []
            full = full[:cut]
        ids = self.run.frontend.encode(full)
        new = ids[self.fed:]
        self.fed = max(self.fed, len(ids))
        return new


def _run(tmp_path, kind):
    return TTSRun(tmp_path, "token-lm", small_model(), CountingFrontend(kind),
                  None, {"token_rate": 25.0, "min_len_ratio": 1.0, "max_len_ratio": 3.0}, 0)


def _speak(cls, run, text, prompt_text):
    """(ids handed to the LM at each push and at the end, speech tokens) for ``text`` a character at a time."""
    prompt = None if prompt_text is None else [3, 4, 5, 6, 7, 8, 9, 10]
    streamer = cls(run, prompt_text=prompt_text, prompt_tokens=prompt, seed=0)
    handed, push = [], streamer.lm.push

    def recording(ids):
        handed.append(list(ids))
        return push(ids)

    streamer.lm.push = recording
    tokens = [t for ch in text for t in streamer.push(ch)]
    tokens += list(streamer.finish())
    return handed, tokens


@pytest.mark.parametrize("kind", ["chars", "phonemes"])
@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("prompt_text", [None, "cab fed"])
def test_same_ids_as_encoding_at_every_push(tmp_path, kind, text, prompt_text):
    run = _run(tmp_path, kind)
    assert _speak(TextStreamer, run, text, prompt_text) == _speak(EveryPushStreamer, run, text, prompt_text)


def test_phonemes_encode_once_per_word_not_per_character(tmp_path):
    run = _run(tmp_path, "phonemes")
    text = "abc def gab cafe bad " * 10
    streamer = TextStreamer(run, seed=0)
    run.frontend.calls = 0
    for ch in text:
        list(streamer.push(ch))
    assert run.frontend.calls == len(text.split())  # one encode each time a word is complete
