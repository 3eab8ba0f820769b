"""Latents for a whole corpus, for downstream (TTS) training (the work of ``dcae export``).

    dcae export --filelist train.txt --out latents/ [--ae-model G.pt --ae-config C.json --vocoder DIR|config.json|HUB_ID]
    torchrun --nproc_per_node 8 --no-python dcae export --filelist train.txt --out latents/

Filelist lines are ``path`` or ``path|text``. One safetensors latent per utterance
(:mod:`dcae.corpus.latent_file`), ``manifest.jsonl``, ``stats.json`` and ``failed.jsonl`` in ``--out``
(layout and crash-safety rules in :mod:`dcae.corpus.store`). Rerunning the same command resumes:
finished utterances are verified and skipped. Only the vocoder's mel settings are used (its
``config.json``); no vocoder weights are loaded.

Downstream code reads the result with :class:`dcae.corpus.LatentManifestDataset`.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dcae import distributed
from dcae.atomic import atomic_write_json
from dcae.audio import AudioError, check_audio, load_audio
from dcae.corpus import (
    LatentMeta,
    RunningStats,
    StorePart,
    done_rows,
    latent_relpath,
    merge_parts,
    prune_parts,
    read_complete_latent,
    save_latent,
    utterance_id,
    weights_hash,
)
from dcae.model.config import DCAEConfig
from dcae.pipeline import DCAEInferenceWrapper
from preprocess.filelist import read_filelist
from vocoder.mel import load_bigvgan_config

LATENT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Utterance:
    index: int          # position in the filelist (manifest order)
    audio_path: str
    text: str | None
    uid: str


class AudioLoader(Dataset):
    """Decodes utterances in DataLoader workers: item -> (Utterance, audio (samples,) or error str)."""

    def __init__(self, utterances: list[Utterance], sample_rate: int):
        self.utterances = utterances
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> tuple[Utterance, torch.Tensor | str]:
        utt = self.utterances[i]
        try:
            audio = load_audio(utt.audio_path, self.sample_rate)
            check_audio(audio, utt.audio_path)
            return utt, audio
        except AudioError as e:
            return utt, e.reason


class LatentEncoder:
    """Audio batches -> latents through ``DCAEInferenceWrapper.encode`` (no vocoder weights loaded):
    zero-padding to whole latent frames, BigVGAN mel, DC-AE encoder + LayerNorm, and chunked
    encoding of long utterances so memory stays bounded."""

    def __init__(self, ae_model: Path, ae_config: Path, mel_config_dir: Path | None, device: torch.device,
                 precision: str):
        self.wrapper = DCAEInferenceWrapper(ae_model, ae_config, mel_config_dir, precision=precision, device=device,
                                            with_vocoder=False)
        self.sample_rate = self.wrapper.sample_rate
        self.hop_length = self.wrapper.hop_length
        self.latent_dim = self.wrapper.latent_dim
        self.samples_per_frame = self.wrapper.padding_factor

    def num_frames(self, num_samples: int) -> int:
        return self.wrapper.num_frames(num_samples)

    def encode(self, audios: list[torch.Tensor]) -> list[torch.Tensor]:
        """Utterances with equal frame counts [(samples,)] at 22050 Hz -> [(latent_dim, frames)] float32 CPU."""
        length = max(a.numel() for a in audios)
        batch = torch.stack([torch.nn.functional.pad(a, (0, length - a.numel())) for a in audios])
        return list(self.wrapper.encode(batch, self.sample_rate).float().cpu())


class LengthBuckets:
    """Groups utterances of equal latent length so that batching never changes a latent."""

    def __init__(self, max_batch: int, max_batch_samples: int, max_buffer_samples: int):
        self.max_batch = max_batch
        self.max_batch_samples = max_batch_samples
        self.max_buffer_samples = max_buffer_samples
        self.buckets: dict[int, list[tuple[Utterance, torch.Tensor]]] = {}
        self.buffered = 0

    def add(self, frames: int, utt: Utterance, audio: torch.Tensor) -> Iterator[list[tuple[Utterance, torch.Tensor]]]:
        bucket = self.buckets.setdefault(frames, [])
        bucket.append((utt, audio))
        self.buffered += audio.numel()
        if len(bucket) >= self.max_batch or sum(a.numel() for _, a in bucket) >= self.max_batch_samples:
            yield self.pop(frames)
        while self.buffered > self.max_buffer_samples and self.buckets:
            yield self.pop(max(self.buckets, key=lambda k: len(self.buckets[k]) * k))

    def pop(self, frames: int) -> list[tuple[Utterance, torch.Tensor]]:
        bucket = self.buckets.pop(frames)
        self.buffered -= sum(a.numel() for _, a in bucket)
        return bucket

    def drain(self) -> Iterator[list[tuple[Utterance, torch.Tensor]]]:
        for frames in sorted(self.buckets):
            yield self.pop(frames)


def read_utterances(filelist: Path) -> list[Utterance]:
    seen: set[str] = set()
    out = []
    for entry in read_filelist(filelist):
        uid = utterance_id(entry.path)
        if uid in seen:  # the same file listed twice is exported once
            continue
        seen.add(uid)
        out.append(Utterance(index=len(out), audio_path=str(entry.path), text=entry.text, uid=uid))
    return out


class ExportError(ValueError):
    """An export that cannot start (the message is one line for the user)."""


def check_settings(out: Path, settings: dict[str, Any], is_main: bool) -> None:
    """Refuse to mix latents of different models/settings in one folder; record them on first use."""
    path = out / "export.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = [k for k in settings if previous.get(k) != settings[k]]
        if changed:
            raise ExportError(
                f"{out}: already holds an export with different {', '.join(changed)} "
                f"(model {previous.get('model')}); use a new --out folder")
    elif is_main:
        atomic_write_json(path, settings)


def run_export(filelist: Path, out: Path, ae_model: Path, ae_config: Path, mel_config_dir: Path | None,
               device: str | None,
               precision: str, latent_dtype: str, batch_size: int, max_batch_seconds: float,
               num_workers: int | None, poll_seconds: float = 2.0) -> dict[str, Any]:
    """Export this rank's share of ``filelist`` into ``out``; rank 0 merges. Returns the summary.

    ``num_workers=None``: no decoding workers when encoding on CPU (the encoder already uses every
    core), else up to 4 per GPU process."""
    dist = distributed.init_distributed(device)
    if num_workers is None:
        num_workers = 0 if dist.device.type == "cpu" else max(1, min(4, (os.cpu_count() or 2) // dist.world_size - 1))
    out.mkdir(parents=True, exist_ok=True)
    part_name = f"{dist.world_size}x{dist.rank}"
    done_marker = out / "parts" / f"{part_name}.done"
    done_marker.unlink(missing_ok=True)
    distributed.barrier()

    encoder = LatentEncoder(ae_model, ae_config, mel_config_dir, dist.device, precision)
    model_hash = weights_hash(ae_model)
    mel_h = load_bigvgan_config(mel_config_dir)
    check_settings(out, {"model": model_hash, "ae_config": DCAEConfig.from_json(ae_config).to_dict(),
                         "mel": {k: mel_h.get(k) for k in ("sampling_rate", "n_fft", "num_mels", "hop_size",
                                                             "win_size", "fmin", "fmax")},
                         "latent_dtype": latent_dtype}, dist.is_main)
    meta_base = dict(sample_rate=encoder.sample_rate, hop_length=encoder.hop_length,
                     frame_rate=encoder.sample_rate / encoder.samples_per_frame, model=model_hash)
    utterances = read_utterances(filelist)
    mine = utterances[dist.rank::dist.world_size]
    latent_dim = encoder.latent_dim
    finished = done_rows(out)

    def make_row(utt: Utterance, num_frames: int, num_samples: int) -> dict[str, Any]:
        row = {"id": utt.uid, "audio_path": utt.audio_path, "latent_path": latent_relpath(utt.uid),
               "num_frames": num_frames, "duration": round(num_samples / encoder.sample_rate, 4)}
        if utt.text is not None:
            row["text"] = utt.text
        return row

    # 1. already exported: keep each utterance whose latent file is complete (with the frames of its newest
    #    committed row, if any: a file written just before a kill has none yet); this rank's part starts afresh
    #    from them, so a stale row of a redone utterance (its file broke) is in no part the merge reads
    pending, kept, kept_stats = [], [], RunningStats(latent_dim)
    for utt in mine:
        latent, meta = read_complete_latent(out / latent_relpath(utt.uid)) or (None, None)
        row = finished.get(utt.uid)
        if latent is None or latent.shape[0] != latent_dim or (row is not None and row["num_frames"] != latent.shape[-1]):
            pending.append(utt)
            continue
        kept.append(make_row(utt, latent.shape[-1], meta.num_samples))
        kept_stats.add(latent)
    part = StorePart.start(out, part_name, latent_dim, kept, kept_stats)

    # 2. encode the rest, batched by equal latent length, decoding in background workers
    failures = 0
    progress = tqdm(total=len(mine), initial=len(mine) - len(pending), unit="utt", disable=not dist.is_main,
                    desc=f"export{'' if dist.world_size == 1 else f' (rank 0 of {dist.world_size})'}",
                    dynamic_ncols=True)
    started, audio_seconds, encoded = time.perf_counter(), 0.0, 0
    loader = DataLoader(AudioLoader(pending, encoder.sample_rate), batch_size=None, shuffle=False,
                        num_workers=num_workers, prefetch_factor=4 if num_workers else None)
    max_samples = int(max_batch_seconds * encoder.sample_rate)
    buckets = LengthBuckets(batch_size, max_samples, 4 * max_samples)
    dtype = LATENT_DTYPES[latent_dtype]

    def flush(batch: list[tuple[Utterance, torch.Tensor]]) -> None:
        nonlocal audio_seconds, encoded
        latents = encoder.encode([a for _, a in batch])
        rows = []
        for (utt, audio), latent in zip(batch, latents):
            save_latent(out / latent_relpath(utt.uid), latent,
                        LatentMeta(num_samples=audio.numel(), **meta_base), dtype=dtype)
            rows.append(make_row(utt, latent.shape[-1], audio.numel()))
            audio_seconds += audio.numel() / encoder.sample_rate
        part.commit(rows, [latent.to(dtype).float() for latent in latents])
        progress.update(len(batch))
        encoded += len(batch)
        elapsed = max(time.perf_counter() - started, 1e-9)
        progress.set_postfix_str(f"{encoded / elapsed:.1f} utt/s, "
                                 f"{audio_seconds / 3600 / elapsed:.4f} audio-h/s, {audio_seconds / elapsed:.0f}x RT")

    for utt, audio in loader:
        if isinstance(audio, str):
            failures += 1
            part.record_failure(utt.audio_path, audio)
            progress.write(f"skipped {utt.audio_path}: {audio}", file=sys.stderr)
            progress.update(1)
            continue
        for batch in buckets.add(encoder.num_frames(audio.numel()), utt, audio):
            flush(batch)
    for batch in buckets.drain():
        flush(batch)
    progress.close()

    # 3. merge: rank 0 waits for every rank's marker (no collective timeout on long exports)
    done_marker.write_text("done\n")
    summary: dict[str, Any] = {"failed_here": failures}
    if dist.is_main:
        markers = [out / "parts" / f"{dist.world_size}x{r}.done" for r in range(dist.world_size)]
        while not all(m.is_file() for m in markers):
            time.sleep(poll_seconds)
        summary.update(merge_parts(out, [u.uid for u in utterances], latent_dim, dist.world_size))
        prune_parts(out, dist.world_size)
        summary["audio_seconds_this_run"] = audio_seconds
    distributed.barrier()
    distributed.cleanup()
    return summary
