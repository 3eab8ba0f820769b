"""What the speech-token trainers (token-flow, token-lm) read besides latents and tokens: speaker
embedding files, resolved like every manifest path, and bad ones reported in one line naming the
file (also from a data-loading worker); the token-file scan both trainers share."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dcae.corpus import ManifestError, read_manifest, save_tokens
from dcae.corpus.stream import scan_token_files
from tts.synthetic import SyntheticTextTokenCorpus, SyntheticTokenCorpus
from tts.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def corpus_manifest(model: str, folder: Path) -> Path:
    if model == "token-flow":
        corpus = SyntheticTokenCorpus(vocab=8, dim=8)
        return corpus.write(folder, corpus.random_sequences(8, seed=3, max_len=24))
    corpus = SyntheticTextTokenCorpus(alphabet="abcd", vocab=16, seed=0)
    return corpus.write(folder, corpus.random_texts(8, seed=3, max_len=6))


def with_speakers(manifest: Path, write_speaker) -> Path:
    """A copy of ``manifest`` in its folder whose rows name ``spk{i}.safetensors`` (relative paths),
    each written by ``write_speaker(path, i)``."""
    lines = []
    for i, line in enumerate(manifest.read_text().splitlines()):
        write_speaker(manifest.parent / f"spk{i}.safetensors", i)
        lines.append(json.dumps(dict(json.loads(line), speaker_path=f"spk{i}.safetensors")))
    out = manifest.parent / "speakers.jsonl"
    out.write_text("\n".join(lines) + "\n")
    return out


def good_speaker(path: Path, i: int) -> None:
    save_file({"embedding": torch.randn(4, generator=torch.Generator().manual_seed(i))}, str(path))


def test_read_manifest_resolves_speaker_path_like_the_other_paths(tmp_path):
    manifest = with_speakers(corpus_manifest("token-flow", tmp_path / "data"), good_speaker)
    rows = read_manifest(manifest)
    assert all(Path(r["speaker_path"]) == (manifest.parent / f"spk{i}.safetensors").resolve()
               for i, r in enumerate(rows))
    assert all(Path(r["latent_path"]).is_absolute() for r in rows)


def train(model: str, manifest: Path, out: Path, *extra: str) -> int:
    return train_main(["--model", model, "--manifest", str(manifest), "--output-dir", str(out), "--preset", "tiny",
                       "--batch-size", "4", "--max-steps", "2", "--save-interval", "2", "--cpu-threads", "1",
                       "--speaker-dim", "4", *extra])


@pytest.mark.parametrize("model", ["token-flow", "token-lm"])
def test_speaker_files_next_to_the_manifest_train(model, tmp_path):
    manifest = with_speakers(corpus_manifest(model, tmp_path / "data"), good_speaker)
    assert train(model, manifest, tmp_path / "run") == 0


def garbage(path: Path, i: int) -> None:
    path.write_bytes(b"\xff" * 8 + b"not a safetensors file")


def wrong_key(path: Path, i: int) -> None:
    save_file({"speaker": torch.randn(4)}, str(path))


@pytest.mark.parametrize("model, write_speaker, workers, reason", [
    ("token-flow", garbage, "0", "not a safetensors file"),
    ("token-flow", wrong_key, "1", "no 'embedding' tensor"),
    ("token-lm", garbage, "1", "not a safetensors file"),
    ("token-lm", wrong_key, "0", "no 'embedding' tensor"),
])
def test_bad_speaker_file_is_one_line_naming_it(model, write_speaker, workers, reason, tmp_path, capsys):
    manifest = with_speakers(corpus_manifest(model, tmp_path / "data"), write_speaker)
    assert train(model, manifest, tmp_path / "run", "--num-workers", workers) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "Traceback" not in err
    assert "speaker embedding" in err and reason in err and str(tmp_path / "data" / "spk") in err


def test_speaker_embedding_of_another_size_is_one_line(tmp_path, capsys):
    manifest = with_speakers(corpus_manifest("token-lm", tmp_path / "data"), good_speaker)  # 4 values each
    assert train("token-lm", manifest, tmp_path / "run", "--speaker-dim", "6") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: speaker embedding ") and "4 values, --speaker-dim is 6" in err


def test_missing_speaker_file_is_found_before_training(tmp_path, capsys):
    manifest = with_speakers(corpus_manifest("token-flow", tmp_path / "data"), good_speaker)
    (manifest.parent / "spk5.safetensors").unlink()
    assert train("token-flow", manifest, tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "speaker embedding" in err and "spk5.safetensors not found" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_token_scan_gives_rate_counts_codebook_and_tokenizer(tmp_path):
    """One scan of the token files for both trainers: the run files' token rate, codebook and tokenizer."""
    save_tokens(tmp_path / "a.safetensors", [3, 1, 4], 25.0, extra={"tokenizer": "s3", "codebook_size": "6561"})
    save_tokens(tmp_path / "b.safetensors", [], 25.0, extra={"tokenizer": "s3"})
    save_tokens(tmp_path / "c.safetensors", [9, 2], 12.5)
    rows = [{"id": n, "token_path": str(tmp_path / f"{n}.safetensors")} for n in "ab"]
    corpus = scan_token_files("m.jsonl", rows)
    assert (corpus.token_rate, corpus.counts, corpus.largest_id, corpus.codebook_size, corpus.tokenizer) == (
        25.0, [3, 0], 4, 6561, "s3")
    assert scan_token_files("m.jsonl", [dict(rows[1], token_rate=12.5)]).token_rate == 12.5  # the row's rate wins
    with pytest.raises(ManifestError, match=r"m.jsonl: row c: token rate 12.5 differs from the first row's 25"):
        scan_token_files("m.jsonl", [*rows, {"id": "c", "token_path": str(tmp_path / "c.safetensors")}])
    with pytest.raises(ManifestError, match="m.jsonl: row x: .*x.safetensors"):
        scan_token_files("m.jsonl", [{"id": "x", "token_path": str(tmp_path / "x.safetensors")}])
