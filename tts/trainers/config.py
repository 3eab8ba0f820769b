"""What the downstream trainers' configs share (every field is a ``python -m tts.train`` flag): the run
(kind, manifest, output folder, optimizer schedule) and the checks of options several models have."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dcae.errors import ConfigError
from dcae.training import RunConfig
from tts.flow_matching import check_time_schedule
from tts.speakers.learnable import SPEAKER_ENCODERS


@dataclass
class TTSRunConfig(RunConfig):
    """What every downstream model's config has: the kind, the manifest and the run folder."""

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("manifest", "output_dir", "stats")

    model: str = "ar"  # which model to train (python -m tts.train --model KIND --help lists its fields)
    manifest: str = "latents/manifest.jsonl"  # the corpus: a manifest.jsonl (dcae export) or a folder of Parquet shards (dcae export --format shards)
    batch_frames: int = 0  # > 0: batches by this budget of padded frames (tokens for token-lm), at most --batch-size items
    output_dir: str = "runs/tts"  # the run folder: config, model description, checkpoints/, logs/, metrics.jsonl
    learning_rate: float = 3e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_steps: int = 1000  # linear warmup, then cosine decay to a tenth of the peak at max_steps
    save_interval: int = 1000  # steps between checkpoint sets

    def run_dir(self) -> Path:
        return Path(self.output_dir)


def check_transformer(cfg) -> None:
    """``--width`` / ``--heads``: heads of even size (rotary embeddings rotate pairs)."""
    if cfg.width % cfg.heads or (cfg.width // cfg.heads) % 2:
        raise ConfigError(f"--width {cfg.width} must split into --heads {cfg.heads} heads of even size")


def check_flow_schedule(cfg) -> None:
    """``--time-schedule``, as the flow-matching samplers read it."""
    try:
        check_time_schedule(cfg.time_schedule)
    except ValueError as e:
        raise ConfigError(f"--time-schedule: {e}") from None


def check_speaker_options(cfg) -> None:
    """``--speaker-encoder`` (none | learnable, not with ``--speaker-dim``), ``--speaker-layers``,
    ``--reference-frames`` (token flow and token LM)."""
    if cfg.speaker_encoder not in SPEAKER_ENCODERS:
        raise ConfigError(f"--speaker-encoder: none or learnable, got {cfg.speaker_encoder!r}")
    if cfg.speaker_encoder == "learnable" and cfg.speaker_dim:
        raise ConfigError("--speaker-encoder learnable replaces --speaker-dim (a fixed embedding): give one of them")
    if cfg.speaker_layers < 1 or cfg.reference_frames < 1:
        raise ConfigError("--speaker-layers and --reference-frames must be at least 1")


def check_manifest(cfg) -> None:
    """``--manifest`` exists (a manifest.jsonl or a shard folder) and ``--batch-frames`` is not negative."""
    if not Path(cfg.manifest).exists():
        raise ConfigError(f"--manifest: {cfg.manifest}: no such file or folder")
    if cfg.batch_frames < 0:
        raise ConfigError(f"--batch-frames must be >= 0 (0: --batch-size items per batch), got {cfg.batch_frames}")
