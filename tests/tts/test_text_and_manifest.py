"""Latent manifest reader and text front end."""
from __future__ import annotations

import json

import pytest
import torch

from dcae.corpus import (
    LatentManifestDataset,
    LatentMeta,
    LatentStats,
    ManifestError,
    collate_latents,
    pad_sequences,
    save_latent,
)
from tts.text import FrontendError, TextFrontend

META = LatentMeta(sample_rate=22050, hop_length=256, frame_rate=22050 / 4096, num_samples=0, model="test")


def _write_corpus(folder, lengths, dim=6, texts=None, with_stats=False):
    rows, latents = [], []
    for i, n in enumerate(lengths):
        lat = torch.randn(dim, n) * (torch.arange(dim)[:, None] + 1) + 3.0
        save_latent(folder / "lat" / f"u{i}.safetensors", lat, META)
        latents.append(lat)
        rows.append({"id": f"u{i}", "latent_path": f"lat/u{i}.safetensors", "num_frames": n,
                     "text": (texts or [f"text {i}"] * len(lengths))[i], "audio_path": "x.wav", "duration": 1.0})
    (folder / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if with_stats:
        LatentStats(mean=torch.full((dim,), 3.0), std=torch.ones(dim), num_frames=sum(lengths)).save(folder / "stats.json")
    return latents


def test_dataset_reads_normalises_and_collates(tmp_path):
    latents = _write_corpus(tmp_path, [5, 9, 7])
    ds = LatentManifestDataset(tmp_path / "manifest.jsonl")  # no stats.json: computed from the data
    assert len(ds) == 3 and ds.latent_dim == 6
    item = ds[1]
    assert item["id"] == "u1" and item["text"] == "text 1" and item["latent"].shape == (9, 6)
    allframes = torch.cat([ds[i]["latent"] for i in range(3)])
    torch.testing.assert_close(allframes.mean(0), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(allframes.std(0, unbiased=False), torch.ones(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(ds.stats.denormalize(item["latent"]), latents[1].T, atol=1e-4, rtol=0)
    batch = collate_latents([ds[0], ds[1]])
    assert batch["latent"].shape == (2, 9, 6) and batch["lengths"].tolist() == [5, 9]
    assert batch["mask"].sum().item() == 14 and (batch["latent"][0, 5:] == 0).all()


def test_dataset_stats_file_max_frames_and_raw(tmp_path):
    _write_corpus(tmp_path, [5, 9, 7], with_stats=True)
    ds = LatentManifestDataset(tmp_path / "manifest.jsonl", max_frames=7)
    assert [r["id"] for r in ds.rows] == ["u0", "u2"]
    torch.testing.assert_close(ds[0]["latent"], ds.load_raw(0) - 3.0)
    raw = LatentManifestDataset(tmp_path / "manifest.jsonl", stats_path=None, normalize=False)
    assert raw.stats is None and raw[0]["latent"].mean() > 1.0
    assert ds.meta.sample_rate == 22050


@pytest.mark.parametrize("content, reason", [("{bad json\n", "not valid JSON"), ('{"id": "a"}\n', "lacks latent_path"),
                                             ("", "no rows")])
def test_bad_manifest_one_line_error(tmp_path, content, reason):
    (tmp_path / "manifest.jsonl").write_text(content)
    with pytest.raises(ManifestError, match=reason) as e:
        LatentManifestDataset(tmp_path / "manifest.jsonl", stats_path=None, normalize=False)
    assert "manifest.jsonl" in str(e.value) and "\n" not in str(e.value)


def test_missing_latent_file_names_row(tmp_path):
    _write_corpus(tmp_path, [4, 4], with_stats=True)
    (tmp_path / "lat" / "u1.safetensors").unlink()
    ds = LatentManifestDataset(tmp_path / "manifest.jsonl")
    with pytest.raises(ManifestError, match="u1"):
        ds[1]


def test_pad_left():
    x, m = pad_sequences([torch.tensor([1, 2]), torch.tensor([3])], left=True)
    assert x.tolist() == [[1, 2], [0, 3]] and m.tolist() == [[True, True], [False, True]]


def test_frontend_chars_bytes_roundtrip(tmp_path):
    fe = TextFrontend.fit(["Hello world", "héllo"], kind="chars")
    ids = fe.encode("HELLO  q")
    assert len(ids) == 7 and ids[-1] == 1  # 'q' unseen -> <unk>; whitespace collapsed, lowercased
    fe.save(tmp_path / "vocab.json")
    again = TextFrontend.load(tmp_path / "vocab.json")
    assert again.encode("héllo world") == fe.encode("héllo world") and again.vocab_size == fe.vocab_size
    fb = TextFrontend.fit(["x"], kind="bytes")
    assert fb.vocab_size == 258 and len(fb.encode("é")) == 2 and 1 not in fb.encode("any ☃")


def test_frontend_errors(tmp_path):
    with pytest.raises(FrontendError, match="unknown text front end"):
        TextFrontend("words")
    try:
        import phonemizer  # noqa: F401
    except ImportError:
        with pytest.raises(FrontendError, match="pip install phonemizer"):
            TextFrontend.fit(["hello"], kind="phonemes")
    (tmp_path / "v.json").write_text("[]")
    with pytest.raises(FrontendError, match="not a vocabulary"):
        TextFrontend.load(tmp_path / "v.json")
