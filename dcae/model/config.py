"""DC-AE configuration: the fields of diffusers' ``AutoencoderDC`` JSON, validated.

The published ``default_config.json`` (and any diffusers-style JSON) loads as it is:
``DCAEConfig.from_json(path)``. Per-stage fields accept a string (same for every stage) or a list
with one entry per stage; :meth:`DCAEConfig.validate` reports bad values in one message.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dcae.errors import ConfigError

BLOCK_TYPES = ("ResBlock", "EfficientViTBlock")
NORM_TYPES = ("rms_norm", "batch_norm")
ACTIVATIONS = ("silu", "swish", "relu", "gelu", "mish")
DOWNSAMPLE_TYPES = ("Conv", "pixel_unshuffle")
UPSAMPLE_TYPES = ("interpolate", "pixel_shuffle")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # the packaged configs (dcae/configs/*.json)
DEFAULT_CONFIG = CONFIG_DIR / "default.json"  # our copy of the published model's config


def packaged_configs() -> list[Path]:
    """The packaged config files (``default.json``, ``tiny.json``), sorted by name."""
    return sorted(CONFIG_DIR.glob("*.json"))


def config_path(value: str | Path) -> Path:
    """A config given as a path, or as the name of a packaged one (``default``, ``tiny``: what
    ``--ae-config`` and ``--model-config-path`` take besides a file)."""
    path = Path(value)
    if not path.is_file() and path.suffix == "" and (CONFIG_DIR / f"{path.name}.json").is_file() \
            and len(path.parts) == 1:
        return CONFIG_DIR / f"{path.name}.json"
    return path


@dataclass
class DCAEConfig:
    in_channels: int = 1
    latent_channels: int = 16
    attention_head_dim: int = 32
    encoder_block_types: str | list[str] = "ResBlock"
    decoder_block_types: str | list[str] = "ResBlock"
    encoder_block_out_channels: list[int] = field(default_factory=lambda: [128, 256, 512, 512, 1024])
    decoder_block_out_channels: list[int] = field(default_factory=lambda: [128, 256, 512, 512, 1024])
    encoder_layers_per_block: list[int] = field(default_factory=lambda: [2, 2, 2, 3, 3])
    decoder_layers_per_block: list[int] = field(default_factory=lambda: [3, 3, 3, 3, 3])
    encoder_qkv_multiscales: list[list[int]] = field(default_factory=lambda: [[], [], [], [], []])
    decoder_qkv_multiscales: list[list[int]] = field(default_factory=lambda: [[], [], [], [], []])
    upsample_block_type: str = "interpolate"
    downsample_block_type: str = "Conv"
    decoder_norm_types: str | list[str] = "rms_norm"
    decoder_act_fns: str | list[str] = "silu"
    encoder_out_shortcut: bool = True
    decoder_in_shortcut: bool = True
    decoder_conv_act_fn: str = "relu"
    scaling_factor: float | None = None
    source: str = field(default="<config>", repr=False, compare=False)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<config>") -> "DCAEConfig":
        known = {f.name for f in fields(cls)} - {"source"}
        # diffusers bookkeeping keys ("_class_name", "_diffusers_version", ...) are ignored
        unknown = sorted(k for k in values if k not in known and not k.startswith("_"))
        if unknown:
            raise ConfigError(f"{source}: unknown DC-AE config field(s): {', '.join(unknown)}")
        cfg = cls(**{k: v for k, v in values.items() if k in known}, source=source)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, path: str | Path) -> "DCAEConfig":
        """A config file, or a packaged config by name (:func:`config_path`)."""
        path = config_path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of AutoencoderDC fields")
        return cls.from_dict(values, source=str(path))

    @classmethod
    def load(cls, config: "str | Path | dict | DCAEConfig") -> "DCAEConfig":
        if isinstance(config, DCAEConfig):
            return config
        if isinstance(config, dict):
            return cls.from_dict(config)
        return cls.from_json(config)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        return {"_class_name": "AutoencoderDC", **d}

    # ------------------------------------------------------------------ derived values
    @property
    def num_stages(self) -> int:
        return len(self.encoder_block_out_channels)

    @property
    def compression(self) -> int:
        """Downsampling factor in both frequency and time (2 ** (stages - 1))."""
        return 2 ** (self.num_stages - 1)

    def per_stage(self, name: str) -> list:
        """A per-stage field expanded to one entry per stage."""
        value = getattr(self, name)
        return [value] * self.num_stages if isinstance(value, str) else list(value)[: self.num_stages]

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        err = lambda msg: ConfigError(f"{self.source}: {msg}")  # noqa: E731
        n = self.num_stages
        if n < 1:
            raise err("encoder_block_out_channels is empty")
        for side in ("encoder", "decoder"):
            for key in ("block_out_channels", "layers_per_block"):
                name = f"{side}_{key}"
                if len(getattr(self, name)) != n:
                    raise err(f"{name} has {len(getattr(self, name))} entries but the model has {n} stages "
                              f"(len(encoder_block_out_channels))")
            # per-stage lists may be longer than needed (the published config lists 6 decoder
            # block types for 5 stages; diffusers ignores the extra entries), never shorter
            for key in ("qkv_multiscales", "block_types"):
                name = f"{side}_{key}"
                value = getattr(self, name)
                if not isinstance(value, str) and len(value) < n:
                    raise err(f"{name} has {len(value)} entries but the model has {n} stages")
            for t in self.per_stage(f"{side}_block_types"):
                if t not in BLOCK_TYPES:
                    raise err(f"{side}_block_types: unknown block type {t!r} (known: {', '.join(BLOCK_TYPES)})")
        for name in ("decoder_norm_types", "decoder_act_fns"):
            if not isinstance(getattr(self, name), str) and len(getattr(self, name)) < n:
                raise err(f"{name} has {len(getattr(self, name))} entries but the model has {n} stages")
        for t in self.per_stage("decoder_norm_types"):
            if t not in NORM_TYPES:
                raise err(f"decoder_norm_types: unknown norm {t!r} (known: {', '.join(NORM_TYPES)})")
        for a in [*self.per_stage("decoder_act_fns"), self.decoder_conv_act_fn]:
            if str(a).lower() not in ACTIVATIONS:
                raise err(f"unknown activation {a!r} (known: {', '.join(ACTIVATIONS)})")
        if self.downsample_block_type not in DOWNSAMPLE_TYPES:
            raise err(f"downsample_block_type {self.downsample_block_type!r} not in {DOWNSAMPLE_TYPES}")
        if self.upsample_block_type not in UPSAMPLE_TYPES:
            raise err(f"upsample_block_type {self.upsample_block_type!r} not in {UPSAMPLE_TYPES}")
        last = self.encoder_block_out_channels[-1]
        if self.encoder_out_shortcut and last % self.latent_channels:
            raise err(f"encoder_out_shortcut needs encoder_block_out_channels[-1]={last} divisible by "
                      f"latent_channels={self.latent_channels}")
        last = self.decoder_block_out_channels[-1]
        if self.decoder_in_shortcut and last % self.latent_channels:
            raise err(f"decoder_in_shortcut needs decoder_block_out_channels[-1]={last} divisible by "
                      f"latent_channels={self.latent_channels}")
        for side in ("encoder", "decoder"):
            types = self.per_stage(f"{side}_block_types")
            for i, (t, c) in enumerate(zip(types, getattr(self, f"{side}_block_out_channels"))):
                if t == "EfficientViTBlock" and c % self.attention_head_dim:
                    raise err(f"{side} stage {i}: EfficientViTBlock needs channels ({c}) divisible by "
                              f"attention_head_dim ({self.attention_head_dim})")
