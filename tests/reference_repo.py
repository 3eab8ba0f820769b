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


def reference_source(path: str) -> str:
    """The text of ``path`` in the reference repository: the work tree's file, else ``HEAD:path``."""
    if not reference_available():
        raise FileNotFoundError(f"{REFERENCE_REPO}: reference repository not found (set DCAE_REFERENCE_REPO)")
    if (REFERENCE_REPO / path).is_file():
        return (REFERENCE_REPO / path).read_text()
    return subprocess.run(["git", "-C", str(REFERENCE_REPO), "show", f"HEAD:{path}"],
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
