"""dcae export: equality with the inference wrapper, resume after a kill, torchrun sharding, bad files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae import DCAEWrapper
from dcae import latent_export as export
from dcae.cli.export import export_command
from dcae.corpus import StoreError, StorePart, done_rows, load_latent, merge_parts
from tests.conftest import REPO, TINY_CONFIG


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "generator_1.pt"
    torch.save(DCAEWrapper(TINY_CONFIG).state_dict(), path)
    return path


def tone(seconds: float, sr: int, f0: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)


@pytest.fixture
def corpus(tmp_path) -> Path:
    """12 generated utterances of assorted lengths and rates, two sharing a basename, with texts."""
    root = tmp_path / "audio"
    lines = []
    for i in range(12):
        sr = (16000, 22050, 44100)[i % 3]
        sub = root / ("a" if i < 6 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / (f"utt{i}.wav" if i not in (1, 7) else "same.wav")
        sf.write(path, tone(0.4 + 0.15 * i, sr, 150 + 20 * i), sr)
        lines.append(f"{path}|text number {i}")
    filelist = tmp_path / "filelist.txt"
    filelist.write_text("\n".join(lines) + "\n")
    return filelist


class Crash(Exception):
    """Stands for the process being killed at a chosen point."""


def run_cli(args: list[str]):
    return CliRunner().invoke(export_command, args, catch_exceptions=False)


def export_args(filelist: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["--filelist", str(filelist), "--out", str(out), "--ae-model", str(ckpt), "--ae-config", str(TINY_CONFIG),
            "--num-workers", "0", "--batch-size", "4", *extra]


def read_manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_export_matches_single_file_encode(tmp_path, corpus, tiny_checkpoint, on_device):
    """Batched export on the device under test vs one file at a time on the CPU."""
    out = tmp_path / "latents"
    result = run_cli(export_args(corpus, out, tiny_checkpoint, "--device", str(on_device)))
    assert result.exit_code == 0, result.output
    rows = read_manifest(out)
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert [r["text"] for r in rows] == [f"text number {i}" for i in range(12)]  # filelist order
    encoder = export.LatentEncoder(tiny_checkpoint, TINY_CONFIG, None, torch.device("cpu"), "fp32")
    from dcae.audio import load_audio

    for row in rows:
        latent, meta = load_latent(out / row["latent_path"])
        alone = encoder.encode([load_audio(row["audio_path"], 22050)])[0]  # batch of one
        assert latent.shape == alone.shape == (80, row["num_frames"])
        assert torch.allclose(latent, alone, atol=1e-5, rtol=1e-5)
        assert abs(meta.num_samples / 22050 - row["duration"]) < 1e-4
        assert meta.frame_rate == pytest.approx(22050 / 4096)
    stats = json.loads((out / "stats.json").read_text())
    all_frames = torch.cat([load_latent(out / r["latent_path"])[0] for r in rows], dim=1)
    assert stats["num_frames"] == all_frames.shape[1]
    assert np.allclose(stats["mean"], all_frames.double().mean(1).numpy(), atol=1e-6)
    assert np.allclose(stats["std"], all_frames.double().std(1, unbiased=False).numpy(), atol=1e-5)


def test_export_equals_dcae_encode(tmp_path, corpus, tiny_checkpoint):
    """The same file gives the same latent through `dcae export` (batched) and `dcae encode` (one file)."""
    from dcae.cli.audio import encode_command

    out = tmp_path / "latents"
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    single = tmp_path / "single"
    result = CliRunner().invoke(encode_command, [str(tmp_path / "audio"), "-o", str(single), "--ae-model",
                                                 str(tiny_checkpoint), "--ae-config", str(TINY_CONFIG)])
    assert result.exit_code == 0, result.output
    for row in read_manifest(out):
        latent, meta = load_latent(out / row["latent_path"])
        rel = Path(row["audio_path"]).relative_to(tmp_path / "audio").with_suffix(".safetensors")
        reference, reference_meta = load_latent(single / rel)
        assert torch.allclose(latent, reference, atol=1e-5, rtol=1e-5)
        assert meta.num_samples == reference_meta.num_samples and meta.model == reference_meta.model


def test_resume_after_crash_points(tmp_path, corpus, tiny_checkpoint, monkeypatch):
    """Crash right after a latent is written and right after rows are appended: a rerun ends
    with every utterance once and the same statistics as an uninterrupted export."""
    clean = tmp_path / "clean"
    assert run_cli(export_args(corpus, clean, tiny_checkpoint)).exit_code == 0
    clean_stats = json.loads((clean / "stats.json").read_text())

    out = tmp_path / "crashed"
    original_commit = StorePart.commit
    calls = {"n": 0}

    def crashing_commit(self, rows, latents):
        calls["n"] += 1
        if calls["n"] == 2:  # rows appended to the part, killed before the stats snapshot
            with open(self.rows_path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))
            raise Crash
        return original_commit(self, rows, latents)

    monkeypatch.setattr(StorePart, "commit", crashing_commit)
    with pytest.raises(Crash):
        run_cli(export_args(corpus, out, tiny_checkpoint))
    monkeypatch.setattr(StorePart, "commit", original_commit)
    assert not (out / "manifest.jsonl").exists()
    written = sorted(out.glob("latents/*/*.safetensors"))
    committed = json.loads((out / "parts" / "1x0.stats.json").read_text())["rows"]
    assert 0 < committed < len(written) < 12  # first batch committed, second written but uncommitted

    encoded = {"n": 0}
    original_encode = export.LatentEncoder.encode

    def counting_encode(self, audios):
        encoded["n"] += len(audios)
        return original_encode(self, audios)

    monkeypatch.setattr(export.LatentEncoder, "encode", counting_encode)
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    assert encoded["n"] == 12 - len(written)  # nothing finished was encoded again
    rows = read_manifest(out)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in read_manifest(clean))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_frames"] == clean_stats["num_frames"]
    assert np.allclose(stats["mean"], clean_stats["mean"], atol=1e-6)
    assert np.allclose(stats["std"], clean_stats["std"], atol=1e-6)

    # a third run has nothing to do and changes nothing
    encoded["n"] = 0
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    assert encoded["n"] == 0 and read_manifest(out) == rows


def test_broken_latent_is_redone(tmp_path, corpus, tiny_checkpoint):
    out = tmp_path / "latents"
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    row = read_manifest(out)[3]
    target = out / row["latent_path"]
    good, good_meta = load_latent(target)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    again, again_meta = load_latent(target)
    assert torch.equal(again, good) and again_meta == good_meta


def export_as_ranks(args: list[str], world_size: int, monkeypatch) -> None:
    """`dcae export` as each rank of a ``world_size``-process run in turn, in this process (rank 0 last:
    it merges once every rank's done marker exists): the files torchrun ranks write, without a process group."""
    from dcae.distributed import DistInfo

    for rank in reversed(range(world_size)):
        monkeypatch.setattr(export.distributed, "init_distributed",
                            lambda device=None, rank=rank: DistInfo(rank, rank, world_size, torch.device("cpu")))
        result = run_cli(args)
        assert result.exit_code == 0, result.output


def count_encoded(monkeypatch) -> list[int]:
    """Record how many utterances each encoder batch gets."""
    calls: list[int] = []
    original = export.LatentEncoder.encode

    def counting(self, audios):
        calls.append(len(audios))
        return original(self, audios)

    monkeypatch.setattr(export.LatentEncoder, "encode", counting)
    return calls


def assert_same_export(out: Path, clean: Path) -> None:
    """``out`` holds the manifest, latents and statistics of the uninterrupted export ``clean``."""
    rows = read_manifest(out)
    assert rows == read_manifest(clean) and len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        assert torch.allclose(load_latent(out / row["latent_path"])[0], load_latent(clean / row["latent_path"])[0],
                              atol=1e-5, rtol=1e-5)
    stats, clean_stats = (json.loads((d / "stats.json").read_text()) for d in (out, clean))
    assert (stats["num_frames"], stats["num_utterances"]) == (clean_stats["num_frames"], clean_stats["num_utterances"])
    assert np.allclose(stats["mean"], clean_stats["mean"], atol=1e-6)
    assert np.allclose(stats["std"], clean_stats["std"], atol=1e-6)


@pytest.mark.parametrize("first, second", [(1, 1), (1, 2), (2, 1)])
def test_broken_latents_are_redone_once(tmp_path, corpus, tiny_checkpoint, monkeypatch, first, second):
    """Committed utterances whose latent file was truncated or deleted are encoded again by a rerun of the
    same or another world size and replace their old rows: each id once, stats.json as a clean export's,
    and a further rerun has nothing to do."""
    clean = tmp_path / "clean"
    assert run_cli(export_args(corpus, clean, tiny_checkpoint)).exit_code == 0
    out = tmp_path / "latents"
    args = export_args(corpus, out, tiny_checkpoint)
    export_as_ranks(args, first, monkeypatch)
    rows = read_manifest(out)
    truncated = out / rows[3]["latent_path"]
    truncated.write_bytes(truncated.read_bytes()[:-9])
    (out / rows[8]["latent_path"]).unlink()

    encoded = count_encoded(monkeypatch)
    export_as_ranks(args, second, monkeypatch)
    assert sum(encoded) == 2
    assert_same_export(out, clean)
    assert sorted(p.name for p in (out / "parts").glob("*.stats.json")) == [f"{second}x{r}.stats.json"
                                                                          for r in range(second)]
    encoded.clear()
    export_as_ranks(args, second, monkeypatch)
    assert encoded == []
    assert_same_export(out, clean)


def test_replaced_audio_is_redone_once(tmp_path, corpus, tiny_checkpoint, monkeypatch):
    """An audio file replaced by a longer one and its latent deleted: the rerun encodes the new audio, its
    row replaces the old one (stats.json as a clean export of the new audio), a further rerun keeps it."""
    out = tmp_path / "latents"
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    row = read_manifest(out)[5]
    sf.write(row["audio_path"], tone(3.0, 22050, 300), 22050)
    (out / row["latent_path"]).unlink()
    encoded = count_encoded(monkeypatch)
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    assert encoded == [1]
    clean = tmp_path / "clean"
    assert run_cli(export_args(corpus, clean, tiny_checkpoint)).exit_code == 0
    assert read_manifest(clean)[5]["num_frames"] > row["num_frames"]
    assert_same_export(out, clean)
    encoded.clear()
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    assert encoded == [] and len((out / "parts" / "1x0.jsonl").read_text().splitlines()) == 12
    assert_same_export(out, clean)


def store_row(uid: str, num_frames: int) -> dict:
    return {"id": uid, "audio_path": f"{uid}.wav", "latent_path": f"latents/{uid}.safetensors", "num_frames": num_frames}


def test_done_rows_takes_the_newest_row_of_an_id(tmp_path):
    """Parts are read least recently committed first, rows in commit order: the last row of an id counts."""
    newer, older = StorePart.start(tmp_path, "1x0", 2), StorePart.start(tmp_path, "2x1", 2)
    older.commit([store_row("a", 1), store_row("b", 1)], [torch.ones(2, 1)] * 2)
    newer.commit([store_row("a", 2)], [torch.ones(2, 2)])
    newer.commit([store_row("a", 3)], [torch.ones(2, 3)])
    os.utime(older.stats_path, ns=(1_000_000_000, 1_000_000_000))  # "2x1" sorts last by name, but is older
    assert {uid: row["num_frames"] for uid, row in done_rows(tmp_path).items()} == {"a": 3, "b": 1}


def test_merge_refuses_an_id_in_two_parts(tmp_path):
    """Keeping one row would leave the other part's frames in the sums: a one-line error saying what to do."""
    for name in ("2x0", "2x1"):
        StorePart.start(tmp_path, name, 2).commit([store_row("a", 1)], [torch.ones(2, 1)])
    with pytest.raises(StoreError) as error:
        merge_parts(tmp_path, ["a"], 2)
    message = str(error.value)
    assert "utterance a is also in 2x" in message and "count twice" in message and "rerun the export" in message
    assert "\n" not in message and not (tmp_path / "manifest.jsonl").exists()
    assert merge_parts(tmp_path, ["a"], 2, world_size=1) == {"utterances": 0, "frames": 0, "failed": 0}


def test_sigkill_midway_then_resume(tmp_path, corpus, tiny_checkpoint):
    """A real SIGKILL at an arbitrary moment, then a rerun: one complete manifest, each id once."""
    # a longer corpus so the process is still busy when killed
    lines = corpus.read_text().splitlines() * 1
    big = tmp_path / "big.txt"
    extra = []
    for i in range(24):
        p = tmp_path / "more" / f"x{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, tone(1.0 + 0.05 * i, 22050, 100 + 5 * i), 22050)
        extra.append(str(p))
    big.write_text("\n".join(lines + extra) + "\n")
    out = tmp_path / "latents"
    cmd = [sys.executable, "-m", "dcae.cli", "export", *export_args(big, out, tiny_checkpoint)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("latents/*/*.safetensors"))) < 10:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.jsonl").exists() or len(read_manifest(out)) < 36
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = read_manifest(out)
    assert len(rows) == 36 and len({r["id"] for r in rows}) == 36
    assert json.loads((out / "stats.json").read_text())["num_frames"] == sum(r["num_frames"] for r in rows)


def test_bad_files_recorded_and_skipped(tmp_path, corpus, tiny_checkpoint):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    (bad_dir / "empty.wav").write_bytes(b"")
    sf.write(bad_dir / "silent.wav", np.zeros(22050, dtype=np.float32), 22050)
    filelist = tmp_path / "with_bad.txt"
    filelist.write_text(corpus.read_text() + "".join(f"{bad_dir / n}\n" for n in ("corrupt.wav", "empty.wav", "silent.wav"))
                        + f"{tmp_path / 'missing.wav'}\n")
    out = tmp_path / "latents"
    result = run_cli(export_args(filelist, out, tiny_checkpoint))
    assert result.exit_code == 1
    assert len(read_manifest(out)) == 12
    failed = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()]
    assert sorted(Path(f["audio_path"]).name for f in failed) == ["corrupt.wav", "empty.wav", "missing.wav", "silent.wav"]
    assert all(f["error"] and "\n" not in f["error"] for f in failed)


def test_other_model_refused(tmp_path, corpus, tiny_checkpoint):
    out = tmp_path / "latents"
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    other = tmp_path / "other.pt"
    torch.manual_seed(5)
    torch.save(DCAEWrapper(TINY_CONFIG).state_dict(), other)
    result = CliRunner().invoke(export_command, export_args(corpus, out, other))
    assert result.exit_code != 0 and "different model" in result.output


def test_manifest_reader(tmp_path, corpus, tiny_checkpoint):
    from dcae.corpus import LatentManifestDataset

    out = tmp_path / "latents"
    assert run_cli(export_args(corpus, out, tiny_checkpoint)).exit_code == 0
    ds = LatentManifestDataset(out / "manifest.jsonl")  # normalised with stats.json
    frames = torch.cat([ds[i]["latent"] for i in range(len(ds))])
    assert frames.shape[1] == 80
    assert torch.allclose(frames.mean(0), torch.zeros(80), atol=1e-4)
    assert ds[0]["text"] == "text number 0"


def test_torchrun_two_processes(tmp_path, corpus, tiny_checkpoint):
    out = tmp_path / "latents"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "dcae.cli", "export", *export_args(corpus, out, tiny_checkpoint)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_manifest(out)
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert sorted(p.name for p in (out / "parts").glob("*.jsonl")) == ["2x0.jsonl", "2x1.jsonl"]
    single = tmp_path / "single"
    assert run_cli(export_args(corpus, single, tiny_checkpoint)).exit_code == 0
    a = json.loads((out / "stats.json").read_text())
    b = json.loads((single / "stats.json").read_text())
    assert a["num_frames"] == b["num_frames"] and np.allclose(a["mean"], b["mean"], atol=1e-6)
    shutil.rmtree(single)


def test_shards_hold_the_same_latents_rows_and_statistics(tmp_path, corpus, tiny_checkpoint):
    """``--format shards``: the per-file export's latents, texts and statistics, in Parquet shards."""
    from dcae.corpus.stream import open_corpus

    files, shards = tmp_path / "files", tmp_path / "shards"
    assert run_cli(export_args(corpus, files, tiny_checkpoint)).exit_code == 0
    result = run_cli(export_args(corpus, shards, tiny_checkpoint, "--format", "shards", "--shard-mb", "0.02"))
    assert result.exit_code == 0, result.output
    assert "12 utterances in" in result.output and not (shards / "manifest.jsonl").exists()
    layout = open_corpus(shards)
    assert len(layout.shards) > 1 and layout.meta.model == load_latent(files / read_manifest(files)[0]["latent_path"])[1].model
    got = {r["id"]: r for u in layout.units for r in layout.read(u)}
    for row in read_manifest(files):
        assert got[row["id"]]["text"] == row["text"] and got[row["id"]]["num_frames"] == row["num_frames"]
        assert torch.equal(torch.from_numpy(got[row["id"]]["latent"]), load_latent(files / row["latent_path"])[0])
    a, b = (json.loads((folder / "stats.json").read_text()) for folder in (files, shards))
    assert a["num_frames"] == b["num_frames"] and np.allclose(a["mean"], b["mean"], atol=1e-6)
    assert run_cli(export_args(corpus, shards, tiny_checkpoint)).exit_code == 2  # not mixed with the files layout


def test_shard_export_killed_mid_shard_has_every_utterance_once(tmp_path, corpus, tiny_checkpoint, monkeypatch):
    import dcae.corpus.shards as shards_module

    out = tmp_path / "shards"
    real = shards_module.write_shard

    def crash_on_second_shard(path, rows, meta, row_group_rows=256):
        if len(list(path.parent.glob("*.parquet"))) == 1:
            raise Crash
        return real(path, rows, meta, row_group_rows)

    monkeypatch.setattr(shards_module, "write_shard", crash_on_second_shard)
    with pytest.raises(Crash):
        run_cli(export_args(corpus, out, tiny_checkpoint, "--format", "shards", "--shard-mb", "0.02"))
    monkeypatch.setattr(shards_module, "write_shard", real)
    encoded = count_encoded(monkeypatch)
    assert run_cli(export_args(corpus, out, tiny_checkpoint, "--format", "shards", "--shard-mb", "0.02")).exit_code == 0
    from dcae.corpus.shards import index_shards, read_ids

    infos = index_shards(out)[0]
    ids = [uid for info in infos for uid in read_ids(info.path)]
    assert len(ids) == len(set(ids)) == 12  # each utterance in exactly one shard
    assert 0 < sum(encoded) < 12  # the first shard's utterances were not encoded again
