"""Files of the reference repository (KdaiP/DC-Speech-VAE) imported as modules, for parity checks.

The reference is not a package: point ``DCAE_REFERENCE_REPO`` at a clone of it (a work tree, or a
bare git folder whose ``HEAD`` is read); without the variable the tests that need it skip, saying so.
Nothing of it is copied into this project.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType

REFERENCE_REPO = Path(os.environ["DCAE_REFERENCE_REPO"]) if os.environ.get("DCAE_REFERENCE_REPO") else None


def reference_available() -> bool:
    return REFERENCE_REPO is not None and REFERENCE_REPO.is_dir()


def reference_source(path: str, repo: Path | None = None) -> str:
    """The text of ``path`` in a reference repository (``repo``, default the DC-Speech-VAE one): the work
    tree's file, else ``HEAD:path`` of a bare clone."""
    repo = REFERENCE_REPO if repo is None else repo
    if repo is None or not repo.is_dir():
        raise FileNotFoundError(f"{repo}: reference repository not found")
    if (repo / path).is_file():
        return (repo / path).read_text()
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"],
                          capture_output=True, text=True, check=True).stdout


def import_reference_file(path: str, folder: Path) -> ModuleType:
    """Write ``path`` of the reference repository into ``folder`` and import it."""
    source = reference_source(path)
    file = Path(folder) / Path(path).name
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(f"reference_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
