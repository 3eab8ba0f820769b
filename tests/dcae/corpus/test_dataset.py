"""Manifest rows with token files, the dataset with tokens, latents made by other tools."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from dcae.corpus import (
    LatentManifestDataset,
    ManifestError,
    collate_latents,
    read_manifest,
    save_tokens,
    write_manifest,
)


def _corpus(folder, lengths=(4, 6, 5), dim=8, token_counts=(9, 13, 11), with_tokens=True):
    """Latents written with plain safetensors (no metadata) + token files + a manifest in a subfolder."""
    rows, truth = [], []
    (folder / "lat").mkdir(parents=True)
    for i, (n, k) in enumerate(zip(lengths, token_counts)):
        latent = torch.randn(dim, n) + i
        save_file({"latent": latent}, str(folder / "lat" / f"u{i}.safetensors"))
        tokens = torch.randint(0, 100, (k,))
        row = {"id": f"u{i}", "latent_path": f"../lat/u{i}.safetensors", "num_frames": n, "text": f"t{i}"}
        if with_tokens:
            save_tokens(folder / "tok" / f"u{i}.safetensors", tokens, token_rate=25.0)
            row.update(token_path=str((folder / "tok" / f"u{i}.safetensors").resolve()), num_tokens=k, token_rate=25.0)
        rows.append(row)
        truth.append((latent, tokens))
    write_manifest(folder / "m" / "manifest.jsonl", rows)
    return folder / "m" / "manifest.jsonl", truth


def test_manifest_paths_resolved_relative_to_its_folder(tmp_path):
    manifest, _ = _corpus(tmp_path)
    rows = read_manifest(manifest)
    assert rows[0]["latent_path"] == str((tmp_path / "lat" / "u0.safetensors").resolve())
    assert rows[0]["token_path"] == str((tmp_path / "tok" / "u0.safetensors").resolve())
    assert rows[1]["num_tokens"] == 13 and rows[1]["token_rate"] == 25.0
    # a relative token_path is resolved against the manifest's folder, like latent_path
    (tmp_path / "m" / "rel.jsonl").write_text(json.dumps(
        {"id": "a", "latent_path": "x.safetensors", "token_path": "t/a.safetensors", "num_frames": 1}) + "\n")
    row = read_manifest(tmp_path / "m" / "rel.jsonl")[0]
    assert row["token_path"] == str((tmp_path / "m" / "t" / "a.safetensors").resolve())


def test_dataset_with_tokens_and_latents_without_metadata(tmp_path):
    manifest, truth = _corpus(tmp_path)
    ds = LatentManifestDataset(manifest, stats_path=None, normalize=False, with_tokens=True)
    assert ds.latent_dim == 8 and ds.meta.frame_rate == 22050 / 4096 and ds.meta.model == ""
    for i, (latent, tokens) in enumerate(truth):
        item = ds[i]
        assert torch.equal(item["latent"], latent.T) and torch.equal(item["tokens"], tokens)
        assert item["tokens"].dtype == torch.int64
    batch = collate_latents([ds[0], ds[1]])
    assert batch["tokens"].shape == (2, 13) and batch["token_lengths"].tolist() == [9, 13]
    assert batch["latent"].shape == (2, 6, 8) and batch["lengths"].tolist() == [4, 6]
    assert (batch["tokens"][0, 9:] == 0).all() and not batch["token_mask"][0, 9:].any()
    normalised = LatentManifestDataset(manifest)  # no stats.json: computed from the metadata-less files
    frames = torch.cat([normalised[i]["latent"] for i in range(3)])
    torch.testing.assert_close(frames.mean(0), torch.zeros(8), rtol=0, atol=1e-5)
    assert "tokens" not in normalised[0]


def test_dataset_tokens_errors_name_the_row(tmp_path):
    manifest, _ = _corpus(tmp_path, with_tokens=False)
    with pytest.raises(ManifestError, match="row u0 has no token_path") as e:
        LatentManifestDataset(manifest, stats_path=None, normalize=False, with_tokens=True)
    assert "manifest.jsonl" in str(e.value) and "\n" not in str(e.value)
    manifest, _ = _corpus(tmp_path / "b")
    ds = LatentManifestDataset(manifest, stats_path=None, normalize=False, with_tokens=True)
    token_file = tmp_path / "b" / "tok" / "u1.safetensors"
    token_file.write_bytes(token_file.read_bytes()[:-3])
    with pytest.raises(ManifestError, match="row u1: .*truncated") as e:
        ds[1]
    assert "\n" not in str(e.value)
