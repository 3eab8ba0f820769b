"""python -m tts.train (run folder, resume, errors) and dcae tts --out-latent."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import load_latent, save_latent
from tests.conftest import REPO
from tts.run import checkpoint_manager, load_run
from tts.synthetic import SyntheticCorpus
from tts.train import main as train_main

CORPUS = SyntheticCorpus(alphabet="abcd", frames_per_char=2, dim=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return CORPUS.write(tmp_path_factory.mktemp("toy"), CORPUS.random_texts(24, seed=1, max_len=6))


def train(manifest: Path, out: Path, kind: str, steps: int, *extra: str) -> int:
    return train_main(["--model", kind, "--manifest", str(manifest), "--output-dir", str(out), "--preset", "tiny",
                       "--max-steps", str(steps), "--save-interval", "5", "--batch-size", "8", *extra])


@pytest.fixture(scope="module", params=["ar", "flow"])
def trained_run(request, manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"run_{request.param}")
    assert train(manifest, out, request.param, 10) == 0
    return out


def test_run_folder_holds_everything(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.json", "model.json", "vocab.json", "stats.json", "latent.json", "checkpoints", "logs"} <= names
    config = json.loads((trained_run / "config.json").read_text())
    assert config["max_steps"] == 10 and config["width"] == 64  # tiny preset + flag, resolved
    info = json.loads((trained_run / "latent.json").read_text())
    assert info["frames_per_token"] == pytest.approx(2.0) and info["latent_dim"] == 8
    assert checkpoint_manager(trained_run).complete_steps() == [5, 10]
    assert list((trained_run / "logs").iterdir())  # TensorBoard events
    run = load_run(trained_run)
    assert run.step == 10 and run.stats.dim == 8


def test_resume_continues_from_newest_checkpoint(manifest, tmp_path):
    assert train(manifest, tmp_path, "ar", 5) == 0
    weights_5 = checkpoint_manager(tmp_path).load("model", 5)
    assert train(manifest, tmp_path, "ar", 10) == 0
    state = checkpoint_manager(tmp_path).load("state", 10)
    assert state["step"] == 10 and state["scheduler"]["last_epoch"] == 10
    weights_10 = checkpoint_manager(tmp_path).load("model", 10)
    assert any(not torch.equal(weights_5[k], weights_10[k]) for k in weights_5)
    # the saved config reruns the same training
    assert train_main(["--config", str(tmp_path / "config.json"), "--max-steps", "15"]) == 0
    assert checkpoint_manager(tmp_path).latest_step() == 15
    # a changed model size cannot resume, and says so in one line
    assert train_main(["--config", str(tmp_path / "config.json"), "--max-steps", "20", "--width", "32"]) == 2
    assert train_main(["--config", str(tmp_path / "config.json"), "--max-steps", "20", "--model", "flow"]) == 2
    assert json.loads((tmp_path / "config.json").read_text())["width"] == 64  # the run folder is untouched
    assert load_run(tmp_path).step == 15


def test_train_errors_are_one_line(manifest, tmp_path, capsys):
    assert train_main(["--model", "ar", "--manifest", str(tmp_path / "nope.jsonl"), "--output-dir", str(tmp_path)]) == 2
    assert train_main(["--model", "gan", "--manifest", str(manifest), "--output-dir", str(tmp_path)]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "latent_path": "missing.safetensors", "num_frames": 3}\n')
    assert train_main(["--model", "ar", "--manifest", str(bad), "--output-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "nope.jsonl" in err[0] and "'gan'" in err[1] and "no text" in err[2]


def invoke(*args: str):
    return CliRunner().invoke(dcae_main, ["tts", *args], catch_exceptions=False)


def test_dcae_tts_writes_latent(trained_run, tmp_path):
    out = tmp_path / "out.safetensors"
    result = invoke("--checkpoint", str(trained_run), "--text", "abba cd", "--frames", "9", "--seed", "3",
                    "--out-latent", str(out), "--steps", "2")
    assert result.exit_code == 0, result.output
    latent, meta = load_latent(out)
    assert latent.shape == (8, 9) and meta.model == "synthetic" and meta.num_samples == 9 * 4096
    again = tmp_path / "again.safetensors"
    assert invoke("--checkpoint", str(trained_run), "--text", "abba cd", "--frames", "9", "--seed", "3",
                  "--out-latent", str(again), "--steps", "2").exit_code == 0
    torch.testing.assert_close(load_latent(again)[0], latent)  # same seed, same latent


def test_dcae_tts_prompt_and_default_length(trained_run, tmp_path):
    meta = load_latent(_any_latent(trained_run))[1]
    for name, text in (("dab", "dab"), ("other", "ccdd")):
        save_latent(tmp_path / f"{name}.safetensors", CORPUS.truth(text).T, meta)

    def make(prompt: str, prompt_text: str, *extra: str) -> torch.Tensor:
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}.safetensors"
        result = invoke("--checkpoint", str(trained_run), "--text", "cab", "--prompt-latent",
                        str(tmp_path / f"{prompt}.safetensors"), "--prompt-text", prompt_text, "--out-latent",
                        str(out), "--steps", "2", "--seed", "1", *extra)
        assert result.exit_code == 0, result.output
        return load_latent(out)[0]

    # the prompt is used: another prompt (same text, seed and length) gives another latent
    with_dab, with_other = make("dab", "dab", "--frames", "4"), make("other", "dab", "--frames", "4")
    assert with_dab.shape == with_other.shape == (8, 4) and not torch.allclose(with_dab, with_other)
    # the length: flow takes the prompt's own rate (6 frames for 3 characters -> 6 for "cab");
    # --max-frames caps it for both kinds
    default = make("dab", "dab")
    capped = make("dab", "dab", "--max-frames", "3")
    if load_run(trained_run).kind == "flow":
        assert default.shape[1] == 6 and capped.shape[1] == 3
    else:  # AR: the same frames, cut where the cap is (untrained, this run goes on to its limit of 44)
        assert capped.shape[1] == min(3, default.shape[1]) and torch.equal(capped, default[:, :capped.shape[1]])


def test_max_frames_caps_the_python_api_like_the_cli(trained_run, tmp_path):
    from tts.one_stage.synthesis import synthesize

    run = load_run(trained_run)
    default = synthesize(run, "abba cd", seed=2, steps=2)
    capped = synthesize(run, "abba cd", seed=2, steps=2, max_frames=3)
    assert default.shape[1] > 3 and capped.shape[1] == 3
    # --frames wins over the cap's rule; the cap above the rule changes nothing
    assert synthesize(run, "abba cd", frames=5, seed=2, steps=2, max_frames=5).shape[1] == 5
    if run.kind == "flow":
        torch.testing.assert_close(synthesize(run, "abba cd", seed=2, steps=2, max_frames=1000), default)
    out = tmp_path / "cli.safetensors"
    result = invoke("--checkpoint", str(trained_run), "--text", "abba cd", "--max-frames", "3", "--seed", "2",
                    "--steps", "2", "--out-latent", str(out))
    assert result.exit_code == 0, result.output
    torch.testing.assert_close(load_latent(out)[0], capped)  # the CLI and the API agree


def _any_latent(run_dir: Path) -> Path:
    manifest = Path(json.loads((run_dir / "config.json").read_text())["manifest"])
    return next((manifest.parent / "latents").glob("*.safetensors"))


@pytest.mark.parametrize("args, message", [
    (["--text", "ab"], "--out-latent"),
    (["--text", "ab", "--out-latent", "x.safetensors", "--prompt-latent", "{latent}"], "--prompt-text"),
    (["--text", "  ", "--out-latent", "x.safetensors"], "text is empty"),
])
def test_dcae_tts_errors(trained_run, tmp_path, args, message):
    args = [a.replace("{latent}", str(_any_latent(trained_run))) for a in args]
    result = invoke("--checkpoint", str(trained_run), *args)
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_dcae_tts_bad_run_folder(tmp_path):
    result = invoke("--checkpoint", str(tmp_path), "--text", "ab", "--out-latent", str(tmp_path / "x.safetensors"))
    assert result.exit_code == 2 and "model.json" in result.output


@pytest.fixture(scope="module")
def run_80d(tmp_path_factory) -> Path:
    """A tiny flow run on 80-d toy latents (the DC-AE's size), recorded as made by AE "synthetic"."""
    corpus = SyntheticCorpus(alphabet="abcd", frames_per_char=2, dim=80)
    manifest = corpus.write(tmp_path_factory.mktemp("toy80"), corpus.random_texts(16, seed=1, max_len=5))
    out = tmp_path_factory.mktemp("run80")
    assert train(manifest, out, "flow", 2) == 0
    return out


def test_dcae_tts_audio_format_and_autoencoder_check(run_80d, tiny_generator, small_vocoder, tmp_path):
    from torchcodec.decoders import AudioDecoder

    from dcae.corpus import weights_hash

    models = ["--ae-model", str(tiny_generator), "--ae-config", "dcae/configs/tiny.json", "--vocoder",
              str(small_vocoder), "--device", "cpu"]
    args = ["--checkpoint", str(run_80d), "--text", "abc", "--frames", "3", "--steps", "2", *models]
    foreign = invoke(*args, "-o", str(tmp_path / "a.mp3"))
    assert foreign.exit_code == 0, foreign.output
    assert AudioDecoder(str(tmp_path / "a.mp3")).metadata.codec == "mp3"
    warnings = [line for line in foreign.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "synthetic" in warnings[0] and weights_hash(tiny_generator) in warnings[0]
    # the run's latents made by this AE: no warning
    info = json.loads((run_80d / "latent.json").read_text())
    (run_80d / "latent.json").write_text(json.dumps(dict(info, model=weights_hash(tiny_generator))))
    try:
        same = invoke(*args, "-o", str(tmp_path / "b.wav"))
    finally:
        (run_80d / "latent.json").write_text(json.dumps(info))
    assert same.exit_code == 0 and "warning" not in same.output
    # formats that cannot be written are refused before synthesis, in one line
    for flag, name, message in (("-o", "c.xyz", "cannot write audio as '.xyz'"),
                                ("--out-latent", "c.pt", "latent files are .safetensors")):
        bad = invoke(*args, flag, str(tmp_path / name))
        assert bad.exit_code == 2 and message in bad.output and len(bad.output.strip().splitlines()) == 1
        assert not (tmp_path / name).exists()


@pytest.mark.slow
def test_torchrun_two_processes(manifest, tmp_path):
    """DDP on the CPU (gloo): two ranks train and the main one writes the checkpoints."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "tts.train", "--model", "flow",
           "--manifest", str(manifest), "--output-dir", str(tmp_path), "--preset", "tiny", "--max-steps", "6",
           "--save-interval", "3", "--batch-size", "4", "--cpu-threads", "1"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert checkpoint_manager(tmp_path).complete_steps() == [3, 6]
