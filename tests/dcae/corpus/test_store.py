"""The export store without a model: parts, commit, merge (token keys kept), stats."""
from __future__ import annotations

import json

import torch

from dcae.corpus import (
    LatentManifestDataset,
    LatentMeta,
    StorePart,
    done_rows,
    latent_relpath,
    merge_parts,
    save_latent,
    utterance_id,
)


def test_two_parts_merge_with_token_keys(tmp_path):
    latents, ids = {}, []
    parts = [StorePart.open(tmp_path, "2x0", 4), StorePart.open(tmp_path, "2x1", 4)]
    for i in range(5):
        uid = utterance_id(tmp_path / f"a{i}.wav")
        latent = torch.randn(4, 3 + i)
        save_latent(tmp_path / latent_relpath(uid), latent, LatentMeta(22050, 256, 22050 / 4096, 4096 * (3 + i), "m"))
        row = {"id": uid, "audio_path": f"a{i}.wav", "latent_path": latent_relpath(uid), "num_frames": 3 + i,
               "duration": 1.0, "token_path": f"tokens/{uid}.safetensors", "num_tokens": 7, "token_rate": 25.0,
               "scratch": "not a manifest key"}
        parts[i % 2].commit([row], [latent])
        latents[uid], ids = latent, ids + [uid]
    assert set(done_rows(tmp_path)) == set(ids)
    summary = merge_parts(tmp_path, list(reversed(ids)), 4)
    assert summary == {"utterances": 5, "frames": 25, "failed": 0}
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(reversed(ids))
    assert list(rows[0]) == ["id", "audio_path", "latent_path", "num_frames", "duration", "token_path", "num_tokens",
                             "token_rate"]
    stats = json.loads((tmp_path / "stats.json").read_text())
    frames = torch.cat([latents[i] for i in ids], dim=1).double()
    assert stats["num_frames"] == 25 and stats["num_utterances"] == 5 and stats["dim"] == 4
    torch.testing.assert_close(torch.tensor(stats["mean"], dtype=torch.float64), frames.mean(1), rtol=0, atol=1e-12)
    ds = LatentManifestDataset(tmp_path / "manifest.jsonl")
    assert ds.rows[0]["token_path"] == str((tmp_path / "tokens" / f"{ids[-1]}.safetensors").resolve())


def test_rows_past_the_snapshot_are_dropped(tmp_path):
    part = StorePart.open(tmp_path, "1x0", 2)
    part.commit([{"id": "a", "audio_path": "a.wav", "latent_path": "x", "num_frames": 1}], [torch.ones(2, 1)])
    with open(part.rows_path, "a") as f:  # killed after appending a row, before the snapshot
        f.write(json.dumps({"id": "b", "audio_path": "b.wav", "latent_path": "y", "num_frames": 1}) + "\n{torn")
    again = StorePart.open(tmp_path, "1x0", 2)
    assert [r["id"] for r in again.rows] == ["a"] and again.stats.count == 1
    assert list(done_rows(tmp_path)) == ["a"]
