"""Speech tokens for an exported corpus (``dcae tokens``): one token file per manifest row, next to its latent.

    export_tokens("latents/train/manifest.jsonl", tokenizer)   # every rank of a torchrun group calls it

The work of ``dcae tokens`` on the corpus job (:mod:`dcae.corpus.job`: rank ``r`` of ``W`` takes the
manifest rows ``r::W``, resumable, bad rows named and skipped, rank 0 merges). Layout added to an
export folder ``DIR`` (the one ``dcae export`` wrote)::

    DIR/tokens.json                       the tokenizer (name, rates, codebook, weights fingerprint): a rerun must match
    DIR/tokens/ab/<id>.safetensors        one token file per utterance (:mod:`dcae.corpus.token_file`)
    DIR/tokens/parts/<W>x<R>.*            rows committed and failures of rank R of a W-process run
    DIR/tokens/failed.jsonl               merged failures of this run
    DIR/manifest.jsonl                    rewritten atomically: token_path, num_tokens, token_rate added

Crash safety: a token file is written atomically, then its row is committed to the rank's part. A
rerun keeps the token files that are complete, of the length of the id's newest committed row and
written by this tokenizer (the weights fingerprint is in each file's metadata), takes over files that
were written but not committed, and tokenizes only the rest. Rows that fail keep their latent and
get no token fields.

Audio is each row's ``audio_path`` decoded at the tokenizer's rate (:func:`dcae.audio.load_audio`),
batched longest first with bounded samples per batch. Tokenizers guarantee batch == single, so a
token file equals ``tokenizer.tokenize`` of that file alone.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from dcae import distributed
from dcae.atomic import atomic_write_text
from dcae.corpus import read_manifest
from dcae.corpus.job import Batch, Item, JobError, Outcome, SequentialBatches, Work, record_settings, run_job
from dcae.corpus.manifest import audio_path_of, read_raw_rows, row_seconds
from dcae.corpus.shard_work import ShardColumns, shard_items
from dcae.corpus.shards import ShardInfo, index_shards, replace_columns, token_columns
from dcae.corpus.store import part_failures, part_rows
from dcae.corpus.token_file import TOKENS_DIR, TokenFileError, load_tokens, save_tokens, token_relpath
from tts.tokenizers.base import SpeechTokenizer

SETTINGS_FILE = "tokens.json"
TOKEN_KEYS = ("token_path", "num_tokens", "token_rate")
FINGERPRINT_KEY = "model"  # token file metadata: the tokenizer's weights fingerprint


class TokenExportError(JobError):
    """A token export that cannot start (the message is one line for the user)."""


def tokenizer_fingerprint(tokenizer: SpeechTokenizer) -> str:
    """Short hash of the tokenizer's kind, rates and weights: two tokenizers that could give different
    tokens have different fingerprints."""
    h = hashlib.sha256(f"{tokenizer.name}|{tokenizer.sample_rate}|{tokenizer.token_rate!r}|{tokenizer.codebook_size}"
                       .encode())
    for key, value in sorted(tokenizer.state_dict().items()):
        value = value.detach().to("cpu").contiguous()
        h.update(f"{key}|{value.dtype}|{tuple(value.shape)}".encode())
        h.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def tokenizer_settings(tokenizer: SpeechTokenizer, fingerprint: str) -> dict[str, Any]:
    return {"tokenizer": tokenizer.name, "sample_rate": tokenizer.sample_rate, "token_rate": tokenizer.token_rate,
            "codebook_size": tokenizer.codebook_size, FINGERPRINT_KEY: fingerprint}


def with_tokens(row: dict[str, Any], num_tokens: int | None, uid: str, token_rate: float) -> dict[str, Any]:
    """``row`` with the token fields set (``num_tokens`` given) or removed (None); other fields unchanged."""
    out = {k: v for k, v in row.items() if num_tokens is not None or k not in TOKEN_KEYS}
    if num_tokens is not None:
        out.update(token_path=token_relpath(uid), num_tokens=int(num_tokens), token_rate=token_rate)
    return out


def tokenize_batch(tokenizer: SpeechTokenizer, clips: list[torch.Tensor]) -> list[torch.Tensor | str]:
    """Tokens of each clip (at the tokenizer's rate), or the reason it could not be tokenized. A batch
    that raises is retried clip by clip, so one bad clip fails alone (batch == single: same tokens)."""
    try:
        return list(tokenizer.tokenize(clips, tokenizer.sample_rate))
    except ValueError as e:
        if len(clips) > 1:
            return [tokenize_batch(tokenizer, [clip])[0] for clip in clips]
        return [re.sub(r"^clip 0: ", "", " ".join(str(e).split()))]


def verify_token_file(path: Path, fingerprint: str, num_tokens: int | None = None) -> int | None:
    """The token count of a complete token file written by the tokenizer with ``fingerprint`` (and with
    ``num_tokens`` tokens when given), else None."""
    try:
        tokens, meta = load_tokens(path)
    except TokenFileError:
        return None
    if meta.extra.get(FINGERPRINT_KEY) != fingerprint or (num_tokens is not None and tokens.numel() != num_tokens):
        return None
    return tokens.numel()


class TokenExport(Work):
    """Audio -> one token file per manifest row, and the manifest rewritten with the token fields."""

    label = "tokens"

    def __init__(self, manifest: Path, tokenizer: SpeechTokenizer, batch_size: int, max_batch_seconds: float):
        self.manifest, self.tokenizer = manifest, tokenizer
        self.export_root = manifest.parent
        self.root = self.export_root / TOKENS_DIR
        self.sample_rate = tokenizer.sample_rate
        self.fingerprint = tokenizer_fingerprint(tokenizer)
        self.settings = tokenizer_settings(tokenizer, self.fingerprint)
        self.batch_size, self.max_batch_samples = batch_size, int(max_batch_seconds * tokenizer.sample_rate)

    def start(self, dist: distributed.DistInfo) -> None:
        path = self.export_root / SETTINGS_FILE
        record_settings(path, self.settings, dist.is_main, lambda previous, changed: (
            f"{self.export_root}: already holds tokens of another tokenizer ({previous.get('tokenizer')}, "
            f"{previous.get(FINGERPRINT_KEY)}; this one is {self.settings['tokenizer']}, "
            f"{self.settings[FINGERPRINT_KEY]}: {', '.join(changed)} differ); remove {path} and {self.root} to "
            f"replace them, or tokenize a copy of the export"), outputs=self.root)

    def order(self, pending: list[Item]) -> list[Item]:
        """Longest first: batches of similar lengths, and the longest (most memory) first."""
        return sorted(pending, key=lambda item: row_seconds(item.row), reverse=True)

    def done(self, item: Item, committed: dict[str, Any] | None) -> Outcome | None:
        n = verify_token_file(self.export_root / token_relpath(item.uid), self.fingerprint,
                              None if committed is None else int(committed["num_tokens"]))
        return None if n is None else Outcome(item, self._row(item.uid, n))

    def _row(self, uid: str, num_tokens: int) -> dict[str, Any]:
        return {"id": uid, "token_path": token_relpath(uid), "num_tokens": num_tokens}

    def batcher(self) -> SequentialBatches:
        return SequentialBatches(self.batch_size, self.max_batch_samples)

    def process(self, batch: Batch) -> list[Outcome]:
        outcomes = []
        for (item, _), tokens in zip(batch, tokenize_batch(self.tokenizer, [audio for _, audio in batch])):
            if isinstance(tokens, str):
                outcomes.append(Outcome(item, error=tokens))
                continue
            save_tokens(self.export_root / token_relpath(item.uid), tokens, self.tokenizer.token_rate,
                        extra={**self.tokenizer.token_file_metadata(), FINGERPRINT_KEY: self.fingerprint})
            outcomes.append(Outcome(item, self._row(item.uid, tokens.numel())))
        return outcomes

    def merge(self, items: list[Item], world_size: int) -> dict[str, Any]:
        """Rewrite the manifest with this run's result (token fields added, or removed for failed rows) and
        write ``tokens/failed.jsonl``."""
        num_tokens = {uid: int(row["num_tokens"]) for uid, row in part_rows(self.root, world_size).items()}
        failed = part_failures(self.root, world_size)
        rate = self.tokenizer.token_rate
        rows = [with_tokens(row, num_tokens.get(str(row["id"])), str(row["id"]), rate)
                for row in read_raw_rows(self.manifest)]
        atomic_write_text(self.manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        still_failed = [failed[str(r["id"])] for r in rows if str(r["id"]) in failed and "token_path" not in r]
        atomic_write_text(self.root / "failed.jsonl", "".join(json.dumps(r) + "\n" for r in still_failed))
        return {"utterances": len(rows), "with_tokens": sum(1 for r in rows if "token_path" in r),
                "tokens": sum(int(r["num_tokens"]) for r in rows if "token_path" in r), "failed": len(still_failed)}


class ShardTokens(ShardColumns, TokenExport):
    """Audio -> speech tokens filled into a shard folder's ``tokens`` / ``token_rate`` columns
    (:class:`~dcae.corpus.shard_work.ShardColumns`: whole shards per rank, a shard rewritten once every
    row of it is tokenized, with the tokenizer (name, rate, codebook size, fingerprint) in its metadata)."""

    model_key = "tokens_model"

    def __init__(self, root: Path, shards: list[ShardInfo], tokenizer: SpeechTokenizer, batch_size: int,
                 max_batch_seconds: float):
        TokenExport.__init__(self, root / "manifest.jsonl", tokenizer, batch_size, max_batch_seconds)
        ShardColumns.__init__(self, shards, self.fingerprint)
        self.export_root, self.root = root, root / TOKENS_DIR

    def process(self, batch: Batch) -> list[Outcome]:
        tokens = tokenize_batch(self.tokenizer, [audio for _, audio in batch])
        return [outcome for (item, _), result in zip(batch, tokens) for outcome in self.hold(item, result)]

    def fill(self, path: Path, values: list) -> None:
        replace_columns(path, token_columns([None if v is None else v.numpy() for v in values],
                                            self.tokenizer.token_rate),
                        {"token_rate": self.tokenizer.token_rate, "tokenizer": self.tokenizer.name,
                         "codebook_size": self.tokenizer.codebook_size, self.model_key: self.fingerprint})

    def outcome_row(self, item: Item, result: torch.Tensor) -> dict[str, Any]:
        return {"id": item.uid, "num_tokens": int(result.numel())}

    def merge(self, items: list[Item], world_size: int) -> dict[str, Any]:
        """Counts from the shards themselves; ``tokens/failed.jsonl``."""
        with_tokens = tokens = 0
        for info in index_shards(self.export_root)[0]:
            lengths = pq.read_table(info.path, columns=["tokens"]).column(0) if info.meta.get("tokens_model") else None
            if lengths is not None:
                counts = pc.list_value_length(lengths).to_pylist()
                with_tokens += sum(1 for n in counts if n is not None)
                tokens += sum(n for n in counts if n is not None)
        failed = list(part_failures(self.root, world_size).values())
        atomic_write_text(self.root / "failed.jsonl", "".join(json.dumps(r) + "\n" for r in failed))
        return {"utterances": len(items), "with_tokens": with_tokens, "tokens": tokens, "failed": len(failed)}


def export_tokens(manifest: str | Path, tokenizer: SpeechTokenizer, batch_size: int = 16,
                  max_batch_seconds: float = 320.0, num_workers: int | None = None, poll_seconds: float = 1.0,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Tokenize this rank's share of ``manifest``'s rows into its folder; rank 0 merges and rewrites the
    manifest. Returns the summary (rank 0: ``utterances``, ``with_tokens``, ``tokens``, ``failed``; every
    rank: ``failed_here``, ``utterances_this_run``, ``audio_seconds_this_run``, ``seconds``).

    ``tokenizer`` is on this rank's device (torchrun: see :func:`dcae.distributed.init_distributed`).
    ``num_workers=None``: no decoding workers when tokenizing on CPU, else up to 4 per GPU process.
    Bad rows are reported through ``log`` (default: stderr), one line each.
    Raises :class:`TokenExportError` / :class:`dcae.corpus.ManifestError` (one line) when it cannot start.
    """
    manifest = Path(manifest)
    dist = distributed.init_distributed(str(tokenizer.device))
    rows = read_manifest(manifest)  # checks the file: one line naming the line and the reason
    ids = [str(r["id"]) for r in rows]
    duplicates = [uid for uid, count in Counter(ids).items() if count > 1]
    if duplicates:
        raise TokenExportError(f"{manifest}: id {duplicates[0]} appears more than once "
                               f"({len(duplicates)} duplicated id(s)); ids must be unique")
    items = [Item(index=i, uid=str(row["id"]), audio_path=None if path is None else str(path), row=row)
             for i, (row, path) in enumerate((row, audio_path_of(row, manifest.parent)) for row in read_raw_rows(manifest))]
    work = TokenExport(manifest, tokenizer, batch_size, max_batch_seconds)
    return run_job(work, items, dist, num_workers, poll_seconds, log)


def export_shard_tokens(root: str | Path, tokenizer: SpeechTokenizer, batch_size: int = 16,
                        max_batch_seconds: float = 320.0, num_workers: int | None = None, poll_seconds: float = 1.0,
                        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """:func:`export_tokens` for a shard folder (:class:`ShardTokens`): the tokens go into the shards."""
    root = Path(root)
    shards, items = shard_items(root, TokenExportError)
    dist = distributed.init_distributed(str(tokenizer.device))
    work = ShardTokens(root, shards, tokenizer, batch_size, max_batch_seconds)
    return run_job(work, items, dist, num_workers, poll_seconds, log)
