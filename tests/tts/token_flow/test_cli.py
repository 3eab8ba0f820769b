"""python -m tts.train --model token-flow (run folder, data checks) and dcae tts --tokens (latent, audio, --stream)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import LatentMeta, load_latent, read_manifest, save_latent, save_tokens, write_manifest
from tests.conftest import TINY_CONFIG
from tts.run import load_run
from tts.synthetic import SyntheticTokenCorpus
from tts.token_flow.synthesis import synthesize_tokens
from tts.train import main as train_main

CORPUS = SyntheticTokenCorpus(vocab=12, dim=80)  # 80-d: the tiny DC-AE decodes it
SAMPLES_PER_FRAME = 256 * 16

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return CORPUS.write(tmp_path_factory.mktemp("tokens80"), CORPUS.random_sequences(24, seed=1, max_len=40))


def train(manifest: Path, out: Path, steps: int = 4, *extra: str) -> int:
    return train_main(["--model", "token-flow", "--manifest", str(manifest), "--output-dir", str(out), "--preset",
                       "tiny", "--max-steps", str(steps), "--save-interval", str(steps), "--batch-size", "8", *extra])


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("token_run")
    assert train(data, out) == 0
    return out


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "t.safetensors"
    save_tokens(path, CORPUS.random_sequences(1, seed=7, min_len=47, max_len=47)[0], 25.0)
    return path


def invoke(*args: str):
    return CliRunner().invoke(dcae_main, ["tts", *args], catch_exceptions=False)


def models(tiny_generator, small_vocoder) -> list[str]:
    return ["--ae-model", str(tiny_generator), "--ae-config", str(TINY_CONFIG), "--vocoder", str(small_vocoder),
            "--device", "cpu"]


def test_run_folder(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "model.json", "stats.json", "latent.json", "checkpoints"} <= names
    assert "vocab.json" not in names  # no text front end
    info = json.loads((run_dir / "latent.json").read_text())
    assert info["token_rate"] == 25.0 and info["tokens_per_frame"] == pytest.approx(25 / (22050 / 4096))
    assert info["codebook_size"] == 12 and info["tokenizer"] == "synthetic"
    run = load_run(run_dir)
    assert run.kind == "token-flow" and run.frontend is None and run.model.cfg.width == 64


def test_tokens_to_latent(run_dir, token_file, tmp_path):
    out = tmp_path / "out.safetensors"
    result = invoke("--checkpoint", str(run_dir), "--tokens", str(token_file), "--out-latent", str(out), "--seed", "3")
    assert result.exit_code == 0, result.output
    latent, meta = load_latent(out)
    assert latent.shape == (80, round(47 / 25 * 22050 / 4096)) == (80, 10)  # the two rates set the length
    assert meta.num_samples == 10 * SAMPLES_PER_FRAME and meta.model == "synthetic"
    torch.testing.assert_close(latent, synthesize_tokens(load_run(run_dir), load_tokens_list(token_file), seed=3))



def test_max_frames_caps_the_cli_and_the_api_alike(run_dir, token_file, tmp_path):
    out = tmp_path / "capped.safetensors"
    result = invoke("--checkpoint", str(run_dir), "--tokens", str(token_file), "--out-latent", str(out), "--seed", "3",
                    "--max-frames", "4")
    assert result.exit_code == 0, result.output
    latent, _ = load_latent(out)
    run, tokens = load_run(run_dir), load_tokens_list(token_file)
    assert latent.shape == (80, 4)  # 10 frames by the rates, capped
    torch.testing.assert_close(latent, synthesize_tokens(run, tokens, seed=3, max_frames=4))
    assert synthesize_tokens(run, tokens, seed=3, max_frames=40).shape == (80, 10)  # a cap above changes nothing
    assert synthesize_tokens(run, tokens, seed=3, frames=6, max_frames=4).shape == (80, 6)  # frames wins

def load_tokens_list(path: Path) -> list[int]:
    from dcae.corpus import load_tokens

    return load_tokens(path)[0].tolist()


def test_tokens_to_wav_offline_and_streamed(run_dir, token_file, tiny_generator, small_vocoder, tmp_path):
    from dcae.pipeline import DCAEInferenceWrapper

    common = ["--checkpoint", str(run_dir), "--tokens", str(token_file), "--seed", "1",
              *models(tiny_generator, small_vocoder)]
    result = invoke(*common, "-o", str(tmp_path / "offline.wav"))
    assert result.exit_code == 0, result.output
    audio, sr = sf.read(tmp_path / "offline.wav")
    assert sr == 22050 and len(audio) == 10 * SAMPLES_PER_FRAME
    result = invoke(*common, "--stream", "-o", str(tmp_path / "stream.wav"), "--out-latent",
                    str(tmp_path / "stream.safetensors"))
    assert result.exit_code == 0, result.output
    assert "first audio after" in result.output and "of 47 tokens read" in result.output
    latent = load_latent(tmp_path / "stream.safetensors")[0]
    run = load_run(run_dir)
    torch.testing.assert_close(latent, synthesize_tokens(run, load_tokens_list(token_file), chunk_frames=2, seed=1),
                               rtol=1e-5, atol=1e-5)  # streaming == offline with the chunked mask
    streamed, _ = sf.read(tmp_path / "stream.wav")
    wrapper = DCAEInferenceWrapper(tiny_generator, TINY_CONFIG, small_vocoder, device="cpu")
    whole = wrapper.decode(latent[None])[0].clamp(-1, 1).numpy()
    assert len(streamed) == len(whole) and abs(whole - streamed).max() < 2e-4  # exact decoder lookahead
    # the smallest decoder lookahead still gives the full length
    result = invoke(*common, "--stream", "--lookahead", "0", "--chunk-frames", "1", "-o", str(tmp_path / "la0.wav"))
    assert result.exit_code == 0, result.output
    assert len(sf.read(tmp_path / "la0.wav")[0]) == 10 * SAMPLES_PER_FRAME


def test_prompt(run_dir, data, token_file, tmp_path):
    prompt_seq = CORPUS.random_sequences(1, seed=11, min_len=28, max_len=28)[0]
    save_tokens(tmp_path / "pt.safetensors", prompt_seq, 25.0)
    meta = load_latent(read_manifest(data)[0]["latent_path"])[1]
    save_latent(tmp_path / "p.safetensors", CORPUS.truth(prompt_seq).T, meta)
    save_latent(tmp_path / "q.safetensors", -CORPUS.truth(prompt_seq).T, meta)
    outs = []
    for prompt in ("p", "q"):
        out = tmp_path / f"out_{prompt}.safetensors"
        result = invoke("--checkpoint", str(run_dir), "--tokens", str(token_file), "--prompt-latent",
                        str(tmp_path / f"{prompt}.safetensors"), "--prompt-tokens", str(tmp_path / "pt.safetensors"),
                        "--out-latent", str(out))
        assert result.exit_code == 0, result.output
        outs.append(load_latent(out)[0])
    assert outs[0].shape == (80, 10) and not torch.allclose(outs[0], outs[1])  # new frames only; prompt used


@pytest.mark.parametrize("args, message", [
    (["--tokens", "{tokens}"], "--out-latent"),
    (["--text", "hello", "--out-latent", "x.safetensors"], "speaks --tokens"),
    (["--out-latent", "x.safetensors"], "speaks --tokens"),
    (["--tokens", "{missing}", "--out-latent", "x.safetensors"], "missing.safetensors"),
    (["--tokens", "{rate}", "--out-latent", "x.safetensors"], "tokens at 50/s but the run was trained on 25/s"),
    (["--tokens", "{big}", "--out-latent", "x.safetensors"], "token id 12 out of range"),
    (["--tokens", "{tokens}", "--out-latent", "x.safetensors", "--prompt-latent", "{latent}"], "--prompt-tokens"),
    (["--tokens", "{tokens}", "--out-latent", "x.safetensors", "--prompt-latent", "{latent}", "--prompt-tokens",
      "{short}"], "are the prompt latent and tokens of the same audio"),
    (["--tokens", "{tokens}", "--out-latent", "x.safetensors", "--stream", "--frames", "3"], "--stream"),
    (["--tokens", "{tokens}", "--out-latent", "x.safetensors", "--stream", "--chunk-frames", "0"], "--chunk-frames"),
    (["--tokens", "{tokens}", "--out-latent", "x.safetensors", "--lookahead", "1"], "--lookahead applies to --stream"),
])
def test_errors_are_one_line(run_dir, token_file, tmp_path, args, message):
    save_tokens(tmp_path / "rate.safetensors", [1, 2, 3], 50.0)
    save_tokens(tmp_path / "big.safetensors", [1, 12, 3], 25.0)
    save_tokens(tmp_path / "short.safetensors", [1, 2], 25.0)
    save_latent(tmp_path / "latent.safetensors", torch.zeros(80, 6), LatentMeta(22050, 256, 22050 / 4096, 6 * 4096, ""))
    names = {"tokens": token_file, "missing": tmp_path / "missing.safetensors", "rate": tmp_path / "rate.safetensors",
             "big": tmp_path / "big.safetensors", "latent": tmp_path / "latent.safetensors",
             "short": tmp_path / "short.safetensors"}
    args = [a.format(**names) if a.startswith("{") else a for a in args]
    result = invoke("--checkpoint", str(run_dir), *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error:")


def test_lookahead_out_of_range(run_dir, token_file, tiny_generator, small_vocoder, tmp_path):
    result = invoke("--checkpoint", str(run_dir), "--tokens", str(token_file), "--stream", "--lookahead", "999",
                    "-o", str(tmp_path / "x.wav"), *models(tiny_generator, small_vocoder))
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "--lookahead must be 0.." in errors[0]


def test_text_runs_refuse_tokens(tmp_path):
    from tts.synthetic import SyntheticCorpus

    corpus = SyntheticCorpus(alphabet="ab", frames_per_char=2, dim=8)
    manifest = corpus.write(tmp_path / "toy", corpus.random_texts(8, seed=1, max_len=4))
    assert train_main(["--model", "flow", "--manifest", str(manifest), "--output-dir", str(tmp_path / "run"),
                       "--preset", "tiny", "--max-steps", "1", "--batch-size", "4"]) == 0
    save_tokens(tmp_path / "t.safetensors", [1, 2], 25.0)
    result = invoke("--checkpoint", str(tmp_path / "run"), "--tokens", str(tmp_path / "t.safetensors"),
                    "--out-latent", str(tmp_path / "x.safetensors"))
    assert result.exit_code == 2 and "speaks --text" in result.output


def test_training_data_errors_are_one_line(data, tmp_path, capsys):
    rows = read_manifest(data)
    # a row without tokens
    write_manifest(tmp_path / "no_tokens.jsonl", [{k: v for k, v in r.items() if k != "token_path"} if i == 3 else r
                                                  for i, r in enumerate(rows)])
    assert train(tmp_path / "no_tokens.jsonl", tmp_path / "a") == 2
    assert "has no token_path" in capsys.readouterr().err
    # tokens of other audio: far too many frames for the token count
    write_manifest(tmp_path / "mismatch.jsonl", [dict(r, num_frames=r["num_frames"] + 5) if i == 2 else r
                                                 for i, r in enumerate(rows)])
    assert train(tmp_path / "mismatch.jsonl", tmp_path / "b") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokens and latent of different audio" in err[0] and rows[2]["id"] in err[0]
    # two token rates in one corpus
    save_tokens(tmp_path / "other_rate.safetensors", [1, 2, 3, 4], 21.5)
    write_manifest(tmp_path / "rates.jsonl", [dict(r, token_path=str(tmp_path / "other_rate.safetensors"),
                                                   token_rate=21.5) if i == 1 else r for i, r in enumerate(rows)])
    assert train(tmp_path / "rates.jsonl", tmp_path / "c") == 2
    assert "differs from the first row's" in capsys.readouterr().err


def test_speaker_embeddings_from_the_manifest(data, tmp_path, capsys):
    from safetensors.torch import save_file

    rows = read_manifest(data)
    lines = []
    for i, row in enumerate(rows):
        save_file({"embedding": torch.randn(4)}, str(tmp_path / f"spk{i}.safetensors"))
        lines.append(json.dumps(dict(row, speaker_path=f"spk{i}.safetensors")))
    (tmp_path / "speakers.jsonl").write_text("\n".join(lines) + "\n")
    assert train(tmp_path / "speakers.jsonl", tmp_path / "run", 2, "--speaker-dim", "4") == 0
    run = load_run(tmp_path / "run")
    assert run.model.cfg.speaker_dim == 4
    tokens = CORPUS.random_sequences(1, seed=3)[0]
    a = synthesize_tokens(run, tokens, speaker=torch.ones(4), seed=0)
    b = synthesize_tokens(run, tokens, speaker=-torch.ones(4), seed=0)
    assert a.shape == b.shape and not torch.equal(a, b)
    # rows without an embedding: one line
    assert train(data, tmp_path / "run2", 2, "--speaker-dim", "4") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "has no speaker_path" in err[-1]
