"""Speaker embeddings for an exported corpus (``dcae speakers``): one embedding per manifest row from a
pretrained verification model (:mod:`tts.speakers.verification`), and one per speaker, averaged.

    export_speakers("latents/train/manifest.jsonl", load_verifier("resemblyzer"))   # every rank calls it

The work of ``dcae speakers`` on the corpus job (:mod:`dcae.corpus.job`: rank ``r`` of ``W`` takes the
rows ``r::W``, resumable, bad rows named and skipped, rank 0 merges). Layout added to an export folder
``DIR`` (the one ``dcae export`` wrote)::

    DIR/speakers.json                        the model (name, dimension, fingerprint): a rerun must match
    DIR/speakers/ab/<id>.safetensors         one embedding (S,) per utterance (:mod:`dcae.corpus.speaker_file`)
    DIR/speakers/by_speaker/<name>.safetensors   the mean of a speaker's utterance embeddings (rows with a ``speaker``)
    DIR/speakers/by_speaker.json             speaker id -> that file and its number of utterances
    DIR/speakers/parts/<W>x<R>.*             rows committed and failures of rank R of a W-process run
    DIR/speakers/failed.jsonl                merged failures of this run
    DIR/manifest.jsonl                       rewritten atomically: ``speaker_path`` added

For a shard folder (:class:`ShardSpeakers`) the embeddings fill the shards' ``speaker_embedding``
column instead; ``by_speaker/`` is written the same way.

Crash safety: an embedding file is written atomically, then its row is committed to the rank's part. A
rerun keeps the files that are complete and written by this model (its fingerprint is in each file's
metadata) and embeds only the rest. Rows that fail keep everything else and get no ``speaker_path``.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from dcae import distributed
from dcae.atomic import atomic_write_json, atomic_write_text
from dcae.corpus import read_manifest
from dcae.corpus.job import Batch, Item, JobError, Outcome, SequentialBatches, Work, record_settings, run_job
from dcae.corpus.manifest import ManifestError, audio_path_of, read_raw_rows, row_seconds
from dcae.corpus.shard_work import ShardColumns, shard_items
from dcae.corpus.shards import ShardInfo, index_shards, replace_columns
from dcae.corpus.speaker_file import SPEAKERS_DIR, read_speaker_file, save_speaker_embedding, speaker_relpath
from dcae.corpus.store import part_failures, part_rows
from dcae.paths import safe_stem
from tts.speakers.verification import SpeakerVerifier

SETTINGS_FILE = "speakers.json"
FINGERPRINT_KEY = "model"  # embedding file metadata: the verification model's fingerprint
BY_SPEAKER = "by_speaker"


class SpeakerExportError(JobError):
    """A speaker-embedding export that cannot start (the message is one line for the user)."""


def write_speaker_means(root: Path, rows: list[tuple[str | None, torch.Tensor]], meta: dict[str, str]
                        ) -> dict[str, Any]:
    """Mean embedding of every speaker id among ``rows`` ((speaker, embedding (S,))) into
    ``root/speakers/by_speaker/``, and the index ``by_speaker.json``; the index."""
    sums: dict[str, torch.Tensor] = {}
    counts: Counter = Counter()
    for speaker, embedding in rows:
        if speaker is None or speaker == "":
            continue
        sums[speaker] = sums.get(speaker, 0) + embedding.double()
        counts[speaker] += 1
    index = {}
    for speaker in sorted(sums):
        rel = f"{SPEAKERS_DIR}/{BY_SPEAKER}/{safe_stem(speaker)}.safetensors"
        save_speaker_embedding(root / rel, (sums[speaker] / counts[speaker]).float(),
                               {**meta, "utterances": str(counts[speaker])})
        index[speaker] = {"path": rel, "utterances": counts[speaker]}
    atomic_write_json(root / SPEAKERS_DIR / f"{BY_SPEAKER}.json", index)
    return index


def verify_speaker_file(path: Path, fingerprint: str, dim: int) -> torch.Tensor | None:
    """The embedding of a complete speaker file written by the model with ``fingerprint``, else None."""
    try:
        embedding, meta = read_speaker_file(path, dim)
    except ManifestError:
        return None
    return embedding if meta.get(FINGERPRINT_KEY) == fingerprint else None


class SpeakerExport(Work):
    """Audio -> one speaker embedding per manifest row, the speakers' means, and the manifest rewritten
    with ``speaker_path``."""

    label = "speakers"

    def __init__(self, manifest: Path, verifier: SpeakerVerifier):
        self.manifest, self.verifier = manifest, verifier
        self.export_root = manifest.parent
        self.root = self.export_root / SPEAKERS_DIR
        self.sample_rate = verifier.sample_rate
        self.settings = {"encoder": verifier.name, "dim": verifier.dim, FINGERPRINT_KEY: verifier.fingerprint}
        self.file_meta = {"encoder": verifier.name, FINGERPRINT_KEY: verifier.fingerprint}

    def start(self, dist: distributed.DistInfo) -> None:
        path = self.export_root / SETTINGS_FILE
        record_settings(path, self.settings, dist.is_main, lambda previous, changed: (
            f"{self.export_root}: already holds speaker embeddings of another model ({previous.get('encoder')}, "
            f"{previous.get(FINGERPRINT_KEY)}; this one is {self.settings['encoder']}, "
            f"{self.settings[FINGERPRINT_KEY]}); remove {path} and {self.root} to replace them"), outputs=self.root)

    def order(self, pending: list[Item]) -> list[Item]:
        return sorted(pending, key=lambda item: row_seconds(item.row), reverse=True)

    def done(self, item: Item, committed: dict[str, Any] | None) -> Outcome | None:
        found = verify_speaker_file(self.export_root / speaker_relpath(item.uid), self.verifier.fingerprint,
                                    self.verifier.dim)
        return None if found is None else Outcome(item, self._row(item.uid))

    def _row(self, uid: str) -> dict[str, Any]:
        return {"id": uid, "speaker_path": speaker_relpath(uid)}

    def batcher(self) -> SequentialBatches:
        return SequentialBatches(1, 1)  # one utterance at a time: the verification models embed one signal

    def embed(self, batch: Batch) -> list[tuple[Item, torch.Tensor | str]]:
        """Each item's embedding (S,), or the one-line reason it could not be embedded."""
        out = []
        for item, audio in batch:
            try:
                out.append((item, self.verifier.embed(audio)))
            except ValueError as e:
                out.append((item, " ".join(str(e).split())))
        return out

    def process(self, batch: Batch) -> list[Outcome]:
        outcomes = []
        for item, result in self.embed(batch):
            if isinstance(result, str):
                outcomes.append(Outcome(item, error=result))
                continue
            save_speaker_embedding(self.export_root / speaker_relpath(item.uid), result, self.file_meta)
            outcomes.append(Outcome(item, self._row(item.uid)))
        return outcomes

    def merge(self, items: list[Item], world_size: int) -> dict[str, Any]:
        """Rewrite the manifest (``speaker_path`` added, or removed for failed rows), the speakers' means
        and ``speakers/failed.jsonl``."""
        done = part_rows(self.root, world_size)
        failed = part_failures(self.root, world_size)
        rows = []
        for row in read_raw_rows(self.manifest):
            row = {k: v for k, v in row.items() if k != "speaker_path"}
            if str(row["id"]) in done:
                row["speaker_path"] = speaker_relpath(str(row["id"]))
            rows.append(row)
        atomic_write_text(self.manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        means = write_speaker_means(self.export_root, [
            (r.get("speaker"), read_speaker_file(self.export_root / r["speaker_path"])[0])
            for r in rows if "speaker_path" in r and r.get("speaker")], self.file_meta)
        still_failed = [failed[str(r["id"])] for r in rows if str(r["id"]) in failed and "speaker_path" not in r]
        atomic_write_text(self.root / "failed.jsonl", "".join(json.dumps(r) + "\n" for r in still_failed))
        return {"utterances": len(rows), "with_embedding": sum(1 for r in rows if "speaker_path" in r),
                "speakers": len(means), "failed": len(still_failed), "dim": self.verifier.dim}


class ShardSpeakers(ShardColumns, SpeakerExport):
    """Audio -> speaker embeddings filled into a shard folder's ``speaker_embedding`` column
    (:class:`~dcae.corpus.shard_work.ShardColumns`: whole shards per rank, a shard rewritten once every
    row of it is embedded, with the model's fingerprint in its metadata)."""

    model_key = "speakers_model"

    def __init__(self, root: Path, shards: list[ShardInfo], verifier: SpeakerVerifier):
        SpeakerExport.__init__(self, root / "manifest.jsonl", verifier)
        ShardColumns.__init__(self, shards, verifier.fingerprint)
        self.export_root, self.root = root, root / SPEAKERS_DIR

    def process(self, batch: Batch) -> list[Outcome]:
        return [outcome for item, result in self.embed(batch) for outcome in self.hold(item, result)]

    def fill(self, path: Path, values: list) -> None:
        column = pa.array([None if v is None else v.tolist() for v in values], pa.list_(pa.float32()))
        replace_columns(path, {"speaker_embedding": column},
                        {self.model_key: self.fingerprint, "speakers_encoder": self.verifier.name})

    def merge(self, items: list[Item], world_size: int) -> dict[str, Any]:
        """Counts and the speakers' means from the shards themselves; ``speakers/failed.jsonl``."""
        with_embedding, pairs = 0, []
        for info in index_shards(self.export_root)[0]:
            if info.meta.get("speakers_model") != self.verifier.fingerprint:
                continue
            names = pq.read_schema(info.path).names
            table = pq.read_table(info.path, columns=[c for c in ("speaker", "speaker_embedding") if c in names])
            embeddings = table.column("speaker_embedding")
            with_embedding += len(embeddings) - embeddings.null_count
            if "speaker" in names:
                speakers = table.column("speaker").to_pylist()
                for speaker, valid, emb in zip(speakers, pc.is_valid(embeddings).to_pylist(), embeddings.to_pylist()):
                    if speaker and valid:
                        pairs.append((speaker, torch.tensor(emb)))
        means = write_speaker_means(self.export_root, pairs, self.file_meta)
        failed = list(part_failures(self.root, world_size).values())
        atomic_write_text(self.root / "failed.jsonl", "".join(json.dumps(r) + "\n" for r in failed))
        return {"utterances": len(items), "with_embedding": with_embedding, "speakers": len(means),
                "failed": len(failed), "dim": self.verifier.dim}


def export_speakers(manifest: str | Path, verifier: SpeakerVerifier, num_workers: int | None = None,
                    poll_seconds: float = 1.0, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Embed this rank's share of ``manifest``'s rows; rank 0 merges, rewrites the manifest and writes the
    speakers' means. Returns the summary (rank 0: ``utterances``, ``with_embedding``, ``speakers``,
    ``failed``, ``dim``; every rank: ``failed_here``, ``utterances_this_run``, ``audio_seconds_this_run``,
    ``seconds``). Raises :class:`SpeakerExportError` / :class:`ManifestError` (one line) when it cannot start."""
    manifest = Path(manifest)
    dist = distributed.init_distributed("cpu")
    rows = read_manifest(manifest)  # checks the file: one line naming the line and the reason
    duplicates = [uid for uid, count in Counter(str(r["id"]) for r in rows).items() if count > 1]
    if duplicates:
        raise SpeakerExportError(f"{manifest}: id {duplicates[0]} appears more than once "
                                 f"({len(duplicates)} duplicated id(s)); ids must be unique")
    items = [Item(index=i, uid=str(row["id"]), audio_path=None if path is None else str(path), row=row)
             for i, (row, path) in enumerate((row, audio_path_of(row, manifest.parent))
                                             for row in read_raw_rows(manifest))]
    return run_job(SpeakerExport(manifest, verifier), items, dist, num_workers, poll_seconds, log)


def export_shard_speakers(root: str | Path, verifier: SpeakerVerifier, num_workers: int | None = None,
                          poll_seconds: float = 1.0, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """:func:`export_speakers` for a shard folder (:class:`ShardSpeakers`): the embeddings go into the shards."""
    root = Path(root)
    shards, items = shard_items(root, SpeakerExportError)
    dist = distributed.init_distributed("cpu")
    return run_job(ShardSpeakers(root, shards, verifier), items, dist, num_workers, poll_seconds, log)
