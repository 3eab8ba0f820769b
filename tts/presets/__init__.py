"""Named sets of field values for ``python -m tts.train --model KIND --preset NAME``: one folder per
``--model`` (``ar/``, ``flow/``, ``token-flow/``, ``token-lm/``, ``fsq-tokenizer/``), one JSON file per
preset (``tiny``: tests and CPU checks; ``base``: a real run). Values given on the command line or in
``--config`` override a preset's."""
from __future__ import annotations

import json
from pathlib import Path

PRESET_ROOT = Path(__file__).resolve().parent


def load_presets(kind: str) -> dict[str, dict]:
    """``{"tiny": {...}, "base": {...}}`` of ``--model kind`` (empty when it has none)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((PRESET_ROOT / kind).glob("*.json"))}
