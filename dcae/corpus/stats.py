"""Per-dimension statistics of a latent corpus: ``stats.json``.

:class:`RunningStats` accumulates float64 sums over frames and merges across ranks and export
parts; :class:`LatentStats` is the finished mean/std that trainers normalise with::

    running = RunningStats(dim=80)
    for latent in latents:            # (D, frames) each
        running.add(latent)
    stats = running.finish()          # LatentStats: mean (D,), std (D,) (population std), num_frames
    stats.save("stats.json")          # {"mean", "std", "num_frames", "dim"} (+ "num_utterances")
    x = stats.normalize(latent.T)     # (..., D) -> (..., D) standardised
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from dcae.atomic import atomic_write_json
from dcae.corpus.manifest import ManifestError

STD_FLOOR = 1e-5  # normalisation never divides by less


@dataclass
class RunningStats:
    """Per-dimension sums over frames in float64; ``to_dict``/``from_dict`` snapshot them exactly."""

    dim: int
    count: int = 0
    total: torch.Tensor | None = None  # (D,) float64
    total_sq: torch.Tensor | None = None  # (D,) float64

    def __post_init__(self) -> None:
        if self.total is None:
            self.total = torch.zeros(self.dim, dtype=torch.float64)
            self.total_sq = torch.zeros(self.dim, dtype=torch.float64)

    def add(self, latent: torch.Tensor) -> None:
        """Add the frames of ``latent`` (D, frames)."""
        if latent.ndim != 2 or latent.shape[0] != self.dim:
            raise ValueError(f"expected a ({self.dim}, frames) latent, got shape {tuple(latent.shape)}")
        x = latent.detach().to("cpu", torch.float64)
        self.total += x.sum(dim=1)
        self.total_sq += x.pow(2).sum(dim=1)
        self.count += x.shape[1]

    def add_array(self, latent) -> None:
        """:meth:`add` for a numpy array (D, frames)."""
        self.add(torch.from_numpy(latent))

    def merge(self, other: "RunningStats") -> None:
        """Add another accumulator's sums (another rank's or part's)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge {other.dim}-d statistics into {self.dim}-d ones")
        self.total += other.total
        self.total_sq += other.total_sq
        self.count += other.count

    def to_dict(self) -> dict[str, Any]:
        return {"dim": self.dim, "count": self.count, "sum": self.total.tolist(), "sum_sq": self.total_sq.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunningStats":
        return cls(dim=int(d["dim"]), count=int(d["count"]),
                   total=torch.tensor(d["sum"], dtype=torch.float64),
                   total_sq=torch.tensor(d["sum_sq"], dtype=torch.float64))

    def finish(self) -> "LatentStats":
        """Mean and population std per dimension (zeros when no frame was added)."""
        n = max(self.count, 1)
        mean = self.total / n
        std = (self.total_sq / n - mean.pow(2)).clamp_min(0).sqrt()
        return LatentStats(mean=mean, std=std, num_frames=self.count)


@dataclass(frozen=True)
class LatentStats:
    """Per-dimension mean/std of a latent corpus (``stats.json``)."""

    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)
    num_frames: int

    @property
    def dim(self) -> int:
        return self.mean.numel()

    @classmethod
    def from_latents(cls, latents: Iterable[torch.Tensor]) -> "LatentStats":
        """Stats of (D, frames) tensors, as stored in latent files. Raises ``ValueError`` if there is no frame."""
        running = None
        for latent in latents:
            if running is None:
                running = RunningStats(latent.shape[0])
            running.add(latent)
        if running is None or running.count == 0:
            raise ValueError("cannot compute latent stats: no frames")
        return running.finish()

    def normalize(self, latent: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D) standardised."""
        return (latent - self.mean.to(latent)) / self.std.to(latent).clamp_min(STD_FLOOR)

    def denormalize(self, latent: torch.Tensor) -> torch.Tensor:
        """(..., D) standardised -> (..., D) in the AE's latent space."""
        return latent * self.std.to(latent).clamp_min(STD_FLOOR) + self.mean.to(latent)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "num_frames": self.num_frames, "dim": self.dim}

    def save(self, path: str | Path, **extra: Any) -> None:
        """Atomically write ``stats.json`` (``extra``: more keys, e.g. ``num_utterances``)."""
        atomic_write_json(path, {**self.to_dict(), **extra})

    @classmethod
    def load(cls, path: str | Path) -> "LatentStats":
        """Read ``stats.json`` (``mean`` and ``std`` lists; ``num_frames`` optional). Raises :class:`ManifestError`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            mean = torch.tensor(data["mean"], dtype=torch.float64)
            std = torch.tensor(data["std"], dtype=torch.float64)
            num_frames = int(data.get("num_frames", 0))
        except OSError as e:
            raise ManifestError(f"{path}: cannot read stats file ({e.strerror})") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ManifestError(f"{path}: not a stats file with 'mean' and 'std' lists ({e})") from None
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ManifestError(f"{path}: 'mean' and 'std' must be lists of the same length")
        return cls(mean=mean, std=std, num_frames=num_frames)
