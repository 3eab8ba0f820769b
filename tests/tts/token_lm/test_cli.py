"""`python -m tts.train --model token-lm` and `dcae tts` with a token-lm run: token files written in the
token file format (seeded), on to latents through a token-flow run (offline and streamed, the frame
count following the tokens), text streaming, prompts, and one-line errors for every misuse.

Runs are tiny and trained briefly on tts.synthetic.SyntheticTextTokenCorpus (16-d latents, 32 codes)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import load_latent, load_tokens, read_manifest, write_manifest
from tests.tts_runs import one_line_error
from tts.synthetic import SyntheticTextTokenCorpus
from tts.token_flow.length_regulator import frames_for_tokens
from tts.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("token_lm_cli")
    corpus = SyntheticTextTokenCorpus(alphabet="abcdefgh", vocab=32, seed=0)
    manifest = corpus.write(root / "data", corpus.random_texts(120, seed=1))
    lm, flow = root / "lm", root / "flow"
    common = ["--manifest", str(manifest), "--preset", "tiny", "--max-steps", "40", "--save-interval", "40",
              "--cpu-threads", "1", "--precision", "fp32"]
    assert train_main(["--model", "token-lm", "--output-dir", str(lm), "--bistream", "true", "--text-chunk", "4",
                       "--speech-chunk", "8", "--cond-drop", "0.2", *common]) == 0
    assert train_main(["--model", "token-flow", "--output-dir", str(flow), *common]) == 0
    return {"lm": lm, "flow": flow, "manifest": manifest, "root": root}


def tts(*args: str):
    return CliRunner().invoke(dcae_main, ["tts", *args])


def test_out_tokens_in_the_token_file_format_and_seeded(runs, tmp_path):
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        result = tts("--checkpoint", str(runs["lm"]), "--text", "badge cafe", "--out-tokens",
                     str(tmp_path / f"{name}.safetensors"), "--seed", seed)
        assert result.exit_code == 0, result.output
        assert "speech tokens" in result.output
    a, meta = load_tokens(tmp_path / "a.safetensors")
    assert meta.token_rate == 25.0 and meta.extra["codebook_size"] == "32" and meta.extra["tokenizer"] == "synthetic"
    assert a.numel() > 0 and int(a.max()) < 32
    assert a.tolist() == load_tokens(tmp_path / "b.safetensors")[0].tolist()
    assert a.tolist() != load_tokens(tmp_path / "c.safetensors")[0].tolist()


def test_on_to_latents_offline_and_streamed(runs, tmp_path):
    for stream in ([], ["--stream"]):
        tokens, latent = tmp_path / f"t{len(stream)}.safetensors", tmp_path / f"l{len(stream)}.safetensors"
        result = tts("--checkpoint", str(runs["lm"]), "--flow", str(runs["flow"]), "--text", "hedge", "--out-tokens",
                     str(tokens), "--out-latent", str(latent), *stream)
        assert result.exit_code == 0, result.output
        ids = load_tokens(tokens)[0]
        frames = frames_for_tokens(ids.numel(), 25.0 / (22050 / 4096))
        assert load_latent(latent)[0].shape == (16, frames)
        assert "latent frames from token-flow run" in result.output


def test_text_stream_and_prompts(runs, tmp_path):
    row = read_manifest(runs["manifest"])[0]
    result = tts("--checkpoint", str(runs["lm"]), "--text", "ab cd", "--text-stream", "--out-tokens",
                 str(tmp_path / "s.safetensors"))
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(runs["lm"]), "--text", "-", "--text-stream",
                                            "--out-tokens", str(tmp_path / "stdin.safetensors")], input="abc\nde\n")
    assert result.exit_code == 0, result.output
    result = tts("--checkpoint", str(runs["lm"]), "--flow", str(runs["flow"]), "--text", "fade",
                 "--prompt-text", row["text"], "--prompt-tokens", row["token_path"], "--prompt-latent",
                 row["latent_path"], "--out-latent", str(tmp_path / "p.safetensors"), "--lm-cfg-scale", "1.5",
                 "--top-k", "5", "--top-p", "0.9", "--lm-temperature", "0.8")
    assert result.exit_code == 0, result.output


def test_misuse_is_one_line(runs, tmp_path):
    lm, flow, out = str(runs["lm"]), str(runs["flow"]), str(tmp_path / "o.safetensors")
    row = read_manifest(runs["manifest"])[0]
    one_line_error(tts("--checkpoint", lm, "--text", "abc", "-o", str(tmp_path / "o.wav")), "--flow")
    one_line_error(tts("--checkpoint", lm, "--text", "abc", "--out-tokens", str(tmp_path / "o.bin")), ".safetensors")
    one_line_error(tts("--checkpoint", lm, "--tokens", row["token_path"], "--out-tokens", out), "--text")
    one_line_error(tts("--checkpoint", lm, "--text", "", "--out-tokens", out), "empty")
    one_line_error(tts("--checkpoint", lm, "--text", "abc", "--out-tokens", out, "--frames", "3"), "--frames")
    one_line_error(tts("--checkpoint", lm, "--text", "abc", "--out-tokens", out, "--top-p", "0"), "top-p")
    one_line_error(tts("--checkpoint", lm, "--text", "abc", "--out-tokens", out, "--prompt-text", "ab"), "--prompt")
    one_line_error(tts("--checkpoint", lm, "--text", "abc", "--out-tokens", out, "--stream"), "--flow")
    one_line_error(tts("--checkpoint", lm, "--flow", lm, "--text", "abc", "--out-latent", out), "token-flow")
    one_line_error(tts("--checkpoint", lm, "--flow", flow, "--text", "abc", "--out-latent", out,
                       "--prompt-audio", row["latent_path"], "--prompt-text", "ab"), "--tokenizer")
    one_line_error(tts("--checkpoint", flow, "--tokens", row["token_path"], "--out-latent", out, "--top-k", "3"),
                   "--top-k", "token-lm")
    # a flow run trained on other tokens; an LM without guidance or bistream training
    other = tmp_path / "flow_other"
    shutil.copytree(runs["flow"], other)
    info = json.loads((other / "latent.json").read_text())
    (other / "latent.json").write_text(json.dumps({**info, "token_rate": 50.0}))
    one_line_error(tts("--checkpoint", lm, "--flow", str(other), "--text", "abc", "--out-latent", out), "50")
    plain = tmp_path / "lm_plain"
    shutil.copytree(runs["lm"], plain)
    spec = json.loads((plain / "model.json").read_text())
    spec["config"].update(bistream=False, cond_drop=0.0)
    (plain / "model.json").write_text(json.dumps(spec))
    one_line_error(tts("--checkpoint", str(plain), "--text", "abc", "--text-stream", "--out-tokens", out), "--bistream")
    one_line_error(tts("--checkpoint", str(plain), "--text", "abc", "--lm-cfg-scale", "2", "--out-tokens", out),
                   "--cond-drop")


def test_training_errors_are_one_line(runs, tmp_path, capsys):
    rows = read_manifest(runs["manifest"])

    def fails(rows_or_none, *extra: str, fragment: str) -> None:
        manifest = runs["manifest"]
        if rows_or_none is not None:
            manifest = tmp_path / f"m{len(list(tmp_path.iterdir()))}.jsonl"
            write_manifest(manifest, rows_or_none)
        code = train_main(["--model", "token-lm", "--manifest", str(manifest), "--output-dir",
                           str(tmp_path / f"run{len(list(tmp_path.iterdir()))}"), "--preset", "tiny",
                           "--max-steps", "1", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and err and fragment in err[-1], err
        assert not any("Traceback" in line for line in err)

    fails([{k: v for k, v in r.items() if k != "text"} for r in rows], fragment="no text")
    fails([{k: v for k, v in r.items() if k != "token_path"} for r in rows], fragment="no token_path")
    fails(None, "--bistream", "true", "--text-chunk", "1", "--speech-chunk", "30", fragment="--speech-chunk")
    fails(None, "--codebook-size", "8", fragment="--codebook-size")
    fails(None, "--width", "30", "--heads", "4", fragment="--width")
    fails(None, "--cond-drop", "2", fragment="--cond-drop")


def test_speaker_embeddings_train_and_condition(runs, tmp_path):
    import torch
    from safetensors.torch import save_file

    from dcae.corpus.manifest import MANIFEST_KEYS
    from tts.run import load_run
    from tts.synthesis import SynthesisError
    from tts.token_lm.synthesis import speech_tokens

    rows = read_manifest(runs["manifest"])
    for i, row in enumerate(rows):
        save_file({"embedding": torch.randn(4, generator=torch.Generator().manual_seed(i))},
                  tmp_path / f"spk{i}.safetensors")
        row["speaker_path"] = str(tmp_path / f"spk{i}.safetensors")
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, rows, keys=(*MANIFEST_KEYS, "speaker_path"))
    assert train_main(["--model", "token-lm", "--manifest", str(manifest), "--output-dir", str(tmp_path / "run"),
                       "--preset", "tiny", "--max-steps", "5", "--save-interval", "5", "--speaker-dim", "4",
                       "--cpu-threads", "1"]) == 0
    run = load_run(tmp_path / "run")
    a = speech_tokens(run, "abc", seed=0, speaker=torch.ones(4))
    b = speech_tokens(run, "abc", seed=0, speaker=-torch.ones(4))
    assert a.numel() and b.numel() and a.tolist() != b.tolist()  # the voice vector changes what is written
    with pytest.raises(SynthesisError, match="speaker embedding of 4"):
        speech_tokens(run, "abc", seed=0)
