"""Latents for a whole corpus, for downstream (TTS) training: the work of ``dcae export`` on the corpus
job (:mod:`dcae.corpus.job`: sharded over torchrun ranks, resumable, bad files named and skipped).

    dcae export --filelist train.txt --out latents/ [--ae-model G.pt --ae-config C.json --vocoder DIR|config.json|HUB_ID]
    torchrun --nproc_per_node 8 --no-python dcae export --filelist train.txt --out latents/

Filelist lines are ``path``, ``path|text`` or ``path|text|speaker`` (:mod:`preprocess.filelist`). One safetensors latent per utterance
(:mod:`dcae.corpus.latent_file`), ``manifest.jsonl``, ``stats.json`` and ``failed.jsonl`` in ``--out``
(layout and crash-safety rules in :mod:`dcae.corpus.store`). Rerunning the same command resumes:
finished utterances are verified and skipped. Only the vocoder's mel settings are used (its
``config.json``); no vocoder weights are loaded. Utterances are batched by equal latent length, so a
latent never depends on its batch.

With ``--format shards`` the same latents go into Parquet shards instead (:class:`ShardExport`,
:mod:`dcae.corpus.shards`): ``DIR/shards/<W>x<R>-<n>.parquet`` written whole and renamed, so a kill
loses at most the shard in progress and a rerun (of any world size) redoes exactly the utterances
no complete shard holds; rank 0 then writes ``DIR/shards.json`` and ``DIR/stats.json``.

Downstream code reads either with :func:`dcae.corpus.stream.open_corpus` (the trainers) or
:class:`dcae.corpus.LatentManifestDataset` (the per-file layout).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dcae import distributed
from dcae.corpus.defaults import LATENT_DTYPE_NAMES
from dcae.corpus.job import Batch, EqualLengthBatches, Item, Outcome, Work, record_settings, run_job
from dcae.corpus.latent_file import LatentMeta, save_latent, weights_hash
from dcae.corpus.shard_work import ShardWriting
from dcae.corpus.shards import (
    DEFAULT_SHARD_MB,
    ShardRow,
)
from dcae.corpus.store import (
    latent_relpath,
    merge_parts,
    prune_parts,
    read_complete_latent,
    utterance_id,
)
from dcae.model.config import DCAEConfig
from dcae.pipeline import DCAEInferenceWrapper
from preprocess.filelist import read_filelist
from vocoder.mel import load_bigvgan_config

LATENT_DTYPES = {name: getattr(torch, name) for name in LATENT_DTYPE_NAMES}
MEL_KEYS = ("sampling_rate", "n_fft", "num_mels", "hop_size", "win_size", "fmin", "fmax")


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
        """Utterances with equal frame counts [(samples,)] at the wrapper's rate -> [(latent_dim, frames)] float32 CPU."""
        length = max(a.numel() for a in audios)
        batch = torch.stack([torch.nn.functional.pad(a, (0, length - a.numel())) for a in audios])
        return list(self.wrapper.encode(batch, self.sample_rate).float().cpu())


def read_utterances(filelist: Path) -> list[Item]:
    """The filelist's utterances in order (``row``: ``text`` and ``speaker`` when the line has them); a file
    listed twice is exported once."""
    seen: set[str] = set()
    out = []
    for entry in read_filelist(filelist):
        uid = utterance_id(entry.path)
        if uid in seen:
            continue
        seen.add(uid)
        out.append(Item(index=len(out), uid=uid, audio_path=str(entry.path),
                        row={k: v for k, v in (("text", entry.text), ("speaker", entry.speaker)) if v is not None}))
    return out


class LatentFiles(Work):
    """Writes one latent file per utterance (:func:`latent_relpath`), commits a manifest row each with
    the latent's statistics, and merges ``manifest.jsonl`` + ``stats.json``: what ``dcae export`` and
    ``dcae shards unpack`` share. Subclasses read their inputs and call :meth:`save`."""

    label = "export"

    def __init__(self, out: Path, dim: int, sample_rate: int, meta: dict[str, Any], settings: dict[str, Any],
                 latent_dtype: str = "float32"):
        self.root, self.dim, self.sample_rate, self.meta, self.settings = out, dim, sample_rate, meta, settings
        self.dtype = LATENT_DTYPES[latent_dtype]

    def start(self, dist: distributed.DistInfo) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record_settings(self.root / "export.json", self.settings, dist.is_main, lambda previous, changed: (
            f"{self.root}: already holds an export with different {', '.join(changed)} "
            f"(model {previous.get('model')}); use a new --out folder"))

    def row(self, item: Item, num_frames: int, num_samples: int) -> dict[str, Any]:
        return {"id": item.uid, "audio_path": item.audio_path, "latent_path": latent_relpath(item.uid),
                "num_frames": num_frames, "duration": round(num_samples / self.sample_rate, 4), **item.row}

    def done(self, item: Item, committed: dict[str, Any] | None) -> Outcome | None:
        """Done when its latent file is complete, of this dimension, with the frames of its newest committed
        row, if any (a file written just before a kill has none yet: taken over)."""
        latent, meta = read_complete_latent(self.root / latent_relpath(item.uid)) or (None, None)
        if latent is None or latent.shape[0] != self.dim or (committed is not None and
                                                              committed["num_frames"] != latent.shape[-1]):
            return None
        return Outcome(item, self.row(item, latent.shape[-1], meta.num_samples), latent.float())

    def save(self, item: Item, latent: torch.Tensor, num_samples: int) -> Outcome:
        """Write ``item``'s latent (D, frames) file; its outcome (manifest row, values for the statistics)."""
        save_latent(self.root / latent_relpath(item.uid), latent, LatentMeta(num_samples=num_samples, **self.meta),
                    dtype=self.dtype)
        return Outcome(item, self.row(item, latent.shape[-1], num_samples), latent.to(self.dtype).float())

    def merge(self, items: list[Item], world_size: int) -> dict[str, Any]:
        summary = merge_parts(self.root, [item.uid for item in items], self.dim, world_size)
        prune_parts(self.root, world_size)
        return summary


class LatentExport(LatentFiles):
    """Audio -> one latent file per utterance, a manifest row each, corpus statistics (module docstring)."""

    def __init__(self, out: Path, encoder: LatentEncoder, model_hash: str, settings: dict[str, Any],
                 latent_dtype: str, batch_size: int, max_batch_seconds: float):
        meta = dict(sample_rate=encoder.sample_rate, hop_length=encoder.hop_length,
                    frame_rate=encoder.sample_rate / encoder.samples_per_frame, model=model_hash)
        super().__init__(out, encoder.latent_dim, encoder.sample_rate, meta, settings, latent_dtype)
        self.encoder = encoder
        self.batch_size, self.max_batch_samples = batch_size, int(max_batch_seconds * encoder.sample_rate)

    def batcher(self) -> EqualLengthBatches:
        return EqualLengthBatches(lambda audio: self.encoder.num_frames(audio.numel()), self.batch_size,
                                  self.max_batch_samples, 4 * self.max_batch_samples)

    def latents(self, batch: Batch) -> list[torch.Tensor]:
        return self.encoder.encode([audio for _, audio in batch])

    def process(self, batch: Batch) -> list[Outcome]:
        return [self.save(item, latent, audio.numel()) for (item, audio), latent in zip(batch, self.latents(batch))]


class ShardExport(ShardWriting, LatentExport):
    """Audio -> latents in Parquet shards (module docstring): the same latents and rows as
    :class:`LatentExport`, a shard written once ``shard_mb`` MB of latents are held."""

    def __init__(self, *args: Any, shard_mb: float, **kwargs: Any):
        LatentExport.__init__(self, *args, **kwargs)
        ShardWriting.__init__(self, shard_mb)

    def process(self, batch: Batch) -> list[Outcome]:
        rows = [ShardRow(id=item.uid, latent=latent.to(self.dtype).float().numpy(), text=item.row.get("text", ""),
                         speaker=item.row.get("speaker"), audio_path=item.audio_path or "", duration=round(audio.numel() / self.sample_rate, 4))
                for (item, audio), latent in zip(batch, self.latents(batch))]
        return self.write([item for item, _ in batch], rows)


def run_export(filelist: Path, out: Path, ae_model: Path, ae_config: Path, mel_config_dir: Path | None,
               device: str | None, precision: str, latent_dtype: str, batch_size: int, max_batch_seconds: float,
               num_workers: int | None, poll_seconds: float = 1.0, shards: bool = False,
               shard_mb: float = DEFAULT_SHARD_MB) -> dict[str, Any]:
    """Export this rank's share of ``filelist`` into ``out`` (one latent file per utterance, or ``shards``);
    rank 0 merges. Returns the summary (:func:`dcae.corpus.job.run_job`; rank 0: ``utterances``,
    ``frames``, ``failed``, and ``shards`` for shards)."""
    dist = distributed.init_distributed(device)
    encoder = LatentEncoder(ae_model, ae_config, mel_config_dir, dist.device, precision)
    model_hash = weights_hash(ae_model)
    mel_h = load_bigvgan_config(mel_config_dir)
    settings = {"model": model_hash, "ae_config": DCAEConfig.from_json(ae_config).to_dict(),
                "mel": {k: mel_h.get(k) for k in MEL_KEYS}, "latent_dtype": latent_dtype,
                **({"format": "shards"} if shards else {})}
    args = (out, encoder, model_hash, settings, latent_dtype, batch_size, max_batch_seconds)
    work = ShardExport(*args, shard_mb=shard_mb) if shards else LatentExport(*args)
    return run_job(work, read_utterances(filelist), dist, num_workers, poll_seconds)
