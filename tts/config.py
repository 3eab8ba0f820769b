"""Training configuration of the text-to-latent TTS models (every field is a ``python -m tts.train`` flag)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dcae.errors import ConfigError
from dcae.training import RunConfig
from tts.flow_matching import check_time_schedule

PRESET_DIR = Path(__file__).resolve().parent / "presets"
MODELS = ("ar", "flow")


@dataclass
class TTSRunConfig(RunConfig):
    """What every downstream model's config has: the kind, the manifest and the run folder."""

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("manifest", "output_dir", "stats")

    model: str = "ar"  # which model to train (python -m tts.train --model KIND --help lists its fields)
    manifest: str = "latents/manifest.jsonl"  # manifest.jsonl written by dcae export (or any with the same rows)
    output_dir: str = "runs/tts"  # the run folder: config, model description, checkpoints/, logs/, metrics.jsonl
    learning_rate: float = 3e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_steps: int = 1000  # linear warmup, then cosine decay to a tenth of the peak at max_steps
    save_interval: int = 1000  # steps between checkpoint sets

    def run_dir(self) -> Path:
        return Path(self.output_dir)


@dataclass
class TTSTrainConfig(TTSRunConfig):
    """Training configuration of the text-to-latent TTS models (AR with a flow head, or non-AR flow matching)."""

    # data
    stats: str | None = "auto"  # stats.json path, "auto" (next to the manifest, else computed) or none
    text_frontend: str = "chars"  # chars | bytes | phonemes
    lowercase: bool = True  # lowercase the text before tokenising
    phoneme_language: str = "en-us"  # espeak-ng voice for text_frontend=phonemes
    max_frames: int = 1000  # longer utterances are left out

    # both models
    width: int = 512  # transformer width
    layers: int = 8  # transformer blocks
    heads: int = 8  # attention heads
    ff_mult: float = 4.0  # feed-forward width / width
    dropout: float = 0.0  # dropout in attention and feed-forward
    aligned_positions: bool = True  # text and frames share a rotary time axis (rate fitted on the data)

    # AR model
    head_width: int = 512  # width of the flow head MLP
    head_layers: int = 3  # residual blocks of the flow head
    flow_samples: int = 4  # flow-time draws per frame per step
    stop_weight: float = 1.0  # weight of the stop head's loss
    cond_drop: float = 0.1  # text hidden with this probability (classifier-free guidance)

    # flow model
    text_on_frames: bool = True  # each frame input also gets the embedding of its evenly-spread token
    infill_min: float = 0.7  # fraction of each utterance to generate in training (the rest is the prompt)
    infill_max: float = 1.0  # (the span's fraction is drawn uniformly in [infill_min, infill_max])
    drop_audio: float = 0.3  # prompt hidden with this probability
    drop_all: float = 0.2  # prompt and text hidden with this probability
    immiscible: bool = False  # assign the batch's noise to samples by a linear assignment (immiscible diffusion)
    contrastive_weight: float = 0.0  # contrastive flow matching: minus this times the error to another sample's target
    meanflow: bool = False  # MeanFlow average-velocity training (few-step sampling)
    meanflow_ratio: float = 0.25  # fraction of samples trained on an interval [s, e] rather than a point
    time_scale: float = 10.0  # flow time embedded as sinusoids of time_scale * s (MeanFlow is steadier lower)
    time_schedule: str = "uniform"  # training flow times: uniform | logit_normal (SD3) | cosine (AR head and flow model)

def load_presets(folder: Path = PRESET_DIR) -> dict[str, dict]:
    """``tiny`` / ``base`` / ... from ``folder/*.json`` (default ``tts/presets``: the ar / flow presets)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


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


def check_manifest(cfg) -> None:
    if not Path(cfg.manifest).is_file():
        raise ConfigError(f"--manifest: {cfg.manifest}: file not found")


def check_config(cfg: TTSTrainConfig) -> None:
    """Raise ConfigError (one line) for values training cannot run with."""
    if cfg.model not in MODELS:
        raise ConfigError(f"--model: expected ar or flow, got {cfg.model!r}")
    check_transformer(cfg)
    check_flow_schedule(cfg)
    if not 0 < cfg.infill_min <= cfg.infill_max <= 1:
        raise ConfigError("--infill-min/--infill-max: need 0 < min <= max <= 1")
    for name in ("layers", "flow_samples"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(cfg, name)}")
    check_manifest(cfg)
