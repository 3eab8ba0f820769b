"""Files of the reference repository (KdaiP/DC-Speech-VAE) imported as modules, for parity checks.

The reference is not a package: point ``DCAE_REFERENCE_REPO`` at a git clone of it; without the
variable the tests that need it skip, saying so. Nothing of it is copied into this project.
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


def import_reference_file(path: str, folder: Path) -> ModuleType:
    """Write ``HEAD:path`` of the reference repository into ``folder`` and import it."""
    if not reference_available():
        raise FileNotFoundError(f"{REFERENCE_REPO}: reference repository not found (set DCAE_REFERENCE_REPO)")
    source = subprocess.run(["git", "-C", str(REFERENCE_REPO), "show", f"HEAD:{path}"],
                            capture_output=True, text=True, check=True).stdout
    file = Path(folder) / Path(path).name
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(f"reference_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
