"""What every corpus job that writes Parquet shards shares (``dcae export --format shards``,
``dcae shards pack``): a :class:`~dcae.corpus.shards.ShardWriter` per rank, resuming from the shard
files themselves, and the merge into ``shards.json`` + ``stats.json``.

Each rank writes ``ROOT/shards/<W>x<R>-<n>.parquet`` (a number one past the highest taken, so a
rerun never overwrites a shard); a shard is written whole and renamed, so a kill loses at most the
rows of the shard in progress, and a rerun (of any world size) redoes exactly the utterances that no
complete shard holds: every utterance ends up in exactly one shard.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from dcae import distributed
from dcae.atomic import atomic_write_text
from dcae.corpus.job import Item, Outcome, Work
from dcae.corpus.shards import SHARDS_DIR, ShardError, ShardRow, ShardWriter, index_shards, read_ids, write_index
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
