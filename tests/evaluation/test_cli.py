"""``dcae evaluate --ref --deg`` end to end on real speech with made degradations."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pesq
import pystoi
import pytest
import soundfile as sf
from click.testing import CliRunner
from scipy.signal import butter, resample_poly, sosfiltfilt

from dcae.cli.evaluate import evaluate_command

COLUMNS = ["file", "pesq_wb", "pesq_nb", "stoi", "estoi", "mel_distance", "si_sdr", "sim", "mos", "error"]


def _degrade(clean: np.ndarray, rate: int, condition: str) -> np.ndarray:
    if condition.startswith("snr"):
        noise = np.random.default_rng(7).standard_normal(clean.size)
        snr = float(condition[3:])
        return clean + noise * np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr / 10))
    return sosfiltfilt(butter(8, float(condition[2:]), fs=rate, output="sos"), clean)


CONDITIONS = ("snr20", "snr5", "lp1000")


@pytest.fixture(scope="module")
def report(speech_files, tmp_path_factory):
    """A 16 kHz and a 48 kHz utterance under 3 degradations, a silent pair, and unpartnered files."""
    root = tmp_path_factory.mktemp("eval")
    sixteen = next(p for p in speech_files if sf.info(str(p)).samplerate == 16000 and 2 < sf.info(str(p)).duration < 4)
    fortyeight = next((p for p in speech_files if sf.info(str(p)).samplerate == 48000), None)
    sources = [p for p in (sixteen, fortyeight) if p is not None]
    for condition in CONDITIONS:
        for source in sources:
            clean, rate = sf.read(str(source))
            for folder, audio in (("ref", clean), ("deg", _degrade(clean, rate, condition))):
                path = root / folder / condition / source.name
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(path), audio, rate, subtype="FLOAT")
    sf.write(str(root / "ref" / "silent.wav"), np.zeros(16000), 16000)
    sf.write(str(root / "deg" / "silent.wav"), 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    sf.write(str(root / "ref" / "only_ref.wav"), np.zeros(1600), 16000)
    sf.write(str(root / "deg" / "only_deg.wav"), np.zeros(1600), 16000)
    out = root / "report"
    result = CliRunner().invoke(evaluate_command, ["--ref", str(root / "ref"), "--deg", str(root / "deg"),
                                                   "--out", str(out), "--workers", "2", "--no-progress", "--plots"])
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(out / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    return {"root": root, "out": out, "result": result, "rows": {r["file"]: r for r in rows}, "header": header,
            "summary": json.loads((out / "summary.json").read_text()), "sources": sources}


def test_csv_columns_and_rows(report):
    assert report["header"] == COLUMNS
    expected = {f"{c}/{s.name}" for c in CONDITIONS for s in report["sources"]} | {"silent.wav"}
    assert set(report["rows"]) == expected


def test_cli_pesq_stoi_equal_direct_calls(report):
    for name, row in report["rows"].items():
        if name == "silent.wav":
            continue
        ref, rate = sf.read(str(report["root"] / "ref" / name))
        deg, _ = sf.read(str(report["root"] / "deg" / name))
        wide = [resample_poly(x, 16000 // np.gcd(16000, rate), rate // np.gcd(16000, rate)) for x in (ref, deg)]
        narrow = [resample_poly(x, 8000 // np.gcd(8000, rate), rate // np.gcd(8000, rate)) for x in (ref, deg)]
        direct = {"pesq_wb": pesq.pesq(16000, *wide, "wb"), "pesq_nb": pesq.pesq(8000, *narrow, "nb"),
                  "stoi": pystoi.stoi(ref, deg, rate), "estoi": pystoi.stoi(ref, deg, rate, extended=True)}
        for metric, value in direct.items():
            assert abs(float(row[metric]) - value) < 1e-3, (name, metric, row[metric], value)
        assert row["error"] == ""


def test_cleaner_conditions_score_higher(report):
    for source in report["sources"]:
        row = {c: report["rows"][f"{c}/{source.name}"] for c in CONDITIONS}
        for metric in ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr"):
            assert float(row["snr20"][metric]) > float(row["snr5"][metric]), (source.name, metric)
        assert float(row["snr20"]["mel_distance"]) < float(row["snr5"]["mel_distance"])


def test_silent_file_gets_reason_and_run_goes_on(report):
    silent = report["rows"]["silent.wav"]
    assert silent["error"].startswith("reference is silent") and silent["pesq_wb"] == "" and silent["stoi"] == ""
    assert report["result"].exit_code == 1
    assert "error: silent.wav: reference is silent" in report["result"].stderr


def test_missing_partners_are_listed(report):
    summary, stderr = report["summary"], report["result"].stderr
    assert summary["missing_degraded"] == ["only_ref.wav"] and summary["missing_reference"] == ["only_deg.wav"]
    assert "no degraded file for reference: only_ref.wav" in stderr
    assert "no reference for degraded file: only_deg.wav" in stderr


def test_summary_matches_csv(report):
    rows = report["rows"].values()
    for metric in COLUMNS[1:-1]:
        values = np.array([float(r[metric]) for r in rows if r[metric] != ""])
        stats = report["summary"]["metrics"][metric]
        assert stats["count"] == values.size and stats["errors"] == 1
        assert stats["mean"] == pytest.approx(values.mean()) and stats["median"] == pytest.approx(np.median(values))
        assert stats["std"] == pytest.approx(values.std())
    assert report["summary"]["files"] == len(report["rows"]) and report["summary"]["files_with_errors"] == 1
    assert "pesq_wb ↑" in report["result"].stdout and "mel_distance ↓" in report["result"].stdout


def test_plots_are_written(report):
    plots = report["out"] / "plots"
    assert {p.name for p in plots.glob("hist_*.png")} == {f"hist_{m}.png" for m in COLUMNS[1:-1]}
    mels = sorted(plots.glob("mel_*.png"))
    assert len(mels) == 3 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in mels)


def test_usage_errors_and_module_entry_point(tmp_path):
    runner = CliRunner()
    result = runner.invoke(evaluate_command, ["--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "give --ref and --deg" in result.output
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    result = runner.invoke(evaluate_command, ["--ref", str(tmp_path / "a"), "--deg", str(tmp_path / "b"),
                                              "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no files pair up" in result.output
    done = subprocess.run([sys.executable, "-m", "evaluation", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--ref" in done.stdout and "--ae-model" in done.stdout
