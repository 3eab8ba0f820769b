"""Importing packages that import ``torchaudio`` only for a file loader we never call (s3tokenizer,
distillmos): PyPI's torchaudio wheels are CUDA builds tied to one torch release, so next to a CPU
build of torch, or another torch release, ``import torchaudio`` fails and takes those packages with
it. :func:`import_without_torchaudio` puts an empty stand-in module in torchaudio's place while such a
package imports, when the real one does not load; audio is decoded and resampled by :mod:`dcae.audio`.
"""
from __future__ import annotations

import importlib
import sys
import types


def _stand_in() -> types.ModuleType:
    module = types.ModuleType("torchaudio")
    module.__doc__ = "stand-in: the installed torchaudio does not load with this torch build"

    def _unavailable(name: str):
        raise AttributeError(f"torchaudio.{name}: torchaudio does not load with this torch build; "
                             "decode audio with dcae.audio.load_audio instead")

    module.__getattr__ = _unavailable  # type: ignore[attr-defined]
    return module


def import_without_torchaudio(name: str) -> types.ModuleType:
    """``importlib.import_module(name)``, with the stand-in torchaudio in ``sys.modules`` only while it
    imports (and only when the real torchaudio does not load): a later ``import torchaudio`` of the
    user's gets the real module or the real error. ImportError of ``name`` itself propagates."""
    stand_in = None
    if "torchaudio" not in sys.modules:
        try:
            import torchaudio  # noqa: F401
        except Exception:  # noqa: BLE001 - ImportError, OSError (missing libs), RuntimeError (CUDA mismatch)
            stand_in = sys.modules["torchaudio"] = _stand_in()
    try:
        return importlib.import_module(name)
    finally:
        if stand_in is not None and sys.modules.get("torchaudio") is stand_in:
            del sys.modules["torchaudio"]
