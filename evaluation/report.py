"""Evaluation outputs: ``metrics.csv`` (one row per file), ``summary.json`` and a printed table."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dcae.atomic import atomic_write_json, atomic_write_text
from evaluation.scoring import CSV_COLUMNS, METRIC_NAMES, Row

# direction of "better", shown in the table so a reader need not remember it
HIGHER_IS_BETTER = {"pesq_wb": True, "pesq_nb": True, "stoi": True, "estoi": True,
                    "mel_distance": False, "si_sdr": True, "sim": True,
                    "mos": True, "wer": False}


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision: the CSV is the record of truth
    return str(value)


def write_metrics_csv(path: str | Path, rows: Sequence[Row], columns: Sequence[str] = CSV_COLUMNS) -> None:
    """Atomically write rows (sorted by file name) with exactly the ``columns`` header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in sorted(rows, key=lambda r: str(r["file"])):
        writer.writerow([cell(row.get(column)) for column in columns])
    atomic_write_text(path, buffer.getvalue())


def mean_interval(scored: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Student-t confidence interval ``[low, high]`` of the mean (None for fewer than 2 values)."""
    if scored.size < 2:
        return None
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, scored.size - 1) * scored.std(ddof=1) / math.sqrt(scored.size))
    mean = float(scored.mean())
    return [mean - half, mean + half]


def metric_stats(values: Iterable[float | None]) -> dict[str, object]:
    """mean / std (population) / median / 95% interval of the mean over the scored values;
    ``errors`` counts the missing ones."""
    values = list(values)
    scored = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    errors = len(values) - scored.size
    if scored.size == 0:
        return {"mean": None, "std": None, "median": None, "ci95": None, "count": 0, "errors": errors}
    return {"mean": float(scored.mean()), "std": float(scored.std()), "median": float(np.median(scored)),
            "ci95": mean_interval(scored), "count": int(scored.size), "errors": errors}


def summarize(rows: Sequence[Row], missing_deg: Sequence[str] = (), missing_ref: Sequence[str] = (),
              ambiguous: Sequence[str] = (), metric_names: Sequence[str] = METRIC_NAMES) -> dict:
    """The ``summary.json`` object: per-metric stats (of the metrics computed), file counts, and
    unpaired files."""
    return {
        "files": len(rows),
        "files_with_errors": sum(1 for r in rows if r.get("error")),
        "metrics": {m: metric_stats(r.get(m) for r in rows) for m in metric_names},
        "missing_degraded": list(missing_deg),
        "missing_reference": list(missing_ref),
        "ambiguous": list(ambiguous),
    }


def write_summary_json(path: str | Path, summary: dict) -> None:
    atomic_write_json(path, summary)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(summaries: dict[str, dict]) -> str:
    """A plain-text table: one row per metric, ``mean ± std (median)`` per summary column."""
    titles = list(summaries)
    header = ["metric", *titles, "scored/errors"]
    lines = []
    for metric in [m for m in HIGHER_IS_BETTER if all(m in summaries[t]["metrics"] for t in titles)]:
        arrow = "↑" if HIGHER_IS_BETTER[metric] else "↓"
        cells = [f"{metric} {arrow}"]
        counts = []
        for title in titles:
            s = summaries[title]["metrics"][metric]
            cells.append(f"{_fmt(s['mean'])} ± {_fmt(s['std'])} ({_fmt(s['median'])})")
            counts.append(f"{s['count']}/{s['errors']}")
        cells.append(" ".join(counts))
        lines.append(cells)
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    render = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(c) for c in lines), "mean ± std (median)"])
