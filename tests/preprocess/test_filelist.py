"""Filelist reading/writing and the filelist tool on a folder tree with bad and short files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dcae.cli.filelist import filelist_command
from preprocess.filelist import FilelistEntry, FilelistError, read_filelist, write_filelist
from preprocess.scan import default_val_path, split_train_val
from tests.conftest import REPO

SR = 16000


def test_roundtrip_keeps_text_and_resolves_relative_paths(tmp_path):
    entries = [FilelistEntry(Path("spk/a.wav"), "Hello | world"), FilelistEntry(Path("/abs/b.flac"))]
    write_filelist(tmp_path / "list.txt", entries)
    (tmp_path / "list.txt").write_text((tmp_path / "list.txt").read_text() + "\n  \n")  # blank lines are skipped
    read = read_filelist(tmp_path / "list.txt")
    assert read == [FilelistEntry(tmp_path / "spk/a.wav", "Hello | world"), FilelistEntry(Path("/abs/b.flac"))]
    assert read_filelist(tmp_path / "list.txt", root="/data")[0].path == Path("/data/spk/a.wav")


def test_speaker_field_after_the_last_separator(tmp_path):
    (tmp_path / "l.txt").write_text("a.wav|hello|spk1\nb.wav||p225\nc.wav|x | y|\nd.wav|plain text\n")
    got = [(e.path.name, e.text, e.speaker) for e in read_filelist(tmp_path / "l.txt")]
    assert got == [("a.wav", "hello", "spk1"), ("b.wav", None, "p225"), ("c.wav", "x | y", None),
                   ("d.wav", "plain text", None)]
    entries = [FilelistEntry(Path("/a.wav"), "hi | there", "s1"), FilelistEntry(Path("/b.wav"), None, "s2"),
               FilelistEntry(Path("/c.wav"), "a|b")]
    write_filelist(tmp_path / "w.txt", entries)
    assert (tmp_path / "w.txt").read_text() == "/a.wav|hi | there|s1\n/b.wav||s2\n/c.wav|a|b|\n"
    assert read_filelist(tmp_path / "w.txt") == entries
    with pytest.raises(FilelistError, match="speaker id"):
        write_filelist(tmp_path / "bad.txt", [FilelistEntry(Path("/a.wav"), "t", "a|b")])


def test_empty_transcript_is_kept_distinct_from_no_transcript(tmp_path):
    (tmp_path / "l.txt").write_text("a.wav|\nb.wav\n")
    assert [e.text for e in read_filelist(tmp_path / "l.txt")] == ["", None]


@pytest.mark.parametrize("content, reason", [(b"|text without path\n", "line 1 has text but no audio path"),
                                             (b"\xff\xfe bad", "not UTF-8")])
def test_bad_filelists_give_one_line_errors(tmp_path, content, reason):
    (tmp_path / "l.txt").write_bytes(content)
    with pytest.raises(FilelistError, match=reason) as info:
        read_filelist(tmp_path / "l.txt")
    assert str(tmp_path / "l.txt") in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FilelistError, match="not found"):
        read_filelist(tmp_path / "missing.txt")


def test_write_rejects_separator_in_path(tmp_path):
    with pytest.raises(FilelistError, match="cannot contain"):
        write_filelist(tmp_path / "l.txt", ["/a|b.wav"])
    assert not (tmp_path / "l.txt").exists()


@pytest.fixture()
def audio_tree(tmp_path) -> Path:
    """long.wav (3 s), nested FLAC (2 s, upper-case extension), short (0.25 s), corrupt, empty, silent,
    a name with the filelist separator, a .txt."""
    root = tmp_path / "corpus"
    for sub in ("a/b/c", "d"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(root / "a/long.wav", 0.1 * rng.standard_normal(3 * SR), SR)
    sf.write(root / "a/b/c/nested.FLAC", 0.1 * rng.standard_normal(2 * SR), SR, format="FLAC")
    sf.write(root / "d/short.wav", 0.1 * rng.standard_normal(SR // 4), SR)
    sf.write(root / "d/silent.wav", np.zeros(2 * SR), SR)
    sf.write(root / "d/bar|in name.wav", 0.1 * rng.standard_normal(2 * SR), SR)  # cannot go in a filelist
    (root / "d/corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 50)
    (root / "d/empty.mp3").write_bytes(b"")
    (root / "d/readme.txt").write_text("not audio")
    return root


def _run(args: list[str]):
    return CliRunner().invoke(filelist_command, [*args, "--no-progress", "--workers", "2"])


def test_tool_keeps_valid_files_and_reports_counts(audio_tree, tmp_path):
    out = tmp_path / "lists" / "train.txt"
    result = _run(["--paths", str(audio_tree / "a"), str(audio_tree / "d"), "--out", str(out), "--min-duration", "1"])
    assert result.exit_code == 0, result.output  # leaving corrupt files out is the tool's job, not a failure
    listed = [e.path for e in read_filelist(out)]
    expected = sorted(p.resolve() for p in (audio_tree / "a/long.wav", audio_tree / "a/b/c/nested.FLAC",
                                            audio_tree / "d/silent.wav"))
    assert listed == expected
    assert "3 valid" in result.output and "3 corrupt" in result.output and "1 shorter than 1 s" in result.output
    assert "0.00 h = 7 s" in result.output  # 3 + 2 + 2 seconds
    assert "corrupt.wav" in result.stderr and "empty file (0 bytes)" in result.stderr
    assert "bar|in name.wav: path contains '|'" in result.stderr
    assert not (out.parent / "train.txt.partial").exists()


def test_decode_rejects_silence_and_min_duration_zero_keeps_short(audio_tree, tmp_path):
    out = tmp_path / "all.txt"
    result = _run([str(audio_tree), "--out", str(out), "--min-duration", "0", "--decode", "--exts", "wav,flac"])
    names = sorted(e.path.name for e in read_filelist(out))
    assert names == ["long.wav", "nested.FLAC", "short.wav"]
    assert "silent audio" in result.stderr and result.exit_code == 0


def test_all_good_files_exit_zero(audio_tree, tmp_path):
    result = _run(["--paths", str(audio_tree / "a"), "--out", str(tmp_path / "l.txt"), "--min-duration", "0"])
    assert result.exit_code == 0, result.output
    assert len(read_filelist(tmp_path / "l.txt")) == 2


def test_validation_split_is_disjoint_and_seeded(audio_tree, tmp_path):
    paths = [Path(f"/x/{i}.wav") for i in range(100)]
    train, val = split_train_val(paths, 0.1, seed=3)
    assert len(val) == 10 and not set(train) & set(val) and sorted(train + val) == sorted(paths)
    assert split_train_val(paths, 0.1, seed=3) == (train, val)
    assert split_train_val(paths, 0.1, seed=4)[1] != val
    out = tmp_path / "train.txt"
    _run([str(audio_tree), "--out", str(out), "--min-duration", "0", "--val-fraction", "0.3", "--seed", "1"])
    train_list, val_list = read_filelist(out), read_filelist(tmp_path / "val.txt")  # the README's names
    assert len(val_list) == 1 and len(train_list) == 3
    other = _run([str(audio_tree / "a"), "--out", str(tmp_path / "libri_train.txt"), "--min-duration", "0",
                  "--val-fraction", "0.5"])
    assert f"1 validation files to {tmp_path / 'libri_val.txt'}" in other.output
    assert default_val_path(Path("lists/train.txt")) == Path("lists/val.txt")
    assert default_val_path(Path("lists/libri_train.txt")) == Path("lists/libri_val.txt")
    assert default_val_path(Path("lists/all.txt")) == Path("lists/all_val.txt")


def test_exit_code_says_only_whether_a_filelist_was_made(audio_tree, tmp_path):
    """Non-zero only when nothing valid was found or the filelist could not be written."""
    nothing = _run([str(audio_tree / "d" / "corrupt.wav"), "--out", str(tmp_path / "none.txt"), "--min-duration", "0"])
    assert nothing.exit_code == 1 and "error: no valid audio files" in nothing.output
    (tmp_path / "file").write_text("")
    unwritable = _run([str(audio_tree / "a"), "--out", str(tmp_path / "file" / "l.txt"), "--min-duration", "0"])
    assert unwritable.exit_code == 1 and f"error: {tmp_path / 'file' / 'l.txt'}: cannot write" in unwritable.output
    assert "Traceback" not in unwritable.output


def test_script_runs_by_path_with_reference_flags(audio_tree, tmp_path):
    out = tmp_path / "l.txt"
    done = subprocess.run([sys.executable, str(REPO / "preprocess" / "generate_filelist.py"), "--paths",
                           str(audio_tree / "a"), str(audio_tree / "d" / "short.wav"), "--out", str(out),
                           "--min-duration", "0.5", "--workers", "1", "--flush-every", "1", "--no-progress"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 valid" in done.stdout and "1 shorter than 0.5 s" in done.stdout
    assert len(read_filelist(out)) == 2
