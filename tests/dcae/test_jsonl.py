"""read_jsonl: the one reader of appended JSON Lines files (export parts and manifests, metrics.jsonl)."""
from __future__ import annotations

import json

from dcae.corpus import StorePart, done_rows
from dcae.jsonl import read_jsonl
from dcae.training.scalars import read_metrics


def test_rows_up_to_a_torn_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert read_jsonl(path) == []  # no file yet
    path.write_text('{"step": 1}\n{"step": 2, "loss": 0.5}\n{"step": 3, "lo')  # killed mid-append
    assert read_jsonl(path) == [{"step": 1}, {"step": 2, "loss": 0.5}]
    path.write_text('{"step": 1}\n{torn\n{"step": 3}\n')  # nothing after a torn line counts
    assert read_jsonl(path) == [{"step": 1}]


def test_metrics_and_store_parts_read_the_same_way(tmp_path):
    text = '{"id": "a", "num_frames": 1}\n{"id": "b", "num_frames": 2}\n{"id": "c", "num_f'
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(text)
    part = StorePart.start(tmp_path, "1x0", 1)
    part.rows_path.write_text(text)
    snapshot = json.loads(part.stats_path.read_text())
    part.stats_path.write_text(json.dumps({**snapshot, "rows": 3}))  # promises three rows: the torn one still drops
    assert read_metrics(metrics) == read_jsonl(metrics) == list(done_rows(tmp_path).values())
