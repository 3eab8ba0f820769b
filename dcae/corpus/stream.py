"""A corpus as every TTS trainer reads it: Parquet shards or a per-file manifest behind one interface
(:func:`open_corpus`), streamed in batches by :class:`BatchStream`.

    corpus = open_corpus("latents/train")                   # a shard folder, or .../manifest.jsonl
    stream = BatchStream(corpus, make_item, collate, length=lambda item: item["latent"].shape[0],
                         seed=0, batch_frames=3200)         # or batch_size=16
    for position, batch in DataLoader(stream, batch_size=None, num_workers=2): ...

The corpus is cut into **units**: a Parquet row group of a shard (about 256 rows), or a run of
manifest rows. Every epoch has its own seeded order of the units; rank ``r`` of ``W`` takes every
W-th unit of that order and DataLoader worker ``k`` of ``K`` every K-th of those, so each row is
read once per epoch across the world, and no process holds a list of the corpus's rows: memory per
process depends on the window, not on the corpus (a unit list of ~40 bytes per 256 rows aside).
A worker reads its units a **window** (``window_units`` units) at a time, shuffles the window's
items with a seed of (seed, epoch, rank, worker, window), cuts them into batches (``batch_size``
items, or by a **frame budget**: items of similar length together, at most ``batch_frames`` padded
frames per batch, F5-TTS's dynamic batching) and yields the batches in a shuffled order. The
stream goes on from epoch to epoch without end, so ranks never wait for each other at an epoch's end.

**Exact resume.** Each batch comes with its position (worker role, epoch, window, batch); the
training harness records the last position each role delivered and saves it with the checkpoint.
:meth:`BatchStream.resume` starts every worker right after its saved position (re-reading one
window) and rotates the workers' roles so that the DataLoader's round-robin hands out the same
sequence of batches as the uninterrupted run.

A shard that cannot be read is named in one line and left out (counted in ``corpus.problems``);
a row group that fails while streaming is named once and skipped.
"""
from __future__ import annotations

import math
import random
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from dcae.corpus.latent_file import LatentFileError, LatentMeta, load_latent
from dcae.corpus.manifest import ManifestError, read_manifest
from dcae.corpus.shards import ShardError, ShardInfo, index_shards, is_shard_folder, read_rows
from dcae.corpus.speaker_file import load_speaker_embedding
from dcae.corpus.stats import LatentStats, RunningStats
from dcae.corpus.token_file import TokenFileError, load_tokens
from dcae.seeds import mix_seed

MANIFEST_UNIT_ROWS = 64  # manifest rows per unit (a unit's files are read together)


@dataclass(frozen=True)
class Unit:
    """What a worker reads at once: row group ``index`` of source ``source`` (a shard), or the manifest's
    rows ``[index * MANIFEST_UNIT_ROWS, ...)``; ``part``/``parts``: every ``parts``-th row of it from
    ``part`` on (a unit is split when the corpus has fewer units than readers)."""

    source: int
    index: int
    rows: int
    part: int = 0
    parts: int = 1


@dataclass
class TokenInfo:
    """What the token-reading trainers record about a corpus's speech tokens."""

    token_rate: float
    counts: list[int] | None  # tokens per row in corpus order (None: not gathered)
    largest_id: int  # -1 when there are none
    codebook_size: int | None  # what the tokens' metadata says (None: nothing)
    tokenizer: str  # the tokenizers the metadata names, comma-joined ("" when none)


class Corpus(ABC):
    """Rows of a corpus: ``id``, ``text``, ``num_frames``, ``duration``, ``latent`` (D, frames) float32,
    and where present ``tokens`` (N,) int64, ``token_rate``, ``speaker``, ``speaker_embedding`` (S,)."""

    path: Path
    units: list[Unit]
    problems: list[str]  # sources left out, one line each

    @property
    @abstractmethod
    def meta(self) -> LatentMeta:
        """Sample rate, hop, frame rate and AE hash of the latents."""

    @property
    @abstractmethod
    def latent_dim(self) -> int:
        """Values per latent frame."""

    @property
    def num_rows(self) -> int:
        return sum(u.rows for u in self.units)

    @abstractmethod
    def read(self, unit: Unit, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The rows of ``unit`` (``columns``: only these, when the layout can skip the others). Raises
        :class:`ManifestError` / :class:`ShardError` (one line)."""

    def rows(self, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every row, in corpus order, with ``columns`` (the light ones: a scan for a run's first start)."""
        for unit in self.units:
            yield from self.read(unit, columns)

    @abstractmethod
    def saved_stats(self) -> LatentStats | None:
        """The corpus's ``stats.json``, or None when it has none."""

    def stats(self) -> LatentStats:
        """``stats.json``, else computed from every latent."""
        saved = self.saved_stats()
        if saved is not None:
            return saved
        total = RunningStats(self.latent_dim)
        for row in self.rows(["latent"]):
            total.add_array(row["latent"])
        return total.finish()

    @abstractmethod
    def token_info(self, counts: bool = False) -> TokenInfo:
        """The speech tokens' rate (one per corpus, else :class:`ManifestError`), largest id, codebook
        size and tokenizer; with ``counts`` the tokens per row too. Every row needs tokens."""


class ManifestCorpus(Corpus):
    """A ``manifest.jsonl`` with one latent file (and token, speaker files) per row (:mod:`dcae.corpus.manifest`)."""

    def __init__(self, path: str | Path, unit_rows: int = MANIFEST_UNIT_ROWS):
        self.path = Path(path)
        self.rows_ = read_manifest(self.path)
        self.unit_rows = unit_rows
        n = len(self.rows_)
        self.units = [Unit(0, i, min(unit_rows, n - i * unit_rows)) for i in range(math.ceil(n / unit_rows))]
        self.problems = []
        self._first: tuple[torch.Tensor, LatentMeta] | None = None

    def _load(self, row: dict[str, Any]) -> tuple[torch.Tensor, LatentMeta]:
        try:
            return load_latent(row["latent_path"])
        except LatentFileError as e:
            raise ManifestError(f"{self.path}: row {row['id']}: {e}") from None

    def _first_latent(self) -> tuple[torch.Tensor, LatentMeta]:
        if self._first is None:
            self._first = self._load(self.rows_[0])
        return self._first

    @property
    def meta(self) -> LatentMeta:
        return self._first_latent()[1]

    @property
    def latent_dim(self) -> int:
        return int(self._first_latent()[0].shape[0])

    def read(self, unit: Unit, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        start = unit.index * self.unit_rows
        rows = self.rows_[start:start + self.unit_rows][unit.part::unit.parts]
        return [self._row(row, columns) for row in rows]

    def _row(self, row: dict[str, Any], columns: Sequence[str] | None) -> dict[str, Any]:
        want = set(columns) if columns is not None else None
        out = {"id": str(row["id"]), "text": str(row.get("text", "")), "num_frames": int(row["num_frames"]),
               "duration": row.get("duration"), "audio_path": row.get("audio_path", "")}
        if row.get("num_tokens") is not None:
            out["num_tokens"] = int(row["num_tokens"])
        if want is None or "latent" in want:
            out["latent"] = self._load(row)[0].numpy()
        if (want is None or "tokens" in want) and row.get("token_path"):
            tokens, meta = self._tokens(row)
            out["tokens"] = tokens.numpy()
            out["token_rate"] = float(row["token_rate"]) if row.get("token_rate") else meta.token_rate
        if row.get("speaker") is not None:
            out["speaker"] = str(row["speaker"])
        if row.get("speaker_path"):
            out["speaker_path"] = row["speaker_path"]
            if want is None or "speaker_embedding" in want:
                out["speaker_embedding"] = load_speaker_embedding(row["speaker_path"]).numpy()
        return out

    def _tokens(self, row: dict[str, Any]):
        try:
            return load_tokens(row["token_path"])
        except TokenFileError as e:
            raise ManifestError(f"{self.path}: row {row['id']}: {e}") from None

    def saved_stats(self) -> LatentStats | None:
        path = self.path.parent / "stats.json"
        return LatentStats.load(path) if path.is_file() else None

    def token_info(self, counts: bool = False) -> TokenInfo:
        info = scan_token_files(self.path, self.rows_)
        return info if counts else TokenInfo(info.token_rate, None, info.largest_id, info.codebook_size, info.tokenizer)


def scan_token_files(manifest: str | Path, rows: list[dict[str, Any]]) -> TokenInfo:
    """Read every row's token file (``token_path``, absolute as :func:`~dcae.corpus.read_manifest` gives
    it): one token rate (each row's ``token_rate``, else its file's), the counts, the largest id, and
    the codebook size and tokenizer the files' metadata name. Raises :class:`ManifestError` naming the row."""
    rate, numbers, codebooks, tokenizers, largest = None, [], set(), set(), -1
    for row in rows:
        if not row.get("token_path"):
            raise ManifestError(f"{manifest}: row {row['id']} has no token_path (add speech tokens with dcae tokens)")
        try:
            tokens, meta = load_tokens(row["token_path"])
        except TokenFileError as e:
            raise ManifestError(f"{manifest}: row {row['id']}: {e}") from None
        row_rate = float(row["token_rate"]) if row.get("token_rate") else meta.token_rate
        rate = _same_rate(Path(manifest), row["id"], rate, row_rate, row["token_path"])
        numbers.append(tokens.numel())
        if tokens.numel():
            largest = max(largest, int(tokens.max()))
        if "codebook_size" in meta.extra:
            codebooks.add(int(meta.extra["codebook_size"]))
        tokenizers.add(meta.extra.get("tokenizer", ""))
    return TokenInfo(rate, numbers, largest, max(codebooks) if codebooks else None,
                     ",".join(sorted(t for t in tokenizers if t)))


def _same_rate(source: Path, uid: str, rate: float | None, row_rate: float | None, where: str) -> float:
    if row_rate is None:
        raise ManifestError(f"{source}: row {uid}: no token_rate (neither in the row nor in {where})")
    if rate is not None and abs(row_rate - rate) > 1e-6 * rate:
        raise ManifestError(f"{source}: row {uid}: token rate {row_rate:g} differs from the first row's {rate:g} "
                            f"(one tokenizer per run)")
    return row_rate


class ShardCorpus(Corpus):
    """A folder of Parquet shards (:mod:`dcae.corpus.shards`); units are row groups."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.shards: list[ShardInfo]
        try:
            self.shards, self.problems = index_shards(self.path)
        except ShardError as e:
            raise ManifestError(str(e)) from None
        if not self.shards:
            why = f": {self.problems[0]}" if self.problems else ""
            raise ManifestError(f"{self.path}: no readable shard{why}")
        self.units = [Unit(s, g, rows) for s, shard in enumerate(self.shards) for g, rows in enumerate(shard.row_groups)
                      if rows]

    @property
    def meta(self) -> LatentMeta:
        m = self.shards[0].meta
        return LatentMeta(sample_rate=int(m["sample_rate"]), hop_length=int(m["hop_length"]),
                          frame_rate=float(m["frame_rate"]), num_samples=0, model=str(m["model"]))

    @property
    def latent_dim(self) -> int:
        m = self.shards[0].meta
        if "latent_dim" in m:
            return int(m["latent_dim"])
        return int(read_rows(self.shards[0].path, 0, ["latent"])[0]["latent"].shape[0])

    def read(self, unit: Unit, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        names = None if columns is None else list({"id", "text", "num_frames", "duration", "token_rate", "speaker",
                                                    *columns})
        rows = read_rows(self.shards[unit.source].path, unit.index, names)
        return rows[unit.part::unit.parts]

    def rows(self, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
        for unit in self.units:
            for row in self.read(unit, columns):
                if "tokens" in row and row["tokens"] is not None:
                    row["num_tokens"] = len(row["tokens"])
                yield row

    def saved_stats(self) -> LatentStats | None:
        path = self.path / "stats.json"
        return LatentStats.load(path) if path.is_file() else None

    def token_info(self, counts: bool = False) -> TokenInfo:
        rate, numbers, largest, codebooks, tokenizers = None, [], -1, set(), set()
        for shard in self.shards:
            table = pq.read_table(shard.path, columns=[c for c in ("id", "tokens", "token_rate")
                                                       if c in pq.read_schema(shard.path).names])
            if "tokens" not in table.column_names:
                raise ManifestError(f"{shard.path}: no tokens column (add speech tokens with dcae tokens)")
            tokens = table.column("tokens")
            if tokens.null_count:
                missing = table.column("id").filter(pc.is_null(tokens))[0].as_py()
                raise ManifestError(f"{shard.path}: row {missing} has no tokens (add speech tokens with dcae tokens)")
            rates = table.column("token_rate").to_pylist() if "token_rate" in table.column_names else \
                [shard.meta.get("token_rate")] * table.num_rows
            for uid, row_rate in zip(table.column("id").to_pylist(), rates):
                rate = _same_rate(shard.path, uid, rate, row_rate if row_rate else shard.meta.get("token_rate"),
                                  "the shard's metadata")
            if counts:
                numbers += pc.list_value_length(tokens).to_pylist()
            top = pc.max(pc.list_flatten(tokens)).as_py()
            largest = max(largest, -1 if top is None else int(top))
            if shard.meta.get("codebook_size"):
                codebooks.add(int(shard.meta["codebook_size"]))
            tokenizers.add(str(shard.meta.get("tokenizer", "")))
        return TokenInfo(rate, numbers if counts else None, largest, max(codebooks) if codebooks else None,
                         ",".join(sorted(t for t in tokenizers if t)))


def open_corpus(path: str | Path) -> Corpus:
    """A shard folder (``shards.json`` or ``shards/*.parquet``), a ``manifest.jsonl``, or a folder holding
    one. Raises :class:`ManifestError` (one line)."""
    path = Path(path)
    if path.is_dir() and is_shard_folder(path):
        return ShardCorpus(path)
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        return ManifestCorpus(path / "manifest.jsonl")
    if path.is_file():
        return ManifestCorpus(path)
    raise ManifestError(f"{path}: neither a manifest.jsonl nor a shard folder (shards.json or shards/*.parquet)")


# ---------------------------------------------------------------------------------------- the stream
Position = tuple[int, int, int, int]  # (worker role, epoch, window, batch) of a batch


def units_for(units: list[Unit], seed: int, epoch: int, rank: int, world_size: int, role: int,
              workers: int) -> list[Unit]:
    """The units reader ``(rank, role)`` reads in ``epoch``: a seeded order of all units, every
    ``world_size``-th from ``rank``, then every ``workers``-th of those from ``role``."""
    order = torch.randperm(len(units), generator=torch.Generator().manual_seed(mix_seed(seed, epoch, 0x5EED))).tolist()
    return [units[i] for i in order][rank::world_size][role::workers]


def split_units(units: list[Unit], readers: int) -> list[Unit]:
    """Units cut into parts when there are fewer than two per reader (a small corpus): every reader
    still gets rows every epoch."""
    if len(units) >= 2 * readers or not units:
        return units
    parts = math.ceil(2 * readers / len(units))
    return [Unit(u.source, u.index, len(range(p, u.rows, parts)), p, parts) for u in units for p in range(parts)
            if p < u.rows]


def frame_budget_batches(items: list[Any], lengths: list[int], batch_frames: int, max_items: int) -> list[list[Any]]:
    """Items sorted by length, cut so that a batch's padded size (items x longest) stays within
    ``batch_frames`` and ``max_items`` (an item longer than the budget goes alone)."""
    batches, current = [], []
    for i in sorted(range(len(items)), key=lambda i: lengths[i]):  # ascending: the newest item is the longest
        if current and ((len(current) + 1) * lengths[i] > batch_frames or len(current) >= max_items):
            batches.append(current)
            current = []
        current.append(items[i])
    if current:
        batches.append(current)
    return batches


class BatchStream(IterableDataset):
    """Batches of a corpus for one rank, forever, epoch after epoch (module docstring).

    ``make_item(row, rng)``: a row -> the trainer's item, or None to leave the row out (too long);
    ``rng`` is a :class:`random.Random` seeded per window, for items with random choices.
    ``collate(items)`` -> the batch; ``length(item)`` -> its length for the frame budget.
    ``batch_frames`` > 0: batches by that budget of padded frames (at most ``max_batch`` items); else
    ``batch_size`` items. Yields ``(position, batch)``.
    """

    def __init__(self, corpus: Corpus, make_item: Callable[[dict[str, Any], random.Random], Any],
                 collate: Callable[[list[Any]], Any], length: Callable[[Any], int], *, seed: int = 0,
                 batch_size: int = 16, batch_frames: int = 0, max_batch: int = 256, rank: int = 0,
                 world_size: int = 1, workers: int = 0, window_units: int = 8,
                 columns: Sequence[str] | None = None):
        self.corpus, self.make_item, self.collate, self.length = corpus, make_item, collate, length
        self.seed, self.batch_size, self.batch_frames, self.max_batch = seed, batch_size, batch_frames, max_batch
        self.rank, self.world_size, self.window_units, self.columns = rank, world_size, window_units, columns
        self.workers = max(1, workers)
        self.units = split_units(corpus.units, world_size * self.workers)
        self.starts: dict[int, tuple[int, int, int]] = {}  # role -> (epoch, window, batch) to start from
        self.role_offset = 0

    def resume(self, state: dict[str, Any] | None) -> str | None:
        """Continue after ``state`` (:meth:`PositionLog.state` of an earlier run of this rank); a reason
        it starts afresh instead (another number of workers), else None."""
        if not state:
            return None
        if int(state.get("workers", 0)) != self.workers:
            return (f"the data stream was saved with {state.get('workers')} worker(s), now {self.workers}: "
                    f"it starts a new epoch order")
        self.starts = {int(role): tuple(pos) for role, pos in state["roles"].items()}
        self.role_offset = int(state["next_role"])
        return None

    def __iter__(self) -> Iterator[tuple[Position, Any]]:
        info = get_worker_info()
        slot = info.id if info is not None else 0
        role = (slot + self.role_offset) % self.workers
        epoch, window0, batch0 = self.starts.get(role, (0, 0, 0))
        warned: set[str] = set()
        empty_epochs = 0
        while True:
            units = units_for(self.units, self.seed, epoch, self.rank, self.world_size, role, self.workers)
            made = 0
            for w in range(window0, math.ceil(len(units) / self.window_units)):
                batches = self._window(units[w * self.window_units:(w + 1) * self.window_units],
                                       mix_seed(self.seed, epoch, self.rank, role, w), warned)
                made += len(batches)
                for b in range(batch0, len(batches)):
                    yield (role, epoch, w, b), self.collate(batches[b])
                batch0 = 0
            window0 = 0
            epoch += 1
            empty_epochs = 0 if made else empty_epochs + 1
            if empty_epochs == 2:  # not one usable row: stop rather than spin
                raise ManifestError(f"{self.corpus.path}: rank {self.rank}, reader {role} found no usable row in "
                                    f"two epochs (every row left out: too long for --max-frames / --max-tokens?)")

    def _window(self, units: list[Unit], seed: int, warned: set[str]) -> list[list[Any]]:
        rng = random.Random(seed)
        items = []
        for unit in units:
            try:
                rows = self.corpus.read(unit, self.columns)
            except ShardError as e:  # a row group that broke after the shard was indexed: named once, skipped
                if str(e) not in warned:
                    warned.add(str(e))
                    print(f"warning: {e}; its rows are skipped", file=sys.stderr)
                continue
            for row in rows:
                item = self.make_item(row, rng)
                if item is not None:
                    items.append(item)
        rng.shuffle(items)
        if self.batch_frames > 0:
            batches = frame_budget_batches(items, [self.length(it) for it in items], self.batch_frames,
                                           self.max_batch)
        else:
            batches = [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        rng.shuffle(batches)
        return batches


def describe(corpus: Corpus) -> str:
    """One line: what was opened."""
    kind = "shards" if isinstance(corpus, ShardCorpus) else "manifest"
    left = f", {len(corpus.problems)} shard(s) left out" if corpus.problems else ""
    return f"{corpus.path} ({kind}): {corpus.num_rows} utterances in {len(corpus.units)} units{left}"
