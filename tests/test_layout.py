"""The house rules (README, "What is where"), checked on the source: commands live together and
library code never imports them; library imports sit at module level (a short list of deliberate
lazy ones aside; the commands import the library when they run, so that ``--help`` is instant); one
definition of the audio rate; the design card's API names resolve."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("dcae", "tts", "vocoder", "evaluation", "preprocess")
PROJECT = {*PACKAGES, "inference", "train"}
# the entry points the design card names; they call dcae.cli and are called by nothing
ENTRY_POINTS = {"inference.py", "train.py", "tts/train.py", "evaluation/__main__.py", "preprocess/generate_filelist.py",
                "dcae/__main__.py"}
COMMAND_MODULES = ("dcae.cli", "inference", "train", "tts.train", "evaluation.__main__", "preprocess.generate_filelist")
# deliberate function-level project imports: (file, imported module) -> why
LAZY_ALLOWED = {
    ("vocoder/__init__.py", "vocoder"): "the BigVGAN loader on first use: workers needing only the mel skip it",
    ("tts/tokenizers/load.py", "tts.tokenizers.s3"): "S3Tokenizer needs the optional [s3] extra",
}


def library_modules() -> list[Path]:
    """Every module of the packages except the commands (dcae/cli) and the entry points."""
    out = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith("dcae/cli/") or rel in ENTRY_POINTS:
                continue
            out.append(path)
    return out


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function?) for every project import of ``path``."""
    tree = ast.parse(path.read_text())
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in PROJECT:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(name, id(node) in inner) for name in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in inner) for a in node.names if a.name.split(".")[0] in PROJECT]
    return found


def test_library_code_imports_no_command():
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in library_modules() for name, _ in imports(path)
                 if any(name == c or name.startswith(c + ".") for c in COMMAND_MODULES)]
    assert not offenders, offenders


def test_project_imports_are_at_module_level():
    offenders = []
    for path in library_modules():
        rel = path.relative_to(REPO).as_posix()
        for name, lazy in imports(path):
            if lazy and not any(rel == f and (name == m or name.startswith(m + ".")) for f, m in LAZY_ALLOWED):
                offenders.append(f"{rel}: {name}")
    assert not offenders, offenders


def test_every_command_is_in_dcae_cli():
    """The click commands are defined in dcae/cli only."""
    offenders = []
    for path in library_modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("command", "group") and \
                    isinstance(node.value, ast.Name) and node.value.id == "click":
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders


def test_the_audio_rate_is_defined_once():
    """22050 appears as a number in library code only where it is defined (dcae/audio.py) and in the
    list of the rates MP3 allows (a property of MP3, not of the toolkit)."""
    allowed = {"dcae/audio.py", "evaluation/report_media.py"}
    offenders = []
    for path in library_modules() + sorted((REPO / "dcae" / "cli").glob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == 22050 and rel not in allowed:
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders


def test_the_design_cards_names_resolve():
    import dcae
    import dcae.pipeline
    import inference
    from dcae.model.wrapper import DCAEWrapper

    assert inference.DCAEInferenceWrapper is dcae.DCAEInferenceWrapper is dcae.pipeline.DCAEInferenceWrapper
    assert dcae.DCAEWrapper is DCAEWrapper
    with pytest.raises(AttributeError):
        dcae.no_such_name  # noqa: B018


@pytest.mark.parametrize("command", ["", "encode", "decode", "reconstruct", "export", "tokens", "evaluate",
                                     "tts", "filelist", "shards", "shards pack", "shards unpack"])
def test_command_help_loads_no_heavy_library(command):
    """``dcae ... --help`` answers without importing torch, numpy or pyarrow (about 0.1 s instead of 3 s).
    ``dcae train --help`` is the exception: the trainer's flags are its config's fields."""
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from dcae.cli import main; "
            f"r = CliRunner().invoke(main, {command.split() + ['--help']!r}); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'numpy', 'pyarrow', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"dcae {command} --help imported {out.stdout.strip()}"
