"""The token-flow model learns a synthetic token -> latent mapping through a non-integer rate ratio.

Tokens come at 25 Hz (as S3Tokenizer's), latent frames at 5.383 Hz: 4.644 tokens per frame. Each
frame is a fixed function of the tokens its span covers (``tts.synthetic.SyntheticTokenCorpus``).
Trained through ``python -m tts.train --model token-flow`` (in-process), scored on token sequences
never seen in training: the normalised MSE of generated latents against the truth must be far below
the mean-frame baseline (predicting the corpus mean, i.e. zero after normalisation), in full-context
and in chunked (streaming) mode. ``-m slow``: a longer run on 32-d latents with 32 token ids, and
unified training (full-context + chunked samples) against full-context-only training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tts.run import load_run
from tts.synthetic import SyntheticTokenCorpus
from tts.token_flow.synthesis import synthesize_tokens
from tts.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@dataclass
class Scores:
    mse: dict[int, float]  # chunk frames (0: full context) -> mean squared error, normalised latents
    baseline: float

    def ratio(self, chunk: int) -> float:
        return self.mse[chunk] / self.baseline


def train(tmp: Path, corpus: SyntheticTokenCorpus, steps: int, extra: list[str] = (), n_train: int = 200,
          name: str = "run") -> tuple[Path, list[list[int]]]:
    train_seqs = corpus.random_sequences(n_train, seed=1)
    manifest = corpus.write(tmp / "data", train_seqs) if not (tmp / "data").exists() else tmp / "data" / "manifest.jsonl"
    args = ["--model", "token-flow", "--manifest", str(manifest), "--output-dir", str(tmp / name), "--preset", "tiny",
            "--max-steps", str(steps), "--warmup-steps", "30", "--save-interval", str(steps), "--cpu-threads", "1",
            *extra]
    assert train_main(args) == 0
    return tmp / name, train_seqs


def score(run_dir: Path, corpus: SyntheticTokenCorpus, train_seqs: list[list[int]], chunks=(0, 2),
          label: str = "") -> Scores:
    run = load_run(run_dir)
    test = corpus.random_sequences(12, seed=99, exclude=train_seqs)
    mse, baseline = {}, 0.0
    for chunk in chunks:
        errors = []
        for i, seq in enumerate(test):
            truth = corpus.truth(seq)
            out = synthesize_tokens(run, seq, chunk_frames=chunk, seed=i)  # (D, frames), AE space
            assert out.shape == truth.T.shape
            errors.append((run.stats.normalize(out.T) - run.stats.normalize(truth)).pow(2).mean().item())
        mse[chunk] = sum(errors) / len(errors)
    baseline = sum(run.stats.normalize(corpus.truth(s)).pow(2).mean().item() for s in test) / len(test)
    scores = Scores(mse, baseline)
    print(f"{label}: " + ", ".join(f"{'full context' if c == 0 else f'chunks of {c}'} MSE {m:.4f} "
                                   f"({m / baseline:.3f} of baseline)" for c, m in mse.items())
          + f"; mean-frame baseline {baseline:.4f}")
    return scores


def test_token_flow_learns_unseen_token_sequences(tmp_path):
    corpus = SyntheticTokenCorpus(vocab=8, dim=16)
    run_dir, train_seqs = train(tmp_path, corpus, steps=200)
    s = score(run_dir, corpus, train_seqs, label="token-flow tiny, 200 steps")
    assert s.ratio(0) < 0.3 and s.ratio(2) < 0.3


@pytest.mark.slow
def test_token_flow_learns_well_in_a_few_minutes(tmp_path):
    corpus = SyntheticTokenCorpus(vocab=32, dim=32)
    run_dir, train_seqs = train(tmp_path, corpus, steps=1500, n_train=400)
    s = score(run_dir, corpus, train_seqs, chunks=(0, 1, 2, 4), label="token-flow tiny, 1500 steps, 32 ids, 32-d")
    assert all(s.ratio(c) < 0.1 for c in s.mse)


@pytest.mark.slow
def test_unified_training_keeps_full_context_quality(tmp_path):
    """Unified training (30 % of the samples chunked) against full-context-only training, same steps, on
    a corpus where each frame also depends on the next frame's tokens (future context that chunked
    attention sees only partly): the full-context error must not get worse (within noise), and the
    unified model streams better than the full-context-only one."""
    corpus = SyntheticTokenCorpus(vocab=16, dim=16, context=1.0)
    steps = 600
    unified_dir, train_seqs = train(tmp_path, corpus, steps, name="unified")
    full_dir, _ = train(tmp_path, corpus, steps, ["--full-context-prob", "1", "--chunk-sizes", "[]"], name="full")
    unified = score(unified_dir, corpus, train_seqs, chunks=(0, 1, 2, 4), label=f"unified, {steps} steps")
    full = score(full_dir, corpus, train_seqs, chunks=(0, 1, 2, 4), label=f"full-context only, {steps} steps")
    assert unified.ratio(0) < 0.15
    assert unified.mse[0] < 1.25 * full.mse[0] + 0.005 * full.baseline
    assert unified.mse[1] < full.mse[1] and unified.mse[2] < full.mse[2]  # chunked synthesis needs chunked training
