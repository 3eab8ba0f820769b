"""The listening page in a real browser (headless Chromium, driven over the DevTools protocol).

The page of a ``--filelist`` run (tiny DCAE + small BigVGAN, real speech, one corrupt file) is
copied to another folder and opened from disk: it must load without console errors or network
requests, show one row per file, re-order on a click, and every audio element must report a
positive duration. Screenshots are kept in the test's temporary folder (the path is printed).
"""
from __future__ import annotations

import csv
import json
import shutil

import pytest
import soundfile as sf
from click.testing import CliRunner

from tests.conftest import TINY_CONFIG
from tests.headless_chromium import HeadlessChromium, find_chromium

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium "
                                                         "(or set DCAE_CHROMIUM to its binary)")
PLAYERS = 2

AUDIO_DURATIONS = """Promise.all(Array.from(document.querySelectorAll("audio")).map((a) =>
    a.readyState >= 1 ? a.duration : new Promise((resolve) => {
        a.addEventListener("loadedmetadata", () => resolve(a.duration), {once: true});
        a.addEventListener("error", () => resolve(-1), {once: true});
        setTimeout(() => resolve(-2), 20000);
    })))"""
ORDER = 'Array.from(document.querySelectorAll("#files tbody tr")).map((r) => r.dataset.file)'


@pytest.fixture(scope="module")
def copied_report(tiny_generator, small_vocoder, speech_files, tmp_path_factory):
    from dcae.cli.evaluate import evaluate_command

    root = tmp_path_factory.mktemp("browser_report")
    sources = [p for p in speech_files if sf.info(str(p)).samplerate == 16000 and 1.0 < sf.info(str(p)).duration < 2.5][:3]
    sources += [p for p in speech_files if sf.info(str(p)).samplerate == 48000][:1]
    corrupt = root / "corpus" / "broken.wav"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    filelist = root / "test.txt"
    filelist.write_text("".join(f"{p}\n" for p in [*sources, corrupt]))
    out = root / "report"
    result = CliRunner().invoke(evaluate_command, [
        "--filelist", str(filelist), "--ae-model", str(tiny_generator), "--ae-config", str(TINY_CONFIG),
        "--vocoder", str(small_vocoder), "--device", "cpu", "--out", str(out), "--workers", "2", "--no-progress",
        "--html", "--players", str(PLAYERS)])
    assert result.exit_code == 1, result.output  # the corrupt file
    copy = root / "copied elsewhere" / "my report"
    shutil.copytree(out, copy)
    shutil.rmtree(out)  # nothing may point back at the original folder
    with open(copy / "metrics.csv", newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    return {"dir": copy, "rows": rows, "shots": root}


@pytest.fixture(scope="module")
def page(copied_report):
    with HeadlessChromium(CHROMIUM) as browser:
        yield browser.open_page((copied_report["dir"] / "report.html").as_uri())


def test_page_loads_offline_without_console_errors(page, copied_report):
    assert page.evaluate("document.readyState") == "complete"
    assert page.evaluate("document.title").startswith("Listening report")
    urls = [e["request"]["url"] for e in page.events("Network.requestWillBeSent")]
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    assert not page.events("Network.loadingFailed"), page.events("Network.loadingFailed")
    broken = page.evaluate('Array.from(document.images).filter((i) => i.complete && i.naturalWidth === 0).map((i) => i.src)')
    assert broken == []
    assert page.console_errors() == []


def test_one_row_per_file_and_sorting_reorders(page, copied_report):
    rows = copied_report["rows"]
    order = page.evaluate(ORDER)
    assert sorted(order) == sorted(rows) and len(order) == 5
    scored = sorted((n for n in rows if rows[n]["pesq_wb"]), key=lambda n: float(rows[n]["pesq_wb"]))
    assert order == scored + [n for n in rows if not rows[n]["pesq_wb"]]  # worst PESQ-WB first
    page.click('#files th[data-key="mel_distance"] button')  # a real mouse click
    by_mel = page.evaluate(ORDER)
    expected = sorted(scored, key=lambda n: -float(rows[n]["mel_distance"]))  # lower is better: worst = largest
    assert by_mel[:len(expected)] == expected and by_mel != order
    assert page.evaluate('document.getElementById("sort-status").textContent') == "Files by mel L1, worst first"
    page.click('#files th[data-key="mel_distance"] button')  # again: best first
    assert page.evaluate(ORDER)[:len(expected)] == expected[::-1]
    assert page.evaluate('Array.from(document.querySelectorAll("#files td.rank")).map((c) => c.textContent)') == \
        ["1", "2", "3", "4", "5"]
    page.click('#files th[data-key="pesq_wb"] button')
    assert page.evaluate(ORDER) == order


def test_every_player_has_a_positive_duration(page, copied_report):
    labels = ["reference", "reconstruction", "copy-synthesis"]
    assert page.evaluate('document.querySelectorAll("audio").length') == PLAYERS * len(labels)  # the first files only
    durations = page.evaluate(AUDIO_DURATIONS)
    assert len(durations) == PLAYERS * len(labels) and all(d > 0 for d in durations), durations
    # the others load on request: the last scored file's button
    last = page.evaluate(f"{ORDER}.length") - 2  # (the corrupt file is last and has no audio)
    page.click(f"#files tbody tr:nth-child({last + 1}) button.load")
    durations = page.evaluate(AUDIO_DURATIONS)
    assert len(durations) == (PLAYERS + 1) * len(labels) and all(d > 0 for d in durations), durations
    # and they play the file's own audio: the reference player lasts as long as the source
    name = page.evaluate(f"{ORDER}[{last}]")
    source = next(p for p in copied_report["rows"] if p == name)
    row_durations = page.evaluate(f"""Array.from(document.querySelectorAll("#files tbody tr")[{last}]
        .querySelectorAll("audio")).map((a) => [a.title, a.duration])""")
    assert [label for label, _ in row_durations] == labels
    reference_seconds = float(page.evaluate(f"""document.querySelectorAll("#files tbody tr")[{last}]
        .querySelector(".dur").textContent""").split()[0])
    assert abs(row_durations[0][1] - reference_seconds) < 0.15, (source, row_durations, reference_seconds)
    assert page.console_errors() == []


def test_screenshots_for_a_human(page, copied_report):
    shots = copied_report["shots"]
    page.evaluate("window.scrollTo(0, 0)")
    top = page.screenshot(shots / "report_top.png")
    page.evaluate('document.getElementById("files-section").scrollIntoView()')
    files = page.screenshot(shots / "report_files.png")
    print(f"\nscreenshots: {top} {files}")
    for shot in (top, files):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000
    assert json.loads(json.dumps(page.console_errors())) == []


@pytest.fixture(scope="module")
def tts_page(speech_dir, tmp_path_factory):
    """The page of ``dcae evaluate --tts-list`` (recordings stand in for generated speech; one line has no
    generated file), copied elsewhere and opened from disk."""
    from dcae.cli.evaluate import evaluate_command
    from tests.conftest import text_from_name

    root = tmp_path_factory.mktemp("browser_tts")
    files = [p for p in sorted((speech_dir / "en").glob("*.wav")) if 1.5 < sf.info(str(p)).duration < 4.0][:3]
    (root / "generated").mkdir()
    lines = []
    for index, path in enumerate(files):
        shutil.copy(path, root / "generated" / f"utt{index}.wav")
        lines.append(f"utt{index}|prompt|{files[index - 1]}|{text_from_name(path)}")
    lines.append(f"missing|prompt|{files[0]}|no audio for this one")
    (root / "meta.lst").write_text("\n".join(lines) + "\n")
    out = root / "report"
    result = CliRunner().invoke(evaluate_command, ["--tts-list", str(root / "meta.lst"), "--generated",
                                                   str(root / "generated"), "--out", str(out), "--workers", "1",
                                                   "--no-progress", "--html"])
    assert result.exit_code == 1, result.output  # the missing file
    copy = root / "elsewhere" / "tts report"
    shutil.copytree(out, copy)
    shutil.rmtree(out)
    with HeadlessChromium(CHROMIUM) as browser:
        yield browser.open_page((copy / "report.html").as_uri()), [text_from_name(p) for p in files]


def test_tts_list_page_plays_prompt_and_generated_side_by_side(tts_page):
    page, targets = tts_page
    assert page.evaluate("document.readyState") == "complete"
    urls = [e["request"]["url"] for e in page.events("Network.requestWillBeSent")]
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    assert sorted(page.evaluate(ORDER)) == ["missing", "utt0", "utt1", "utt2"]
    headers = page.evaluate('Array.from(document.querySelectorAll("#files th")).map((h) => h.textContent)')
    assert any(h.startswith("SIM") for h in headers) and any(h.startswith("MOS") for h in headers), headers
    shown = page.evaluate('Array.from(document.querySelectorAll("#files td.file .text")).map((t) => t.textContent)')
    assert sorted(shown) == sorted(f"target: {t}" for t in targets + ["no audio for this one"])
    titles = page.evaluate('Array.from(document.querySelectorAll("audio")).map((a) => a.title)')
    assert titles == ["prompt", "generated"] * 3, titles  # every line with generated audio
    durations = page.evaluate(AUDIO_DURATIONS)
    assert len(durations) == 6 and all(d > 0 for d in durations), durations
    assert "no generated file" in page.evaluate('document.getElementById("problems").textContent')
    assert page.console_errors() == []
