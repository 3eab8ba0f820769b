"""The streaming batch dataset every TTS trainer reads: each row once per epoch across 2 ranks x 2
DataLoader workers, a new order each epoch, frame-budget batches, and an exact continuation after
a restart from the positions the harness saves."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from dcae.cli.shards import shards_command
from dcae.corpus.stream import BatchStream, ManifestCorpus, frame_budget_batches, open_corpus
from dcae.training.positions import PositionLog
from tts.synthetic import SyntheticTokenCorpus


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[Path, Path]:
    """(manifest, shard folder of several small shards) of the same 120 utterances."""
    root = tmp_path_factory.mktemp("stream")
    corpus = SyntheticTokenCorpus(vocab=8, dim=4)
    manifest = corpus.write(root / "files", corpus.random_sequences(120, seed=1, min_len=5, max_len=40))
    result = CliRunner().invoke(shards_command, ["pack", "--manifest", str(manifest), "--out", str(root / "shards"),
                                                 "--shard-mb", "0.01"])
    assert result.exit_code == 0, result.output
    return manifest, root / "shards"


def ids_item(row, rng: random.Random):
    return {"id": row["id"], "frames": int(row["num_frames"])}


def collate_ids(items):
    return [it["id"] for it in items], [it["frames"] for it in items]


def frames(item) -> int:
    return item["frames"]


def stream(corpus, rank=0, world_size=1, workers=0, **kw) -> BatchStream:
    options = dict(seed=7, batch_size=5, window_units=2, rank=rank, world_size=world_size, workers=workers,
                   columns=["num_frames"])
    options.update(kw)
    return BatchStream(corpus, ids_item, collate_ids, frames, **options)


def batches(s: BatchStream, count: int, workers: int):
    loader = DataLoader(s, batch_size=None, num_workers=workers, collate_fn=lambda b: b,
                        generator=torch.Generator())
    out = []
    for position, batch in loader:
        out.append((position, batch))
        if len(out) == count:
            return out
    return out


@pytest.mark.parametrize("layout", ["shards", "manifest"])
def test_every_row_once_per_epoch_over_two_ranks_and_two_workers(corpora, layout):
    corpus = open_corpus(corpora[1] if layout == "shards" else corpora[0])
    seen: dict[int, list[str]] = {0: [], 1: []}
    for rank in range(2):
        got = batches(stream(corpus, rank, 2, workers=2), 120, workers=2)  # well past two epochs per worker
        for (role, epoch, _, _), (ids, _) in got:
            if epoch < 2:
                seen[epoch] += ids
        assert {p[0] for p, _ in got} == {0, 1}  # both workers delivered
    all_ids = [f"utt{i:05d}" for i in range(120)]
    for epoch in (0, 1):
        assert Counter(seen[epoch]) == Counter(all_ids), f"epoch {epoch}: every row exactly once"
    assert seen[0] != seen[1]  # another order in the next epoch


def test_frame_budget_batches_stay_within_the_budget(corpora):
    corpus = open_corpus(corpora[1])
    got = batches(stream(corpus, batch_frames=60, max_batch=16), 40, workers=0)
    sizes = [(len(f), max(f)) for _, (_, f) in got]
    assert all(n * longest <= 60 or n == 1 for n, longest in sizes)
    assert len({n for n, _ in sizes}) > 2  # the budget, not a fixed count, sets the batch size
    assert frame_budget_batches(list("abcd"), [5, 1, 3, 30], batch_frames=10, max_items=8) == [["b", "c"], ["a"], ["d"]]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_restart_continues_exactly(corpora, workers):
    """Consume 7 batches, keep the harness's position state, start a new stream and loader from it: the
    next batches are those the uninterrupted stream gives (also the worker order: 7 is odd)."""
    corpus = open_corpus(corpora[1])
    uninterrupted = [batch for _, batch in batches(stream(corpus, workers=workers), 30, workers)]
    first = stream(corpus, workers=workers)
    log = PositionLog(first.workers, first.starts, first.role_offset)
    for position, _ in batches(first, 7, workers):
        log.consumed(position)
    again = stream(corpus, workers=workers)
    assert again.resume(log.state()) is None
    continued = [batch for _, batch in batches(again, 23, workers)]
    assert continued == uninterrupted[7:]
    assert "worker" in stream(corpus, workers=3).resume(log.state())  # another worker count: said, not mixed up


def test_the_manifest_and_its_shards_give_the_same_rows(corpora):
    manifest, shards = corpora
    a = {r["id"]: r for u in ManifestCorpus(manifest).units for r in ManifestCorpus(manifest).read(u)}
    b = {r["id"]: r for c in [open_corpus(shards)] for u in c.units for r in c.read(u)}
    assert a.keys() == b.keys()
    for uid in a:
        np.testing.assert_array_equal(a[uid]["latent"], b[uid]["latent"])
        np.testing.assert_array_equal(a[uid]["tokens"], b[uid]["tokens"])
