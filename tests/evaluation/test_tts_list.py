"""``dcae evaluate --tts-list LIST --generated DIR``: a Seed-TTS-eval list made from the fetched speech
(recordings stand in for generated speech), every line scored, bad lines and missing files named, the
numbers equal direct calls of the models and of jiwer. The ASR is a tiny random Whisper (plumbing only:
its transcripts are meaningless; the real model's command is in docs/evaluation.md)."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from evaluation import mos, speaker
from evaluation.metrics import resample_to
from tests.conftest import text_from_name
from tests.evaluation.tiny_models import tiny_whisper, tiny_xvector
from tests.tts_runs import one_line_error

pytestmark = pytest.mark.skipif(speaker.encoder_available() or mos.mos_available(),
                                reason=f"{speaker.encoder_available() or mos.mos_available()}")


@pytest.fixture(scope="module")
def test_set(speech_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tts_list")
    files = [p for p in sorted((speech_dir / "en").glob("*.wav")) if 1.5 < sf.info(str(p)).duration < 5.0][:6]
    (root / "prompt-wavs").mkdir()
    (root / "generated").mkdir()
    lines = []
    for index, path in enumerate(files):
        prompt = files[(index + 1) % len(files)]
        shutil.copy(prompt, root / "prompt-wavs" / f"p{index}.wav")
        generated = root / "generated" / f"utt{index}.wav"
        if index == 0:  # a 22.05 kHz "generated" file: resampled for every model
            audio, rate = sf.read(str(path))
            sf.write(generated, resample_to(audio, rate, 22050), 22050)
        else:
            shutil.copy(path, generated)
        lines.append(f"utt{index}|{text_from_name(prompt)}|prompt-wavs/p{index}.wav|{text_from_name(path)}")
    lines += ["short|three|fields", "utt_missing|x|prompt-wavs/p0.wav|no audio was made for this line",
              "noprompt|x|prompt-wavs/none.wav|the prompt is missing"]
    (root / "meta.lst").write_text("\n".join(lines) + "\n")
    return {"root": root, "list": root / "meta.lst", "generated": root / "generated", "good": len(files),
            "whisper": tiny_whisper(root / "whisper"), "xvector": tiny_xvector(root / "xvector")}


def _run(args):
    from dcae.cli.evaluate import evaluate_command

    return CliRunner().invoke(evaluate_command, [*args, "--no-progress"], catch_exceptions=False)


def _rows(out):
    with open(out / "metrics.csv", newline="") as f:
        return {r["file"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def scored(test_set):
    out = test_set["root"] / "report"
    result = _run(["--tts-list", str(test_set["list"]), "--generated", str(test_set["generated"]),
                   "--asr", str(test_set["whisper"]), "--out", str(out), "--workers", "2"])
    return result, out


def test_every_line_scored_and_bad_lines_named(scored, test_set):
    result, out = scored
    assert result.exit_code == 1, result.output  # bad lines and a missing file
    rows = _rows(out)
    good = [f"utt{i}" for i in range(test_set["good"])]
    for name in good:
        assert rows[name]["error"] == "", rows[name]
        assert all(rows[name][m] != "" for m in ("wer", "sim", "mos", "word_errors", "reference_words"))
    assert rows["utt_missing"]["error"].startswith("no generated file")
    assert "short" not in rows and "noprompt" not in rows
    assert f"{test_set['list']}:{test_set['good'] + 1} (short): 3 fields, expected 4 or 5" in result.output
    assert f"{test_set['list']}:{test_set['good'] + 3} (noprompt): prompt audio" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing_generated"] == ["utt_missing"] and len(summary["bad_lines"]) == 2
    assert "DistillMOS" in summary["models"]["mos"] and "resemblyzer" in summary["models"]["sim"].lower()
    assert summary["models"]["asr"].startswith(str(test_set["whisper"]))
    assert "mos ↑" in result.output and "WER " in result.output


def test_wer_is_jiwer_on_the_normalised_texts_and_the_corpus_rate_sums_errors(scored, test_set):
    import jiwer

    from evaluation import wer

    _, out = scored
    rows = [r for r in _rows(out).values() if r["wer"] != ""]
    normalize = wer.normalizer("whisper", "en", {"colour": "color"})
    for row in rows:
        reference, hypothesis = normalize(row["target_text"]), normalize(row["transcript"])
        errors = int(row["word_errors"])
        assert int(row["reference_words"]) == len(reference.split())
        if hypothesis.strip():
            direct = jiwer.process_words(reference, hypothesis)
            assert errors == direct.substitutions + direct.deletions + direct.insertions
        else:
            assert errors == len(reference.split())
        assert float(row["wer"]) == pytest.approx(errors / int(row["reference_words"]))
    figures = json.loads((out / "summary.json").read_text())["wer"]
    total_errors = sum(int(r["word_errors"]) for r in rows)
    total_words = sum(int(r["reference_words"]) for r in rows)
    assert (figures["errors"], figures["reference_units"]) == (total_errors, total_words)
    assert figures["corpus"] == pytest.approx(total_errors / total_words)
    assert figures["utterance_mean"] == pytest.approx(np.mean([float(r["wer"]) for r in rows]))
    assert figures["normalizer"] == "whisper" and figures["unit"] == "word"


def test_sim_and_mos_equal_direct_calls(scored, test_set):
    _, out = scored
    rows = _rows(out)
    lines = {line.split("|")[0]: line.split("|") for line in test_set["list"].read_text().splitlines()}
    for name in ("utt0", "utt1"):
        generated, rate = sf.read(str(test_set["generated"] / f"{name}.wav"))
        prompt, prompt_rate = sf.read(str(test_set["root"] / lines[name][2]))
        expected_sim = speaker.speaker_similarity(resample_to(prompt, prompt_rate, 16000),
                                                  resample_to(generated, rate, 16000), 16000)
        assert float(rows[name]["sim"]) == pytest.approx(expected_sim, abs=1e-5)
        assert float(rows[name]["mos"]) == pytest.approx(mos.predict_mos(generated, rate), abs=1e-5)


def test_another_speaker_model_and_no_asr(test_set, tmp_path):
    from tts.speakers.verification import load_verifier

    out = tmp_path / "report"
    result = _run(["--tts-list", str(test_set["list"]), "--generated", str(test_set["generated"]), "--out", str(out),
                   "--workers", "1", "--sim-model", str(test_set["xvector"]), "--no-mos"])
    assert result.exit_code == 1, result.output
    row = _rows(out)["utt1"]
    assert row["wer"] == "" and row["mos"] == "" and row["sim"] != ""
    verifier = load_verifier(str(test_set["xvector"]))
    prompt, _ = sf.read(str(test_set["root"] / "prompt-wavs" / "p1.wav"), dtype="float32")
    generated, _ = sf.read(str(test_set["generated"] / "utt1.wav"), dtype="float32")
    import torch

    a, b = (verifier.embed(torch.from_numpy(x)).numpy() for x in (prompt, generated))
    assert float(row["sim"]) == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wer"] is None and "x-vector" in summary["models"]["sim"]


@pytest.mark.parametrize("extra, fragments", [
    (["--language", "zh"], ("--language does not apply without --asr",)),
    (["--examples", "2", "--plots"], ("--examples does not apply to --tts-list",)),
    (["--ae-model", "g.pt"], ("--ae-model does not apply to --tts-list",)),
    (["--exts", "wav"], ("--exts does not apply",)),
    (["--no-sim", "--sim-model", "resemblyzer"], ("--sim-model does not apply with --no-sim",)),
    (["--asr", "someone/no-such-model"], ("not in the Hugging Face cache", "hf download someone/no-such-model")),
])
def test_refusals_are_one_line(test_set, tmp_path, extra, fragments):
    result = _run(["--tts-list", str(test_set["list"]), "--generated", str(test_set["generated"]),
                   "--out", str(tmp_path / "r"), *extra])
    one_line_error(result, *fragments)
    assert not (tmp_path / "r").exists()


def test_mode_refusals(test_set, tmp_path):
    one_line_error(_run(["--tts-list", str(test_set["list"]), "--out", str(tmp_path / "r")]), "needs --generated")
    one_line_error(_run(["--ref", str(tmp_path), "--deg", str(tmp_path), "--asr", "x", "--out", str(tmp_path / "r")]),
                   "--asr does not apply without --tts-list")
    one_line_error(_run(["--tts-list", str(test_set["list"]), "--generated", str(test_set["generated"]),
                         "--filelist", str(test_set["list"]), "--out", str(tmp_path / "r")]), "give one of")
    empty = tmp_path / "empty.lst"
    empty.write_text("# nothing\n")
    one_line_error(_run(["--tts-list", str(empty), "--generated", str(test_set["generated"]),
                         "--out", str(tmp_path / "r")]), "the test list has no lines")
