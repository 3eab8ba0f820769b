"""Shared fixtures. Real speech is fetched on first use by tests/data/get_speech.py into a cache
folder ($DCAE_SPEECH_DIR, else ~/.cache/dcae-speech); tests that need it skip, saying why, when it
cannot be fetched."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "dcae" / "configs" / "tiny.json"
DEFAULT_CONFIG = REPO / "dcae" / "configs" / "default.json"
VOCODER_CONFIG = REPO / "vocoder" / "configs" / "bigvgan_v2_22khz_80band_256x.json"


SPEECH_SCRIPT = REPO / "tests" / "data" / "get_speech.py"
DEVICE_ENV = "DCAE_TEST_DEVICE"


def test_device_name() -> str:
    """The device the ``device``-marked tests run the toolkit on: ``$DCAE_TEST_DEVICE``, else cpu."""
    return os.environ.get(DEVICE_ENV, "").strip() or "cpu"


test_device_name.__test__ = False  # a helper, not a test


def pytest_configure(config):
    """``DCAE_TEST_DEVICE=cuda`` on a machine where torch sees no GPU stops the run at once (rather than
    skipping every device test, which would look like a pass)."""
    name = test_device_name()
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise pytest.UsageError(f"{DEVICE_ENV}={name}: not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"{DEVICE_ENV}={name}: torch {torch.__version__} sees no CUDA device here")
    if dev.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"{DEVICE_ENV}={name}: the device tests run on cpu or cuda")


def pytest_collection_modifyitems(config, items):
    """Every test that takes the ``on_device`` fixture is marked ``device`` (``pytest -m device`` selects
    them: the subset benchmarks/gpu_check.py runs on a GPU)."""
    for item in items:
        if "on_device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)


@pytest.fixture(scope="session")
def on_device() -> torch.device:
    """The device under test (``$DCAE_TEST_DEVICE``, default cpu). Tests taking it run the toolkit there and
    compare with references computed on the CPU. On CUDA, TF32 is switched off for the session: the parity
    tests compare fp32 with fp32 (TF32 convolutions alone differ by ~1e-3)."""
    dev = torch.device(test_device_name())
    if dev.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return dev


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    """Folder made by tests/data/get_speech.py (alsa/ 48 kHz clips, en/ 16 kHz prompts, filelist.txt),
    fetched on first use (the script holds a lock, so parallel sessions wait for one download)."""
    from tests.data.get_speech import default_dest, is_ready

    dest = default_dest()
    if not is_ready(dest):
        result = subprocess.run([sys.executable, str(SPEECH_SCRIPT), str(dest)], capture_output=True, text=True)
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
            pytest.skip(f"real speech not available: {SPEECH_SCRIPT.relative_to(REPO)} said: {reason}")
    return dest.expanduser().resolve()


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


def text_from_name(path: Path) -> str:
    """The test prompts are named after what they say: 'agent-alreadyon.wav' -> 'agent alreadyon'."""
    return re.sub(r"[-_]+", " ", path.stem).strip()


def export_short_speech(root: Path, speech_dir: Path, count: int, tiny_generator: Path, small_vocoder: Path,
                        min_seconds: float = 0.8, with_text: bool = True) -> Path:
    """``dcae export`` (tiny DC-AE, small BigVGAN) of up to ``count`` of the speech folder's short English
    prompts (``min_seconds`` to 4 s; skips the test if fewer than 8), lines ``path|text`` when
    ``with_text``; returns the manifest's path."""
    import soundfile as sf
    from click.testing import CliRunner

    files = [p for p in sorted((speech_dir / "en").glob("*.wav")) if min_seconds < sf.info(p).duration < 4.0][:count]
    if len(files) < 8:
        pytest.skip("too few short recordings in the speech folder")
    (root / "filelist.txt").write_text("".join(f"{p}|{text_from_name(p)}\n" if with_text else f"{p}\n"
                                               for p in files))
    from dcae.cli.export import export_command

    result = CliRunner().invoke(export_command, [
        "--filelist", str(root / "filelist.txt"), "--out", str(root / "out"), "--ae-model", str(tiny_generator),
        "--ae-config", str(TINY_CONFIG), "--vocoder", str(small_vocoder), "--num-workers", "0", "--device", "cpu"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root / "out" / "manifest.jsonl"


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
