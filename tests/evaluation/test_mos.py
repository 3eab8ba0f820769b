"""Predicted MOS (DistillMOS) on real recorded speech: it ranks clean above band-limited above noisy, and
the ``mos`` column of ``dcae evaluate`` is the package's own model's number for the same file."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from click.testing import CliRunner

from evaluation import mos

pytestmark = pytest.mark.skipif(mos.mos_available() is not None, reason=f"{mos.mos_available()}")


def _utterances(speech_dir, count: int) -> list:
    files = [p for p in sorted((speech_dir / "en").glob("*.wav")) if 2.0 < sf.info(str(p)).duration < 8.0][:count]
    if len(files) < count:
        pytest.skip(f"fewer than {count} recordings of 2-8 s in {speech_dir / 'en'}")
    return files


def _band_limited(audio: np.ndarray, rate: int) -> np.ndarray:
    sos = scipy.signal.butter(8, [300, 3000], btype="bandpass", fs=rate, output="sos")
    return scipy.signal.sosfiltfilt(sos, audio)


def _noisy(audio: np.ndarray, rng: np.random.Generator, snr_db: float = 5.0) -> np.ndarray:
    noise = rng.standard_normal(audio.size)
    return audio + noise * np.sqrt(np.mean(audio ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))


def test_clean_scores_above_band_limited_above_noisy(speech_dir):
    rng = np.random.default_rng(0)
    scores = []
    for path in _utterances(speech_dir, 16):
        audio, rate = sf.read(str(path))
        scores.append([mos.predict_mos(x, rate) for x in (audio, _band_limited(audio, rate), _noisy(audio, rng))])
    scores = np.array(scores)
    clean, band, noisy = scores.T
    assert ((clean > band) & (clean > noisy)).mean() >= 0.8, scores
    assert clean.mean() > band.mean() > noisy.mean(), scores.mean(axis=0)
    assert np.all((scores >= 1.0) & (scores <= 5.0))


def test_cli_column_equals_the_packages_own_model(speech_dir, tmp_path):
    """16 kHz files (no resampling on either side); the package's model as its README uses it."""
    from dcae.cli.evaluate import evaluate_command
    from dcae.torchaudio_stand_in import import_without_torchaudio

    rng = np.random.default_rng(1)
    for folder in ("ref", "deg"):
        (tmp_path / folder).mkdir()
    for path in _utterances(speech_dir, 3):
        audio, rate = sf.read(str(path))
        assert rate == mos.MOS_RATE
        sf.write(tmp_path / "ref" / path.name, audio, rate)
        sf.write(tmp_path / "deg" / path.name, _noisy(audio, rng, 15.0), rate, subtype="FLOAT")
    result = CliRunner().invoke(evaluate_command, ["--ref", str(tmp_path / "ref"), "--deg", str(tmp_path / "deg"),
                                                   "--out", str(tmp_path / "report"), "--workers", "1",
                                                   "--no-progress", "--no-sim"])
    assert result.exit_code == 0, result.output
    assert "mos ↑" in result.output
    with open(tmp_path / "report" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    distillmos = import_without_torchaudio("distillmos")
    model = distillmos.ConvTransformerSQAModel().eval()
    for row in rows:
        audio, _ = sf.read(str(tmp_path / "deg" / row["file"]), dtype="float32")
        with torch.no_grad():
            expected = float(model(torch.from_numpy(audio)[None]).item())
        assert float(row["mos"]) == pytest.approx(expected, abs=1e-5)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert "DistillMOS" in summary["models"]["mos"] and summary["metrics"]["mos"]["count"] == len(rows)


def test_no_mos_leaves_the_column_empty(speech_dir, tmp_path):
    from dcae.cli.evaluate import evaluate_command

    path = _utterances(speech_dir, 1)[0]
    for folder in ("ref", "deg"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / path.name, *sf.read(str(path))[::-1][::-1])
    result = CliRunner().invoke(evaluate_command, ["--ref", str(tmp_path / "ref"), "--deg", str(tmp_path / "deg"),
                                                   "--out", str(tmp_path / "report"), "--workers", "1",
                                                   "--no-progress", "--no-sim", "--no-mos"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "report" / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["mos"] == "" and row["pesq_wb"] != ""
    assert "mos" not in json.loads((tmp_path / "report" / "summary.json").read_text())["metrics"]


def test_silent_signal_is_refused():
    with pytest.raises(mos.MetricError, match="non-silent"):
        mos.predict_mos(np.zeros(16000), 16000)


def test_dnsmos_column_equals_speechmos_and_ranks_clean_above_noisy(speech_dir, tmp_path):
    """--mos-model dnsmos: the column is speechmos's own DNSMOS OVRL for the same 16 kHz file."""
    pytest.importorskip("speechmos", reason='DNSMOS needs the [mos] extra: pip install "dc-speech-vae[mos]"')
    from speechmos import dnsmos

    from dcae.cli.evaluate import evaluate_command

    rng = np.random.default_rng(2)
    for folder in ("ref", "deg"):
        (tmp_path / folder).mkdir()
    sources = _utterances(speech_dir, 3)
    for path in sources:
        audio, rate = sf.read(str(path))
        sf.write(tmp_path / "ref" / path.name, audio, rate, subtype="FLOAT")
        sf.write(tmp_path / "deg" / path.name, np.clip(_noisy(audio, rng), -1, 1), rate, subtype="FLOAT")
    out = tmp_path / "report"
    result = CliRunner().invoke(evaluate_command, ["--ref", str(tmp_path / "ref"), "--deg", str(tmp_path / "deg"),
                                                   "--out", str(out), "--workers", "2", "--no-progress", "--no-sim",
                                                   "--mos-model", "dnsmos"])
    assert result.exit_code == 0, result.output
    with open(out / "metrics.csv", newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    for path in sources:
        noisy, rate = sf.read(str(tmp_path / "deg" / path.name), dtype="float32")
        assert float(rows[path.name]["mos"]) == pytest.approx(float(dnsmos.run(noisy, rate)["ovrl_mos"]), abs=1e-4)
        clean, _ = sf.read(str(tmp_path / "ref" / path.name), dtype="float32")
        assert float(dnsmos.run(clean, rate)["ovrl_mos"]) > float(rows[path.name]["mos"])
    assert "DNSMOS" in json.loads((out / "summary.json").read_text())["models"]["mos"]
