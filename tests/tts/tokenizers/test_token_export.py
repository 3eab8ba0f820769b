"""dcae tokens: token files equal tokenize() of each file, manifest rows gain the token fields, resume
after a crash and after SIGKILL, torchrun sharding, bad rows named and recorded, tokenizer mismatch
refused, one-line start-up errors, S3Tokenizer (random weights) through the command.

Real speech (~/.cache/dcae-speech) exported with `dcae export` and the tiny random DC-AE; a tiny FSQ
tokenizer with random weights (the tokens' values do not matter here, only that they are the
tokenizer's)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae.audio import audio_info, load_audio
from dcae.cli import tokens as tokens_cli
from dcae.cli.export import export_command
from dcae.corpus import LatentManifestDataset, StorePart, collate_latents, load_tokens
from tests.conftest import REPO, TINY_CONFIG
from tests.kill import sigkill_when
from tts.tokenizers import FSQTokenizer, fsq_preset, load_fsq_tokenizer, save_fsq_tokenizer
from tts.tokenizers.token_export import TOKEN_KEYS, export_tokens

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def exported(speech_files, tiny_generator, tmp_path_factory) -> Path:
    """`dcae export` of 12 real clips (4 at 48 kHz, 8 at 16 kHz, 0.7-5.5 s) with the tiny random DC-AE."""
    files = sorted(f for f in speech_files if f.parent.name == "alsa")[:4] + \
        sorted(f for f in speech_files if f.parent.name == "en")[:8]
    root = tmp_path_factory.mktemp("exported")
    filelist = root / "filelist.txt"
    filelist.write_text("".join(f"{f}|text {i}\n" for i, f in enumerate(files)))
    out = root / "latents"
    result = CliRunner().invoke(export_command, ["--filelist", str(filelist), "--out", str(out), "--ae-model",
                                                        str(tiny_generator), "--ae-config", str(TINY_CONFIG)])
    assert result.exit_code == 0, result.output
    return out


def make_fsq_run(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_fsq_tokenizer(FSQTokenizer(fsq_preset("tiny")), folder)


@pytest.fixture(scope="module")
def fsq_run(tmp_path_factory) -> Path:
    return make_fsq_run(tmp_path_factory.mktemp("fsq") / "run", seed=0)


@pytest.fixture
def corpus(exported, tmp_path) -> Path:
    """A private copy of the export folder; returns its manifest."""
    shutil.copytree(exported, tmp_path / "latents")
    return tmp_path / "latents" / "manifest.jsonl"


def rows_of(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def run_cli(*args: str, catch: bool = True):
    return CliRunner().invoke(tokens_cli.tokens_command, [*args], catch_exceptions=catch)


def tokens_args(manifest: Path, tokenizer: Path | str, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--tokenizer", str(tokenizer), "--num-workers", "0", "--batch-size", "4", *extra]


def test_token_files_equal_tokenize_and_manifest_gains_fields(corpus, fsq_run):
    before = rows_of(corpus)
    result = run_cli(*tokens_args(corpus, fsq_run))
    assert result.exit_code == 0, result.output
    assert "12 of 12 utterances with tokens" in result.stderr and "x real time" in result.stderr
    tok = load_fsq_tokenizer(fsq_run)
    after = rows_of(corpus)
    assert len(after) == 12
    for old, row in zip(before, after):
        assert {k: v for k, v in row.items() if k not in TOKEN_KEYS} == old  # every other field as it was
        assert list(row)[:len(old)] == list(old) and list(row)[len(old):] == list(TOKEN_KEYS)
        assert row["token_path"].startswith("tokens/") and not Path(row["token_path"]).is_absolute()
        tokens, meta = load_tokens(corpus.parent / row["token_path"])
        native = audio_info(row["audio_path"]).sample_rate
        audio = load_audio(row["audio_path"], None)
        (alone,) = tok.tokenize(audio, native)  # the file alone, at its own rate
        assert torch.equal(tokens, alone)
        assert row["num_tokens"] == tokens.numel() == tok.num_tokens(audio.numel(), native)
        assert row["token_rate"] == meta.token_rate == tok.token_rate
        assert meta.extra["tokenizer"] == "fsq" and meta.extra["codebook_size"] == "1000"
    settings = json.loads((corpus.parent / "tokens.json").read_text())
    assert settings["tokenizer"] == "fsq" and settings["codebook_size"] == 1000
    assert (corpus.parent / "tokens" / "failed.jsonl").read_text() == ""
    # the dataset trainers read
    ds = LatentManifestDataset(corpus, with_tokens=True)
    item = ds[3]
    assert torch.equal(item["tokens"], load_tokens(corpus.parent / after[3]["token_path"])[0])
    batch = collate_latents([ds[0], ds[6]])
    assert batch["tokens"].shape == (2, max(after[0]["num_tokens"], after[6]["num_tokens"]))
    assert batch["token_lengths"].tolist() == [after[0]["num_tokens"], after[6]["num_tokens"]]


def count_tokenized(monkeypatch) -> list[int]:
    """Record how many clips each FSQ tokenize call gets."""
    calls: list[int] = []
    original = FSQTokenizer._tokenize_clips

    def counting(self, clips):
        calls.append(len(clips))
        return original(self, clips)

    monkeypatch.setattr(FSQTokenizer, "_tokenize_clips", counting)
    return calls


def test_resume_after_a_crash_redoes_only_what_is_needed(corpus, fsq_run, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    shutil.copytree(corpus.parent, clean)
    assert run_cli(*tokens_args(clean / "manifest.jsonl", fsq_run)).exit_code == 0

    class Crash(Exception):
        pass

    commits = []
    original_commit = StorePart.commit

    def crash_on_second_commit(self, rows, latents):
        commits.append(len(rows))
        if len(commits) == 2:
            raise Crash  # batch 2's token files are written, its rows are not committed
        return original_commit(self, rows, latents)

    monkeypatch.setattr(StorePart, "commit", crash_on_second_commit)
    with pytest.raises(Crash):
        run_cli(*tokens_args(corpus, fsq_run), catch=False)
    monkeypatch.setattr(StorePart, "commit", original_commit)
    assert not any("token_path" in r for r in rows_of(corpus))  # no merge happened
    part = [json.loads(line) for line in (corpus.parent / "tokens" / "parts" / "1x0.jsonl").read_text().splitlines()]
    assert len(part) == 4 and len(list((corpus.parent / "tokens").glob("*/*.safetensors"))) == 8
    truncated = corpus.parent / part[0]["token_path"]
    truncated.write_bytes(truncated.read_bytes()[:-7])

    calls = count_tokenized(monkeypatch)
    result = run_cli(*tokens_args(corpus, fsq_run))
    assert result.exit_code == 0, result.output
    assert sum(calls) == 1 + 4  # the truncated file and the 4 never written; the 4 uncommitted files taken over
    assert rows_of(corpus) == rows_of(clean / "manifest.jsonl")
    for row in rows_of(corpus):
        assert torch.equal(load_tokens(corpus.parent / row["token_path"])[0], load_tokens(clean / row["token_path"])[0])
    calls.clear()
    assert run_cli(*tokens_args(corpus, fsq_run)).exit_code == 0  # a finished folder: verified, nothing redone
    assert calls == [] and rows_of(corpus) == rows_of(clean / "manifest.jsonl")


def test_a_redone_row_is_not_redone_again(corpus, fsq_run, tmp_path, monkeypatch):
    """An audio file replaced by a longer one and its token file deleted: the rerun tokenizes it again, and
    a further rerun takes the new row (the newest) as done instead of tokenizing it on every run."""
    rows = rows_of(corpus)
    replaced = tmp_path / "replaced.wav"
    shutil.copy(rows[2]["audio_path"], replaced)
    rows[2]["audio_path"] = str(replaced)
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_cli(*tokens_args(corpus, fsq_run)).exit_code == 0
    before = rows_of(corpus)[2]
    longest = max(rows, key=lambda r: r["duration"])
    assert longest["duration"] > rows[2]["duration"]
    shutil.copy(longest["audio_path"], replaced)
    (corpus.parent / before["token_path"]).unlink()

    calls = count_tokenized(monkeypatch)
    assert run_cli(*tokens_args(corpus, fsq_run)).exit_code == 0
    assert sum(calls) == 1
    after = rows_of(corpus)[2]
    assert after["num_tokens"] > before["num_tokens"]
    assert after["num_tokens"] == load_tokens(corpus.parent / after["token_path"])[0].numel()
    calls.clear()
    assert run_cli(*tokens_args(corpus, fsq_run)).exit_code == 0
    assert calls == [] and rows_of(corpus)[2] == after
    part = [json.loads(line) for line in (corpus.parent / "tokens" / "parts" / "1x0.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in part) == sorted(r["id"] for r in rows)  # each id once


@pytest.mark.slow
def test_sigkill_midway_then_rerun(exported, fsq_run, tmp_path):
    """A real SIGKILL while tokenizing, then a rerun: every row has its tokens, the same as an uninterrupted run."""
    # 60 rows (each exported clip under 5 ids) so the process is still busy when killed
    rows = [dict(r, id=f"{r['id']}-{k}", latent_path=str(exported / r["latent_path"]))
            for k in range(5) for r in rows_of(exported / "manifest.jsonl")]
    for name in ("killed", "clean"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "dcae.cli", "tokens", "--tokenizer", str(fsq_run), "--batch-size", "2",
           "--num-workers", "0", "--manifest"]
    killed = tmp_path / "killed"
    sigkill_when(cmd + [str(killed / "manifest.jsonl")], REPO, ENV,
                 lambda: len(list(killed.glob("tokens/*/*.safetensors"))) >= 10)
    assert not any("token_path" in r for r in rows_of(killed / "manifest.jsonl"))
    done = subprocess.run(cmd + [str(killed / "manifest.jsonl")], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert run_cli(*tokens_args(tmp_path / "clean" / "manifest.jsonl", fsq_run)).exit_code == 0
    assert rows_of(killed / "manifest.jsonl") == rows_of(tmp_path / "clean" / "manifest.jsonl")
    assert all(r["num_tokens"] > 0 for r in rows_of(killed / "manifest.jsonl"))
    for row in rows_of(killed / "manifest.jsonl"):
        assert torch.equal(load_tokens(killed / row["token_path"])[0],
                           load_tokens(tmp_path / "clean" / row["token_path"])[0])


def test_torchrun_two_processes_give_the_same_manifest(corpus, fsq_run, tmp_path):
    single = tmp_path / "single"
    shutil.copytree(corpus.parent, single)
    assert run_cli(*tokens_args(single / "manifest.jsonl", fsq_run)).exit_code == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
           "-m", "dcae.cli", "tokens", *tokens_args(corpus, fsq_run)]
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert rows_of(corpus) == rows_of(single / "manifest.jsonl")
    parts = corpus.parent / "tokens" / "parts"
    shares = [len((parts / f"2x{r}.jsonl").read_text().splitlines()) for r in range(2)]
    assert shares == [6, 6]
    for row in rows_of(corpus):
        assert torch.equal(load_tokens(corpus.parent / row["token_path"])[0], load_tokens(single / row["token_path"])[0])


def test_bad_rows_are_named_recorded_and_keep_their_latent(corpus, fsq_run, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    sf.write(bad / "short.wav", (0.1 * np.sin(np.arange(600) / 5)).astype(np.float32), 22050)  # < one FSQ token
    rows = rows_of(corpus)
    rows[1]["audio_path"] = str(bad / "corrupt.wav")
    rows[5]["audio_path"] = str(bad / "short.wav")
    rows[7]["audio_path"] = str(bad / "missing.wav")
    del rows[9]["audio_path"]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli(*tokens_args(corpus, fsq_run))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(lines) == 4
    assert any(str(bad / "corrupt.wav") in line and "not a readable audio file" in line for line in lines)
    assert any(str(bad / "short.wav") in line and "too short for the FSQ tokenizer" in line for line in lines)
    assert any(str(bad / "missing.wav") in line and "file not found" in line for line in lines)
    assert any("no audio_path" in line for line in lines)
    failed = [json.loads(line) for line in (corpus.parent / "tokens" / "failed.jsonl").read_text().splitlines()]
    assert sorted(f["id"] for f in failed) == sorted(rows[i]["id"] for i in (1, 5, 7, 9))
    after = rows_of(corpus)
    for i, row in enumerate(after):
        assert row["latent_path"] == rows[i]["latent_path"]
        assert ("token_path" in row) == (i not in (1, 5, 7, 9))
    assert "8 of 12 utterances with tokens" in result.stderr and "4 failed" in result.stderr


def test_other_tokenizer_refused(corpus, fsq_run, tmp_path):
    assert run_cli(*tokens_args(corpus, fsq_run)).exit_code == 0
    other = make_fsq_run(tmp_path / "other", seed=1)
    before = corpus.read_text()
    result = run_cli(*tokens_args(corpus, other))
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.startswith("error: ") and "already holds tokens of another tokenizer" in message
    assert len(message.splitlines()) == 1 and corpus.read_text() == before


def test_start_up_errors_are_one_line(corpus, tmp_path, monkeypatch):
    from tts.tokenizers import s3_weights

    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    monkeypatch.setattr(s3_weights, "_host_reachable", lambda url, timeout=0: False)  # offline, fast
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DCAE_S3_TOKENIZER", raising=False)
    cases = [
        (["--tokenizer", "s4"], "--tokenizer s4: unknown tokenizer"),
        (["--tokenizer", str(not_a_run)], "no fsq_tokenizer.json: not an FSQ tokenizer run folder"),
        (["--tokenizer", "s3", "--s3-model", str(tmp_path / "nope.onnx")], "S3Tokenizer weight file not found"),
        (["--tokenizer", str(not_a_run), "--batch-size", "0"], "--batch-size must be >= 1"),
    ]
    try:
        s3_weights.import_s3tokenizer()
        cases.append((["--tokenizer", "s3"], "cannot get the S3Tokenizer weights"))
    except s3_weights.S3TokenizerUnavailable:
        pass
    for flags, expected in cases:
        result = run_cli("--manifest", str(corpus), "--num-workers", "0", *flags)
        message = result.stderr.strip()
        assert result.exit_code == 2 and expected in message, (flags, result.output)
        assert message.startswith("error: ") and len(message.splitlines()) == 1, message
    result = run_cli("--manifest", str(tmp_path / "none.jsonl"), "--tokenizer", "s3")
    assert result.exit_code == 2 and "file not found" in result.stderr
    twice = tmp_path / "twice" / "manifest.jsonl"
    twice.parent.mkdir()
    twice.write_text(corpus.read_text().splitlines()[0] + "\n" + corpus.read_text())
    result = run_cli("--manifest", str(twice), "--tokenizer", str(make_fsq_run(tmp_path / "fsq", 0)))
    assert result.exit_code == 2 and "appears more than once" in result.stderr
    assert not (corpus.parent / "tokens").exists() and not (corpus.parent / "tokens.json").exists()


def test_s3tokenizer_random_weights_through_the_command(corpus, monkeypatch):
    try:
        from tts.tokenizers.s3_weights import build_s3_model, import_s3tokenizer

        import_s3tokenizer()
    except Exception:  # noqa: BLE001
        pytest.skip("the s3tokenizer package is not installed (README, 'Extras')")
    from s3tokenizer.model_v2 import ModelConfig

    from tts.tokenizers.s3 import S3Tokenizer

    torch.manual_seed(0)
    tok = S3Tokenizer(build_s3_model(ModelConfig(n_mels=128, n_audio_state=128, n_audio_head=2, n_audio_layer=2)))
    import tts.tokenizers.load

    monkeypatch.setattr(tts.tokenizers.load, "load_tokenizer", lambda spec, **kw: tok if spec == "s3" else None)
    result = run_cli(*tokens_args(corpus, "s3"))
    assert result.exit_code == 0, result.output
    for row in rows_of(corpus):
        tokens, meta = load_tokens(corpus.parent / row["token_path"])
        native = audio_info(row["audio_path"]).sample_rate
        assert torch.equal(tokens, tok.tokenize(load_audio(row["audio_path"], None), native)[0])
        assert row["token_rate"] == meta.token_rate == 25.0
        assert abs(row["num_tokens"] - 25 * row["duration"]) <= 1
    assert json.loads((corpus.parent / "tokens.json").read_text())["tokenizer"].startswith("s3tokenizer")


def test_library_call_on_a_manifest_with_relative_audio_paths(corpus, fsq_run):
    """Rows from other tools: audio_path relative to the manifest's folder, no duration."""
    rows = rows_of(corpus)[:3]
    for row in rows:
        target = corpus.parent / "audio" / Path(row["audio_path"]).name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(row["audio_path"], target)
        row["audio_path"] = f"audio/{target.name}"
        del row["duration"]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = export_tokens(corpus, load_fsq_tokenizer(fsq_run), num_workers=0)
    assert summary["with_tokens"] == 3 and summary["failed"] == 0
    assert [r["audio_path"] for r in rows_of(corpus)] == [r["audio_path"] for r in rows]


def test_rerunning_dcae_export_keeps_the_token_fields(corpus, fsq_run, tiny_generator, tmp_path):
    """`dcae export` again on the folder (e.g. after adding files) rewrites manifest.jsonl: the rows
    that `dcae tokens` gave tokens keep them."""
    assert run_cli(*tokens_args(corpus, fsq_run)).exit_code == 0
    before = {r["id"]: r for r in rows_of(corpus)}
    filelist = corpus.parent.parent / "filelist.txt"
    filelist.write_text("".join(f"{r['audio_path']}|{r.get('text', '')}\n" for r in before.values()))
    result = CliRunner().invoke(export_command, ["--filelist", str(filelist), "--out", str(corpus.parent),
                                                        "--ae-model", str(tiny_generator), "--ae-config", str(TINY_CONFIG)])
    assert result.exit_code == 0, result.output
    after = {r["id"]: r for r in rows_of(corpus)}
    assert after == before and all(all(k in r for k in TOKEN_KEYS) for r in after.values())


def test_tokens_into_shards_equal_the_token_files_and_resume(corpus, fsq_run, tmp_path, monkeypatch):
    """`dcae tokens` on a shard folder fills the shards' tokens column with the tokens the per-file run
    writes; a run killed after the first shard redoes only the others."""
    from dcae.cli.shards import shards_command
    from dcae.corpus.shards import index_shards, read_rows
    from dcae.corpus.stream import open_corpus

    shards = tmp_path / "shards"
    packed = CliRunner().invoke(shards_command, ["pack", "--manifest", str(corpus), "--out", str(shards),
                                                 "--shard-mb", "0.005"])
    assert packed.exit_code == 0, packed.output
    assert run_cli(*tokens_args(corpus, fsq_run)).exit_code == 0  # the per-file tokens, for comparison
    infos = index_shards(shards)[0]
    assert len(infos) > 1
    import tts.tokenizers.token_export as token_export

    real, written = token_export.replace_columns, []

    def crash_after_first(path, columns, meta, *a, **kw):
        if written:
            raise RuntimeError("killed")
        written.append(path)
        return real(path, columns, meta, *a, **kw)

    monkeypatch.setattr(token_export, "replace_columns", crash_after_first)
    with pytest.raises(RuntimeError, match="killed"):
        run_cli(*tokens_args(shards, fsq_run), catch=False)
    monkeypatch.setattr(token_export, "replace_columns", real)
    calls = count_tokenized(monkeypatch)
    result = run_cli(*tokens_args(shards, fsq_run))
    assert result.exit_code == 0, result.output
    assert "12 of 12 utterances with tokens" in result.stderr
    assert sum(calls) == 12 - index_shards(shards)[0][0].rows  # the first shard was not tokenized again
    by_id = {r["id"]: r for r in rows_of(corpus)}
    for info in index_shards(shards)[0]:
        assert info.meta["tokenizer"] == "fsq" and info.meta["codebook_size"] == 1000
        for g in range(len(info.row_groups)):
            for row in read_rows(info.path, g):
                want, _ = load_tokens(corpus.parent / by_id[row["id"]]["token_path"])
                assert row["tokens"].tolist() == want.tolist() and row["token_rate"] == by_id[row["id"]]["token_rate"]
    assert open_corpus(shards).token_info().token_rate == by_id[next(iter(by_id))]["token_rate"]
