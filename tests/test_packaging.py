"""What installing the project does to an environment (README, "Extras"): no extra pins setuptools
down or pulls PyPI's torchaudio (a CUDA build for another torch, unloadable here); the packages
installed with ``--no-deps`` are named the same way in the README, CI and the error messages; the
torchaudio stand-in for s3tokenizer and distillmos does not outlive their imports."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest
import tomllib

from tests.conftest import REPO

NO_DEPS = re.compile(r"pip install (?:-q )?--no-deps ((?:[\w-]+==[\w.]+ ?)+)")
# what the extras must not bring: the packages whose own dependencies break the environment, and a
# setuptools pin (a downgrade of everyone's setuptools)
FORBIDDEN = ("resemblyzer", "s3tokenizer", "distillmos", "xls-r-sqa", "torchaudio", "webrtcvad", "setuptools")


def extras() -> dict[str, list[str]]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def resolved(name: str, seen: set[str] | None = None) -> list[str]:
    """The requirements of extra ``name``, with the project's own extras it names expanded."""
    seen = set() if seen is None else seen
    seen.add(name)
    out = []
    for requirement in extras()[name]:
        own = re.fullmatch(r"dc-speech-vae\[([\w,]+)\]", requirement)
        if own:
            out += [r for inner in own.group(1).split(",") if inner not in seen for r in resolved(inner, seen)]
        else:
            out.append(requirement)
    return out


@pytest.mark.parametrize("extra", sorted(extras()))
def test_no_extra_brings_what_breaks_the_environment(extra):
    names = [re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in resolved(extra)]
    assert not [n for n in names if n in FORBIDDEN], names


def test_the_no_deps_packages_are_named_alike_everywhere():
    from evaluation.mos import INSTALL_HINT as MOS_HINT
    from evaluation.speaker import INSTALL_HINT as SIM_HINT
    from tts.tokenizers.s3_weights import INSTALL_HINT as S3_HINT

    readme = set(" ".join(NO_DEPS.findall((REPO / "README.md").read_text())).split())
    ci = set(" ".join(NO_DEPS.findall((REPO / ".ci" / "run").read_text())).split())
    hints = set(" ".join(NO_DEPS.findall(" ".join((SIM_HINT, S3_HINT, MOS_HINT)))).split())
    assert readme == ci == hints
    assert {p.split("==")[0] for p in readme} == {"resemblyzer", "s3tokenizer", "distillmos", "xls-r-sqa"}


def test_an_installed_torchaudio_loads():
    """An unloadable torchaudio (what s3tokenizer's declared dependency put here) breaks every
    ``import torchaudio`` and transformers' imports; none, or one that loads, is sound."""
    if importlib.util.find_spec("torchaudio") is None:
        return
    out = subprocess.run([sys.executable, "-c", "import torchaudio"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("package, call", [
    ("s3tokenizer", "from tts.tokenizers.s3_weights import import_s3tokenizer; import_s3tokenizer()"),
    ("distillmos", "from evaluation.mos import mos_model; mos_model()"),
])
def test_the_torchaudio_stand_in_does_not_outlive_the_import(package, call):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"needs {package} (README, 'Extras')")
    code = (f"import sys; {call}; "
            "module = sys.modules.get('torchaudio'); "
            "print('stand-in' if module is not None and 'stand-in' in (module.__doc__ or '') else 'ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
