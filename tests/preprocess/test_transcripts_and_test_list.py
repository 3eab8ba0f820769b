"""``dcae filelist --transcript-ext EXT`` (transcripts from text files beside the audio) and ``--test-list``
(the held-out part as a Seed-TTS-eval test list whose prompts are other utterances of the same speaker),
and the library functions behind them (:func:`dcae.corpus.test_list.make_test_list`, ``write_test_list``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dcae.cli.filelist import filelist_command
from dcae.corpus.test_list import TestLine, make_test_list, read_test_list, write_test_list
from preprocess.filelist import FilelistEntry, read_filelist

SR = 16000


@pytest.fixture()
def corpus(tmp_path) -> Path:
    """ROOT/{anna,ben}/uN.wav with uN.normalized.txt beside each (anna: 6 files, ben: 4); anna/u9.wav has no
    transcript, ben/u3's is blank; one file of a third speaker (solo) with a transcript."""
    root = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    for speaker, count in (("anna", 6), ("ben", 4), ("solo", 1)):
        (root / speaker).mkdir(parents=True)
        for i in range(count):
            sf.write(root / speaker / f"u{i}.wav", 0.1 * rng.standard_normal(SR + 1600 * i), SR)
            (root / speaker / f"u{i}.normalized.txt").write_text(f"{speaker} says line {i}\nsecond line\n")
    sf.write(root / "anna" / "u9.wav", 0.1 * rng.standard_normal(SR), SR)
    (root / "ben" / "u3.normalized.txt").write_text("  \n")
    return root


def _run(*args: str):
    return CliRunner().invoke(filelist_command, [*args, "--no-progress", "--workers", "1", "--min-duration", "0.5"])


def test_transcripts_beside_the_audio_and_files_without_one_left_out(corpus, tmp_path):
    out = tmp_path / "lists" / "all.txt"
    result = _run("--paths", str(corpus), "--out", str(out), "--transcript-ext", "normalized.txt",
                  "--speaker-from-folder")
    assert result.exit_code == 0, result.output
    entries = {e.path.relative_to(corpus.resolve()).as_posix(): e for e in read_filelist(out)}
    assert "anna/u9.wav" not in entries and "ben/u3.wav" not in entries
    assert len(entries) == 10  # 6 + 4 + 1 with transcripts, less the blank one
    assert entries["ben/u1.wav"] == FilelistEntry((corpus / "ben/u1.wav").resolve(), "ben says line 1 second line",
                                                  "ben")
    assert "2 without a transcript" in result.output


def test_test_list_pairs_each_held_out_utterance_with_another_of_its_speaker(corpus, tmp_path):
    lists = tmp_path / "lists"
    result = _run("--paths", str(corpus), "--out", str(lists / "train.txt"), "--transcript-ext", ".normalized.txt",
                  "--speaker-from-folder", "--val-fraction", "0.5", "--seed", "3", "--test-list",
                  str(lists / "test_list.txt"))
    assert result.exit_code == 0, result.output
    held_out = {e.path: e for e in read_filelist(lists / "val.txt")}
    everything = {**held_out, **{e.path: e for e in read_filelist(lists / "train.txt")}}
    lines, bad = read_test_list(lists / "test_list.txt")
    assert bad == [] and lines
    solo = [e for e in held_out.values() if e.speaker == "solo"]
    assert len(lines) == len(held_out) - len(solo)  # solo has no other utterance to prompt with
    if solo:
        assert "1 with no other utterance of the speaker" in result.output
    for line in lines:
        target, prompt = held_out[line.target_wav], everything[line.prompt_wav]
        assert line.id == line.target_wav.stem or line.id.startswith(line.target_wav.stem + "-")
        assert line.target_text == target.text and line.prompt_text == prompt.text
        assert prompt.speaker == target.speaker and prompt.path != target.path
    # the same seed, the same list
    again = _run("--paths", str(corpus), "--out", str(tmp_path / "again" / "train.txt"), "--transcript-ext",
                 ".normalized.txt", "--speaker-from-folder", "--val-fraction", "0.5", "--seed", "3", "--test-list",
                 str(tmp_path / "again" / "test_list.txt"))
    assert again.exit_code == 0
    assert (tmp_path / "again" / "test_list.txt").read_text() == (lists / "test_list.txt").read_text()


def test_test_list_needs_a_held_out_part_and_transcripts(corpus, tmp_path):
    for args, fragment in ((["--transcript-ext", "txt"], "--val-fraction"), (["--val-fraction", "0.5"], "--transcript-ext")):
        result = _run("--paths", str(corpus), "--out", str(tmp_path / "l.txt"), "--test-list", str(tmp_path / "t.txt"),
                      *args)
        assert result.exit_code == 2 and fragment in result.output, result.output
    assert not (tmp_path / "l.txt").exists()


def test_no_test_line_possible_is_an_error(tmp_path):
    root = tmp_path / "corpus" / "only"
    root.mkdir(parents=True)
    sf.write(root / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(SR), SR)
    (root / "a.txt").write_text("alone")
    result = _run("--paths", str(root.parent), "--out", str(tmp_path / "train.txt"), "--transcript-ext", "txt",
                  "--speaker-from-folder", "--val-fraction", "0.5", "--test-list", str(tmp_path / "t.txt"))
    assert result.exit_code == 1
    assert "no validation utterance could go in the test list (1 with no other utterance of the speaker)" in result.output
    assert not (tmp_path / "t.txt").exists()


def test_make_test_list_prefers_held_out_prompts_of_three_to_ten_seconds(tmp_path):
    def u(name: str, speaker: str | None, text: str | None = "words") -> FilelistEntry:
        return FilelistEntry(tmp_path / name, text, speaker)

    targets = [u("x/a.wav", "s"), u("y/a.wav", "s"), u("b.wav", None), u("c.wav", "s", None), u("d.wav", "s", "a|b")]
    others = [u("long.wav", "s"), u("ok.wav", "s"), u("other.wav", None), u("t.wav", "t")]
    durations = {tmp_path / "x/a.wav": 1.0, tmp_path / "y/a.wav": 1.0, tmp_path / "long.wav": 30.0,
                 tmp_path / "ok.wav": 5.0}
    lines, left_out = make_test_list(targets, others, seed=0, durations=durations)
    assert [line.id for line in lines] == ["a", "a-2", "b"]  # stems, made unique
    assert lines[0].prompt_wav == tmp_path / "y/a.wav" and lines[1].prompt_wav == tmp_path / "x/a.wav"  # held out first
    assert lines[2].prompt_wav == tmp_path / "other.wav"  # no speaker id: the corpus counts as one speaker
    assert left_out == {"no transcript": 2}  # none, and one holding the list's separator
    alone, _ = make_test_list([u("x/a.wav", "s")], others, seed=0, durations=durations)
    assert [line.prompt_wav for line in alone] == [tmp_path / "ok.wav"]  # 5 s preferred to 30 s


def test_write_then_read_round_trip_and_separator_refused(tmp_path):
    (tmp_path / "p.wav").write_bytes(b"x")
    line = TestLine("u1", "prompt words", tmp_path / "p.wav", "target words", tmp_path / "t.wav", 1)
    write_test_list(tmp_path / "list.txt", [line, TestLine("u2", "p", tmp_path / "p.wav", "t", None, 2)])
    lines, bad = read_test_list(tmp_path / "list.txt")
    assert bad == [] and lines[0] == line and lines[1].target_wav is None
    with pytest.raises(ValueError, match="cannot hold"):
        write_test_list(tmp_path / "bad.txt", [TestLine("u|3", "p", tmp_path / "p.wav", "t")])
    assert not (tmp_path / "bad.txt").exists()
