"""Sequence layouts of the text-to-token LM (:mod:`tts.token_lm`): which ids go in, which are predicted.

One input vocabulary holds the text ids, the speech-token ids and a few markers; one output
vocabulary holds the speech-token ids plus ``<eos>`` and ``<fill>``::

    input ids   [0, T)            text ids (the run's text front end)
                [T, T + C)        speech tokens (C = codebook size)
                T + C + 0..3      <sos>, <turn>, <plain>, <bistream>
    output ids  [0, C)            speech tokens;  C: <eos>;  C + 1: <fill>

Plain (offline) layout, the whole text first::

    <plain> text... <sos> speech... -> targets: speech... <eos>

Bistream layout (CosyVoice 2 / MinMo): N text ids, then M speech tokens, repeated; the position
before each new text chunk is trained to predict ``<fill>`` ("more text, please"). When fewer than
N text ids are left, they come with ``<turn>`` and the remaining speech follows up to ``<eos>``::

    <bistream> t1..tN s1..sM t(N+1)..t(2N) s(M+1)..s(2M) ... t(kN+1)..tL <turn> s(kM+1)..sK
      targets: at tN -> s1, s1..sM -> s2..sM <fill>, ..., at <turn> -> s(kM+1), sK -> <eos>

An utterance fits the bistream layout only when its speech outlasts the full text chunks
(K > M * floor(L / N)); others are trained in the plain layout. A speaker prompt is part of the same
sequence: its transcript comes before the text and its speech tokens are the first speech tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

IGNORE = -100  # target of positions that predict nothing


@dataclass(frozen=True)
class Vocab:
    """Id arithmetic for a text vocabulary of ``text`` ids and a codebook of ``codebook`` speech tokens."""

    text: int
    codebook: int

    @property
    def sos(self) -> int:
        return self.text + self.codebook

    @property
    def turn(self) -> int:
        return self.sos + 1

    @property
    def plain(self) -> int:
        return self.sos + 2

    @property
    def bistream(self) -> int:
        return self.sos + 3

    @property
    def input_size(self) -> int:
        return self.sos + 4

    @property
    def eos(self) -> int:
        return self.codebook

    @property
    def fill(self) -> int:
        return self.codebook + 1

    @property
    def output_size(self) -> int:
        return self.codebook + 2

    def speech(self, tokens: list[int]) -> list[int]:
        """Speech tokens -> their input ids."""
        return [self.text + t for t in tokens]


@dataclass
class Layout:
    """One training sequence: ``inputs``, ``targets`` (IGNORE where nothing is predicted) and
    ``is_text`` (the positions that classifier-free guidance hides), all of one length."""

    inputs: list[int]
    targets: list[int]
    is_text: list[bool]

    def add(self, inputs: list[int], targets: list[int], is_text: bool) -> None:
        assert len(inputs) == len(targets)
        self.inputs += inputs
        self.targets += targets
        self.is_text += [is_text] * len(inputs)


def plain_layout(vocab: Vocab, text: list[int], speech: list[int]) -> Layout:
    """``<plain> text <sos> speech`` predicting ``speech <eos>``."""
    out = Layout([vocab.plain], [IGNORE], [False])
    out.add(text, [IGNORE] * len(text), True)
    out.add([vocab.sos] + vocab.speech(speech), speech + [vocab.eos], False)
    return out


def fits_bistream(text_len: int, speech_len: int, text_chunk: int, speech_chunk: int) -> bool:
    """Whether the speech outlasts the full text chunks (the bistream layout needs it)."""
    return speech_len > speech_chunk * (text_len // text_chunk)


def bistream_layout(vocab: Vocab, text: list[int], speech: list[int], text_chunk: int, speech_chunk: int) -> Layout:
    """The interleaved layout (module docstring); the caller checks :func:`fits_bistream` first."""
    if not fits_bistream(len(text), len(speech), text_chunk, speech_chunk):
        raise ValueError(f"{len(speech)} speech tokens do not outlast {len(text) // text_chunk} chunks of "
                         f"{speech_chunk} for {len(text)} text ids")
    out = Layout([vocab.bistream], [IGNORE], [False])
    full = len(text) // text_chunk
    for j in range(full):
        words = text[j * text_chunk: (j + 1) * text_chunk]
        part = speech[j * speech_chunk: (j + 1) * speech_chunk]
        out.add(words, [IGNORE] * (len(words) - 1) + [part[0]], True)
        out.add(vocab.speech(part), part[1:] + [vocab.fill], False)
    rest_text, rest = text[full * text_chunk:], speech[full * speech_chunk:]
    out.add(rest_text, [IGNORE] * len(rest_text), True)
    out.add([vocab.turn] + vocab.speech(rest), rest + [vocab.eos], False)
    return out
