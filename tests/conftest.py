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


def write_tiny_generator(path: Path) -> Path:
    """A randomly initialised tiny DC-AE generator (``TINY_CONFIG``), saved like ``generator_*.pt``."""
    from dcae import DCAEWrapper, save_generator

    save_generator(DCAEWrapper(TINY_CONFIG), path)
    return Path(path)


def write_small_vocoder(folder: Path, dilations: list[list[int]] = ([1],)) -> Path:
    """A small randomly initialised BigVGAN in NVIDIA's folder layout (config.json + bigvgan_generator.pt):
    the packaged config's mel front end, far fewer channels, one resblock kernel with ``dilations``."""
    from vocoder.bigvgan_loader import build_generator, save_vocoder_folder
    from vocoder.mel import load_bigvgan_config

    config = dict(load_bigvgan_config(VOCODER_CONFIG), upsample_initial_channel=64, resblock_kernel_sizes=[3],
                  resblock_dilation_sizes=[list(d) for d in dilations])
    return save_vocoder_folder(folder, build_generator(config), config)


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory) -> Path:
    """Path of a tiny DC-AE generator checkpoint (seed 0)."""
    torch.manual_seed(0)
    return write_tiny_generator(tmp_path_factory.mktemp("tiny_generator") / "generator_1.pt")


@pytest.fixture(scope="session")
def small_vocoder(tmp_path_factory) -> Path:
    """Folder of a small BigVGAN in NVIDIA's layout (seed 0)."""
    torch.manual_seed(0)
    return write_small_vocoder(tmp_path_factory.mktemp("small_vocoder") / "bigvgan_small")


@pytest.fixture
def one_torch_thread():
    """One torch thread: far faster for small models on a shared CPU.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
