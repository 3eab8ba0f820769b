"""Text -> speech tokens with a loaded token-lm run (:func:`tts.run.load_run`).

    run = load_run("runs/token-lm")
    tokens = speech_tokens(run, "hello world", seed=0)                   # LongTensor (N,)
    for token in stream_speech_tokens(run, "hello world"): ...           # ids one by one, as drawn

    streamer = TextStreamer(run, seed=0)                                  # bistream runs: text arrives in pieces
    for piece in llm_output:                                             # any split: "hel", "lo wo", "rld"
        for token in streamer.push(piece): ...                           # tokens as soon as a text chunk is complete
    for token in streamer.finish(): ...
    # or: for token in stream_tokens_from_text(run, pieces): ...

A voice prompt is its transcript (``prompt_text``) and its speech tokens (``prompt_tokens``, the same
tokenizer as the run's); the output holds only the new tokens. Lengths follow the run's rule
(``min_len_ratio`` .. ``max_len_ratio`` new tokens per new text id, fitted on the training data)
unless given. Sampling: :class:`tts.token_sampling.SamplingSettings` (top-k 25, top-p 0.8, RAS).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

import torch

from dcae.corpus import save_tokens
from tts.run import TTSRun
from tts.speakers.reference import speaker_vector
from tts.synthesis import SynthesisError, seeded_generator
from tts.token_lm.generate import BistreamGenerator, GenerationOptions, generate_plain
from tts.token_lm.sampling import SamplingSettings

_WHITESPACE = re.compile(r"\s")
# front ends whose last ids depend on the whole word (phonemes; a backbone's BPE merges): committed at whitespace
WORD_FRONTENDS = ("phonemes", "backbone")


def _need_lm_run(run: TTSRun) -> None:
    if run.kind != "token-lm":
        raise SynthesisError(f"{run.directory}: a {run.kind} run does not write speech tokens (a token-lm run does)")


def generation_options(run: TTSRun, prompt_text: str | None = None, prompt_tokens=None, *,
                       sampling: SamplingSettings | None = None, cfg_scale: float = 1.0,
                       min_ratio: float | None = None, max_ratio: float | None = None,
                       speaker: torch.Tensor | None = None, speaker_reference: torch.Tensor | None = None,
                       use_cache: bool = True) -> GenerationOptions:
    """Checked :class:`GenerationOptions` for ``run`` (prompt text ids are filled in by the callers).
    ``speaker``: a fixed embedding (S,) for runs trained with one; ``speaker_reference``: a reference's
    latent (D, R) for a run with a learnable speaker encoder (none given: the zero vector, no reference)."""
    _need_lm_run(run)
    sampling = sampling or SamplingSettings()
    try:
        sampling.check()
    except ValueError as e:
        raise SynthesisError(str(e)) from None
    cfg = run.model.cfg
    if cfg_scale != 1.0 and cfg.cond_drop == 0:
        raise SynthesisError(f"{run.directory}: guidance (cfg scale {cfg_scale:g}) needs a run trained with "
                             f"--cond-drop > 0 (this one never saw the text hidden)")
    low = float(run.latent_info.get("min_len_ratio", 0.0)) if min_ratio is None else min_ratio
    high = float(run.latent_info.get("max_len_ratio", 20.0)) if max_ratio is None else max_ratio
    if not 0 <= low <= high or high <= 0:
        raise SynthesisError(f"length ratios: need 0 <= min <= max and max > 0, got {low:g}..{high:g}")
    if (prompt_text is None) != (prompt_tokens is None):
        raise SynthesisError("a voice prompt needs both its transcript (--prompt-text) and its speech tokens")
    prompt = []
    if prompt_tokens is not None:
        prompt = [int(t) for t in torch.as_tensor(prompt_tokens, dtype=torch.long).reshape(-1).tolist()]
        bad = [t for t in prompt if not 0 <= t < cfg.codebook_size]
        if bad:
            raise SynthesisError(f"prompt tokens: id {bad[0]} out of range (the run has {cfg.codebook_size} codes)")
        if not prompt:
            raise SynthesisError("prompt tokens: none given")
    if speaker_reference is not None or run.model.speaker_encoder is not None:
        speaker = speaker_vector(run, None, speaker_reference)  # no reference: None, the zero vector
    elif speaker is not None or cfg.speaker_dim:
        if cfg.speaker_dim == 0:
            speaker = None
        elif speaker is None or torch.as_tensor(speaker).numel() != cfg.speaker_dim:
            raise SynthesisError(f"{run.directory}: the run takes a speaker embedding of {cfg.speaker_dim} values")
    return GenerationOptions(sampling=sampling, cfg_scale=cfg_scale, min_ratio=low, max_ratio=high,
                             prompt_speech=prompt, speaker=speaker, use_cache=use_cache)


def _split_prompt(run: TTSRun, text: str, prompt_text: str | None) -> tuple[list[int], list[int]]:
    """(prompt text ids, new text ids): the transcript and the text are read as one sentence."""
    target = run.frontend.encode(text)
    if not target:
        raise SynthesisError("the text is empty")
    if prompt_text is None:
        return [], target
    joined = run.frontend.encode(f"{prompt_text} {text}")
    return joined[: len(joined) - len(target)], target


def stream_speech_tokens(run: TTSRun, text: str, prompt_text: str | None = None, prompt_tokens=None,
                         seed: int | None = 0, **options) -> Iterator[int]:
    """Speech tokens for ``text`` read whole, yielded as they are drawn (``options``: as
    :func:`generation_options`)."""
    opts = generation_options(run, prompt_text, prompt_tokens, **options)
    opts.prompt_text, target = _split_prompt(run, text, prompt_text)
    yield from generate_plain(run.model, target, opts, seeded_generator(seed, run.model.device))


def speech_tokens(run: TTSRun, text: str, prompt_text: str | None = None, prompt_tokens=None, seed: int | None = 0,
                  **options) -> torch.Tensor:
    """All speech tokens for ``text``: LongTensor (N,)."""
    return torch.tensor(list(stream_speech_tokens(run, text, prompt_text, prompt_tokens, seed, **options)),
                        dtype=torch.long)


class TextStreamer:
    """Text pieces in, speech tokens out (bistream runs). Text is committed up to its last character
    (which may still combine with what follows) or, for phonemes and a backbone's tokenizer, up to its
    last whitespace (a word may still grow), encoded with the run's front end, and handed to the LM in chunks of N ids."""

    def __init__(self, run: TTSRun, prompt_text: str | None = None, prompt_tokens=None, seed: int | None = 0,
                 **options):
        opts = generation_options(run, prompt_text, prompt_tokens, **options)
        if not run.model.cfg.bistream:
            raise SynthesisError(f"{run.directory}: text streaming needs a run trained with --bistream")
        self.run = run
        self.prefix = "" if prompt_text is None else prompt_text.strip() + " "
        opts.prompt_text = run.frontend.encode(self.prefix) if self.prefix else []
        self.fed = len(opts.prompt_text)
        self.text = ""
        self.cut: int | None = None  # end of the committed text when it was last encoded
        self.searched, self.last_space = 0, -1  # phonemes: how far the text was searched, its last whitespace
        try:
            self.lm = BistreamGenerator(run.model, opts, seeded_generator(seed, run.model.device))
        except ValueError as e:
            raise SynthesisError(str(e)) from None

    def _cut(self, full: str) -> int:
        """End of the committed part of ``full`` (which only grows): phonemes: its last whitespace (a
        word's sound depends on all of it), found in the part not searched yet; else all but the last
        character."""
        if self.run.frontend.kind not in WORD_FRONTENDS:
            return len(full) - 1
        for match in _WHITESPACE.finditer(full, self.searched):
            self.last_space = match.start()
        self.searched = len(full)
        return self.last_space

    def _ids(self, final: bool) -> list[int]:
        """Ids of the committed text not handed over yet. The text is encoded whole (the front end
        reads it in context), but only when the committed part grew: with phonemes once per word,
        not once per character."""
        full = self.prefix + self.text
        if not final:
            cut = self._cut(full)
            if cut <= len(self.prefix) - 1 or cut == self.cut:  # nothing committed, or nothing new
                return []
            self.cut = cut
            full = full[:cut]
        ids = self.run.frontend.encode(full)
        new = ids[self.fed:]
        self.fed = max(self.fed, len(ids))
        return new

    def push(self, piece: str) -> Iterator[int]:
        """Add a text piece; returns an iterator over the speech tokens that can be drawn now."""
        self.text += piece
        return self.lm.push(self._ids(final=False))

    def finish(self) -> Iterator[int]:
        """The text has ended: an iterator over the remaining speech tokens."""
        ids = self._ids(final=True)
        if not self.run.frontend.encode(self.text):
            raise SynthesisError("the text is empty")
        self.lm.push(ids)  # drawn by finish's iterator
        return self.lm.finish()


def stream_tokens_from_text(run: TTSRun, pieces: Iterable[str], prompt_text: str | None = None, prompt_tokens=None,
                            seed: int | None = 0, **options) -> Iterator[int]:
    """Text pieces (any iterable of strings, e.g. an LLM's output) -> speech tokens as soon as possible."""
    streamer = TextStreamer(run, prompt_text, prompt_tokens, seed, **options)
    for piece in pieces:
        yield from streamer.push(piece)
    yield from streamer.finish()


def save_token_output(path: Path, tokens: torch.Tensor, lm: TTSRun) -> None:
    """The generated tokens as a token file with the run's rate, tokenizer and codebook size."""
    extra = {"codebook_size": lm.model.cfg.codebook_size}
    if lm.latent_info.get("tokenizer"):
        extra["tokenizer"] = lm.latent_info["tokenizer"]
    save_tokens(path, tokens, lm.token_rate, extra=extra)
