"""Moving an export between its two layouts, on the corpus job (sharded over torchrun ranks, resumable):

    pack("latents/train/manifest.jsonl", "latents/train-shards")   # dcae shards pack: files -> Parquet shards
    unpack("latents/train-shards", "latents/train-files")          # dcae shards unpack: shards -> files + manifest

Packing reads each manifest row's latent file, and its token file and speaker embedding when the row
names them, into shard rows (:mod:`dcae.corpus.shards`); the shards' metadata takes the latents'
sample rate, frame rate and AE hash and the tokens' rate, tokenizer and codebook size. Unpacking
writes the per-file layout ``dcae export`` writes (``latents/``, ``tokens/``, ``speakers/``,
``manifest.jsonl``, ``stats.json``). Either way the latents, tokens and embeddings are the same numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcae import distributed
from dcae.corpus.job import Batch, Item, JobError, Outcome, SequentialBatches, run_job
from dcae.corpus.latent_file import LatentFileError, load_latent
from dcae.corpus.manifest import ManifestError, read_manifest
from dcae.corpus.shard_work import ShardWriting
from dcae.corpus.shards import DEFAULT_SHARD_MB, ShardError, ShardRow, index_shards, read_ids, read_rows
from dcae.corpus.speaker_file import load_speaker_embedding, save_speaker_embedding, speaker_relpath
from dcae.corpus.tensor_file import TensorFileError
from dcae.corpus.token_file import TokenFileError, load_tokens, save_tokens, token_relpath
from dcae.latent_export import LatentFiles

BATCH_ROWS = 64  # rows per batch of a conversion (files are read in the DataLoader workers)


def _one(values: set) -> Any:
    return next(iter(values)) if len(values) == 1 else None


class PackReader:
    """A manifest row -> its :class:`ShardRow` (latent, tokens, speaker embedding read from their files),
    or the reason it cannot be read."""

    def __call__(self, item: Item) -> ShardRow | str:
        row = item.row
        try:
            latent, meta = load_latent(row["latent_path"])
            tokens = token_rate = embedding = None
            if row.get("token_path"):
                values, token_meta = load_tokens(row["token_path"])
                tokens = values.numpy()
                token_rate = float(row["token_rate"]) if row.get("token_rate") else token_meta.token_rate
            if row.get("speaker_path"):
                embedding = load_speaker_embedding(row["speaker_path"]).numpy()
        except (LatentFileError, TokenFileError, ManifestError) as e:
            return str(e)
        return ShardRow(id=item.uid, latent=latent.numpy(), text=str(row.get("text", "")),
                        audio_path=str(row.get("audio_path", "")),
                        duration=row.get("duration") or meta.num_samples / meta.sample_rate, tokens=tokens,
                        token_rate=token_rate, speaker=None if row.get("speaker") is None else str(row["speaker"]),
                        speaker_embedding=embedding)


class PackWork(ShardWriting):
    """Manifest rows -> Parquet shards (module docstring)."""

    label = "pack"

    def __init__(self, manifest: Path, out: Path, rows: list[dict[str, Any]], shard_mb: float):
        self.root, self.manifest = out, manifest
        latent, meta = load_latent(rows[0]["latent_path"])
        self.meta = {"sample_rate": meta.sample_rate, "hop_length": meta.hop_length, "frame_rate": meta.frame_rate,
                     "model": meta.model}
        token_rows = [r for r in rows if r.get("token_path")][:1]
        if token_rows:
            _, token_meta = load_tokens(token_rows[0]["token_path"])
            self.meta.update(token_rate=token_meta.token_rate, tokenizer=token_meta.extra.get("tokenizer", ""),
                             codebook_size=int(token_meta.extra.get("codebook_size", 0)) or None)
        self.sample_rate = meta.sample_rate
        super().__init__(shard_mb)

    def loader(self) -> PackReader:
        return PackReader()

    def seconds(self, item: Item, payload: ShardRow) -> float:
        return float(payload.duration or 0.0)

    def batcher(self) -> SequentialBatches:
        return SequentialBatches(BATCH_ROWS, BATCH_ROWS, size=lambda row: 1)

    def process(self, batch: Batch) -> list[Outcome]:
        return self.write([item for item, _ in batch], [row for _, row in batch])


class UnpackReader:
    """A shard row reference -> the row (``read_rows``), keeping the last row group read (rows come in
    shard order, so each row group is read once)."""

    def __init__(self):
        self.cached: tuple[tuple[str, int], list[dict[str, Any]]] | None = None

    def __call__(self, item: Item) -> dict[str, Any] | str:
        key = (item.row["shard"], item.row["group"])
        try:
            if self.cached is None or self.cached[0] != key:
                self.cached = (key, read_rows(Path(key[0]), key[1]))
        except ShardError as e:
            return str(e)
        return self.cached[1][item.row["index"]]


class UnpackWork(LatentFiles):
    """Shard rows -> the per-file layout (module docstring)."""

    label = "unpack"

    def __init__(self, shards_root: Path, out: Path, meta: dict[str, Any], dim: int):
        geometry = {k: meta[k] for k in ("sample_rate", "hop_length", "frame_rate", "model")}
        super().__init__(out, dim, int(meta["sample_rate"]), geometry, {"model": meta["model"], "unpacked": True})
        self.token_meta = {k: str(meta[k]) for k in ("tokenizer", "codebook_size") if meta.get(k)}

    def loader(self) -> UnpackReader:
        return UnpackReader()

    def seconds(self, item: Item, payload: dict[str, Any]) -> float:
        return float(payload.get("duration") or 0.0) if isinstance(payload, dict) else 0.0

    def batcher(self) -> SequentialBatches:
        return SequentialBatches(BATCH_ROWS, BATCH_ROWS, size=lambda row: 1)

    def done(self, item: Item, committed: dict[str, Any] | None) -> Outcome | None:
        outcome = super().done(item, committed)
        if outcome is None or committed is None:  # text, token and speaker fields come with the committed row
            return None
        return Outcome(item, dict(committed), outcome.values)

    def process(self, batch: Batch) -> list[Outcome]:
        outcomes = []
        for item, row in batch:
            item = Item(item.index, item.uid, row.get("audio_path") or None,
                        {"text": row["text"]} if row.get("text") else {})
            num_samples = round(float(row.get("duration") or 0.0) * self.sample_rate)
            outcome = self.save(item, torch.from_numpy(np.ascontiguousarray(row["latent"])), num_samples)
            if row.get("tokens") is not None:
                save_tokens(self.root / token_relpath(item.uid), torch.from_numpy(row["tokens"]),
                            float(row["token_rate"]), extra=self.token_meta)
                outcome.row.update(token_path=token_relpath(item.uid), num_tokens=int(len(row["tokens"])),
                                   token_rate=float(row["token_rate"]))
            if row.get("speaker") is not None:
                outcome.row["speaker"] = row["speaker"]
            if row.get("speaker_embedding") is not None:
                try:
                    save_speaker_embedding(self.root / speaker_relpath(item.uid),
                                           torch.from_numpy(np.asarray(row["speaker_embedding"], np.float32)))
                except TensorFileError as e:
                    outcome = Outcome(item, error=str(e))
                    outcomes.append(outcome)
                    continue
                outcome.row["speaker_path"] = speaker_relpath(item.uid)
            outcomes.append(outcome)
        return outcomes


def pack(manifest: str | Path, out: str | Path, shard_mb: float = DEFAULT_SHARD_MB, device: str | None = None,
         num_workers: int | None = None) -> dict[str, Any]:
    """This rank's share of ``manifest``'s rows into Parquet shards in ``out``; rank 0 indexes them."""
    manifest, out = Path(manifest), Path(out)
    rows = read_manifest(manifest)
    dist = distributed.init_distributed(device or "cpu")
    items = [Item(i, str(row["id"]), None, row) for i, row in enumerate(rows)]
    return run_job(PackWork(manifest, out, rows, shard_mb), items, dist, num_workers)


def unpack(shards: str | Path, out: str | Path, device: str | None = None,
           num_workers: int | None = None) -> dict[str, Any]:
    """This rank's share of a shard folder's rows into the per-file layout in ``out``; rank 0 merges."""
    shards, out = Path(shards), Path(out)
    infos, problems = index_shards(shards)
    if problems:
        raise JobError(problems[0])
    if not infos:
        raise JobError(f"{shards}: no shards (shards.json or shards/*.parquet)")
    dist = distributed.init_distributed(device or "cpu")
    items = []
    for info in infos:
        ids = read_ids(info.path)
        start = 0
        for group, rows in enumerate(info.row_groups):
            for index in range(rows):
                items.append(Item(len(items), ids[start + index], None,
                                  {"shard": str(info.path), "group": group, "index": index}))
            start += rows
    dim = int(infos[0].meta.get("latent_dim") or read_rows(infos[0].path, 0, ["latent"])[0]["latent"].shape[0])
    meta = infos[0].meta
    return run_job(UnpackWork(shards, out, meta, dim), items, dist, num_workers)
