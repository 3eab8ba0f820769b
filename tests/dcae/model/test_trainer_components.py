"""Training building blocks: discriminators and GAN losses against the reference trainer's own code,
the Muon/AdamW split and step against the reference optimizer, and the segment dataset."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dcae import DCAEWrapper
from dcae.model.discriminators import MelDiscriminator
from dcae.model.gan_losses import discriminator_loss, feature_matching_loss, generator_loss
from dcae.training.optim import MuonAdamW, split_parameters
from preprocess.dataset import SegmentDataset, collate_segments, read_segment
from tests.conftest import TINY_CONFIG
from tests.reference_repo import import_reference_file, reference_available

TINY = TINY_CONFIG


def reference_module(path: str, tmp_path: Path):
    """Import a file of the reference repository as a module (skips when it is not available)."""
    if not reference_available():
        pytest.skip("reference repository not available (set DCAE_REFERENCE_REPO)")
    return import_reference_file(path, tmp_path)


def write_wav(path: Path, seconds: float, sample_rate: int = 22050, freq: float = 220.0) -> Path:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    data = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(data.tobytes())
    return path


def test_discriminator_and_losses_match_reference(tmp_path):
    ref = reference_module("models/discriminator.py", tmp_path)
    reference = ref.AEDiscriminator(80)
    ours = MelDiscriminator(80)
    ours.load_state_dict(reference.state_dict(), strict=True)  # same parameter names and shapes
    real, fake = torch.randn(2, 80, 64), torch.randn(2, 80, 64)
    ref_real, ref_fake, ref_fmap_real, ref_fmap_fake = reference(real, fake)
    real_scores, real_fmaps = ours(real)
    fake_scores, fake_fmaps = ours(fake)
    for a, b in zip(ref_real + ref_fake, real_scores + fake_scores):
        torch.testing.assert_close(a, b)
    assert [len(f) for f in real_fmaps] == [len(f) for f in ref_fmap_real] == [41, 5]
    torch.testing.assert_close(discriminator_loss(real_scores, fake_scores), ref.discriminator_loss(ref_real, ref_fake)[0])
    torch.testing.assert_close(generator_loss(fake_scores), ref.generator_loss(ref_fake)[0])
    torch.testing.assert_close(feature_matching_loss(real_fmaps, fake_fmaps), ref.feature_loss(ref_fmap_real, ref_fmap_fake))


def test_parameter_split_puts_weight_norm_magnitudes_and_vectors_on_adamw():
    model = DCAEWrapper(TINY)
    muon, adamw = split_parameters([model])
    names = {id(p): n for n, p in model.named_parameters()}
    assert muon and all(names[id(p)].endswith("original1") or p.ndim == 2 for p in muon)
    assert all(p.ndim >= 2 and sum(d > 1 for d in p.shape) >= 2 for p in muon)
    assert any(names[id(p)].endswith("original0") for p in adamw)
    assert any(names[id(p)].endswith("bias") for p in adamw)
    assert len(muon) + len(adamw) == len(list(model.parameters()))


def test_muon_step_matches_reference_optimizer(tmp_path):
    ref = reference_module("utils/muon.py", tmp_path)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.LazyLinear(3))
    net(torch.randn(2, 4, 6, 6))
    twin = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(128, 3))
    twin.load_state_dict(net.state_dict())
    ours = MuonAdamW([net], lr=1e-2)
    reference = ref.get_muon_optimizer([twin], lr=1e-2)
    x = torch.randn(5, 4, 6, 6)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for _ in range(3):
        for model, opt in ((net, ours), (twin, reference)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for (name, a), b in zip(net.named_parameters(), twin.parameters()):
        delta_ours, delta_ref = a.detach() - before[name], b.detach() - before[name]
        # torch's Newton-Schulz runs in bf16, the reference's in fp32: updates agree to ~1 %
        rel = (delta_ours - delta_ref).norm() / delta_ref.norm()
        assert rel < 0.03, (name, rel)


def test_optimizer_state_round_trip():
    model = DCAEWrapper(TINY)
    opt = MuonAdamW([model], lr=1e-3)
    model(torch.randn(2, 80, 64))[0].mean().backward()
    opt.step()
    other = MuonAdamW([DCAEWrapper(TINY)], lr=1e-3)
    other.load_state_dict(opt.state_dict())
    a, b = opt.state_dict(), other.state_dict()
    assert set(a) == {"optimizer_0", "optimizer_1"}
    for key in a:
        for idx, st in a[key]["state"].items():
            for k, v in st.items():
                torch.testing.assert_close(b[key]["state"][idx][k], v)


def test_read_segment_exact_length_padding_and_random_window(tmp_path):
    long = write_wav(tmp_path / "long.wav", 3.0, sample_rate=16000)
    short = write_wav(tmp_path / "short.wav", 0.2)
    a, b = read_segment(long, 8192), read_segment(long, 8192)
    assert a.shape == b.shape == (8192,)
    assert not torch.equal(a, b)  # random offsets
    s = read_segment(short, 8192)
    assert s.shape == (8192,)
    assert s[: int(0.2 * 22050) - 10].abs().max() > 0.1 and s[int(0.2 * 22050) + 10:].abs().max() == 0


def test_dataset_skips_and_reports_bad_files(tmp_path):
    good = write_wav(tmp_path / "good.wav", 1.0)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF not really audio" * 10)
    (tmp_path / "empty.wav").write_bytes(b"")
    write_wav(tmp_path / "tiny.wav", 0.01)
    filelist = tmp_path / "list.txt"
    filelist.write_text(f"{good}\n{tmp_path / 'garbage.wav'}|some text\n{tmp_path / 'empty.wav'}\n"
                        f"{tmp_path / 'tiny.wav'}\n{tmp_path / 'missing.wav'}\n")
    ds = SegmentDataset(filelist, 4096, min_seconds=0.1)
    batch = collate_segments([ds[i] for i in range(len(ds))])
    assert batch.audio.shape == (5, 4096)
    reasons = "\n".join(batch.skipped)
    for name in ("garbage.wav", "empty.wav", "tiny.wav", "missing.wav"):
        assert name in reasons
    assert all("\n" not in s for s in batch.skipped)
