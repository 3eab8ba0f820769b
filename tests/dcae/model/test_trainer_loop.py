"""End-to-end runs of ``train.py`` on CPU with the tiny config: checkpoints, resume (ours and the
reference trainer's folder layout), bad files, the NaN guard and a 2-process torchrun."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcae import DCAEWrapper
from dcae.model import trainer as train
from dcae.model.discriminators import MelDiscriminator
from tests.conftest import REPO
from tests.dcae.model.test_trainer_components import reference_module, write_wav

TINY = REPO / "dcae" / "configs" / "tiny.json"
SEGMENT = 16384  # 64 mel frames: the smallest the PatchGAN discriminator accepts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Filelist of two good clips, a corrupt file and an empty file."""
    d = tmp_path_factory.mktemp("corpus")
    good = [write_wav(d / f"tone{i}.wav", 1.0 + i, freq=200.0 + 150 * i) for i in range(2)]
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 50)
    (d / "empty.flac").write_bytes(b"")
    filelist = d / "train.txt"
    filelist.write_text("\n".join(str(p) for p in [*good, d / "corrupt.wav", d / "empty.flac"]) + "\n")
    return filelist


def args(corpus: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["--train-dataset-path", str(corpus), "--model-config-path", str(TINY), "--segment-samples", str(SEGMENT),
            "--batch-size", "2", "--num-workers", "0", "--max-steps", str(steps), "--save-interval", "2",
            "--log-interval", "1", "--model-save-path", str(out / "ckpt"), "--log-dir", str(out / "runs"), *extra]


def test_run_writes_loadable_checkpoints_skips_bad_files_and_resumes(corpus, tmp_path, capsys, on_device):
    """On the device under test (with its default precision: bf16 autocast where native)."""
    assert train.main(args(corpus, tmp_path, 2, "--device", str(on_device))) == 0
    ckpt = tmp_path / "ckpt"
    # the reference trainer's layout (a reference run resumes here and ours loads there), plus our state file
    written = {p.name.removesuffix("_2.pt") for p in ckpt.glob("*_2.pt")}
    assert written == {"generator", "discriminator", "optimizerg", "optimizerd", "state"}
    generator = DCAEWrapper(TINY)
    generator.load_state_dict(torch.load(ckpt / "generator_2.pt", weights_only=True), strict=True)
    state = torch.load(ckpt / "state_2.pt", weights_only=True)
    assert state["step"] == 2 and state["config"]["segment_samples"] == SEGMENT
    # one epoch of 4 files in batches of 2 meets both bad files; they are reported, not fatal
    assert sorted(Path(k.split(":")[0]).name for k in state["skipped"]) == ["corrupt.wav", "empty.flac"]
    assert (ckpt / "train_config.json").is_file() and any((tmp_path / "runs").iterdir())
    out = capsys.readouterr().out
    assert "skipped" in out and "corrupt.wav" in out

    assert train.main(["--config", str(ckpt / "train_config.json"), "--max-steps", "3", "--save-interval", "3"]) == 0
    out = capsys.readouterr().out
    assert "resumed from step 2" in out
    resumed = torch.load(ckpt / "state_3.pt", weights_only=True)
    assert resumed["step"] == 3
    assert resumed["scheduler_g"][0]["last_epoch"] == 3


def test_resume_from_reference_trainer_folder(corpus, tmp_path, capsys):
    """A folder with only the reference's generator/discriminator/optimizerg/optimizerd files."""
    muon = reference_module("utils/muon.py", tmp_path)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    generator, discriminator = DCAEWrapper(TINY), MelDiscriminator()
    torch.save(generator.state_dict(), ckpt / "generator_5.pt")
    torch.save(discriminator.state_dict(), ckpt / "discriminator_5.pt")
    torch.save(muon.get_muon_optimizer([generator]).state_dict(), ckpt / "optimizerg_5.pt")
    torch.save(muon.get_muon_optimizer([discriminator]).state_dict(), ckpt / "optimizerd_5.pt")
    assert train.main(args(corpus, tmp_path, 6, "--save-interval", "6", "--batch-size", "1")) == 0
    out = capsys.readouterr().out
    assert "resumed from step 5" in out and "reference" in out
    trained = torch.load(ckpt / "generator_6.pt", weights_only=True)
    start = generator.state_dict()
    fresh = DCAEWrapper(TINY).state_dict()
    key = "model.encoder.conv_in.parametrizations.weight.original1"
    # one step from the reference weights, not from a new initialisation
    assert (trained[key] - start[key]).norm() < 0.5 * (fresh[key] - start[key]).norm()
    state = torch.load(ckpt / "state_6.pt", weights_only=True)
    assert state["scheduler_g"][0]["last_epoch"] == 6


def test_nonfinite_losses_stop_training_with_a_clear_message(corpus, tmp_path, capsys):
    code = train.main(args(corpus, tmp_path, 20, "--batch-size", "1", "--gen-learning-rate", "1e30",
                           "--max-nonfinite-steps", "1"))
    out = capsys.readouterr().out
    assert code == 1
    assert "update skipped" in out and "stopping: 1 consecutive steps" in out


def test_bad_config_is_one_line_error(corpus, tmp_path, capsys):
    assert train.main(args(corpus, tmp_path, 1, "--segment-samples", "5000")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --segment-samples") and "\n" not in err


def test_torchrun_two_processes_on_cpu(corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(REPO / "train.py"), *args(corpus, tmp_path, 2, "--batch-size", "1")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es) on cpu" in result.stdout + result.stderr
    generator = DCAEWrapper(TINY)
    generator.load_state_dict(torch.load(tmp_path / "ckpt" / "generator_2.pt", weights_only=True), strict=True)
    assert len(list((tmp_path / "ckpt").glob("state_*.pt"))) == 1  # only rank 0 saves


def test_validation_logs_mel_l1_images_audio_and_pesq_stoi(corpus, small_vocoder, tmp_path):
    """Validation through a (small, randomly initialised) BigVGAN saved in NVIDIA's folder layout."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    val = tmp_path / "val.txt"
    val.write_text(corpus.read_text().splitlines()[1] + "\n" + corpus.read_text().splitlines()[2] + "\n")
    assert train.main(args(corpus, tmp_path, 1, "--val-dataset-path", str(val), "--val-interval", "1",
                           "--vocoder-path", str(small_vocoder), "--val-max-seconds", "1.0")) == 0
    events = EventAccumulator(str(tmp_path / "runs"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"validation/mel_l1", "validation/pesq_wb", "validation/stoi", "training/recon_loss"} <= set(tags["scalars"])
    assert {"validation/audio_0", "validation/audio_0_truth"} <= set(tags["audio"])
    assert "validation/mel_0" in tags["images"]
    assert 1.0 <= events.Scalars("validation/pesq_wb")[0].value <= 4.7


def test_defaults_fit_the_machine_and_packaged_configs_go_by_name(corpus, tmp_path, capsys):
    """No more data-loading workers than cores by default (torch warns on every start otherwise);
    ``--model-config-path tiny`` is the packaged config."""
    import warnings

    assert train.TrainConfig().num_workers == min(4, os.cpu_count() or 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # DataLoader's "exceeds the suggested max number of worker"
        extra = ["--num-workers", str(train.TrainConfig().num_workers), "--model-config-path", "tiny"]
        assert train.main(args(corpus, tmp_path, 1, "--batch-size", "1", *extra)) == 0
    saved = (tmp_path / "ckpt" / "train_config.json").read_text()
    assert '"model_config_path": "tiny"' in saved
