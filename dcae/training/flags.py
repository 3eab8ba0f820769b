"""Dataclass configs from the command line: every field is a ``--field-name VALUE`` flag.

    cfg = parse_config(TrainConfig, sys.argv[1:])

Precedence, lowest first: dataclass defaults < preset (``--preset NAME`` when presets are given)
< ``--config FILE`` (JSON or YAML mapping of field names) < explicit flags.
Booleans take ``true/false/1/0/yes/no``; list fields take JSON (``--x "[1,2]"``) or commas.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


class ConfigError(ValueError):
    """A configuration file or flag that cannot be used; the message names it and the reason."""


def _base_type(tp: Any) -> Any:
    """Strip Optional[...] / X | None down to X."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _convert(name: str, tp: Any, value: Any) -> Any:
    tp = _base_type(tp)
    if value is None or (isinstance(value, str) and value.lower() in {"none", "null"} and tp is not str):
        return None
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ConfigError(f"--{name.replace('_', '-')}: expected true/false, got {value!r}")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            s = value.strip()
            value = json.loads(s) if s.startswith("[") else [v for v in s.split(",") if v]
        args = typing.get_args(tp)
        if args and args[0] in (int, float, str):
            value = [args[0](v) for v in value]
        return list(value) if origin is list or tp is list else tuple(value)
    if tp in (int, float, str):
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"--{name.replace('_', '-')}: expected {tp.__name__}, got {value!r}") from None
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML mapping of field names to values."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes one line
        raise ConfigError(f"{path}: not valid {'YAML' if path.suffix in {'.yaml', '.yml'} else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of field names to values")
    return data


def config_from_dict(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Build ``cls`` from a mapping, converting types; unknown keys are an error naming ``source``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**{k: _convert(k, hints[k], v) for k, v in values.items()})


def build_parser(cls: type, prog: str | None = None, presets: dict[str, dict] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None)
    parser.add_argument("--config", help="JSON or YAML file of field values")
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), help="named set of field values")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        tp = _base_type(hints[f.name])
        tname = getattr(tp, "__name__", str(tp))
        help_text = f.metadata.get("help", "") if f.metadata else ""
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=argparse.SUPPRESS,
                            metavar=tname.upper(), help=f"{help_text} (default: {default!r})".strip())
    return parser


def parse_config(cls: type, argv: list[str] | None = None, prog: str | None = None,
                 presets: dict[str, dict] | None = None) -> Any:
    """Parse ``argv`` into an instance of dataclass ``cls`` (see module docstring)."""
    parser = build_parser(cls, prog=prog, presets=presets)
    ns = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    preset = ns.pop("preset", None)
    if preset:
        values.update(presets[preset])  # type: ignore[index]
    config_file = ns.pop("config", None)
    if config_file:
        values.update(load_config_file(config_file))
    values.update(ns)
    return config_from_dict(cls, values, source=config_file or "command line")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as JSON (atomically); ``--config`` reads it back."""
    atomic_write_json(path, config_to_dict(cfg))
