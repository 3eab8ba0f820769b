"""The training data of the TTS trainers: the corpus ``--manifest`` names (a ``manifest.jsonl`` or a
folder of Parquet shards, :func:`dcae.corpus.stream.open_corpus`), streamed in batches by
:class:`dcae.corpus.stream.BatchStream` (``--batch-size`` items, or ``--batch-frames`` padded frames
per batch, at most ``--batch-size`` items), with the run's statistics and each trainer's items."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from dcae.corpus import LatentStats, ManifestError
from dcae.corpus.stream import BatchStream, Corpus, ManifestCorpus, describe, open_corpus
from dcae.training import TrainingRun
from tts.trainers.speaker import speaker_paths


def training_corpus(cfg: Any, log: Callable[[str], None] | None = None) -> Corpus:
    """The corpus of ``cfg.manifest``; shards left out are named, one line each."""
    corpus = open_corpus(cfg.manifest)
    if log is not None:
        log(describe(corpus))
        for problem in corpus.problems:
            log(f"warning: {problem}; left out")
    return corpus


def corpus_stats(corpus: Corpus, stats: str | None) -> LatentStats:
    """``--stats``: "auto" (the corpus's stats.json, else computed), a path, or none (identity)."""
    if stats in (None, "none"):
        dim = corpus.latent_dim
        return LatentStats(torch.zeros(dim), torch.ones(dim), 0)
    if stats == "auto":
        try:
            return corpus.stats()
        except ValueError as e:
            if isinstance(e, ManifestError):
                raise
            raise ManifestError(f"{corpus.path}: {e}") from None
    return LatentStats.load(stats)


def check_speakers(corpus: Corpus, speaker_dim: int) -> None:
    """With ``--speaker-dim`` S > 0 every row needs a speaker embedding: a ``speaker_path`` file that
    exists (checked here, before training) or a ``speaker_embedding`` column (checked per row)."""
    if speaker_dim > 0 and isinstance(corpus, ManifestCorpus):
        speaker_paths(corpus.path, corpus.rows_, speaker_dim)


def speaker_of(row: dict[str, Any], speaker_dim: int, source: Path) -> torch.Tensor:
    """The row's speaker embedding (S,), checked against ``--speaker-dim``."""
    if row.get("speaker_embedding") is None:
        raise ManifestError(f"{source}: row {row['id']} has no speaker embedding "
                            f"(--speaker-dim {speaker_dim} needs one per row)")
    emb = torch.as_tensor(row["speaker_embedding"], dtype=torch.float32)
    if emb.numel() != speaker_dim:
        where = row.get("speaker_path") or f"of row {row['id']}"
        raise ManifestError(f"speaker embedding {where}: {emb.numel()} values, --speaker-dim is {speaker_dim}")
    return emb


def batch_stream(cfg: Any, run: TrainingRun, corpus: Corpus, make_item: Callable, collate: Callable,
                 length: Callable, columns: Sequence[str]) -> BatchStream:
    """This rank's stream of batches (seeded by ``--seed``, ``--num-workers`` readers)."""
    return BatchStream(corpus, make_item, collate, length, seed=cfg.seed, batch_size=cfg.batch_size,
                       batch_frames=cfg.batch_frames, max_batch=cfg.batch_size if cfg.batch_frames else 256,
                       rank=run.rank, world_size=run.world_size, workers=cfg.num_workers, columns=columns)
