"""Training configuration of the TTS models (every field is a ``python -m tts.train`` flag) and presets."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dcae.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
MODELS = ("ar", "flow")


@dataclass
class TTSTrainConfig:
    """Training configuration of the downstream TTS models (AR with a flow head, or non-AR flow matching)."""

    # data
    model: str = "ar"  # ar | flow
    manifest: str = "latents/manifest.jsonl"
    output_dir: str = "runs/tts"
    stats: str | None = "auto"  # stats.json path, "auto" (next to the manifest, else computed) or none
    text_frontend: str = "chars"  # chars | bytes | phonemes
    lowercase: bool = True
    phoneme_language: str = "en-us"
    max_frames: int = 1000  # longer utterances are left out

    # both models
    width: int = 512
    layers: int = 8
    heads: int = 8
    ff_mult: float = 4.0
    dropout: float = 0.0
    aligned_positions: bool = True  # text and frames share a rotary time axis (rate fitted on the data)

    # AR model
    head_width: int = 512
    head_layers: int = 3
    flow_samples: int = 4  # flow-time draws per frame per step
    stop_weight: float = 1.0
    cond_drop: float = 0.1  # text hidden with this probability (classifier-free guidance)

    # flow model
    text_on_frames: bool = True  # each frame input also gets the embedding of its evenly-spread token
    infill_min: float = 0.7  # fraction of each utterance to generate in training (the rest is the prompt)
    infill_max: float = 1.0
    drop_audio: float = 0.3  # prompt hidden with this probability
    drop_all: float = 0.2  # prompt and text hidden with this probability
    immiscible: bool = False
    contrastive_weight: float = 0.0
    meanflow: bool = False
    meanflow_ratio: float = 0.25  # fraction of samples trained on an interval [s, e] rather than a point
    time_scale: float = 10.0  # flow time embedded as sinusoids of time_scale * s (MeanFlow is steadier lower)

    # optimisation
    batch_size: int = 16  # per process
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 1000
    max_steps: int = 200_000
    max_minutes: float = 0.0  # also stop after this much wall time (0: no limit)
    max_grad_norm: float = 1.0

    # output and runtime
    log_interval: int = 50
    save_interval: int = 1000
    keep_checkpoints: int = 3
    seed: int = 1234
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    num_workers: int = 0
    cpu_threads: int = 0  # torch threads on the CPU (0: torch's default; 1 is fastest on a busy machine)
    device: str = "auto"


def load_presets() -> dict[str, dict]:
    """``tiny`` / ``base`` / ... from ``tts/presets/*.json``."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(PRESET_DIR.glob("*.json"))}


def check_config(cfg: TTSTrainConfig) -> None:
    """Raise ConfigError (one line) for values training cannot run with."""
    if cfg.model not in MODELS:
        raise ConfigError(f"--model: expected ar or flow, got {cfg.model!r}")
    if cfg.precision not in ("fp32", "bf16"):
        raise ConfigError(f"--precision: expected fp32 or bf16, got {cfg.precision!r}")
    if cfg.width % cfg.heads or (cfg.width // cfg.heads) % 2:
        raise ConfigError(f"--width {cfg.width} must split into --heads {cfg.heads} heads of even size")
    if not 0 < cfg.infill_min <= cfg.infill_max <= 1:
        raise ConfigError("--infill-min/--infill-max: need 0 < min <= max <= 1")
    for name in ("batch_size", "log_interval", "save_interval", "max_steps", "layers", "flow_samples"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(cfg, name)}")
    if not Path(cfg.manifest).is_file():
        raise ConfigError(f"--manifest: {cfg.manifest}: file not found")
