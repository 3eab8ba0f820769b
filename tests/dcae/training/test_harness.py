"""The shared training harness (dcae.training): a killed and resumed run computes bit-for-bit the same
losses as an uninterrupted one, for the DC-AE trainer and a TTS trainer; data order, flags, config errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from dcae.training import ConfigError, RunConfig
from dcae.training.flags import field_help, parse_config, save_config
from dcae.training.sampling import ResumableSampler
from dcae.training.scalars import read_metrics
from tests.conftest import REPO, TINY_CONFIG
from tests.dcae.model.test_trainer_components import write_wav
from tts.synthetic import SyntheticCorpus, SyntheticTextTokenCorpus, SyntheticTokenCorpus

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600, **kw)


def kill_after_checkpoint(cmd: list[str], marker: Path) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``marker`` exists (a checkpoint set is complete)."""
    process = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {marker.name} appeared: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {marker.name} after 600 s")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run had already finished: the kill tested nothing"


def losses_by_step(run_dir: Path) -> dict[int, dict]:
    rows = read_metrics(run_dir / "metrics.jsonl")
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith("speed/")} for r in rows}


def assert_same_history(killed: Path, clean: Path, steps: int) -> None:
    a, b = losses_by_step(killed), losses_by_step(clean)
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    for step in range(1, steps + 1):
        assert a[step] == b[step], f"step {step}: {a[step]} != {b[step]}"


@pytest.fixture(scope="module")
def audio_filelist(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    files = [write_wav(d / f"tone{i}.wav", 1.5 + 0.5 * i, freq=180.0 + 90 * i) for i in range(5)]
    filelist = d / "train.txt"
    filelist.write_text("".join(f"{p}\n" for p in files))
    return filelist


def test_dcae_trainer_resumes_bit_for_bit_after_a_kill(audio_filelist, tmp_path):
    """Random segment windows drawn in a data-loading worker, sigma-VAE noise, Muon + AdamW, two updates
    per step: the losses after SIGKILL + restart equal the uninterrupted run's at every step."""
    steps = 9

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "train.py", "--train-dataset-path", str(audio_filelist), "--model-config-path",
                str(TINY_CONFIG), "--segment-samples", "16384", "--batch-size", "2", "--num-workers", "1",
                "--max-steps", str(steps), "--save-interval", "3", "--log-interval", "1", "--cpu-threads", "1",
                "--warmup-steps", "2", "--model-save-path", str(out / "ckpt"), "--log-dir", str(out / "tb")]

    clean = run(cmd(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr[-2000:]
    kill_after_checkpoint(cmd(tmp_path / "killed"), tmp_path / "killed" / "ckpt" / "state_3.pt")
    resumed = run(cmd(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from step" in resumed.stdout + resumed.stderr
    assert_same_history(tmp_path / "killed" / "ckpt", tmp_path / "clean" / "ckpt", steps)
    a = torch.load(tmp_path / "killed" / "ckpt" / f"generator_{steps}.pt", weights_only=True)
    b = torch.load(tmp_path / "clean" / "ckpt" / f"generator_{steps}.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in b)


def synthetic_manifest(model: str, folder: Path) -> Path:
    """A small synthetic corpus of the kind ``model`` trains on (text + latents, tokens + latents, text + tokens)."""
    if model == "flow":
        corpus = SyntheticCorpus(alphabet="abcd", frames_per_char=2, dim=8)
        return corpus.write(folder, corpus.random_texts(20, seed=3, max_len=6))
    if model == "token-flow":
        corpus = SyntheticTokenCorpus(vocab=8, dim=8)
        return corpus.write(folder, corpus.random_sequences(20, seed=3, max_len=24))
    corpus = SyntheticTextTokenCorpus(alphabet="abcd", vocab=16, seed=0)
    return corpus.write(folder, corpus.random_texts(20, seed=3, max_len=6))


@pytest.mark.parametrize("model", ["flow", "token-flow", "token-lm"])
def test_tts_trainer_resumes_bit_for_bit_after_a_kill(model, tmp_path):
    """Every downstream trainer draws something random each step (flow: infill spans, noise, flow times,
    condition drops; token-flow: chunk sizes, prompts, frame noise; token-lm: layouts, drops)."""
    manifest = synthetic_manifest(model, tmp_path / "data")
    steps = 8

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "tts.train", "--model", model, "--manifest", str(manifest), "--output-dir",
                str(out), "--preset", "tiny", "--batch-size", "4", "--max-steps", str(steps), "--save-interval", "4",
                "--log-interval", "1", "--cpu-threads", "1", "--warmup-steps", "3"]

    clean = run(cmd(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr[-2000:]
    kill_after_checkpoint(cmd(tmp_path / "killed"), tmp_path / "killed" / "checkpoints" / "state_4.pt")
    resumed = run(cmd(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_history(tmp_path / "killed", tmp_path / "clean", steps)


def test_streamed_shards_with_workers_resume_bit_for_bit_after_a_kill(tmp_path):
    """A shard folder read by 2 DataLoader workers with frame-budget batches: the killed-and-resumed run
    logs the uninterrupted run's losses (each worker continues after its saved position, in the same
    round-robin order)."""
    from click.testing import CliRunner

    from dcae.cli.shards import shards_command

    manifest = synthetic_manifest("token-flow", tmp_path / "data")
    shards = tmp_path / "shards"
    packed = CliRunner().invoke(shards_command, ["pack", "--manifest", str(manifest), "--out", str(shards)])
    assert packed.exit_code == 0, packed.output
    steps = 9

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "tts.train", "--model", "token-flow", "--manifest", str(shards), "--output-dir",
                str(out), "--preset", "tiny", "--batch-size", "4", "--batch-frames", "24", "--num-workers", "2",
                "--max-steps", str(steps), "--save-interval", "3", "--log-interval", "1", "--cpu-threads", "1",
                "--warmup-steps", "3"]

    clean = run(cmd(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr[-2000:]
    kill_after_checkpoint(cmd(tmp_path / "killed"), tmp_path / "killed" / "checkpoints" / "state_3.pt")
    resumed = run(cmd(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_history(tmp_path / "killed", tmp_path / "clean", steps)


def test_sampler_resumes_mid_epoch_and_shards():
    full = ResumableSampler(10, seed=5, item_seeds=True)
    full.set_position(epoch=2)
    order = list(full)
    later = ResumableSampler(10, seed=5, item_seeds=True)
    later.set_position(epoch=2, skip=4)
    assert list(later) == order[4:]
    assert sorted(i for i, _ in order) == list(range(10)) and len({s for _, s in order}) == 10
    other_epoch = ResumableSampler(10, seed=5)
    other_epoch.set_position(epoch=3)
    assert list(other_epoch) != [i for i, _ in order]
    ranks = [ResumableSampler(10, seed=5, rank=r, world_size=3) for r in range(3)]
    shards = [list(s) for s in ranks]
    assert all(len(s) == 3 for s in shards) and len(set(sum(shards, []))) == 9


@dataclass
class _Cfg(RunConfig):
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("data", "out")

    data: str = "data.txt"  # the data file
    out: str = "run"  # where the run lives
    width: int = 8  # model width

    def run_dir(self) -> Path:
        return Path(self.out)


def test_flags_help_saved_config_and_precedence(tmp_path, monkeypatch, capsys):
    helps = field_help(_Cfg)
    assert helps["width"] == "model width" and "NaN/Inf" in helps["max_nonfinite_steps"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("x\n")
    cfg = parse_config(_Cfg, ["--width", "16", "--out", "r1"], saved_config=lambda c: c.config_path())
    Path("r1").mkdir()
    save_config(cfg, cfg.config_path())
    saved = json.loads((tmp_path / "r1" / "config.json").read_text())
    assert saved["data"] == str(tmp_path / "data.txt") and saved["out"] == str(tmp_path / "r1")  # absolute
    # a restart without repeating the options continues the run's saved config; flags given now win
    again = parse_config(_Cfg, ["--out", "r1", "--max-steps", "7"], saved_config=lambda c: c.config_path())
    assert again.width == 16 and again.max_steps == 7
    with pytest.raises(SystemExit):
        parse_config(_Cfg, ["--help"])
    out = capsys.readouterr().out
    assert "model width" in out and "training run (the same in every trainer)" in out
    with pytest.raises(ConfigError, match="--width: expected int"):
        parse_config(_Cfg, ["--width", "wide"])


@pytest.mark.parametrize("argv, message", [
    (["--model-config-path", "nosuch.json"], "nosuch.json: config file not found"),
    (["--precision", "fp16"], "--precision: expected one of auto, fp32, bf16"),
    (["--max-steps", "0"], "--max-steps: must be at least 1"),
])
def test_dcae_trainer_config_errors_are_one_line(argv, message, audio_filelist, tmp_path, capsys):
    from dcae.model import trainer as train

    code = train.main(["--train-dataset-path", str(audio_filelist), "--model-save-path", str(tmp_path / "ck"),
                       "--log-dir", str(tmp_path / "tb"), "--segment-samples", "16384", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err


def test_dcae_resume_without_repeating_the_model_config(audio_filelist, tmp_path, capsys):
    """A restart that names only the checkpoint folder reads the run's saved config (the tiny model),
    from another working directory too."""
    from dcae.model import trainer as train

    out = tmp_path / "ck"
    assert train.main(["--train-dataset-path", str(audio_filelist), "--model-config-path", str(TINY_CONFIG),
                       "--segment-samples", "16384", "--batch-size", "2", "--num-workers", "0", "--max-steps", "1",
                       "--model-save-path", str(out), "--log-dir", str(tmp_path / "tb")]) == 0
    os.chdir(tmp_path)
    try:
        assert train.main(["--model-save-path", str(out), "--max-steps", "2"]) == 0
    finally:
        os.chdir(REPO)
    captured = capsys.readouterr()
    assert "resumed from step 1" in captured.out + captured.err
    assert (out / "generator_2.pt").is_file()
