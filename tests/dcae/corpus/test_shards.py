"""Parquet shards: the format (readable with no code of ours), the index and statistics, the
converter both ways, a broken shard named and left out, Hugging Face ``datasets`` reading them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from dcae.cli.shards import shards_command
from dcae.corpus import LatentStats, load_latent, load_tokens, read_manifest
from dcae.corpus.shards import ShardRow, index_shards, read_rows, write_index, write_shard
from dcae.corpus.stream import ManifestCorpus, ShardCorpus, open_corpus
from tts.synthetic import SyntheticTokenCorpus


def token_corpus(folder: Path, count: int = 40) -> Path:
    corpus = SyntheticTokenCorpus(vocab=8, dim=8)
    return corpus.write(folder, corpus.random_sequences(count, seed=3, max_len=24))


def run(*args: str) -> str:
    result = CliRunner().invoke(shards_command, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def packed(tmp_path) -> tuple[Path, Path]:
    """(a per-file export with tokens, the same packed into several shards)."""
    manifest = token_corpus(tmp_path / "files")
    run("pack", "--manifest", str(manifest), "--out", str(tmp_path / "shards"), "--shard-mb", "0.002")
    return manifest, tmp_path / "shards"


def test_rows_round_trip_and_any_parquet_reader_reads_them(tmp_path):
    rng = np.random.default_rng(0)
    rows = [ShardRow(id=f"u{i}", latent=rng.standard_normal((80, 3 + i)).astype(np.float32), text=f"text {i}",
                     audio_path=f"/a/{i}.wav", duration=0.5 + i, tokens=rng.integers(0, 6561, 7 + i),
                     token_rate=25.0, speaker=f"spk{i % 2}", speaker_embedding=rng.standard_normal(4).astype(np.float32))
            for i in range(300)]
    entry = write_shard(tmp_path / "shards" / "a.parquet", rows, {"model": "abc", "frame_rate": 5.0})
    assert entry == {"path": "shards/a.parquet", "rows": 300, "frames": sum(r.num_frames for r in rows)}
    table = pq.read_table(tmp_path / "shards" / "a.parquet")  # plain pyarrow: the schema the design card names
    assert table.column_names == ["id", "text", "audio_path", "num_frames", "duration", "latent", "tokens",
                                  "token_rate", "speaker", "speaker_embedding"]
    first = table.slice(0, 1).to_pylist()[0]
    assert len(first["latent"]) == 80 and len(first["latent"][0]) == 3 == first["num_frames"]
    np.testing.assert_array_equal(np.array(first["latent"], np.float32), rows[0].latent)
    info = index_shards(tmp_path)[0][0]
    assert info.row_groups == [256, 44] and info.meta["model"] == "abc" and info.meta["latent_dim"] == 80
    back = read_rows(info.path, 1)
    assert [r["id"] for r in back] == [f"u{i}" for i in range(256, 300)]
    for got, want in zip(back, rows[256:]):
        np.testing.assert_array_equal(got["latent"], want.latent)
        np.testing.assert_array_equal(got["tokens"], want.tokens)
        np.testing.assert_array_equal(got["speaker_embedding"], want.speaker_embedding)
        assert (got["text"], got["speaker"], got["token_rate"]) == (want.text, want.speaker, 25.0)


def test_index_and_statistics_equal_the_data(tmp_path):
    rng = np.random.default_rng(1)
    latents = [rng.standard_normal((6, int(rng.integers(2, 9)))).astype(np.float32) * 3 + 1 for _ in range(50)]
    write_shard(tmp_path / "shards" / "a.parquet", [ShardRow(f"a{i}", x) for i, x in enumerate(latents[:20])], {})
    write_shard(tmp_path / "shards" / "b.parquet", [ShardRow(f"b{i}", x) for i, x in enumerate(latents[20:])], {})
    summary = write_index(tmp_path, index_shards(tmp_path)[0])
    everything = np.concatenate(latents, axis=1)
    assert summary == {"shards": 2, "utterances": 50, "frames": everything.shape[1]}
    stats = LatentStats.load(tmp_path / "stats.json")
    np.testing.assert_allclose(stats.mean.numpy(), everything.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.std.numpy(), everything.std(axis=1), rtol=1e-5, atol=1e-6)
    index = json.loads((tmp_path / "shards.json").read_text())
    assert [e["rows"] for e in index["shards"]] == [20, 30]


def test_pack_then_unpack_gives_back_the_same_numbers(packed, tmp_path):
    manifest, shards = packed
    assert len(index_shards(shards)[0]) > 1  # several shards
    run("unpack", "--shards", str(shards), "--out", str(tmp_path / "again"))
    before, after = read_manifest(manifest), read_manifest(tmp_path / "again" / "manifest.jsonl")
    assert [r["id"] for r in before] == [r["id"] for r in after]
    for a, b in zip(before, after):
        assert torch.equal(load_latent(a["latent_path"])[0], load_latent(b["latent_path"])[0])
        assert torch.equal(load_tokens(a["token_path"])[0], load_tokens(b["token_path"])[0])
        assert (a["num_frames"], a["num_tokens"], a["token_rate"]) == (b["num_frames"], b["num_tokens"], b["token_rate"])
    assert load_tokens(after[0]["token_path"])[1].extra["tokenizer"] == "synthetic"
    for layout in (ManifestCorpus(manifest), ShardCorpus(shards)):  # one interface, the same rows
        assert layout.num_rows == 40 and layout.token_info().token_rate == 25.0 and layout.latent_dim == 8


def test_pack_resumes_and_holds_every_row_once(tmp_path, monkeypatch):
    manifest = token_corpus(tmp_path / "files")
    out = tmp_path / "shards"
    import dcae.corpus.shards as shards_module

    real, calls = shards_module.write_shard, []

    class Crash(Exception):
        pass

    def crash_on_third(path, rows, meta, row_group_rows=256):
        calls.append(len(rows))
        if len(calls) == 3:
            raise Crash  # killed while writing the third shard
        return real(path, rows, meta, row_group_rows)

    monkeypatch.setattr(shards_module, "write_shard", crash_on_third)
    with pytest.raises(Crash):
        CliRunner().invoke(shards_command, ["pack", "--manifest", str(manifest), "--out", str(out), "--shard-mb",
                                            "0.002"], catch_exceptions=False)
    monkeypatch.setattr(shards_module, "write_shard", real)
    done_before = sum(info.rows for info in index_shards(out, listed=False)[0])
    assert 0 < done_before < 40
    run("pack", "--manifest", str(manifest), "--out", str(out), "--shard-mb", "0.002")
    ids = [row["id"] for info in index_shards(out)[0] for g in range(len(info.row_groups))
           for row in read_rows(info.path, g, ["id"])]
    assert sorted(ids) == sorted(r["id"] for r in read_manifest(manifest))  # each once


def test_a_broken_shard_is_named_and_left_out_and_the_rest_trains(packed, tmp_path, capsys):
    from tts.train import main as train_main

    _, shards = packed
    infos = index_shards(shards)[0]
    victim = infos[1].path
    victim.write_bytes(victim.read_bytes()[:-40])  # truncated: the footer is gone
    corpus = open_corpus(shards)
    assert len(corpus.problems) == 1 and str(victim) in corpus.problems[0] and "\n" not in corpus.problems[0]
    assert corpus.num_rows == sum(i.rows for i in infos) - infos[1].rows
    code = train_main(["--model", "token-flow", "--manifest", str(shards), "--output-dir", str(tmp_path / "run"),
                       "--preset", "tiny", "--batch-size", "4", "--max-steps", "2", "--cpu-threads", "1"])
    said = "".join(capsys.readouterr())
    assert code == 0 and (tmp_path / "run" / "checkpoints" / "model_2.pt").is_file()
    assert f"warning: {victim}: not a readable Parquet file" in said and "1 shard(s) left out" in said


def test_hugging_face_datasets_reads_the_shards(packed):
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is in the [dev] extra")
    manifest, shards = packed
    files = sorted(str(p) for p in (shards / "shards").glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    by_id = {r["id"]: r for r in read_manifest(manifest)}
    assert len(ds) == len(by_id)
    for row in ds:
        want = by_id[row["id"]]
        np.testing.assert_array_equal(np.array(row["latent"], np.float32), load_latent(want["latent_path"])[0].numpy())
        assert row["tokens"] == load_tokens(want["token_path"])[0].tolist()
