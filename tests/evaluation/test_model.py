"""``dcae evaluate --filelist`` with a tiny DCAE and a small randomly initialised BigVGAN (official layouts)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from tests.conftest import TINY_CONFIG

COLUMNS = ["file", "pesq_wb", "pesq_nb", "stoi", "estoi", "mel_distance", "si_sdr", "sim", "mos", "error"]


@pytest.fixture(scope="module")
def run(tiny_generator, small_vocoder, speech_files, tmp_path_factory):
    from dcae.cli.evaluate import evaluate_command

    root = tmp_path_factory.mktemp("model_eval")
    sixteen = next(p for p in speech_files if sf.info(str(p)).samplerate == 16000 and 1.0 < sf.info(str(p)).duration < 2.0)
    fortyeight = next(p for p in speech_files if sf.info(str(p)).samplerate == 48000)
    corrupt = root / "corpus" / "broken.wav"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    filelist = root / "test.txt"
    filelist.write_text(f"{sixteen}|some text\n{fortyeight}\n{corrupt}\n")
    out = root / "report"
    result = CliRunner().invoke(evaluate_command, [
        "--filelist", str(filelist), "--ae-model", str(tiny_generator), "--ae-config", str(TINY_CONFIG),
        "--vocoder", str(small_vocoder), "--device", "cpu", "--out", str(out), "--workers", "1",
        "--no-progress", "--plots", "--examples", "1", "--html", "--report-audio", "wav", "--players", "1"])
    return {"out": out, "result": result, "sources": [sixteen, fortyeight],
            "ae_model": tiny_generator, "vocoder": small_vocoder}


def _rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return {row["file"]: row for row in reader}


def test_both_renderings_are_scored_and_summarised(run):
    out, result = run["out"], run["result"]
    assert result.exit_code == 1, result.output  # the corrupt file
    model_rows, ceiling_rows = _rows(out / "metrics.csv"), _rows(out / "copy_synthesis" / "metrics.csv")
    assert set(model_rows) == set(ceiling_rows) and len(model_rows) == 3
    broken = next(r for name, r in model_rows.items() if name.endswith("broken.wav"))
    assert "not a readable audio file" in broken["error"] and broken["pesq_wb"] == ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 3 and summary["files_with_errors"] >= 1
    assert summary["copy_synthesis"] == json.loads((out / "copy_synthesis" / "summary.json").read_text())
    assert "DCAE reconstruction" in result.stdout and "copy-synthesis (ceiling)" in result.stdout
    assert (out / "plots" / "hist_mel_distance.png").is_file()


def test_rendered_audio_is_what_the_models_produce(run):
    from dcae.audio import load_audio
    from dcae.pipeline import DCAEInferenceWrapper

    wrapper = DCAEInferenceWrapper(str(run["ae_model"]), str(TINY_CONFIG), str(run["vocoder"]),
                                   device="cpu")
    source = run["sources"][1]
    audio = load_audio(source, 22050)[None]
    with torch.inference_mode():
        expected = {"reconstructed": wrapper(audio, 22050)[0].numpy(),
                    "copy_synthesis": wrapper.vocoder_model(wrapper.transform(audio))[0].numpy()}
    name = next(n for n in _rows(run["out"] / "metrics.csv") if n.endswith(source.name))
    for folder, wave in expected.items():
        written, rate = sf.read(str(run["out"] / "audio" / folder / Path(name).with_suffix(".wav")))
        assert rate == 22050 and written.size == wave.size
        assert np.abs(written - np.clip(wave, -1, 1)).max() <= 1.0 / 32767 + 1e-6  # 16-bit WAV


def test_wav_listening_page_links_the_rendered_files(run):
    """With --report-audio wav the page plays the WAVs that were scored (no copies); the sources are copied."""
    import re
    from urllib.parse import unquote

    out = run["out"]
    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'data-src="([^"]*)"', page)
    assert len(sources) == 3 * len(run["sources"])
    linked = [unquote(s) for s in sources if s.startswith("audio/")]
    assert sorted(Path(s).parts[1] for s in linked) == sorted(["reconstructed", "copy_synthesis"] * len(run["sources"]))
    copies = [unquote(s) for s in sources if s.startswith("report_files/")]
    assert len(copies) == len(run["sources"]) and all(s.endswith("/reference.wav") for s in copies)
    assert all((out / s).is_file() for s in linked + copies)
    assert "BigVGAN copy-synthesis (ceiling)" in page and 'class="ceil"' in page


def test_files_that_would_share_a_reconstruction_are_refused_first(speech_files, tmp_path):
    """x.wav and x.flac in one filelist would both be reconstructed as x.wav: refused before any model loads."""
    from dcae.cli.evaluate import evaluate_command

    source = next(p for p in speech_files if sf.info(str(p)).samplerate == 16000)
    audio, rate = sf.read(str(source))
    folder = tmp_path / "corpus"
    folder.mkdir()
    sf.write(str(folder / "x.wav"), audio, rate)
    sf.write(str(folder / "x.flac"), audio, rate)
    filelist = tmp_path / "test.txt"
    filelist.write_text(f"{folder / 'x.wav'}\n{folder / 'x.flac'}\n")
    result = CliRunner().invoke(evaluate_command, ["--filelist", str(filelist), "--ae-model", str(tmp_path / "none.pt"),
                                                   "--out", str(tmp_path / "report"), "--no-progress"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "x.flac" in lines[0] and "x.wav" in lines[0], result.output
    assert not (tmp_path / "report").exists()
