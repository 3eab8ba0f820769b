"""Reading JSON Lines files that long jobs append to (export parts, manifests, ``metrics.jsonl``).

A job killed while appending can leave a torn last line; :func:`read_jsonl` returns the rows before it::

    rows = read_jsonl("runs/x/metrics.jsonl")   # [{"step": 100, "loss": 0.41}, ...]; [] if there is no file
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSON Lines file up to its first line that is not JSON (a torn line from a kill:
    it and everything after it are dropped); [] when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
