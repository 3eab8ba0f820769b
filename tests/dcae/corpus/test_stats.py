"""One statistics implementation: running sums merged across parts == one pass == torch (float64)."""
from __future__ import annotations

import json

import pytest
import torch

from dcae.corpus import LatentStats, ManifestError, RunningStats


def _latents(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(6, n, generator=g) * (torch.arange(6)[:, None] + 0.5) + 2.0 for n in (5, 1, 13, 8, 3)]


def test_merged_parts_equal_one_pass_equal_torch(tmp_path):
    latents = _latents()
    one_pass = RunningStats(6)
    for x in latents:
        one_pass.add(x)
    # two "ranks", each snapshotted to JSON and read back as the export store does
    parts = [RunningStats(6), RunningStats(6)]
    for i, x in enumerate(latents):
        parts[i % 2].add(x)
    merged = RunningStats(6)
    for part in parts:
        merged.merge(RunningStats.from_dict(json.loads(json.dumps(part.to_dict()))))

    frames = torch.cat(latents, dim=1).double()  # (D, all frames)
    direct_mean, direct_std = frames.mean(dim=1), frames.std(dim=1, unbiased=False)
    for stats in (one_pass.finish(), merged.finish(), LatentStats.from_latents(latents)):
        assert stats.num_frames == frames.shape[1] == 30
        torch.testing.assert_close(stats.mean, direct_mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(stats.std, direct_std, rtol=0, atol=1e-12)
    assert merged.count == one_pass.count
    torch.testing.assert_close(merged.total, one_pass.total, rtol=0, atol=1e-12)


def test_normalize_save_load(tmp_path):
    latents = _latents(1)
    stats = LatentStats.from_latents(latents)
    x = latents[2].T  # (frames, D)
    z = stats.normalize(x)
    assert z.dtype == torch.float32
    torch.testing.assert_close(stats.denormalize(z), x, rtol=0, atol=1e-5)
    stats.save(tmp_path / "stats.json", num_utterances=len(latents))
    data = json.loads((tmp_path / "stats.json").read_text())
    assert list(data) == ["mean", "std", "num_frames", "dim", "num_utterances"]
    again = LatentStats.load(tmp_path / "stats.json")
    assert again.num_frames == stats.num_frames and torch.equal(again.mean, stats.mean)
    assert torch.equal(again.normalize(x), z)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        LatentStats.from_latents([torch.zeros(4, 0)])
    with pytest.raises(ValueError, match=r"\(6, frames\)"):
        RunningStats(6).add(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="cannot merge"):
        RunningStats(6).merge(RunningStats(5))
    (tmp_path / "stats.json").write_text('{"mean": [0, 1]}')
    with pytest.raises(ManifestError, match="stats.json: not a stats file"):
        LatentStats.load(tmp_path / "stats.json")
    (tmp_path / "stats.json").write_text('{"mean": [0, 1], "std": [1]}')
    with pytest.raises(ManifestError, match="same length"):
        LatentStats.load(tmp_path / "stats.json")
