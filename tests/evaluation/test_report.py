"""``dcae evaluate --html``: the page and its files (the browser test is test_evaluation_report_browser.py),
and flags that do not apply to the mode given are refused in one line."""
from __future__ import annotations

import csv
import html
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dcae.cli.evaluate import evaluate_command

URL_ATTRIBUTES = re.compile(r'(?:src|href|data-src)="([^"]*)"')


def _noisy(clean: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.size)
    return clean + noise * np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))


def make_folders(speech_files, root: Path) -> list[Path]:
    """Three 16 kHz and one 48 kHz utterance at different SNRs (one in a sub-folder, one with a
    '#' in its name), a silent reference, and one file on each side without a partner."""
    sixteen = [p for p in speech_files if sf.info(str(p)).samplerate == 16000 and 1.5 < sf.info(str(p)).duration < 4][:3]
    fortyeight = [p for p in speech_files if sf.info(str(p)).samplerate == 48000][:1]
    names = []
    for index, source in enumerate(sixteen + fortyeight):
        clean, rate = sf.read(str(source))
        name = {0: f"sub/{source.name}", 1: f"take #1 {source.name}"}.get(index, source.name)
        for folder, audio in (("ref", clean), ("deg", _noisy(clean, 3 + 6 * index, index))):
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), audio, rate, subtype="FLOAT")
        names.append(name)
    sf.write(str(root / "ref" / "silent.wav"), np.zeros(16000), 16000)
    sf.write(str(root / "deg" / "silent.wav"), 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    sf.write(str(root / "ref" / "only_ref.wav"), np.zeros(1600), 16000)
    sf.write(str(root / "deg" / "only_deg.wav"), np.zeros(1600), 16000)
    return names


@pytest.fixture(scope="module")
def report(speech_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("html_report")
    names = make_folders(speech_files, root)
    out = root / "out"
    (out / "report_files").mkdir(parents=True)
    (out / "report_files" / "stale.mp3").write_bytes(b"from an earlier run")
    result = CliRunner().invoke(evaluate_command, ["--ref", str(root / "ref"), "--deg", str(root / "deg"), "--out",
                                                   str(out), "--workers", "2", "--no-progress", "--html",
                                                   "--players", "2"])
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"root": root, "out": out, "result": result, "names": names, "rows": rows,
            "page": (out / "report.html").read_text(encoding="utf-8")}


def test_page_is_written_and_refers_only_to_files_inside_the_report(report):
    out, page = report["out"], report["page"]
    assert report["result"].exit_code == 1  # the silent file and the unpartnered ones
    assert f"listening page: {out / 'report.html'}" in report["result"].stdout
    assert "http://" not in page and "https://" not in page and "//" not in re.sub(r"(?s)<script>.*?</script>", "", page)
    urls = [u for u in URL_ATTRIBUTES.findall(page) if not u.startswith(("#", "data:"))]
    assert len(urls) > 10
    for url in urls:
        assert not re.match(r"^[a-z]+:", url) and not url.startswith("/"), url
        target = (out / unquote(url)).resolve()
        assert target.is_file() and target.is_relative_to(out.resolve()), url
    assert not (out / "report_files" / "stale.mp3").exists()  # the folder is replaced on every run


def test_one_row_per_file_worst_first(report):
    page, rows = report["page"], report["rows"]
    table_rows = re.findall(r'<tr data-file="([^"]*)"', page)
    assert sorted(table_rows) == sorted(r["file"] for r in rows) and len(rows) == 5
    scored = sorted((r for r in rows if r["pesq_wb"]), key=lambda r: float(r["pesq_wb"]))
    assert table_rows == [r["file"] for r in scored] + [r["file"] for r in rows if not r["pesq_wb"]]
    assert 'data-sort-key="pesq_wb"' in page and 'data-players="2"' in page


def test_summary_shows_mean_and_95_interval(report):
    from scipy import stats

    values = np.array([float(r["stoi"]) for r in report["rows"] if r["stoi"]])
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    assert f"[{values.mean() - half:.3f}, {values.mean() + half:.3f}]" in report["page"]
    assert f"<td class=\"num\">{values.mean():.3f}</td>" in report["page"]
    assert report["page"].count('<img src="report_files/histograms/hist_') >= 6


def test_problems_are_listed_with_reasons(report):
    page = report["page"]
    problems = page[page.index('id="problems"'):]
    assert "silent.wav" in problems and "reference is silent" in problems
    assert "only_ref.wav" in problems and "no degraded file for this reference" in problems
    assert "only_deg.wav" in problems and "no reference for this degraded file" in problems


def test_report_audio_is_the_audio_that_was_scored(report):
    """Each MP3 copy decodes to the source's length (within the codec's padding) and waveform
    (a lossy copy of 3 dB-SNR white noise keeps a correlation of ~0.98; another file would give ~0)."""
    from dcae.audio import load_audio

    out, root = report["out"], report["root"]
    page = report["page"]
    for name in report["names"]:
        row = page[page.index(f'<tr data-file="{html.escape(name)}"'):]
        row = row[:row.index("</tr>")]
        srcs = re.findall(r'data-src="([^"]*)"', row)
        assert [Path(unquote(s)).name for s in srcs] == ["reference.mp3", "degraded.mp3"]
        for src, folder in zip(srcs, ("ref", "deg")):
            original, rate = sf.read(str(root / folder / name))
            copy = load_audio(out / unquote(src), rate).numpy()
            assert abs(copy.size - original.size) < 0.06 * rate, (name, copy.size, original.size)
            # MP3 delays the signal by its encoder padding: compare at the best lag
            lag = int(np.argmax(np.correlate(copy[: rate // 2 + 4000], original[: rate // 2], "valid")))
            n = min(original.size, copy.size - lag)
            correlation = np.corrcoef(copy[lag:lag + n], original[:n])[0, 1]
            assert correlation > 0.95, (name, folder, correlation)


def test_wav_report_audio_keeps_the_samples(speech_files, tmp_path):
    make_folders(speech_files, tmp_path)
    shutil.rmtree(tmp_path / "ref" / "sub"), shutil.rmtree(tmp_path / "deg" / "sub")
    out = tmp_path / "out"
    result = CliRunner().invoke(evaluate_command, ["--ref", str(tmp_path / "ref"), "--deg", str(tmp_path / "deg"),
                                                   "--out", str(out), "--workers", "1", "--no-progress", "--html",
                                                   "--report-audio", "wav", "--no-sim"])
    assert result.exit_code == 1, result.output
    page = (out / "report.html").read_text(encoding="utf-8")
    src = next(s for s in re.findall(r'data-src="([^"]*)"', page) if s.endswith("/reference.wav"))
    name = re.search(rf'<tr data-file="([^"]*)"[^>]*>(?:(?!</tr>).)*{re.escape(src)}', page, re.S).group(1)
    original, rate = sf.read(str(tmp_path / "ref" / name))
    copy, copy_rate = sf.read(str(out / unquote(src)))
    assert copy_rate == rate and np.abs(copy - np.clip(original, -1, 1)).max() <= 1 / 32767 + 1e-6
    assert "SIM not computed (--no-sim)" in page and "SIM ↑" not in page


@pytest.mark.parametrize("args, message", [
    (["--ae-model", "g.pt"], "error: --ae-model does not apply to --ref/--deg"),
    (["--vocoder", "v", "--precision", "bf16"], "error: --vocoder, --precision do not apply to --ref/--deg"),
    (["--players", "5"], "error: --players does not apply without --html"),
    (["--report-audio", "wav"], "error: --report-audio does not apply without --html"),
    (["--examples", "2"], "error: --examples does not apply without --plots"),
])
def test_flags_that_do_not_apply_are_refused(tmp_path, args, message):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    result = CliRunner().invoke(evaluate_command, ["--ref", str(tmp_path / "a"), "--deg", str(tmp_path / "b"),
                                                   "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and result.stderr.startswith(message), result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_exts_is_refused_with_a_filelist(tmp_path):
    filelist = tmp_path / "list.txt"
    filelist.write_text("a.wav\n")
    result = CliRunner().invoke(evaluate_command, ["--filelist", str(filelist), "--out", str(tmp_path / "o"),
                                                   "--exts", "wav"])
    assert result.exit_code == 2 and result.stderr.startswith("error: --exts does not apply to --filelist")
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_the_speaker_encoder_sim_is_left_empty_or_refused(speech_files, tmp_path, monkeypatch):
    """What a user without the [sim] extra sees: one warning and an empty column; ``--sim``: exit 2."""
    from evaluation import speaker

    reason = "speaker similarity needs the resemblyzer package (No module named 'resemblyzer'); pip install ..."
    monkeypatch.setattr(speaker, "encoder_available", lambda: reason)
    source = next(p for p in speech_files if sf.info(str(p)).samplerate == 16000 and sf.info(str(p)).duration > 1.5)
    clean, rate = sf.read(str(source))
    for folder, audio in (("ref", clean), ("deg", _noisy(clean, 10, 0))):
        (tmp_path / folder).mkdir()
        sf.write(str(tmp_path / folder / "a.wav"), audio, rate)
    args = ["--ref", str(tmp_path / "ref"), "--deg", str(tmp_path / "deg"), "--out", str(tmp_path / "o"),
            "--workers", "1", "--no-progress"]
    refused = CliRunner().invoke(evaluate_command, [*args, "--sim"])
    assert refused.exit_code == 2 and refused.stderr == f"error: {reason}\n"
    result = CliRunner().invoke(evaluate_command, args)
    assert result.exit_code == 0 and result.stderr == f"warning: SIM column left empty: {reason}\n"
    with open(tmp_path / "o" / "metrics.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["sim"] == "" and row["error"] == "" and float(row["pesq_wb"]) > 1
    assert "sim ↑" not in result.stdout
