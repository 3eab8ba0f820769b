"""Training learns: the tiny DC-AE trained for a few hundred CPU steps on real speech reconstructs
the mels of held-out speech far better than predicting the training set's mean mel.

Slow (several minutes on 2 CPU cores): ``python -m pytest tests/test_train_learning.py -m slow -s``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcae import load_dcae
from dcae.model import trainer as train
from preprocess.dataset import read_clip
from tests.conftest import TINY_CONFIG
from vocoder.mel import MelSpectrogram

TINY = TINY_CONFIG
STEPS = int(os.environ.get("DCAE_LEARN_STEPS", "400"))


def mels(files: list[Path], mel_fn: MelSpectrogram) -> list[torch.Tensor]:
    return [mel_fn(read_clip(f, 22050 * 4, 4096)) for f in files]  # (1, 80, T), T a multiple of 16


@pytest.mark.slow
def test_tiny_model_learns_to_reconstruct_held_out_speech(speech_files, tmp_path):
    english = sorted(f for f in speech_files if f.parent.name == "en")
    if len(english) < 120:
        pytest.skip("needs the en/ prompts of get_speech.sh")
    train_files, held_out = english[:-20], english[-20:]
    filelist = tmp_path / "train.txt"
    filelist.write_text("\n".join(map(str, train_files)) + "\n")
    out = tmp_path / "run"
    code = train.main(["--train-dataset-path", str(filelist), "--model-config-path", str(TINY),
                       "--segment-samples", "16384", "--batch-size", "4", "--num-workers", "1",
                       "--gen-learning-rate", "1e-2", "--disc-learning-rate", "2e-4", "--warmup-steps", "20",
                       "--max-steps", str(STEPS), "--save-interval", str(STEPS), "--log-interval", "10",
                       "--model-save-path", str(out / "ckpt"), "--log-dir", str(out / "runs")])
    assert code == 0
    mel_fn = MelSpectrogram()
    model = load_dcae(out / "ckpt" / f"generator_{STEPS}.pt", TINY)
    train_mel = torch.cat([m[0] for m in mels(train_files[:100], mel_fn)], dim=-1)  # (80, frames)
    mean_mel = train_mel.mean(dim=-1, keepdim=True)  # (80, 1): the per-bin mean of the training speech
    model_l1, baseline_l1 = [], []
    with torch.no_grad():
        for mel in mels(held_out, mel_fn):
            model_l1.append(F.l1_loss(model.decode(model.encode(mel)), mel).item())
            baseline_l1.append(F.l1_loss(mean_mel.expand_as(mel[0]), mel[0]).item())
    model_mean, baseline_mean = sum(model_l1) / len(model_l1), sum(baseline_l1) / len(baseline_l1)
    print(f"\nheld-out mel L1 after {STEPS} steps: model {model_mean:.3f}, per-bin-mean baseline {baseline_mean:.3f} "
          f"(ratio {model_mean / baseline_mean:.2f})")
    assert model_mean < 0.75 * baseline_mean
