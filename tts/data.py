"""Latent datasets over ``manifest.jsonl`` (+ ``stats.json``), for any downstream model.

A manifest row is one JSON object per line with at least ``id``, ``latent_path`` (relative to
the manifest's folder, or absolute), ``num_frames`` and usually ``text``. Latent files are the
safetensors format of :mod:`dcae.latent_file`, shape (D, frames); D is read from the data.

    ds = LatentManifestDataset("latents/manifest.jsonl")        # normalised with stats.json
    item = ds[0]      # {"id": str, "latent": (frames, D) float32, "text": str}
    batch = collate_latents([ds[0], ds[1]])
    # {"id": [..], "text": [..], "latent": (B, T, D), "lengths": (B,), "mask": (B, T) bool}
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from dcae.latent_file import LatentFileError, LatentMeta, load_latent
from dcae.utils.atomic import atomic_write_json

REQUIRED_KEYS = ("id", "latent_path", "num_frames")
STD_FLOOR = 1e-5


class ManifestError(ValueError):
    """A manifest or stats file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class LatentStats:
    """Per-dimension mean/std of a latent corpus (``stats.json``: ``mean``, ``std``, ``num_frames``)."""

    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)
    num_frames: int

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def normalize(self, latent: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D) standardised."""
        return (latent - self.mean.to(latent)) / self.std.to(latent).clamp_min(STD_FLOOR)

    def denormalize(self, latent: torch.Tensor) -> torch.Tensor:
        """(..., D) standardised -> (..., D) in the AE's latent space."""
        return latent * self.std.to(latent).clamp_min(STD_FLOOR) + self.mean.to(latent)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "num_frames": self.num_frames}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "LatentStats":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            mean = torch.tensor(data["mean"], dtype=torch.float32)
            std = torch.tensor(data["std"], dtype=torch.float32)
            num_frames = int(data.get("num_frames", 0))
        except OSError as e:
            raise ManifestError(f"{path}: cannot read stats file ({e.strerror})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ManifestError(f"{path}: not a stats file with 'mean' and 'std' lists ({e})") from None
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ManifestError(f"{path}: 'mean' and 'std' must be lists of the same length")
        return cls(mean=mean, std=std, num_frames=num_frames)

    @classmethod
    def from_latents(cls, latents: list[torch.Tensor]) -> "LatentStats":
        """Stats of a list of (frames, D) tensors (float64 accumulation)."""
        total = sum(x.shape[0] for x in latents)
        if total == 0:
            raise ManifestError("cannot compute latent stats: no frames")
        s = sum(x.double().sum(0) for x in latents)
        s2 = sum(x.double().pow(2).sum(0) for x in latents)
        mean = s / total
        var = (s2 / total - mean.pow(2)).clamp_min(0)
        return cls(mean=mean.float(), std=var.sqrt().float(), num_frames=total)


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``manifest.jsonl`` with ``latent_path`` made absolute. Raises :class:`ManifestError`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read manifest ({e.strerror})") from None
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise ManifestError(f"{path}:{lineno}: row lacks {', '.join(missing)}")
        row["latent_path"] = str((path.parent / row["latent_path"]).resolve())
        rows.append(row)
    if not rows:
        raise ManifestError(f"{path}: manifest has no rows")
    return rows


class LatentManifestDataset(Dataset):
    """Utterance latents listed in a manifest, as (frames, D) tensors.

    Args:
        manifest_path: ``manifest.jsonl``.
        stats_path: ``"auto"`` (the manifest folder's ``stats.json``, or stats computed from the
            listed latents when that file is absent), a path, or ``None`` (no stats).
        normalize: standardise every dimension with the stats (needs stats).
        max_frames: rows with more frames are left out (so text stays aligned with its latent).
        require_text: rows without a ``text`` field are an error (text-conditioned models).
    """

    def __init__(self, manifest_path: str | Path, stats_path: str | Path | None = "auto", normalize: bool = True,
                 max_frames: int | None = None, require_text: bool = False):
        self.manifest_path = Path(manifest_path)
        rows = read_manifest(self.manifest_path)
        if require_text:
            untexted = [r["id"] for r in rows if not str(r.get("text", "")).strip()]
            if untexted:
                raise ManifestError(f"{self.manifest_path}: {len(untexted)} row(s) have no text (first: {untexted[0]})")
        self.rows = [r for r in rows if max_frames is None or int(r["num_frames"]) <= max_frames]
        if not self.rows:
            raise ManifestError(f"{self.manifest_path}: no row has at most {max_frames} frames")
        self.stats = self._resolve_stats(stats_path)
        if normalize and self.stats is None:
            raise ManifestError(f"{self.manifest_path}: normalize=True needs stats (stats_path is None)")
        self.normalize = normalize
        if self.stats is not None and self.stats.dim != self.latent_dim:
            raise ManifestError(f"{self.manifest_path}: stats have {self.stats.dim} dims but latents have {self.latent_dim}")

    def _resolve_stats(self, stats_path: str | Path | None) -> LatentStats | None:
        if stats_path is None:
            return None
        if stats_path == "auto":
            candidate = self.manifest_path.parent / "stats.json"
            if candidate.is_file():
                return LatentStats.load(candidate)
            return LatentStats.from_latents([self.load_raw(i) for i in range(len(self.rows))])
        return LatentStats.load(stats_path)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def latent_dim(self) -> int:
        return self.load_raw(0).shape[1]

    @property
    def meta(self) -> LatentMeta:
        """Metadata (sample rate, frame rate, ...) of the first latent file."""
        return load_latent(self.rows[0]["latent_path"])[1]

    @property
    def num_frames(self) -> list[int]:
        return [int(r["num_frames"]) for r in self.rows]

    @property
    def texts(self) -> list[str]:
        return [str(r.get("text", "")) for r in self.rows]

    def load_raw(self, index: int) -> torch.Tensor:
        """Un-normalised latent of row ``index``, (frames, D). Raises :class:`ManifestError`."""
        row = self.rows[index]
        try:
            latent, _ = load_latent(row["latent_path"])
        except LatentFileError as e:
            raise ManifestError(f"{self.manifest_path}: row {row['id']}: {e}") from None
        return latent.transpose(0, 1).contiguous()

    def __getitem__(self, index: int) -> dict[str, Any]:
        latent = self.load_raw(index)
        if self.normalize:
            latent = self.stats.normalize(latent)
        row = self.rows[index]
        return {"id": str(row["id"]), "latent": latent, "text": str(row.get("text", ""))}


def pad_sequences(seqs: list[torch.Tensor], left: bool = False, value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (len_i, ...) tensors to (B, max_len, ...); returns (padded, mask (B, max_len) bool)."""
    lengths = [s.shape[0] for s in seqs]
    longest = max(lengths)
    out = seqs[0].new_full((len(seqs), longest, *seqs[0].shape[1:]), value)
    mask = torch.zeros(len(seqs), longest, dtype=torch.bool)
    for i, (s, n) in enumerate(zip(seqs, lengths)):
        sl = slice(longest - n, longest) if left else slice(0, n)
        out[i, sl] = s
        mask[i, sl] = True
    return out, mask


def collate_latents(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items: ``latent`` (B, T, D) zero-padded at the end, ``mask`` (B, T), ``lengths`` (B,)."""
    latent, mask = pad_sequences([it["latent"] for it in items])
    return {"id": [it["id"] for it in items], "text": [it["text"] for it in items], "latent": latent,
            "mask": mask, "lengths": mask.sum(1)}
