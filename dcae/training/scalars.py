"""Where a run's numbers go: TensorBoard and ``metrics.jsonl`` (one JSON object per logged step).

``metrics.jsonl`` is for scripts and tests (``{"step": 100, "loss": 0.41, ...}``). A resumed run
first drops the rows past the step it resumed from, so the file always describes one history.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dcae.atomic import atomic_write_text
from dcae.jsonl import read_jsonl


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` (a torn last line from a kill is ignored)."""
    return read_jsonl(path)


class ScalarLog:
    """TensorBoard writer plus ``metrics.jsonl``; main process only (pass ``enabled=False`` elsewhere)."""

    def __init__(self, log_dir: Path, metrics_path: Path, resumed_step: int, enabled: bool = True):
        self.enabled = enabled
        self.metrics_path = metrics_path
        self.writer = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        rows = [r for r in read_metrics(metrics_path) if int(r.get("step", 0)) <= resumed_step]
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        row = {"step": step, **{k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
