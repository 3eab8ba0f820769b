"""The TTS test-list reader (Seed-TTS-eval's ``id|prompt_text|prompt_wav|target_text[|target_wav]`` lines):
usable lines with their prompt paths resolved, bad lines named by line number and reason, and a file
that cannot be read refused as a whole."""
from __future__ import annotations

from pathlib import Path

import pytest

from dcae.corpus.test_list import TestListError, read_test_list


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_four_and_five_fields_relative_and_absolute_prompts(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a.wav").write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere.wav"
    elsewhere.write_bytes(b"x")
    listing = write(tmp_path / "test.lst",
                    "# a comment\n\n"
                    "u1|the prompt said this|prompts/a.wav|say this now\n"
                    f"u2| other prompt |{elsewhere}|and this|targets/u2.wav\r\n")
    lines, bad = read_test_list(listing)
    assert bad == []
    assert [line.id for line in lines] == ["u1", "u2"]
    first, second = lines
    assert first.prompt_wav == tmp_path / "prompts" / "a.wav" and first.prompt_text == "the prompt said this"
    assert first.target_text == "say this now" and first.target_wav is None and first.lineno == 3
    assert second.prompt_wav == elsewhere and second.prompt_text == "other prompt"
    assert second.target_wav == tmp_path / "targets" / "u2.wav" and second.lineno == 4
    assert first.output_name == "u1.wav"


def test_prompt_paths_are_relative_to_the_list_folder_not_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "p.wav").write_bytes(b"x")
    listing = write(tmp_path / "data" / "test.lst", "u1|t|p.wav|x\n")
    monkeypatch.chdir(tmp_path)
    lines, bad = read_test_list(Path("data/test.lst"))
    assert bad == [] and lines[0].prompt_wav.resolve() == (tmp_path / "data" / "p.wav").resolve()
    assert listing.is_file()


def test_bad_lines_are_named_with_their_line_numbers(tmp_path):
    (tmp_path / "p.wav").write_bytes(b"x")
    listing = write(tmp_path / "test.lst", "\n".join([
        "good|t|p.wav|fine",           # 1
        "short|t|p.wav",               # 2: 3 fields
        "a|b|p.wav|c|d|e",             # 3: 6 fields
        "|t|p.wav|no id",              # 4
        "noted|t|p.wav|  ",            # 5: empty target
        "good|t|p.wav|again",          # 6: repeated id
        "lost|t|missing.wav|x",        # 7: no prompt audio
        "also good|t|p.wav|fine too",  # 8 (an id that is not a plain file name)
    ]) + "\n")
    lines, bad = read_test_list(listing)
    assert [line.id for line in lines] == ["good", "also good"]
    assert lines[1].output_name.endswith(".wav") and " " not in lines[1].output_name
    reasons = {b.lineno: b.reason for b in bad}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert "3 fields" in reasons[2] and "6 fields" in reasons[3]
    assert reasons[4] == "empty id" and reasons[5] == "empty target text"
    assert "repeated" in reasons[6]
    assert "missing.wav" in reasons[7] and "not found" in reasons[7]
    described = {b.lineno: b.describe(listing) for b in bad}
    assert described[6] == f"{listing}:6 (good): {reasons[6]}"
    assert described[4] == f"{listing}:4: empty id"
    # without the file check the missing prompt is not a bad line (scoring reads only the ids and texts)
    lines, bad = read_test_list(listing, check_files=False)
    assert "lost" in [line.id for line in lines] and 7 not in {b.lineno for b in bad}


def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    (tmp_path / "p.wav").write_bytes(b"x")
    listing = tmp_path / "test.lst"
    listing.write_bytes("u1|t|p.wav|x\n".encode("utf-8-sig"))
    lines, bad = read_test_list(listing)
    assert bad == [] and lines[0].id == "u1"


@pytest.mark.parametrize("case", ["missing", "folder", "binary", "empty", "comments"])
def test_unreadable_lists_are_refused_in_one_line(tmp_path, case):
    path = tmp_path / "test.lst"
    if case == "folder":
        path.mkdir()
    elif case == "binary":
        path.write_bytes(b"\xff\xfe\x00bad")
    elif case == "empty":
        path.write_text("")
    elif case == "comments":
        path.write_text("# only a comment\n\n")
    with pytest.raises(TestListError) as info:
        read_test_list(path)
    message = str(info.value)
    assert message.startswith(str(path)) and len(message.splitlines()) == 1, message
