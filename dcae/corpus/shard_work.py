"""What every corpus job that writes Parquet shards shares (``dcae export --format shards``,
``dcae shards pack``): a :class:`~dcae.corpus.shards.ShardWriter` per rank, resuming from the shard
files themselves, and the merge into ``shards.json`` + ``stats.json``; and what the jobs that fill
a column of existing shards share (``dcae tokens``, ``dcae speakers`` on a shard folder:
:class:`ShardColumns`).

Each rank writes ``ROOT/shards/<W>x<R>-<n>.parquet`` (a number one past the highest taken, so a
rerun never overwrites a shard); a shard is written whole and renamed, so a kill loses at most the
rows of the shard in progress, and a rerun (of any world size) redoes exactly the utterances that no
complete shard holds: every utterance ends up in exactly one shard.
"""
from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path
from typing import Any, Sequence

import pyarrow.parquet as pq

from dcae import distributed
from dcae.atomic import atomic_write_text
from dcae.corpus.job import Item, JobError, Outcome, Work
from dcae.corpus.shards import (
    SHARDS_DIR,
    ShardError,
    ShardInfo,
    ShardRow,
    ShardWriter,
    index_shards,
    read_ids,
    write_index,
)
from dcae.corpus.store import part_failures, prune_parts


class ShardWriting(Work):
    """A mixin for a :class:`~dcae.corpus.job.Work` whose outputs are shard rows (module docstring): the
    subclass's ``process`` turns a batch into :class:`ShardRow`\\ s and returns ``self.write(items, rows)``;
    ``meta`` (the shards' metadata) is set before :meth:`start`."""

    meta: dict[str, Any]

    def __init__(self, shard_mb: float):
        self.shard_mb = shard_mb
        self.folder = self.root / SHARDS_DIR
        self.held: dict[str, Item] = {}  # in the shard in progress, not yet in a file
        self.finished: set[str] | None = None

    def start(self, dist: distributed.DistInfo) -> None:
        super().start(dist)
        prefix = f"{dist.world_size}x{dist.rank}-"
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(f".{prefix}*.tmp"):  # this rank's shard in progress when it was killed
            stale.unlink(missing_ok=True)
        self.writer = ShardWriter(self.folder, prefix, dict(self.meta), self.shard_mb)

    def done(self, item: Item, committed: dict[str, Any] | None) -> Outcome | None:
        """Done when a complete shard holds it (the shard files are the truth, whatever the parts say)."""
        if self.finished is None:
            self.finished = set()
            for shard in index_shards(self.root, listed=False)[0]:
                self.finished.update(read_ids(shard.path))
        return Outcome(item, {"id": item.uid}) if item.uid in self.finished else None

    def write(self, items: Sequence[Item], rows: Sequence[ShardRow]) -> list[Outcome]:
        """Hold ``rows`` for this rank's shard; the outcomes of the items a shard written now holds."""
        written = []
        for item, row in zip(items, rows):
            self.held[item.uid] = item
            written += self.writer.add(row)
        return self._outcomes(written)

    def finish(self) -> list[Outcome]:
        return self._outcomes(self.writer.flush())

    def _outcomes(self, ids: list[str]) -> list[Outcome]:
        return [Outcome(self.held.pop(uid), {"id": uid}) for uid in ids]

    def merge(self, items: list[Item], world_size: int) -> dict[str, Any]:
        """``shards.json`` and ``stats.json`` from every complete shard (each utterance once), ``failed.jsonl``."""
        shards, problems = index_shards(self.root, listed=False)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ShardError(f"{problems[0]}{more}; remove it and run again (what it held is redone)")
        seen: dict[str, str] = {}
        for shard in shards:
            for uid in read_ids(shard.path):
                if uid in seen:
                    raise ShardError(f"{shard.path}: utterance {uid} is also in {seen[uid]}; remove one of the two "
                                     f"shards and run again (what is missing is redone)")
                seen[uid] = shard.path.name
        summary = write_index(self.root, shards)
        failed = [row for uid, row in part_failures(self.root, world_size).items() if uid not in seen]
        atomic_write_text(self.root / "failed.jsonl", "".join(json.dumps(r) + "\n" for r in failed))
        prune_parts(self.root, world_size)
        return {**summary, "failed": len(failed)}


def shard_items(root: Path, error: type[JobError] = JobError) -> tuple[list[ShardInfo], list[Item]]:
    """A shard folder's shards and one :class:`Item` per row (``row``: its ``shard`` and ``duration``), for
    a job that fills columns of the shards. Raises ``error`` (one line) for a folder with no usable shards."""
    shards, problems = index_shards(root)
    if problems:
        raise error(f"{problems[0]}; remove it (or rerun the export that wrote it) first")
    if not shards:
        raise error(f"{root}: no shards (shards.json or shards/*.parquet)")
    items = []
    for info in shards:
        table = pq.read_table(info.path, columns=["id", "audio_path", "duration"])
        for uid, audio_path, duration in zip(*(table.column(c).to_pylist() for c in ("id", "audio_path", "duration"))):
            items.append(Item(len(items), uid, audio_path or None, {"shard": str(info.path), "duration": duration}))
    return shards, items


class ShardColumns(Work):
    """A mixin for a :class:`~dcae.corpus.job.Work` that fills columns of an existing shard folder, one
    result per row (the tokens of ``dcae tokens``, the embeddings of ``dcae speakers``). Each rank takes
    whole shards; the results of a shard are held until every row of it has one, then the subclass
    rewrites the shard (:meth:`fill`, atomically) with ``fingerprint`` under ``model_key`` in its
    metadata, so a rerun skips the shards that hold these results and redoes at most the one in
    progress. A result is the row's value, or the one-line reason (str) it has none."""

    model_key: str  # the shard metadata key that records what filled the column

    def __init__(self, shards: list[ShardInfo], fingerprint: str):
        self.shards = {str(s.path): s for s in shards}
        self.fingerprint = fingerprint
        self.results: dict[str, dict[str, Any]] = {}  # shard -> id -> result
        self.items: dict[str, list[Item]] = {}

    def share(self, items: list[Item], rank: int, world_size: int) -> list[Item]:
        order = list(self.shards)
        return [item for item in items if order.index(item.row["shard"]) % world_size == rank]

    def order(self, pending: list[Item]) -> list[Item]:
        return pending  # shard by shard: a shard is finished (and written) before the next begins

    def done(self, item: Item, committed: dict[str, Any] | None) -> Outcome | None:
        meta = self.shards[item.row["shard"]].meta
        return Outcome(item, {"id": item.uid}) if meta.get(self.model_key) == self.fingerprint else None

    def hold(self, item: Item, result: Any) -> list[Outcome]:
        """Keep ``item``'s result; the outcomes of its shard's rows if the shard is now complete (and written)."""
        shard = item.row["shard"]
        self.results.setdefault(shard, {})[item.uid] = result
        self.items.setdefault(shard, []).append(item)
        results = self.results[shard]
        if len(results) < self.shards[shard].rows:
            return []
        self.fill(Path(shard), [None if isinstance(results[uid], str) else results[uid]
                                for uid in read_ids(Path(shard))])
        del self.results[shard]
        return [Outcome(item, error=result) if isinstance(result := results[item.uid], str) else
                Outcome(item, self.outcome_row(item, result)) for item in self.items.pop(shard)]

    def unreadable(self, item: Item, reason: str) -> list[Outcome]:
        return self.hold(item, reason)

    def outcome_row(self, item: Item, result: Any) -> dict[str, Any]:
        """The row committed for an item whose result went into its shard."""
        return {"id": item.uid}

    @abstractmethod
    def fill(self, path: Path, values: list[Any]) -> None:
        """Rewrite the shard at ``path`` with the column(s) of ``values`` (in its row order; None: no value),
        recording ``fingerprint`` under ``model_key``."""
