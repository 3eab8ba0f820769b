"""One sharded, resumable job over a corpus, into which every corpus-wide command plugs its
per-utterance work: ``dcae export`` (audio -> latents, :mod:`dcae.latent_export`), ``dcae tokens``
(audio -> speech tokens, :mod:`tts.tokenizers.token_export`), and the shard writers.

    summary = run_job(work, items, dist)        # every rank of a torchrun group calls it

What the job does, the same for every :class:`Work`:

- rank ``r`` of ``W`` takes the items ``r::W``; what it commits goes to its part of this run
  (:class:`~dcae.corpus.store.StorePart`: ``ROOT/parts/<W>x<r>.*``);
- resuming: the work says which of its items are done (their output complete and verified,
  :meth:`Work.done`); the part starts afresh with those and only the rest is processed, so a rerun
  after a kill (of any world size) redoes only unfinished items and no part holds an item twice;
- each item's input (its audio by default, :meth:`Work.loader`) is read in DataLoader workers (none
  on CPU by default: the model uses every core), grouped into batches by the work's batcher,
  processed, and committed: the work writes its outputs first, then the job appends their rows to
  the part;
- a bad input is reported in one line (``log``) and recorded in the part's failures; the job goes on;
- each rank writes a done marker; rank 0 waits for every marker of this run (polling, so no
  collective times out on a long job) and the work merges the parts of this run (:meth:`Work.merge`).
"""
from __future__ import annotations

import json
import os
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dcae import distributed
from dcae.atomic import atomic_write_json
from dcae.audio import AudioError, check_audio, load_audio
from dcae.corpus.stats import RunningStats
from dcae.corpus.store import StorePart, done_rows
from dcae.progress import progress_bar

Log = Callable[[str], None]
LOG_EVERY_SECONDS = 60  # without a progress bar (stderr is a log file): a progress line this often


@dataclass(frozen=True)
class Item:
    """One utterance of the corpus: its place in the corpus order, its id, its audio (None: the row has
    none) and whatever else the work needs (the filelist's text, the manifest row)."""

    index: int
    uid: str
    audio_path: str | None
    row: dict[str, Any] = field(default_factory=dict, compare=False)


Batch = list[tuple[Item, Any]]  # items with their input: audio (samples,) at the work's sample rate by default


class Batcher(ABC):
    """Groups decoded items into the batches a work processes."""

    @abstractmethod
    def add(self, item: Item, audio: torch.Tensor) -> Iterator[Batch]:
        """Take one item; yield the batches that became full."""

    @abstractmethod
    def drain(self) -> Iterator[Batch]:
        """The batches left at the end."""


def _numel(payload: Any) -> int:
    return payload.numel()


class SequentialBatches(Batcher):
    """Items in arrival order, cut at ``max_items`` or ``max_samples`` of ``size(input)`` (default: audio
    samples; a longer item goes alone)."""

    def __init__(self, max_items: int, max_samples: int, size: Callable[[Any], int] = _numel):
        self.max_items, self.max_samples, self.size = max_items, max_samples, size
        self.batch: Batch = []
        self.samples = 0

    def add(self, item: Item, audio: Any) -> Iterator[Batch]:
        size = self.size(audio)
        if self.batch and (len(self.batch) >= self.max_items or self.samples + size > self.max_samples):
            yield from self.drain()
        self.batch.append((item, audio))
        self.samples += size

    def drain(self) -> Iterator[Batch]:
        if self.batch:
            batch, self.batch, self.samples = self.batch, [], 0
            yield batch


class EqualLengthBatches(Batcher):
    """Items of equal ``length(audio)`` together (so batching never changes a result), at most
    ``max_items`` or ``max_samples`` per batch; at most ``max_buffer_samples`` wait in the buckets."""

    def __init__(self, length: Callable[[torch.Tensor], int], max_items: int, max_samples: int,
                 max_buffer_samples: int):
        self.length = length
        self.max_items, self.max_samples, self.max_buffer_samples = max_items, max_samples, max_buffer_samples
        self.buckets: dict[int, Batch] = {}
        self.buffered = 0

    def add(self, item: Item, audio: torch.Tensor) -> Iterator[Batch]:
        key = self.length(audio)
        bucket = self.buckets.setdefault(key, [])
        bucket.append((item, audio))
        self.buffered += audio.numel()
        if len(bucket) >= self.max_items or sum(a.numel() for _, a in bucket) >= self.max_samples:
            yield self._pop(key)
        while self.buffered > self.max_buffer_samples and self.buckets:
            yield self._pop(max(self.buckets, key=lambda k: len(self.buckets[k]) * k))

    def _pop(self, key: int) -> Batch:
        bucket = self.buckets.pop(key)
        self.buffered -= sum(a.numel() for _, a in bucket)
        return bucket

    def drain(self) -> Iterator[Batch]:
        for key in sorted(self.buckets):
            yield self._pop(key)


@dataclass
class Outcome:
    """What processing one item gave: its committed ``row`` and, for works that keep statistics, the
    ``values`` (dim, frames) to add to them; or the ``error`` that kept it from being done."""

    item: Item
    row: dict[str, Any] | None = None
    values: torch.Tensor | None = None
    error: str | None = None


class Work(ABC):
    """The per-utterance work of a corpus job (module docstring)."""

    label: str = "job"  # progress bar and messages
    root: Path  # parts live in root/parts
    dim: int = 1  # width of the statistics summed over the committed values (1 and no values: none)
    sample_rate: int  # audio is decoded at this rate

    def loader(self) -> Callable[[Item], Any]:
        """What reads an item's input in the DataLoader workers: ``item -> input``, or the reason (str)
        it cannot be read. Default: its audio at ``sample_rate`` (:class:`AudioReader`)."""
        return AudioReader(self.sample_rate)

    def seconds(self, item: Item, payload: Any) -> float:
        """Seconds of audio ``item`` holds, for the speed the progress bar shows."""
        return payload.numel() / self.sample_rate

    def start(self, dist: distributed.DistInfo) -> None:
        """Start-up checks and records, before anything is read or written (main process first)."""

    def share(self, items: list[Item], rank: int, world_size: int) -> list[Item]:
        """This rank's items (default: every ``world_size``-th from ``rank``)."""
        return items[rank::world_size]

    def order(self, pending: list[Item]) -> list[Item]:
        """The order in which this rank processes its pending items (default: corpus order)."""
        return pending

    @abstractmethod
    def done(self, item: Item, committed: dict[str, Any] | None) -> Outcome | None:
        """The outcome of an item already finished by an earlier run (its output complete; ``committed``:
        the newest row committed for it, if any), or None when it must be processed."""

    @abstractmethod
    def batcher(self) -> Batcher:
        """Groups this rank's decoded items into batches."""

    @abstractmethod
    def process(self, batch: Batch) -> list[Outcome]:
        """Write each item's output (atomically); an :class:`Outcome` per item done (or failed) now. A
        work that writes several items to one file (a shard) returns their outcomes once it is written."""

    def unreadable(self, item: Item, reason: str) -> list[Outcome]:
        """An item whose input could not be read (``reason``); the outcomes to commit now (default: its failure)."""
        return [Outcome(item, error=reason)]

    def finish(self) -> list[Outcome]:
        """The end of this rank's items: write what is held; the outcomes of the items written now."""
        return []

    @abstractmethod
    def merge(self, items: list[Item], world_size: int) -> dict[str, Any]:
        """Rank 0, once every rank of this run is done: combine the parts of ``world_size``; the summary."""


class AudioReader:
    """An item's audio (samples,) at ``sample_rate``, or the reason it cannot be used."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate

    def __call__(self, item: Item) -> torch.Tensor | str:
        if not item.audio_path:
            return "the row has no audio_path"
        try:
            audio = load_audio(item.audio_path, self.sample_rate)
            check_audio(audio, item.audio_path)
            return audio
        except AudioError as e:
            return e.reason


class Inputs(Dataset):
    """Reads items' inputs in DataLoader workers: index -> (item, input or the reason it failed)."""

    def __init__(self, items: list[Item], read: Callable[[Item], Any]):
        self.items, self.read = items, read

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Item, Any]:
        return self.items[i], self.read(self.items[i])


def default_workers(dist: distributed.DistInfo) -> int:
    """Decoding workers: none on CPU (the model already uses every core), else up to 4 per GPU process."""
    if dist.device.type == "cpu":
        return 0
    return max(1, min(4, (os.cpu_count() or 2) // dist.world_size - 1))


def record_settings(path: Path, settings: dict[str, Any], write: bool, mismatch: Callable[[dict, list[str]], str],
                    outputs: Path | None = None) -> None:
    """Refuse to mix outputs of different models or settings in one folder: compare ``settings`` with
    the ones ``path`` recorded (``mismatch(previous, changed_keys)`` is the one-line refusal); record them
    there on first use when ``write``. ``outputs``: the folder of the outputs these settings describe,
    refused when it exists without ``path`` (left from an earlier run). Raises :class:`JobError`."""
    if outputs is not None and not path.is_file() and outputs.exists():
        raise JobError(f"{outputs} exists but {path} does not: remove {outputs} (left from an earlier run) and run "
                       f"again")
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise JobError(f"{path}: unreadable ({' '.join(str(e).split())}); remove it to start afresh") from None
        changed = [k for k in {**previous, **settings} if previous.get(k) != settings.get(k)]
        if changed:
            raise JobError(mismatch(previous, changed))
    elif write:
        atomic_write_json(path, settings)


class JobError(ValueError):
    """A job that cannot start (the message is one line for the user)."""


def _as_is(item):
    return item


def run_job(work: Work, items: list[Item], dist: distributed.DistInfo, num_workers: int | None = None,
            poll_seconds: float = 1.0, log: Log | None = None) -> dict[str, Any]:
    """Process this rank's share of ``items`` with ``work``; rank 0 merges (:meth:`Work.merge`).

    Returns the summary: every rank ``failed_here``, ``utterances_this_run``, ``audio_seconds_this_run``
    and ``seconds``; rank 0 also what the merge returned. ``num_workers=None``: :func:`default_workers`.
    """
    log = log or (lambda message: tqdm.write(message, file=sys.stderr))
    num_workers = default_workers(dist) if num_workers is None else num_workers
    part_name = f"{dist.world_size}x{dist.rank}"
    marker = work.root / "parts" / f"{part_name}.done"
    if dist.is_main:
        work.start(dist)
    distributed.barrier()
    if not dist.is_main:
        work.start(dist)
    marker.unlink(missing_ok=True)
    distributed.barrier()

    # 1. what earlier runs finished: kept; this rank's part starts afresh with it
    mine = work.share(items, dist.rank, dist.world_size)
    committed = done_rows(work.root)
    pending, kept, kept_stats = [], [], RunningStats(work.dim)
    for item in mine:
        outcome = work.done(item, committed.get(item.uid))
        if outcome is None:
            pending.append(item)
            continue
        kept.append(outcome.row)
        if outcome.values is not None:
            kept_stats.add(outcome.values)
    part = StorePart.start(work.root, part_name, work.dim, kept, kept_stats)

    # 2. the rest, decoded in background workers, batched, processed and committed batch by batch
    pending = work.order(pending)
    bar = progress_bar(total=len(mine), initial=len(mine) - len(pending), unit="utt", disable=not dist.is_main,
               desc=f"{work.label}{'' if dist.world_size == 1 else f' (rank 0 of {dist.world_size})'}",
               dynamic_ncols=True)
    started, audio_seconds, done_here, failed_here, read_here = time.perf_counter(), 0.0, 0, 0, 0
    loader = DataLoader(Inputs(pending, work.loader()), batch_size=None, shuffle=False,
                        num_workers=num_workers, prefetch_factor=4 if num_workers else None, collate_fn=_as_is)
    batcher = work.batcher()
    lines_logged = [0]

    def failed(item: Item, reason: str) -> None:
        nonlocal failed_here
        failed_here += 1
        part.record_failure(item.uid, item.audio_path, reason)
        log(f"skipped {item.audio_path or f'row {item.uid}'}: {reason}")

    def commit(outcomes: list[Outcome]) -> None:
        nonlocal done_here
        rows, values = [], []
        for outcome in outcomes:
            if outcome.error is not None:
                failed(outcome.item, outcome.error)
                continue
            rows.append(outcome.row)
            if outcome.values is not None:
                values.append(outcome.values)
        part.commit(rows, values)
        done_here += len(rows)

    def process(batch: Batch) -> None:
        nonlocal audio_seconds, read_here
        commit(work.process(batch))
        read_here += len(batch)
        audio_seconds += sum(work.seconds(item, payload) for item, payload in batch)
        bar.update(len(batch))
        elapsed = max(time.perf_counter() - started, 1e-9)
        speed = f"{read_here / elapsed:.1f} utt/s, {audio_seconds / elapsed:.0f}x real time"
        bar.set_postfix_str(speed)
        if bar.disable and dist.is_main and elapsed >= LOG_EVERY_SECONDS * (1 + lines_logged[0]):
            lines_logged[0] += 1  # no bar (a log file): a line a minute instead
            log(f"{work.label}: {bar.n}/{len(mine)} utterances, {speed}")

    for item, audio in loader:
        if isinstance(audio, str):
            commit(work.unreadable(item, audio))
            bar.update(1)
            continue
        for batch in batcher.add(item, audio):
            process(batch)
    for batch in batcher.drain():
        process(batch)
    commit(work.finish())
    bar.close()
    summary: dict[str, Any] = {"failed_here": failed_here, "utterances_this_run": done_here,
                               "audio_seconds_this_run": audio_seconds, "seconds": time.perf_counter() - started}

    # 3. rank 0 waits for every rank's marker, then merges this run's parts
    marker.write_text("done\n")
    if dist.is_main:
        markers = [work.root / "parts" / f"{dist.world_size}x{r}.done" for r in range(dist.world_size)]
        while not all(m.is_file() for m in markers):
            time.sleep(poll_seconds)
        summary.update(work.merge(items, dist.world_size))
    distributed.barrier()
    distributed.cleanup()
    return summary
