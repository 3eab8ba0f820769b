"""Run-stopping problems surface early, as one line, and lose no trained steps: the DC-AE trainer
checks its validation filelist and vocoder before the first step; the harness saves a step's
checkpoint before that step's validation; a user error raised in a data-loading worker prints as
the original one-line message."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from dcae.corpus import ManifestError
from dcae.model import trainer as train
from dcae.training import RunConfig, Trainer, run_main
from tests.conftest import TINY_CONFIG
from tests.dcae.model.test_trainer_components import write_wav


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Filelist of two short tones."""
    d = tmp_path_factory.mktemp("clips")
    files = [write_wav(d / f"tone{i}.wav", 1.0, freq=200.0 + 100 * i) for i in range(2)]
    filelist = d / "train.txt"
    filelist.write_text("".join(f"{p}\n" for p in files))
    return filelist


def dcae_args(filelist: Path, out: Path, *extra: str) -> list[str]:
    return ["--train-dataset-path", str(filelist), "--model-config-path", str(TINY_CONFIG), "--segment-samples",
            "16384", "--batch-size", "2", "--num-workers", "0", "--max-steps", "1", "--val-interval", "1",
            "--model-save-path", str(out / "ckpt"), "--log-dir", str(out / "runs"), *extra]


def one_line_error(capsys) -> str:
    """The error line, which must be the last line of stderr (after the progress bar, if any) and the
    only one about the error."""
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1] if err else ""
    assert last.startswith("error: ") and "Traceback" not in err and err.count("error") == 1, err
    return last


def test_dcae_missing_validation_filelist_stops_before_training(clips, tmp_path, capsys):
    code = train.main(dcae_args(clips, tmp_path, "--val-dataset-path", str(tmp_path / "nosuch.txt")))
    err = one_line_error(capsys)
    assert code == 2 and "nosuch.txt" in err and "--val-dataset-path" in err
    assert not (tmp_path / "ckpt").exists()  # checked before any model was built or step taken


def test_dcae_unusable_vocoder_folder_stops_before_training(clips, tmp_path, capsys):
    folder = tmp_path / "vocoder"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # no bigvgan_generator.pt
    code = train.main(dcae_args(clips, tmp_path, "--val-dataset-path", str(clips), "--vocoder-path", str(folder)))
    err = one_line_error(capsys)
    assert code == 2 and "bigvgan_generator.pt" in err and "--vocoder-path" in err
    assert not (tmp_path / "ckpt").exists()


def test_dcae_vocoder_hub_id_offline_is_one_line(clips, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code = train.main(dcae_args(clips, tmp_path, "--val-dataset-path", str(clips),
                                "--vocoder-path", "nobody/no-such-vocoder"))
    err = one_line_error(capsys)
    assert code == 2 and "nobody/no-such-vocoder" in err and "offline" in err
    assert not (tmp_path / "ckpt").exists()


# ------------------------------------------------------------------------ a toy trainer on the harness
@dataclass
class ToyConfig(RunConfig):
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("out",)

    out: str = "run"  # the run folder
    validation: str = "raise"  # raise: validation fails; draw: it draws random numbers
    bad_item: int = -1  # the dataset raises a ManifestError for this item (-1: none)

    def run_dir(self) -> Path:
        return Path(self.out)


class ValidationBroke(ValueError):
    pass


class ToyData(Dataset):
    def __init__(self, bad_item: int):
        self.bad_item = bad_item

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == self.bad_item:
            raise ManifestError(f"manifest.jsonl: row {index}: its token file is truncated")
        return torch.full((2,), float(index))


class ToyTrainer(Trainer):
    config_class = ToyConfig
    user_errors = (ManifestError, ValidationBroke)

    def build(self, run) -> None:
        self.model = nn.Linear(2, 1)
        run.register_module("model", self.model)
        run.register_optimizer("optimizer", torch.optim.SGD(self.model.parameters(), lr=0.01), self.model.parameters())

    def dataset(self, run) -> Dataset:
        return ToyData(self.cfg.bad_item)

    def train_step(self, batch, run) -> dict:
        loss = (self.model(batch) + torch.randn(len(batch), 1)).pow(2).mean()  # draws every step
        run.update("optimizer", loss)
        return {"loss": loss.detach()}

    def validate(self, run, step: int) -> dict:
        if self.cfg.validation == "raise":
            raise ValidationBroke(f"step {step}: validation broke")
        return {"validation/noise": torch.rand(3).sum().item()}


def toy_args(out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--batch-size", "2", "--max-steps", "4", "--save-interval", "2",
            "--val-interval", "2", "--log-interval", "1", "--cpu-threads", "1", *extra]


def test_checkpoint_of_a_step_is_saved_before_its_validation(tmp_path, capsys):
    assert run_main(ToyTrainer, toy_args(tmp_path / "run")) == 2
    assert "step 2: validation broke" in one_line_error(capsys)
    assert (tmp_path / "run" / "checkpoints" / "state_2.pt").is_file()  # the two steps are kept


def test_validation_draws_do_not_change_a_resumed_run(tmp_path):
    """The checkpoint of a step is saved before that step's validation, so what validation draws must
    not reach the training streams: a run stopped after validating at step 2 and resumed there computes
    the same losses as an uninterrupted one."""
    from dcae.training.scalars import read_metrics

    args = ["--validation", "draw"]
    assert run_main(ToyTrainer, toy_args(tmp_path / "clean", *args)) == 0
    assert run_main(ToyTrainer, toy_args(tmp_path / "resumed", *args, "--max-steps", "2")) == 0
    assert run_main(ToyTrainer, toy_args(tmp_path / "resumed", *args)) == 0

    def losses(run: Path) -> dict[int, float]:
        return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r}

    assert losses(tmp_path / "resumed") == losses(tmp_path / "clean") and len(losses(tmp_path / "clean")) == 4


@pytest.mark.parametrize("workers", [0, 1])
def test_user_error_in_a_data_loading_worker_is_its_one_line_message(workers, tmp_path, capsys):
    code = run_main(ToyTrainer, toy_args(tmp_path / "run", "--val-interval", "100", "--bad-item", "3",
                                         "--num-workers", str(workers)))
    assert code == 2
    assert one_line_error(capsys) == "error: manifest.jsonl: row 3: its token file is truncated"
