"""The FSQ tokenizer learns on real speech mels (~/.cache/dcae-speech).

The loop here is deliberately minimal (AdamW, warm-up, gradient clipping, random mel crops): the
shared training harness will take it over. The short test shows the loss falling in a few seconds;
the slow one (``-m slow``) trains the tiny preset for a few CPU minutes and reports, on held-out
clips, the reconstruction mel L1 against the trivial per-bin-mean baseline, and codebook usage.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch

from tts.tokenizers import FSQTokenizer, codebook_usage, fsq_preset
from vocoder.audio import load_audio
from vocoder.mel import MelSpectrogram

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_mels(files: list[Path]) -> list[torch.Tensor]:
    mel = MelSpectrogram()
    with torch.inference_mode():
        return [mel(load_audio(f))[0] for f in files]


def split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, held-out): every 10th clip of the sorted list is held out."""
    files = sorted(files)
    return [f for i, f in enumerate(files) if i % 10], [f for i, f in enumerate(files) if not i % 10]


def train_fsq(model: FSQTokenizer, mels: list[torch.Tensor], steps: int, batch_size: int = 16, segment: int = 128,
              lr: float = 2e-3, warmup: int = 50, seed: int = 0) -> list[float]:
    """Plain training loop on random ``segment``-frame crops (clips picked in proportion to length),
    linear warm-up then cosine decay to lr / 10; returns the loss of every step."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.tensor([m.shape[-1] for m in mels], dtype=torch.float)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            decay = 0.55 + 0.45 * math.cos(math.pi * step / steps)
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * decay
        batch = torch.zeros(batch_size, mels[0].shape[0], segment)
        lengths = torch.zeros(batch_size, dtype=torch.long)
        for row, i in enumerate(torch.multinomial(weights, batch_size, replacement=True, generator=g).tolist()):
            start = int(torch.randint(0, max(1, mels[i].shape[-1] - segment + 1), (1,), generator=g))
            crop = mels[i][:, start:start + segment]
            batch[row, :, :crop.shape[-1]], lengths[row] = crop, crop.shape[-1]
        loss = model(batch, lengths)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


def held_out_figures(model: FSQTokenizer, train: list[torch.Tensor], held_out: list[torch.Tensor]) -> dict:
    """Mel L1 (log-mel units) of the reconstruction and of the per-bin training mean, and codebook usage."""
    bin_mean = torch.cat(train, -1).mean(-1, keepdim=True)  # (80, 1): the trivial baseline
    model.eval()
    err = base = count = 0.0
    tokens = []
    with torch.inference_mode():
        for mel in held_out:
            err += (model.reconstruct(mel[None])[0] - mel).abs().sum().item()
            base += (bin_mean - mel).abs().sum().item()
            count += mel.numel()
            tokens.append(model.encode(mel[None])[0])
    return {"mel_l1": err / count, "baseline_mel_l1": base / count,
            "usage": codebook_usage(tokens, model.codebook_size), "frames": int(count // 80)}


def test_loss_falls_in_a_few_seconds(speech_files):
    files = sorted(f for f in speech_files if f.parent.name == "en")[:40:4]  # 10 clips
    mels = load_mels(files)
    torch.manual_seed(0)
    model = FSQTokenizer(fsq_preset("tiny"))
    losses = train_fsq(model, mels, steps=40, batch_size=8, segment=64, warmup=10)
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert last < 0.7 * first, losses


@pytest.mark.slow
def test_tiny_fsq_learns_real_speech(speech_files):
    train_files, held_files = split(speech_files)
    t0 = time.perf_counter()
    train_mels, held_mels = load_mels(train_files), load_mels(held_files)
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)
    model = FSQTokenizer(fsq_preset("tiny"))
    steps = 3000
    t0 = time.perf_counter()
    losses = train_fsq(model, train_mels, steps=steps)
    train_s = time.perf_counter() - t0
    fig = held_out_figures(model, train_mels, held_mels)
    print(f"\nFSQ tiny ({sum(p.numel() for p in model.parameters())} parameters, {model.codebook_size} codes, "
          f"{model.token_rate:.2f} tokens/s): {steps} steps of 16 x 128 frames in {train_s:.0f} s on 1 thread "
          f"({torch.backends.cpu.get_cpu_capability()}; data loading {load_s:.0f} s); train loss "
          f"{losses[0] * model.config.mel_std:.3f} -> {sum(losses[-20:]) / 20 * model.config.mel_std:.3f} mel L1")
    print(f"held out ({len(held_mels)} clips, {fig['frames']} frames): mel L1 {fig['mel_l1']:.3f} vs per-bin-mean "
          f"baseline {fig['baseline_mel_l1']:.3f} ({fig['mel_l1'] / fig['baseline_mel_l1']:.2f}x); {fig['usage']}")
    assert fig["mel_l1"] < 0.6 * fig["baseline_mel_l1"]
    assert fig["usage"].codes_used >= 50
