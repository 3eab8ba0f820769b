"""CosyVoice's own LM code (``cosyvoice.llm.llm.Qwen2LM``) imported from a clone, for parity checks.

CosyVoice is not a PyPI package: point ``DCAE_COSYVOICE_REPO`` at a clone of FunAudioLLM/CosyVoice (a
work tree or a bare git folder); without it the tests that need it skip, saying so. The files the LM
module imports are written into a temporary folder and imported from there (nothing is copied into
this project). Two imports of that module are stood in for while it loads, as they play no part in
the LM: ``cosyvoice.utils.onnx`` (the online speech tokenizer, which needs onnxruntime) and
``torchaudio`` (imported by ``cosyvoice.utils.file_utils`` for audio loading; PyPI's build does not
load against the CPU torch); the stand-ins are removed again after the import.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

from tests.reference_repo import reference_source

COSYVOICE_REPO = Path(os.environ["DCAE_COSYVOICE_REPO"]) if os.environ.get("DCAE_COSYVOICE_REPO") else None
SKIP_REASON = "CosyVoice clone not available (set DCAE_COSYVOICE_REPO to a clone of FunAudioLLM/CosyVoice)"
FILES = ["cosyvoice/llm/llm.py", "cosyvoice/utils/common.py", "cosyvoice/utils/mask.py",
         "cosyvoice/utils/file_utils.py", "cosyvoice/transformer/label_smoothing_loss.py"]


def cosyvoice_available() -> bool:
    return COSYVOICE_REPO is not None and COSYVOICE_REPO.is_dir()


def import_cosyvoice_llm(folder: Path) -> types.ModuleType:
    """CosyVoice's ``cosyvoice.llm.llm`` module (with ``cosyvoice.utils.common``'s ``ras_sampling`` beside it)."""
    for path in FILES:
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(reference_source(path, COSYVOICE_REPO))
    for package in ("cosyvoice", "cosyvoice/llm", "cosyvoice/utils", "cosyvoice/transformer"):
        (folder / package / "__init__.py").touch()
    onnx = types.ModuleType("cosyvoice.utils.onnx")
    onnx.SpeechTokenExtractor, onnx.online_feature, onnx.onnx_path = None, False, ""
    stand_ins = {"cosyvoice.utils.onnx": onnx, "torchaudio": types.ModuleType("torchaudio")}
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.path.insert(0, str(folder))
    try:
        sys.modules.update(stand_ins)
        return importlib.import_module("cosyvoice.llm.llm")
    finally:
        sys.path.remove(str(folder))
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
