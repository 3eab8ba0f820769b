"""Both TTS models learn a toy language where every character is a fixed latent pattern.

Trained through ``python -m tts.train`` (in-process), evaluated on strings never seen in training:
generated latents must be far closer to the truth than the mean-frame baseline (predicting the
corpus mean, i.e. zero after normalisation), and the AR model must stop at the right length.
The default run uses a small toy problem and a few hundred steps; ``-m slow`` trains on 80-d
latents for a few minutes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tts.run import load_run
from tts.synthetic import SyntheticCorpus
from tts.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@dataclass
class Scores:
    mse: float
    baseline: float
    length_errors: list[int]


def train_and_score(tmp: Path, kind: str, corpus: SyntheticCorpus, steps: int, temperature: float,
                    extra: list[str] = (), max_len: int = 8, n_train: int = 200) -> Scores:
    """Train through the CLI entry point, then score sampling at ``temperature`` on unseen strings."""
    train_texts = corpus.random_texts(n_train, seed=1, max_len=max_len)
    test_texts = corpus.random_texts(10, seed=99, max_len=max_len, exclude=set(train_texts))
    manifest = corpus.write(tmp / "data", train_texts)
    args = ["--model", kind, "--manifest", str(manifest), "--output-dir", str(tmp / "run"), "--preset", "tiny",
            "--max-steps", str(steps), "--warmup-steps", "30", "--save-interval", str(steps), *extra]
    assert train_main(args) == 0
    return score(load_run(tmp / "run"), kind, corpus, test_texts, temperature, extra)


def score(run, kind: str, corpus: SyntheticCorpus, test_texts: list[str], temperature: float, extra=()) -> Scores:
    errors, baseline, lengths = [], [], []
    for i, text in enumerate(test_texts):
        truth = run.stats.normalize(corpus.truth(text))
        ids = run.frontend.encode(text)
        g = torch.Generator().manual_seed(i)
        if kind == "ar":
            out = run.model.generate(ids, max_frames=3 * len(truth), steps=8, temperature=temperature,
                                     cfg_scale=1.0, generator=g)
        else:
            out = run.model.sample(ids, len(truth), steps=16, temperature=temperature, cfg_scale=1.0,
                                   sway=0.0 if run.model.cfg.meanflow else -1.0, generator=g)
        n = min(len(out), len(truth))
        errors.append((out[:n] - truth[:n]).pow(2).mean().item())
        baseline.append(truth.pow(2).mean().item())  # the mean frame is 0 after normalisation
        lengths.append(len(out) - len(truth))
    scores = Scores(sum(errors) / len(errors), sum(baseline) / len(baseline), lengths)
    print(f"{kind} {list(extra)} temperature {temperature}: MSE {scores.mse:.4f} vs mean-frame baseline "
          f"{scores.baseline:.4f}; length errors {scores.length_errors}")
    return scores


QUICK = dict(alphabet="abcde", frames_per_char=2, dim=16)


def test_ar_learns_unseen_strings_and_stops(tmp_path):
    s = train_and_score(tmp_path, "ar", SyntheticCorpus(**QUICK), steps=300, temperature=1.0,
                        extra=["--cpu-threads", "1"])
    assert s.mse < 0.25 * s.baseline
    assert sum(abs(e) <= 1 for e in s.length_errors) >= 8  # stops within a frame for most strings


def test_flow_learns_unseen_strings(tmp_path):
    s = train_and_score(tmp_path, "flow", SyntheticCorpus(**QUICK), steps=300, temperature=1.0,
                        extra=["--cpu-threads", "1"])
    assert s.mse < 0.5 * s.baseline


def test_meanflow_one_step_after_short_training(tmp_path):
    corpus = SyntheticCorpus(**QUICK)
    train_and_score(tmp_path, "flow", corpus, steps=250, temperature=1.0,
                    extra=["--cpu-threads", "1", "--meanflow", "true", "--meanflow-ratio", "0.5"])
    run = load_run(tmp_path / "run")
    texts = corpus.random_texts(10, seed=99, max_len=8, exclude=set(corpus.random_texts(200, seed=1, max_len=8)))
    errors = []
    for i, text in enumerate(texts):
        truth = run.stats.normalize(corpus.truth(text))
        out = run.model.sample(run.frontend.encode(text), len(truth), steps=1, cfg_scale=1.0, sway=0.0,
                               generator=torch.Generator().manual_seed(i))
        errors.append((out - truth).pow(2).mean().item())
    one_step = sum(errors) / len(errors)
    print(f"meanflow 1-step MSE {one_step:.4f}")
    assert one_step < 0.5  # baseline is ~1.0


@pytest.mark.slow
@pytest.mark.parametrize("kind, extra, steps, bound", [
    ("ar", [], 1500, 0.3),
    ("flow", [], 3000, 0.5),
    ("flow", ["--immiscible", "true", "--contrastive-weight", "0.05"], 3000, 0.5),
    ("flow", ["--meanflow", "true"], 3000, 0.5),
])
def test_models_learn_80d_latents_in_minutes(tmp_path, kind, extra, steps, bound):
    corpus = SyntheticCorpus(alphabet="abcdefgh", frames_per_char=3, dim=80)
    s = train_and_score(tmp_path, kind, corpus, steps=steps, temperature=1.0,
                        extra=["--cpu-threads", "1", *extra], max_len=10, n_train=300)
    assert s.mse < bound * s.baseline
    if kind == "ar":
        assert sum(abs(e) <= 1 for e in s.length_errors) >= 8
    test_texts = corpus.random_texts(10, seed=99, max_len=10, exclude=set(corpus.random_texts(300, seed=1, max_len=10)))
    cooler = score(load_run(tmp_path / "run"), kind, corpus, test_texts, 0.5, extra)
    assert cooler.mse < 0.25 * cooler.baseline
