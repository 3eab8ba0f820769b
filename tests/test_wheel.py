"""The project as a user installs it: ``pip install .`` (a wheel, not an editable install), used from
outside the repository. The wheel is built, installed into a fresh virtual environment (its
dependencies come from this environment, which has them), and every packaged file is loaded from
there: the DC-AE configs, the vocoder config, the presets of every ``--model``, the listening page's
assets; and the commands answer."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

DATA_SUFFIXES = (".json", ".yaml", ".yml", ".js", ".css", ".html", ".txt")
TOP_LEVEL = {"dcae", "tts", "vocoder", "evaluation", "preprocess", "inference.py"}

CHECK = r"""
import json, sys
from pathlib import Path
import dcae, tts, vocoder, evaluation, preprocess, inference
site = Path(sys.argv[1]).resolve()
for module in (dcae, tts, vocoder, evaluation, preprocess, inference):
    assert site in Path(module.__file__).resolve().parents, (module.__name__, module.__file__)

from dcae.model.config import DCAEConfig, packaged_configs
configs = {p.name: DCAEConfig.from_json(p).latent_channels for p in packaged_configs()}
assert set(configs) == {"default.json", "tiny.json"}, configs

from vocoder.mel import PACKAGED_CONFIG, load_bigvgan_config
assert load_bigvgan_config(None)["num_mels"] == 80 and PACKAGED_CONFIG.is_file()

from tts.trainers import TRAINERS, trainer_class
presets = {kind: sorted(trainer_class(kind).presets()) for kind in TRAINERS}
assert all(names == ["base", "tiny"] for names in presets.values()), presets

from tts.tokenizers import fsq_preset
assert fsq_preset("tiny").codebook_size == 1000

from evaluation.html_page import Page, render_page
html = render_page(Page(title="t", lead="l", metric_names=(), summaries={}, rows=[], labels=[]))
assets = Path(evaluation.__file__).parent / "page_assets"
for name in ("page.css", "page.js"):
    assert (assets / name).read_text()[:200] in html, name
print(json.dumps(presets))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the fresh environment's python) with the wheel installed, no editable install."""
    root = tmp_path_factory.mktemp("wheel")
    # built from a copy without build outputs: setuptools would reuse a stale build/ folder's files
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", "runs", "checkpoints"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(root / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next((root / "dist").glob("dc_speech_vae-*.whl"))
    env = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # the dependencies (torch, bigvgan, ...) from this environment, after the fresh one's own site-packages;
    # a path added this way does not run this environment's .pth files, so its editable install stays out
    (Path(target) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, python


def test_the_wheel_holds_every_data_file_and_no_stray_top_level_name(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tracked = subprocess.run(["git", "ls-files", *(f"{p}/*" for p in ("dcae", "tts", "vocoder", "evaluation",
                                                                     "preprocess"))],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    data = [f for f in tracked if f.endswith(DATA_SUFFIXES)]
    assert data and not [f for f in data if f not in names], [f for f in data if f not in names]
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == TOP_LEVEL, top


def test_every_packaged_file_loads_from_the_installed_wheel(installed, tmp_path):
    _, python = installed
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(python), "-c", CHECK, site], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"token-lm": ["base", "tiny"]' in done.stdout and '"fsq-tokenizer": ["base", "tiny"]' in done.stdout


def test_the_installed_commands_answer(installed, tmp_path):
    _, python = installed
    dcae = python.parent / "dcae"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for args in (["--help"], ["--version"], ["export", "--help"], ["train", "--help"], ["tts", "--help"]):
        done = subprocess.run([str(dcae), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    done = subprocess.run([str(python), "-m", "tts.train", "--model", "token-lm", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--preset" in done.stdout, done.stderr[-2000:]
