"""The dataset trainers read: utterance latents (and optionally speech tokens) from a manifest.

    ds = LatentManifestDataset("latents/manifest.jsonl")        # normalised with stats.json
    item = ds[0]      # {"id": str, "latent": (frames, D) float32, "text": str}
    batch = collate_latents([ds[0], ds[1]])
    # {"id": [..], "text": [..], "latent": (B, T, D), "lengths": (B,), "mask": (B, T) bool}

    ds = LatentManifestDataset("manifest.jsonl", with_tokens=True)   # rows need token_path
    ds[0]["tokens"]   # LongTensor (num_tokens,); collate adds "tokens" (B, N), "token_mask", "token_lengths"
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from dcae.corpus.latent_file import LatentFileError, LatentMeta, load_latent
from dcae.corpus.manifest import ManifestError, read_manifest
from dcae.corpus.stats import LatentStats
from dcae.corpus.token_file import TokenFileError, load_tokens


class LatentManifestDataset(Dataset):
    """Utterance latents listed in a manifest, as (frames, D) tensors.

    Args:
        manifest_path: ``manifest.jsonl``.
        stats_path: ``"auto"`` (the manifest folder's ``stats.json``, or stats computed from the
            listed latents when that file is absent), a path, or ``None`` (no stats).
        normalize: standardise every dimension with the stats (needs stats).
        max_frames: rows with more frames are left out (so text stays aligned with its latent).
        require_text: rows without a ``text`` field are an error (text-conditioned models).
        with_tokens: also load each row's token file (``token_path``) as ``item["tokens"]``.
    """

    def __init__(self, manifest_path: str | Path, stats_path: str | Path | None = "auto", normalize: bool = True,
                 max_frames: int | None = None, require_text: bool = False, with_tokens: bool = False):
        self.manifest_path = Path(manifest_path)
        rows = read_manifest(self.manifest_path)
        if require_text:
            untexted = [r["id"] for r in rows if not str(r.get("text", "")).strip()]
            if untexted:
                raise ManifestError(f"{self.manifest_path}: {len(untexted)} row(s) have no text (first: {untexted[0]})")
        if with_tokens:
            untokened = [r["id"] for r in rows if not r.get("token_path")]
            if untokened:
                raise ManifestError(f"{self.manifest_path}: row {untokened[0]} has no token_path "
                                    f"({len(untokened)} row(s) without; with_tokens needs one per row)")
        self.with_tokens = with_tokens
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
            try:
                return LatentStats.from_latents(self._load(i)[0] for i in range(len(self.rows)))
            except ValueError as e:
                if isinstance(e, ManifestError):
                    raise
                raise ManifestError(f"{self.manifest_path}: {e}") from None
        return LatentStats.load(stats_path)

    def __len__(self) -> int:
        return len(self.rows)

    def _load(self, index: int) -> tuple[torch.Tensor, LatentMeta]:
        """Row ``index``'s latent file: ((D, frames) float32, metadata). Raises :class:`ManifestError`."""
        row = self.rows[index]
        try:
            return load_latent(row["latent_path"])
        except LatentFileError as e:
            raise ManifestError(f"{self.manifest_path}: row {row['id']}: {e}") from None

    @property
    def latent_dim(self) -> int:
        return self._load(0)[0].shape[0]

    @property
    def meta(self) -> LatentMeta:
        """Metadata (sample rate, frame rate, ...) of the first latent file (DC-AE defaults where it has none)."""
        return self._load(0)[1]

    @property
    def num_frames(self) -> list[int]:
        return [int(r["num_frames"]) for r in self.rows]

    @property
    def texts(self) -> list[str]:
        return [str(r.get("text", "")) for r in self.rows]

    def load_raw(self, index: int) -> torch.Tensor:
        """Un-normalised latent of row ``index``, (frames, D). Raises :class:`ManifestError`."""
        return self._load(index)[0].transpose(0, 1).contiguous()

    def load_tokens(self, index: int) -> torch.Tensor:
        """Speech tokens of row ``index``, LongTensor (num_tokens,). Raises :class:`ManifestError`."""
        row = self.rows[index]
        if not row.get("token_path"):
            raise ManifestError(f"{self.manifest_path}: row {row['id']} has no token_path")
        try:
            return load_tokens(row["token_path"])[0]
        except TokenFileError as e:
            raise ManifestError(f"{self.manifest_path}: row {row['id']}: {e}") from None

    def __getitem__(self, index: int) -> dict[str, Any]:
        latent = self.load_raw(index)
        if self.normalize:
            latent = self.stats.normalize(latent)
        row = self.rows[index]
        item = {"id": str(row["id"]), "latent": latent, "text": str(row.get("text", ""))}
        if self.with_tokens:
            item["tokens"] = self.load_tokens(index)
        return item


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
    """Batch dataset items: ``latent`` (B, T, D) zero-padded at the end, ``mask`` (B, T), ``lengths`` (B,);
    with tokens also ``tokens`` (B, N) zero-padded at the end, ``token_mask`` (B, N), ``token_lengths`` (B,)."""
    latent, mask = pad_sequences([it["latent"] for it in items])
    batch = {"id": [it["id"] for it in items], "text": [it["text"] for it in items], "latent": latent,
             "mask": mask, "lengths": mask.sum(1)}
    if "tokens" in items[0]:
        tokens, token_mask = pad_sequences([it["tokens"] for it in items])
        batch.update(tokens=tokens, token_mask=token_mask, token_lengths=token_mask.sum(1))
    return batch
