"""dcae speakers on recorded speech: speaker ids from the folder layout (dcae filelist --speaker-from-folder)
carried by dcae export into the manifest; one embedding per row equal to the encoder's own output; the
same speaker closer than the other one; per-speaker means; resume after a crash and after SIGKILL;
shards filled in place; an ONNX speaker model on Kaldi fbank; one-line refusals.

The fetched speech has two speakers: alsa/ (a man, 1.3-1.5 s clips) and en/ (a woman, prompts)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae.audio import load_audio
from dcae.cli import main as dcae_main
from dcae.corpus import StorePart
from dcae.corpus.speaker_file import load_speaker_embedding
from tests.conftest import REPO, TINY_CONFIG
from tests.kill import sigkill_when
from tests.tts.token_lm.test_e2e import two_stage  # noqa: F401 - the recorded-speech corpus and runs
from tts.speakers import resemblyzer_encoder

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(resemblyzer_encoder.encoder_available() is not None,
                                 reason=f"{resemblyzer_encoder.encoder_available()}")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
PER_SPEAKER = 4


def rows_of(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def cli(*args: str, catch: bool = True):
    return CliRunner().invoke(dcae_main, [*args], catch_exceptions=catch)


@pytest.fixture(scope="module")
def exported(speech_dir, tiny_generator, tmp_path_factory) -> Path:
    """ROOT/audio/{man,woman}/*.wav -> dcae filelist --speaker-from-folder -> dcae export (tiny DC-AE)."""
    root = tmp_path_factory.mktemp("speakers")
    picks = {"man": sorted((speech_dir / "alsa").glob("*.wav"))[:PER_SPEAKER],
             "woman": [p for p in sorted((speech_dir / "en").glob("*.wav")) if 1.5 < sf.info(p).duration < 5][:PER_SPEAKER]}
    for speaker, files in picks.items():
        assert len(files) == PER_SPEAKER
        (root / "audio" / speaker).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / "audio" / speaker / f.name)
    result = cli("filelist", "--paths", str(root / "audio"), "--out", str(root / "list.txt"), "--min-duration", "0",
                 "--speaker-from-folder", "--no-progress", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "2 speakers from the folder layout" in result.output
    lines = (root / "list.txt").read_text().splitlines()
    assert len(lines) == 2 * PER_SPEAKER and all(line.endswith(("||man", "||woman")) for line in lines)
    result = cli("export", "--filelist", str(root / "list.txt"), "--out", str(root / "latents"), "--ae-model",
                 str(tiny_generator), "--ae-config", str(TINY_CONFIG), "--num-workers", "0", "--device", "cpu")
    assert result.exit_code == 0, result.output
    rows = rows_of(root / "latents" / "manifest.jsonl")
    assert sorted(r["speaker"] for r in rows) == ["man"] * PER_SPEAKER + ["woman"] * PER_SPEAKER
    return root / "latents"


@pytest.fixture
def corpus(exported, tmp_path) -> Path:
    """A fresh copy of the export (its manifest is rewritten by the tests)."""
    shutil.copytree(exported, tmp_path / "latents")
    return tmp_path / "latents" / "manifest.jsonl"


def embeddings(manifest: Path) -> tuple[list[str], np.ndarray]:
    rows = rows_of(manifest)
    return [r["speaker"] for r in rows], np.stack([load_speaker_embedding(manifest.parent / r["speaker_path"]).numpy()
                                                    for r in rows])


def test_embeddings_tell_the_speakers_apart(corpus):
    result = cli("speakers", "--manifest", str(corpus))
    assert result.exit_code == 0, result.output
    assert "8 of 8 utterances with a 256-d speaker embedding, 2 speaker means, 0 failed" in result.output
    speakers, emb = embeddings(corpus)
    for row, e in zip(rows_of(corpus), emb):  # each file is the encoder's own embedding of the row's audio
        direct = resemblyzer_encoder.speaker_embedding(load_audio(row["audio_path"], 16000).numpy(), 16000)
        assert np.allclose(e, direct, atol=1e-5)
    cos = emb @ emb.T / np.outer(np.linalg.norm(emb, axis=1), np.linalg.norm(emb, axis=1))
    same = np.array([[a == b for b in speakers] for a in speakers])
    off_diagonal = ~np.eye(len(speakers), dtype=bool)
    within, across = cos[same & off_diagonal], cos[~same]
    print(f"dcae speakers (Resemblyzer) on recorded speech: same-speaker cosine {within.mean():.3f} "
          f"[{within.min():.3f}, {within.max():.3f}], cross-speaker {across.mean():.3f} "
          f"[{across.min():.3f}, {across.max():.3f}]")
    assert within.mean() > across.mean() + 0.1
    for i in range(len(speakers)):  # every utterance's nearest other utterance is of its speaker
        nearest = max((j for j in range(len(speakers)) if j != i), key=lambda j: cos[i, j])
        assert speakers[nearest] == speakers[i]
    index = json.loads((corpus.parent / "speakers" / "by_speaker.json").read_text())
    assert {k: v["utterances"] for k, v in index.items()} == {"man": PER_SPEAKER, "woman": PER_SPEAKER}
    for name, entry in index.items():
        mean = load_speaker_embedding(corpus.parent / entry["path"]).numpy()
        assert np.allclose(mean, emb[[s == name for s in speakers]].mean(0), atol=1e-6)
    # a finished folder: verified, nothing redone; the manifest keeps the speaker fields through a re-export
    again = cli("speakers", "--manifest", str(corpus))
    assert again.exit_code == 0 and "this run" not in again.output, again.output


def test_resume_after_a_crash_redoes_only_what_is_needed(corpus, monkeypatch):
    class Crash(Exception):
        pass

    commits, original = [], StorePart.commit

    def crash_on_fourth_commit(self, rows, values):
        commits.append(len(rows))
        if len(commits) == 4:
            raise Crash  # the 4th embedding file is written, its row is not committed
        return original(self, rows, values)

    monkeypatch.setattr(StorePart, "commit", crash_on_fourth_commit)
    with pytest.raises(Crash):
        cli("speakers", "--manifest", str(corpus), catch=False)
    monkeypatch.setattr(StorePart, "commit", original)
    assert not any("speaker_path" in r for r in rows_of(corpus))  # no merge happened
    assert len(list((corpus.parent / "speakers").glob("*/*.safetensors"))) == 4
    result = cli("speakers", "--manifest", str(corpus))
    assert result.exit_code == 0, result.output
    assert "this run: 4 utterances" in result.output  # the 4th file was complete: taken over, not redone
    assert all("speaker_path" in r for r in rows_of(corpus))


@pytest.mark.slow
def test_sigkill_midway_then_rerun(exported, tmp_path):
    """A real SIGKILL while embedding 40 rows, then a rerun: every row has its embedding, equal to a clean run's."""
    rows = [dict(r, id=f"{r['id']}-{k}", latent_path=str(exported / r["latent_path"]))
            for k in range(5) for r in rows_of(exported / "manifest.jsonl")]
    for name in ("killed", "clean"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "dcae.cli", "speakers", "--manifest"]
    killed = tmp_path / "killed"
    sigkill_when(cmd + [str(killed / "manifest.jsonl")], REPO, ENV,
                 lambda: len(list(killed.glob("speakers/*/*.safetensors"))) >= 6)
    assert not any("speaker_path" in r for r in rows_of(killed / "manifest.jsonl"))
    done = subprocess.run(cmd + [str(killed / "manifest.jsonl")], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert cli("speakers", "--manifest", str(tmp_path / "clean" / "manifest.jsonl")).exit_code == 0
    assert rows_of(killed / "manifest.jsonl") == rows_of(tmp_path / "clean" / "manifest.jsonl")
    for row in rows_of(killed / "manifest.jsonl"):
        assert torch.equal(load_speaker_embedding(killed / row["speaker_path"]),
                           load_speaker_embedding(tmp_path / "clean" / row["speaker_path"]))


def test_shards_get_the_same_embeddings(corpus, tmp_path):
    shards = tmp_path / "shards"
    assert cli("shards", "pack", "--manifest", str(corpus), "--out", str(shards)).exit_code == 0
    result = cli("speakers", "--manifest", str(shards))
    assert result.exit_code == 0, result.output
    assert "8 of 8 utterances" in result.output
    assert cli("speakers", "--manifest", str(corpus)).exit_code == 0
    by_id = dict(zip((r["id"] for r in rows_of(corpus)), embeddings(corpus)[1]))
    seen = 0
    for path in sorted((shards / "shards").glob("*.parquet")):
        table = pq.read_table(path, columns=["id", "speaker", "speaker_embedding"])
        for uid, emb in zip(table.column("id").to_pylist(), table.column("speaker_embedding").to_pylist()):
            assert np.allclose(np.array(emb, dtype=np.float32), by_id[uid], atol=1e-6)
            seen += 1
    assert seen == 8
    index = json.loads((shards / "speakers" / "by_speaker.json").read_text())
    assert {k: v["utterances"] for k, v in index.items()} == {"man": PER_SPEAKER, "woman": PER_SPEAKER}
    again = cli("speakers", "--manifest", str(shards))  # every shard holds these embeddings: nothing redone
    assert again.exit_code == 0 and "this run" not in again.output, again.output


def tiny_onnx_model(path: Path, dim: int = 8) -> np.ndarray:
    """An ONNX speaker model in CAM++'s interface: feats (1, T, 80) -> (1, dim) = (sum over time of feats^2) @ W."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((80, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceSumSquare", ["feats"], ["energy"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["energy", "W"], ["embedding"])],
        "tiny_speaker", [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, "T", 80])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, dim])],
        [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return weight


def test_onnx_speaker_model_on_kaldi_fbank(corpus, tmp_path):
    pytest.importorskip("onnxruntime", reason='pip install "dc-speech-vae[speakers]"')
    knf = pytest.importorskip("kaldi_native_fbank", reason='pip install "dc-speech-vae[speakers]"')
    model = tmp_path / "tiny.onnx"
    weight = tiny_onnx_model(model)
    result = cli("speakers", "--manifest", str(corpus), "--encoder", str(model))
    assert result.exit_code == 0, result.output
    assert "8 of 8 utterances with a 8-d speaker embedding" in result.output
    row = rows_of(corpus)[0]
    audio = load_audio(row["audio_path"], 16000).numpy()
    opts = knf.FbankOptions()  # Kaldi's fbank as CosyVoice computes it: 80 bins, no dither, 16 kHz
    opts.frame_opts.dither, opts.frame_opts.samp_freq, opts.mel_opts.num_bins = 0.0, 16000, 80
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, audio.tolist())
    fbank.input_finished()
    feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    feats = feats - feats.mean(0)
    expected = (feats ** 2).sum(0) @ weight
    got = load_speaker_embedding(corpus.parent / row["speaker_path"]).numpy()
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())
    # another model's embeddings in the same folder: refused in one line
    other = cli("speakers", "--manifest", str(corpus))
    message = other.output.strip()
    assert other.exit_code == 2 and "another model" in message and len(message.splitlines()) == 1, message


@pytest.mark.parametrize("args, expected", [
    (["--encoder", "ecapa"], "unknown speaker model"),
    (["--encoder", "missing.onnx"], "file not found"),
])
def test_bad_encoders_are_refused_in_one_line(corpus, args, expected):
    result = cli("speakers", "--manifest", str(corpus), *args)
    message = result.output.strip()
    assert result.exit_code == 2 and expected in message and len(message.splitlines()) == 1, message


def test_bad_rows_are_named_and_recorded(corpus):
    rows = rows_of(corpus)
    rows[1]["audio_path"] = str(corpus.parent / "nowhere.wav")
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("speakers", "--manifest", str(corpus))
    assert result.exit_code == 1 and "nowhere.wav" in result.output and "1 failed" in result.output, result.output
    after = rows_of(corpus)
    assert "speaker_path" not in after[1] and all("speaker_path" in r for i, r in enumerate(after) if i != 1)
    failed = (corpus.parent / "speakers" / "failed.jsonl").read_text().splitlines()
    assert len(failed) == 1 and json.loads(failed[0])["id"] == rows[1]["id"]


def test_fixed_embeddings_train_and_speak(two_stage, tiny_generator, small_vocoder, tmp_path):  # noqa: F811
    """dcae speakers on the recorded-speech corpus -> a token flow and a token LM trained with --speaker-dim
    256 (a few steps) -> dcae tts --speaker-embedding to audio; a run without --speaker-dim refuses it."""
    from tts.train import main as train_main

    corpus = tmp_path / "corpus"
    shutil.copytree(two_stage["manifest"].parent, corpus)
    manifest = corpus / "manifest.jsonl"
    assert cli("speakers", "--manifest", str(manifest)).exit_code == 0
    common = ["--manifest", str(manifest), "--preset", "tiny", "--max-steps", "5", "--save-interval", "5",
              "--batch-size", "8", "--precision", "fp32", "--speaker-dim", "256"]
    assert train_main(["--model", "token-flow", "--output-dir", str(tmp_path / "flow"), *common]) == 0
    assert train_main(["--model", "token-lm", "--output-dir", str(tmp_path / "lm"), *common]) == 0
    row = rows_of(manifest)[2]
    embedding = str(corpus / row["speaker_path"])
    model = ["--ae-model", str(tiny_generator), "--ae-config", str(TINY_CONFIG), "--vocoder", str(small_vocoder)]
    wav = tmp_path / "out.wav"
    result = cli("tts", "--checkpoint", str(tmp_path / "flow"), "--tokens", str(corpus / row["token_path"]),
                 "--speaker-embedding", embedding, "-o", str(wav), *model)
    assert result.exit_code == 0, result.output
    result = cli("tts", "--checkpoint", str(tmp_path / "lm"), "--flow", str(tmp_path / "flow"), "--text", "hello",
                 "--speaker-embedding", embedding, "-o", str(wav), "--stream", *model)
    assert result.exit_code == 0, result.output
    assert wav.stat().st_size > 1000
    for run, args in ((two_stage["flow"], ["--tokens", str(corpus / row["token_path"]), "--out-latent",
                                           str(tmp_path / "l.safetensors")]),
                      (two_stage["lm"], ["--text", "hello", "--out-tokens", str(tmp_path / "t.safetensors")])):
        result = cli("tts", "--checkpoint", str(run), *args, "--speaker-embedding", embedding)
        message = result.output.strip()
        assert result.exit_code == 2 and "--speaker-dim" in message and len(message.splitlines()) == 1, message
    result = cli("tts", "--checkpoint", str(tmp_path / "flow"), "--tokens", str(corpus / row["token_path"]),
                 "--speaker-embedding", str(tmp_path / "none.safetensors"), "--out-latent", str(tmp_path / "l.safetensors"))
    assert result.exit_code == 2 and "--speaker-embedding" in result.output, result.output
