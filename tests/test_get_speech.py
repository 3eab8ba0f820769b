"""tests/data/get_speech.py: the suite's own speech fetcher fails in one actionable line, and a folder
that already holds a filelist is used as it is."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import SPEECH_SCRIPT


def run(dest, path_env: str):
    return subprocess.run([sys.executable, str(SPEECH_SCRIPT), str(dest)], capture_output=True, text=True,
                          env=dict(os.environ, PATH=path_env), timeout=120)


def test_without_apt_it_says_what_to_do(tmp_path):
    result = run(tmp_path / "speech", "/nonexistent")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: test speech not fetched into")
    assert "apt-get" in lines[0] and "DCAE_SPEECH_DIR" in lines[0]
    assert not (tmp_path / "speech" / "filelist.txt").exists()


def test_a_folder_with_a_filelist_is_used_as_it_is(tmp_path):
    (tmp_path / "mine.wav").write_bytes(b"RIFF")
    (tmp_path / "filelist.txt").write_text(f"{tmp_path / 'mine.wav'}\n")
    result = run(tmp_path, "/nonexistent")  # nothing to fetch, so no apt-get needed
    assert result.returncode == 0 and f"speech set ready: {tmp_path} (1 files)" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "filelist.txt", "mine.wav"]
