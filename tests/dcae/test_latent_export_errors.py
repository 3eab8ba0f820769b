"""dcae export: errors are one ``error:`` line with exit code 2, like every other command; --vocoder
takes a folder, its config.json or a hub id (only the mel settings are used)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dcae.cli.export import export_command
from dcae.corpus import load_latent
from tests.conftest import TINY_CONFIG, VOCODER_CONFIG


@pytest.fixture
def filelist(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "a.wav", (0.2 * rng.standard_normal(22050)).astype(np.float32), 22050)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.wav'}|hello\n")
    return tmp_path / "list.txt"


def run(filelist: Path, out: Path, *extra: str):
    args = ["--filelist", str(filelist), "--out", str(out), "--ae-config", str(TINY_CONFIG), "--num-workers", "0",
            *extra]
    return CliRunner().invoke(export_command, args)


def test_model_errors_say_error_and_exit_2(filelist, tmp_path, tiny_generator):
    missing = run(filelist, tmp_path / "out", "--ae-model", str(tmp_path / "none.pt"))
    assert missing.exit_code == 2 and missing.output.startswith("error: ") and "AE checkpoint not found" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    nosuch = run(filelist, tmp_path / "out", "--ae-model", str(tiny_generator), "--vocoder", str(tmp_path / "nope"))
    assert nosuch.exit_code == 2 and nosuch.output.startswith("error: ") and "nope" in nosuch.output
    # an export folder made with other settings
    assert run(filelist, tmp_path / "out", "--ae-model", str(tiny_generator)).exit_code == 0
    other = run(filelist, tmp_path / "out", "--ae-model", str(tiny_generator), "--latent-dtype", "bfloat16")
    assert other.exit_code == 2 and other.output.startswith("error: ") and "latent_dtype" in other.output


def test_vocoder_config_json_is_used(filelist, tmp_path, tiny_generator):
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    (narrow / "config.json").write_text(json.dumps(dict(json.loads(VOCODER_CONFIG.read_text()), fmax=4000)))
    latents = {}
    for name, extra in (("default", ()), ("folder", ("--vocoder", str(narrow))),
                        ("file", ("--vocoder", str(narrow / "config.json")))):
        result = run(filelist, tmp_path / name, "--ae-model", str(tiny_generator), *extra)
        assert result.exit_code == 0, result.output
        latents[name] = load_latent(next((tmp_path / name / "latents").rglob("*.safetensors")))[0]
    assert (latents["folder"] == latents["file"]).all() and not (latents["folder"] == latents["default"]).all()
    assert "config.json" in CliRunner().invoke(export_command, ["--help"]).output
