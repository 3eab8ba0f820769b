"""The text-to-token LM learns a synthetic task (tts.synthetic.SyntheticTextTokenCorpus: every character
is a fixed pattern of 1-4 tokens, so the tokens per character vary with the text), judged on strings
never seen in training, in both layouts of one unified model (plain: whole text first; bistream: text
and speech interleaved 4 : 8):

- teacher-forced next-token accuracy on the speech tokens vs the unigram baseline (always the most
  frequent training token);
- free-running greedy decoding (text streamed a character at a time in bistream mode): token accuracy
  1 - edit distance / true length, and the length error.

Default suite: 250 steps of the tiny preset (~20 s). Slow: 1500 steps, a plain-only run beside the
unified one, sampled decoding with the default top-k/top-p/RAS as well.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from tts.run import load_run
from tts.synthetic import SyntheticTextTokenCorpus
from tts.token_lm.layout import IGNORE, bistream_layout, fits_bistream, plain_layout
from tts.token_lm.sampling import SamplingSettings
from tts.token_lm.synthesis import speech_tokens, stream_tokens_from_text
from tts.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GREEDY = SamplingSettings(temperature=0.0)


def edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def make_corpus(root: Path, train: int = 300, test: int = 30):
    corpus = SyntheticTextTokenCorpus(alphabet="abcdefgh", vocab=32, seed=0)
    texts = corpus.random_texts(train, seed=1)
    unseen = corpus.random_texts(test, seed=2, exclude=set(texts))
    return corpus, corpus.write(root / "data", texts), texts, unseen


def train(manifest: Path, out: Path, steps: int, *extra: str) -> Path:
    assert train_main(["--model", "token-lm", "--manifest", str(manifest), "--output-dir", str(out),
                       "--preset", "tiny", "--max-steps", str(steps), "--save-interval", str(steps),
                       "--precision", "fp32", *extra]) == 0
    return out


@torch.no_grad()
def teacher_forced_accuracy(run, corpus, texts: list[str], bistream: bool) -> float:
    model, vocab = run.model, run.model.cfg.vocab
    hits = total = 0
    for text in texts:
        ids, speech = run.frontend.encode(text), corpus.tokens(text)
        if bistream:
            if not fits_bistream(len(ids), len(speech), model.cfg.text_chunk, model.cfg.speech_chunk):
                continue
            lay = bistream_layout(vocab, ids, speech, model.cfg.text_chunk, model.cfg.speech_chunk)
        else:
            lay = plain_layout(vocab, ids, speech)
        inputs, targets = torch.tensor([lay.inputs]), torch.tensor(lay.targets)
        keys = torch.ones_like(inputs, dtype=torch.bool)
        logits = model._run(model._inputs(inputs, None), 0, model.attention_mask(keys, keys.shape[1]))[0]
        scored = (targets != IGNORE) & (targets < vocab.codebook)  # the speech tokens themselves
        hits += int((logits.argmax(-1) == targets)[scored].sum())
        total += int(scored.sum())
    return hits / total


def unigram_accuracy(corpus, train_texts: list[str], texts: list[str]) -> float:
    top = Counter(t for text in train_texts for t in corpus.tokens(text)).most_common(1)[0][0]
    tokens = [t for text in texts for t in corpus.tokens(text)]
    return sum(t == top for t in tokens) / len(tokens)


def free_running(run, corpus, texts: list[str], bistream: bool, sampling: SamplingSettings = GREEDY
                 ) -> tuple[float, float]:
    """(token accuracy 1 - edit distance / length, mean |length error| / length) over ``texts``."""
    acc, err = [], []
    for i, text in enumerate(texts):
        truth = corpus.tokens(text)
        if bistream:  # the text arrives a character at a time
            out = list(stream_tokens_from_text(run, list(text), seed=i, sampling=sampling))
        else:
            out = speech_tokens(run, text, seed=i, sampling=sampling).tolist()
        acc.append(1 - edit_distance(out, truth) / len(truth))
        err.append(abs(len(out) - len(truth)) / len(truth))
    return sum(acc) / len(acc), sum(err) / len(err)


def report(name: str, run, corpus, train_texts, unseen, modes=("plain", "bistream"), sampled: bool = False) -> dict:
    base = unigram_accuracy(corpus, train_texts, unseen)
    out = {"unigram": base}
    for mode in modes:
        tf = teacher_forced_accuracy(run, corpus, unseen, mode == "bistream")
        acc, err = free_running(run, corpus, unseen, mode == "bistream")
        out[mode] = (tf, acc, err)
        line = (f"{name} {mode}: teacher-forced accuracy {tf:.3f} (unigram baseline {base:.3f}); greedy: token "
                f"accuracy {acc:.3f}, length error {err:.3f}")
        if sampled:
            s_acc, s_err = free_running(run, corpus, unseen, mode == "bistream", SamplingSettings())
            out[mode + "_sampled"] = (s_acc, s_err)
            line += f"; sampled (top-k 25, top-p 0.8, RAS): token accuracy {s_acc:.3f}, length error {s_err:.3f}"
        print(line)
    return out


def test_unified_model_learns_both_layouts(tmp_path):
    corpus, manifest, texts, unseen = make_corpus(tmp_path)
    run = load_run(train(manifest, tmp_path / "run", 250, "--bistream", "true", "--text-chunk", "4",
                         "--speech-chunk", "8"))
    figures = report("250 steps, unified", run, corpus, texts, unseen)
    base = figures["unigram"]
    assert base < 0.15
    for mode in ("plain", "bistream"):
        tf, acc, err = figures[mode]
        assert tf > 0.6 and tf > 4 * base, mode
        assert acc > 0.4 and err < 0.25, mode


@pytest.mark.slow
def test_longer_training_plain_and_unified(tmp_path):
    corpus, manifest, texts, unseen = make_corpus(tmp_path)
    plain = load_run(train(manifest, tmp_path / "plain", 1500))
    unified = load_run(train(manifest, tmp_path / "unified", 1500, "--bistream", "true", "--text-chunk", "4",
                             "--speech-chunk", "8"))
    p = report("1500 steps, plain-only", plain, corpus, texts, unseen, modes=("plain",), sampled=True)
    u = report("1500 steps, unified", unified, corpus, texts, unseen, sampled=True)
    for figures, mode in ((p, "plain"), (u, "plain"), (u, "bistream")):
        tf, acc, err = figures[mode]
        assert tf > 0.9 and acc > 0.85 and err < 0.05, mode
