"""Speech tokens for an exported corpus (``dcae tokens``): one token file per manifest row, next to its latent.

    export_tokens("latents/train/manifest.jsonl", tokenizer)   # every rank of a torchrun group calls it

Layout added to an export folder ``DIR`` (the one ``dcae export`` wrote)::

    DIR/tokens.json                       the tokenizer (name, rates, codebook, weights fingerprint): a rerun must match
    DIR/tokens/ab/<id>.safetensors        one token file per utterance (:mod:`dcae.corpus.token_file`)
    DIR/tokens/parts/<W>x<R>.jsonl        rows committed by rank R of a W-process run (resuming)
    DIR/tokens/parts/<W>x<R>.failed.jsonl rows that could not be tokenized, with the reason
    DIR/tokens/parts/<W>x<R>.done         that rank's final result of this run (the merge reads it)
    DIR/tokens/failed.jsonl               merged failures of this run
    DIR/manifest.jsonl                    rewritten atomically: token_path, num_tokens, token_rate added

Rank ``r`` of ``W`` takes the manifest rows ``r::W``; rank 0 merges once every rank's done marker
exists. Crash safety: a token file is written atomically, then its row is appended to the rank's
part (:class:`dcae.corpus.StorePart`). A rerun verifies the files of committed rows (complete, the
length of the id's newest committed row, written by this tokenizer: the weights fingerprint is in
each file's metadata), takes over files that were written but not committed, starts each rank's part
afresh with the rows it kept, and tokenizes only the rest (so a row redone once is kept by the next
rerun, and a part holds each id once). Rows that fail keep their latent and get no token fields.

Audio is each row's ``audio_path`` decoded at the tokenizer's rate (:func:`dcae.audio.load_audio`),
batched longest first with bounded samples per batch. Tokenizers guarantee batch == single, so a
token file equals ``tokenizer.tokenize`` of that file alone.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dcae import distributed
from dcae.atomic import atomic_write_json, atomic_write_text
from dcae.audio import AudioError, check_audio, load_audio
from dcae.corpus import DEFAULT_FRAME_RATE, StorePart, done_rows, read_manifest
from dcae.corpus.token_file import TokenFileError, load_tokens, save_tokens
from tts.tokenizers.base import SpeechTokenizer

SETTINGS_FILE = "tokens.json"
TOKENS_DIR = "tokens"
TOKEN_KEYS = ("token_path", "num_tokens", "token_rate")
FINGERPRINT_KEY = "model"  # token file metadata: the tokenizer's weights fingerprint


class TokenExportError(ValueError):
    """A token export that cannot start (the message is one line for the user)."""


def token_relpath(uid: str) -> str:
    """Where an utterance's token file lives, relative to the export folder (sharded by a hash of the id)."""
    digest = hashlib.sha1(uid.encode("utf-8")).hexdigest()
    name = uid if re.fullmatch(r"[A-Za-z0-9._-]{1,120}", uid) else f"{re.sub(r'[^A-Za-z0-9._-]+', '_', uid)[:80]}-{digest[:10]}"
    return f"{TOKENS_DIR}/{digest[:2]}/{name}.safetensors"


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


def check_settings(root: Path, settings: dict[str, Any], write: bool) -> None:
    """Refuse to mix tokenizers in one export folder; record the tokenizer on first use (``write``)."""
    path = root / SETTINGS_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TokenExportError(f"{path}: unreadable ({' '.join(str(e).split())}); remove it and {root / TOKENS_DIR} "
                                   f"to tokenize again") from None
        changed = [k for k in settings if previous.get(k) != settings[k]]
        if changed:
            raise TokenExportError(
                f"{root}: already holds tokens of another tokenizer ({previous.get('tokenizer')}, "
                f"{previous.get(FINGERPRINT_KEY)}; this one is {settings['tokenizer']}, {settings[FINGERPRINT_KEY]}: "
                f"{', '.join(changed)} differ); remove {root / SETTINGS_FILE} and {root / TOKENS_DIR} to replace them, "
                f"or tokenize a copy of the export")
    elif (root / TOKENS_DIR).exists():
        raise TokenExportError(f"{root / TOKENS_DIR} exists but {path} does not: remove {root / TOKENS_DIR} "
                               f"(left from an earlier run) and run again")
    elif write:
        atomic_write_json(path, settings)


# ---------------------------------------------------------------------------------------- manifest
def read_raw_rows(manifest: Path) -> list[dict[str, Any]]:
    """The manifest's rows as written (paths not resolved), for the rewrite. :func:`read_manifest` has
    checked the file already."""
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def audio_path_of(row: dict[str, Any], root: Path) -> Path | None:
    """A row's ``audio_path`` (relative paths are relative to the manifest's folder), or None."""
    value = row.get("audio_path")
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else root / path


def with_tokens(row: dict[str, Any], num_tokens: int | None, uid: str, token_rate: float) -> dict[str, Any]:
    """``row`` with the token fields set (``num_tokens`` given) or removed (None); other fields unchanged."""
    out = {k: v for k, v in row.items() if num_tokens is not None or k not in TOKEN_KEYS}
    if num_tokens is not None:
        out.update(token_path=token_relpath(uid), num_tokens=int(num_tokens), token_rate=token_rate)
    return out


# ---------------------------------------------------------------------------------------- audio
class BatchAudio(Dataset):
    """Batches of manifest rows -> [(row, audio (samples,) at ``sample_rate``, or an error reason str)]."""

    def __init__(self, batches: list[list[dict[str, Any]]], root: Path, sample_rate: int):
        self.batches = batches
        self.root = root
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[tuple[dict[str, Any], torch.Tensor | str]]:
        out = []
        for row in self.batches[i]:
            path = audio_path_of(row, self.root)
            if path is None:
                out.append((row, "the manifest row has no audio_path"))
                continue
            try:
                audio = load_audio(path, self.sample_rate)
                check_audio(audio, path)
                out.append((row, audio))
            except AudioError as e:
                out.append((row, e.reason))
        return out


def row_seconds(row: dict[str, Any]) -> float:
    """A row's audio length: its ``duration``, else its latent frames at the DC-AE frame rate."""
    if row.get("duration") is not None:
        return float(row["duration"])
    return int(row["num_frames"]) / DEFAULT_FRAME_RATE


def plan_batches(rows: list[dict[str, Any]], batch_size: int, max_batch_seconds: float) -> list[list[dict[str, Any]]]:
    """Rows longest first, cut into batches of at most ``batch_size`` rows and ``max_batch_seconds`` of
    audio (a longer row goes alone)."""
    batches, current, seconds = [], [], 0.0
    for row in sorted(rows, key=row_seconds, reverse=True):
        duration = row_seconds(row)
        if current and (len(current) >= batch_size or seconds + duration > max_batch_seconds):
            batches.append(current)
            current, seconds = [], 0.0
        current.append(row)
        seconds += duration
    if current:
        batches.append(current)
    return batches


def tokenize_batch(tokenizer: SpeechTokenizer, clips: list[torch.Tensor]) -> list[torch.Tensor | str]:
    """Tokens of each clip (at the tokenizer's rate), or the reason it could not be tokenized. A batch
    that raises is retried clip by clip, so one bad clip fails alone (batch == single: same tokens)."""
    try:
        return list(tokenizer.tokenize(clips, tokenizer.sample_rate))
    except ValueError as e:
        if len(clips) > 1:
            return [tokenize_batch(tokenizer, [clip])[0] for clip in clips]
        return [re.sub(r"^clip 0: ", "", " ".join(str(e).split()))]


def _as_is(batch):
    return batch


# ---------------------------------------------------------------------------------------- the export
@dataclass
class Progress:
    """Counts for the progress bar: utterances and audio seconds tokenized in this run."""

    utterances: int = 0
    audio_seconds: float = 0.0
    started: float = 0.0

    def postfix(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return f"{self.utterances / elapsed:.1f} utt/s, {self.audio_seconds / elapsed:.0f}x real time"


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


def export_tokens(manifest: str | Path, tokenizer: SpeechTokenizer, batch_size: int = 16,
                  max_batch_seconds: float = 320.0, num_workers: int | None = None, poll_seconds: float = 1.0,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Tokenize this rank's share of ``manifest``'s rows into its folder; rank 0 merges and rewrites the
    manifest. Returns the summary (rank 0: ``utterances``, ``with_tokens``, ``tokens``, ``failed``,
    ``audio_seconds_this_run``, ``seconds``; every rank: ``failed_here``).

    ``tokenizer`` is on this rank's device (torchrun: see :func:`dcae.distributed.init_distributed`).
    ``num_workers=None``: no decoding workers when tokenizing on CPU, else up to 4 per GPU process.
    Bad rows are reported through ``log`` (default: stderr), one line each.
    Raises :class:`TokenExportError` / :class:`dcae.corpus.ManifestError` (one line) when it cannot start.
    """
    manifest = Path(manifest)
    root = manifest.parent
    log = log or (lambda message: tqdm.write(message, file=sys.stderr))
    dist = distributed.init_distributed(str(tokenizer.device))
    rows = read_manifest(manifest)  # checks the file: one line naming the line and the reason
    ids = [str(r["id"]) for r in rows]
    duplicates = [uid for uid, count in Counter(ids).items() if count > 1]
    if duplicates:
        raise TokenExportError(f"{manifest}: id {duplicates[0]} appears more than once "
                               f"({len(duplicates)} duplicated id(s)); ids must be unique")
    if num_workers is None:
        num_workers = 0 if tokenizer.device.type == "cpu" else max(1, min(4, (os.cpu_count() or 2) // dist.world_size - 1))

    fingerprint = tokenizer_fingerprint(tokenizer)
    settings = tokenizer_settings(tokenizer, fingerprint)
    part_name = f"{dist.world_size}x{dist.rank}"
    tokens_root = root / TOKENS_DIR
    done_marker = tokens_root / "parts" / f"{part_name}.done"
    if dist.is_main:
        check_settings(root, settings, write=True)
    distributed.barrier()
    if not dist.is_main:
        check_settings(root, settings, write=False)
    done_marker.unlink(missing_ok=True)
    distributed.barrier()

    mine = rows[dist.rank::dist.world_size]
    committed = done_rows(tokens_root)  # the newest committed row of each id
    final: dict[str, int] = {}  # id -> num_tokens, this rank's result
    failed: dict[str, dict[str, Any]] = {}

    # 1. keep each row whose token file is complete, by this tokenizer, with its newest committed row's length (a
    #    file written just before a kill has no row yet: taken over); this rank's part starts afresh from them
    pending = []
    for row in mine:
        uid = str(row["id"])
        previous = committed.get(uid)
        n = verify_token_file(root / token_relpath(uid), fingerprint,
                              None if previous is None else int(previous["num_tokens"]))
        if n is None:
            pending.append(row)
        else:
            final[uid] = n
    part = StorePart.start(tokens_root, part_name, 1,  # rows only: no statistics for tokens
                           [{"id": uid, "token_path": token_relpath(uid), "num_tokens": n} for uid, n in final.items()])

    # 2. tokenize the rest, longest first, decoding in background workers
    progress = Progress(started=time.perf_counter())
    bar = tqdm(total=len(mine), initial=len(mine) - len(pending), unit="utt", disable=not dist.is_main,
               desc=f"tokens{'' if dist.world_size == 1 else f' (rank 0 of {dist.world_size})'}", dynamic_ncols=True)
    loader = DataLoader(BatchAudio(plan_batches(pending, batch_size, max_batch_seconds), root, tokenizer.sample_rate),
                        batch_size=None, shuffle=False, num_workers=num_workers,
                        prefetch_factor=2 if num_workers else None, collate_fn=_as_is)

    def fail(row: dict[str, Any], reason: str) -> None:
        uid, audio_path = str(row["id"]), row.get("audio_path")
        failed[uid] = {"id": uid, "audio_path": audio_path, "error": reason}
        with open(part.failed_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(failed[uid]) + "\n")
        log(f"skipped {audio_path if audio_path else f'row {uid}'}: {reason}")

    for batch in loader:
        good = []
        for row, audio in batch:
            if isinstance(audio, str):
                fail(row, audio)
            else:
                good.append((row, audio))
        results = tokenize_batch(tokenizer, [audio for _, audio in good]) if good else []
        commits = []
        for (row, audio), tokens in zip(good, results):
            uid = str(row["id"])
            if isinstance(tokens, str):
                fail(row, tokens)
                continue
            save_tokens(root / token_relpath(uid), tokens, tokenizer.token_rate,
                        extra={**tokenizer.token_file_metadata(), FINGERPRINT_KEY: fingerprint})
            commits.append({"id": uid, "token_path": token_relpath(uid), "num_tokens": tokens.numel()})
            final[uid] = tokens.numel()
            progress.utterances += 1
            progress.audio_seconds += audio.numel() / tokenizer.sample_rate
        part.commit(commits, [])
        bar.update(len(batch))
        bar.set_postfix_str(progress.postfix())
    bar.close()
    progress_seconds = time.perf_counter() - progress.started

    # 3. merge: rank 0 waits for every rank's marker (no collective timeout on long runs)
    atomic_write_json(done_marker, {"num_tokens": final, "failed": failed})
    summary: dict[str, Any] = {"failed_here": len(failed)}
    if dist.is_main:
        markers = [tokens_root / "parts" / f"{dist.world_size}x{r}.done" for r in range(dist.world_size)]
        while not all(m.is_file() for m in markers):
            time.sleep(poll_seconds)
        summary.update(merge(manifest, markers, tokenizer.token_rate))
        summary.update(audio_seconds_this_run=progress.audio_seconds, utterances_this_run=progress.utterances,
                       seconds=progress_seconds)
    distributed.barrier()
    distributed.cleanup()
    return summary


def merge(manifest: Path, markers: list[Path], token_rate: float) -> dict[str, Any]:
    """Rewrite ``manifest`` with every rank's result (token fields added, or removed for failed rows) and
    write ``tokens/failed.jsonl``."""
    num_tokens: dict[str, int] = {}
    failed: dict[str, dict[str, Any]] = {}
    for marker in markers:
        result = json.loads(marker.read_text(encoding="utf-8"))
        num_tokens.update(result["num_tokens"])
        failed.update(result["failed"])
    rows = [with_tokens(row, num_tokens.get(str(row["id"])), str(row["id"]), token_rate)
            for row in read_raw_rows(manifest)]
    atomic_write_text(manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    still_failed = [failed[str(r["id"])] for r in rows if str(r["id"]) in failed]
    atomic_write_text(manifest.parent / TOKENS_DIR / "failed.jsonl", "".join(json.dumps(r) + "\n" for r in still_failed))
    return {"utterances": len(rows), "with_tokens": sum(1 for r in rows if "token_path" in r),
            "tokens": sum(int(r["num_tokens"]) for r in rows if "token_path" in r), "failed": len(still_failed)}
