"""Shared fixtures. Real speech comes from ../shared/data/get_speech.sh; tests skip when absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "dcae" / "configs" / "tiny.json"
DEFAULT_CONFIG = REPO / "dcae" / "configs" / "default.json"
VOCODER_CONFIG = REPO / "vocoder" / "configs" / "bigvgan_v2_22khz_80band_256x.json"


def _speech_dir() -> Path | None:
    candidates = [os.environ.get("DCAE_SPEECH_DIR"), Path.home() / ".cache" / "dcae-speech"]
    for c in candidates:
        if c and (Path(c) / "filelist.txt").is_file():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    """Folder made by get_speech.sh (alsa/ 48 kHz clips, en/ 16 kHz prompts, filelist.txt)."""
    d = _speech_dir()
    if d is None:
        pytest.skip("real speech not available: run ../shared/data/get_speech.sh")
    return d


@pytest.fixture(scope="session")
def speech_files(speech_dir: Path) -> list[Path]:
    files = [Path(p) for p in (speech_dir / "filelist.txt").read_text().split() if p]
    files = [p for p in files if p.is_file()]
    if not files:
        pytest.skip("speech filelist is empty")
    return files


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
