"""Rotating, crash-safe checkpoints made of several files per step.

A checkpoint at step ``s`` is the set ``{prefix}_{s}.pt`` for every prefix in ``prefixes``
(e.g. ``generator``, ``discriminator``, ``state``). Files are written atomically in the given
order, so the *last* prefix doubles as the completion marker: a step counts as complete only
when every file of the set exists. The newest ``keep`` complete steps are kept.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dcae.atomic import atomic_torch_save


class CheckpointManager:
    def __init__(self, directory: str | Path, prefixes: list[str], keep: int = 3):
        if not prefixes:
            raise ValueError("CheckpointManager needs at least one file prefix")
        self.directory = Path(directory)
        self.prefixes = list(prefixes)
        self.keep = keep

    def path(self, prefix: str, step: int) -> Path:
        return self.directory / f"{prefix}_{step}.pt"

    def steps(self, prefix: str) -> set[int]:
        pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)\.pt$")
        if not self.directory.is_dir():
            return set()
        return {int(m.group(1)) for p in self.directory.iterdir() if (m := pattern.match(p.name))}

    def complete_steps(self, required: list[str] | None = None) -> list[int]:
        """Steps for which every file in ``required`` (default: all prefixes) exists, ascending."""
        required = required or self.prefixes
        common = set.intersection(*(self.steps(p) for p in required))
        return sorted(common)

    def latest_step(self, required: list[str] | None = None) -> int | None:
        steps = self.complete_steps(required)
        return steps[-1] if steps else None

    def save(self, step: int, objects: dict[str, Any]) -> None:
        """Write one object per prefix (in ``prefixes`` order), then prune old complete sets."""
        missing = [p for p in self.prefixes if p not in objects]
        if missing:
            raise ValueError(f"checkpoint for step {step} lacks {missing}")
        for prefix in self.prefixes:
            atomic_torch_save(objects[prefix], self.path(prefix, step))
        self.prune()

    def prune(self) -> None:
        if self.keep <= 0:
            return
        complete = self.complete_steps()
        for step in complete[: -self.keep]:
            for prefix in self.prefixes:
                self.path(prefix, step).unlink(missing_ok=True)

    def load(self, prefix: str, step: int, map_location: Any = "cpu") -> Any:
        import torch

        return torch.load(self.path(prefix, step), map_location=map_location, weights_only=True)
