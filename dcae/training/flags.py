"""Dataclass configs on the command line: every field is a ``--field-name VALUE`` flag.

    cfg = parse_config(TrainConfig, sys.argv[1:], prog="train.py")

Precedence, lowest first: dataclass defaults < preset (``--preset NAME`` when presets are given)
< the run's saved config (when ``saved_config`` finds one: a restart continues the run as it was)
< ``--config FILE`` (JSON or YAML mapping of field names) < flags given on the command line.
Booleans take ``true/false/1/0/yes/no``; list fields take JSON (``--x "[1,2]"``) or commas.
A field's ``--help`` text is the trailing ``# comment`` of its line in the dataclass source. Fields named in the class's ``PATH_FIELDS`` are saved as
absolute paths, so a saved config works from any working directory.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Callable

from dcae.atomic import atomic_write_json
from dcae.errors import ConfigError

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}

__all__ = ["ConfigError", "parse_config", "save_config", "load_config_file", "config_from_dict", "field_help"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


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
        raise ConfigError(f"{_flag(name)}: expected true/false, got {value!r}")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            s = value.strip()
            try:
                value = json.loads(s) if s.startswith("[") else [v for v in s.split(",") if v]
            except json.JSONDecodeError as e:
                raise ConfigError(f"{_flag(name)}: not a JSON list ({e.msg})") from None
        args = typing.get_args(tp)
        if args and args[0] in (int, float, str):
            try:
                value = [args[0](v) for v in value]
            except (TypeError, ValueError):
                raise ConfigError(f"{_flag(name)}: expected a list of {args[0].__name__}, got {value!r}") from None
        return list(value) if origin is list or tp is list else tuple(value)
    if tp in (int, float, str):
        if tp is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{_flag(name)}: expected {tp.__name__}, got {value!r}") from None
    return value


def field_help(cls: type) -> dict[str, str]:
    """Field name -> the trailing ``# comment`` of its line in the class source (subclasses win)."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        comments = {tok.start[0]: tok.string.lstrip("#").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
        names = {f.name for f in dataclasses.fields(klass)}
        for number, line in enumerate(source.splitlines(), 1):
            match = re.match(r"    (\w+)\s*:", line)
            if match and match.group(1) in names and number in comments:
                helps[match.group(1)] = comments[number]
    return helps


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML mapping of field names to values."""
    path = Path(path)
    yaml_file = path.suffix.lower() in {".yaml", ".yml"}
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        if yaml_file:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes one line
        raise ConfigError(f"{path}: not valid {'YAML' if yaml_file else 'JSON'} ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of field names to values")
    return data


def config_from_dict(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Build ``cls`` from a mapping, converting types; unknown keys are an error naming ``source``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**{k: _convert(k, hints[k], v) for k, v in values.items()})


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def build_parser(cls: type, prog: str | None = None, presets: dict[str, dict] | None = None,
                 description: str | None = None) -> argparse.ArgumentParser:
    """One ``--field-name`` option per field; fields of the shared run settings in their own group."""
    doc = description or (inspect.getdoc(cls) or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog=prog, description=doc, allow_abbrev=False)
    parser.add_argument("--config", help="JSON or YAML file of field values")
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), help="named set of field values")
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    shared = set(getattr(cls, "SHARED_FIELDS", ()))
    own = parser.add_argument_group(f"{cls.__name__} fields")
    common = parser.add_argument_group("training run (the same in every trainer)")
    for f in dataclasses.fields(cls):
        tp = _base_type(hints[f.name])
        kind = getattr(tp, "__name__", str(tp)).upper()
        group = common if f.name in shared else own
        group.add_argument(_flag(f.name), dest=f.name, default=argparse.SUPPRESS, metavar=kind,
                           help=f"{helps.get(f.name, '')} (default: {_default(f)!r})".strip())
    return parser


def parse_config(cls: type, argv: list[str] | None = None, prog: str | None = None,
                 presets: dict[str, dict] | None = None,
                 saved_config: Callable[[Any], Path | None] | None = None,
                 log: Callable[[str], None] | None = None) -> Any:
    """Parse ``argv`` into an instance of dataclass ``cls`` (see the module docstring).

    ``saved_config(cfg)`` returns where the run that ``cfg`` describes keeps its resolved config
    (e.g. ``RUN/config.json``); when that file exists, its values sit under ``--config`` and flags.
    """
    parser = build_parser(cls, prog=prog, presets=presets)
    flags = vars(parser.parse_args(argv))
    preset = flags.pop("preset", None)
    config_file = flags.pop("config", None)
    layers: list[tuple[str, dict[str, Any]]] = []
    if preset:
        layers.append((f"preset {preset}", presets[preset]))  # type: ignore[index]
    if config_file:
        layers.append((config_file, load_config_file(config_file)))
    layers.append(("command line", flags))

    def resolve(extra: list[tuple[str, dict[str, Any]]]) -> Any:
        values: dict[str, Any] = {}
        for source, layer in extra:
            config_from_dict(cls, layer, source)  # names the source of a bad value
            values.update(layer)
        return config_from_dict(cls, values, "command line")

    cfg = resolve(layers)
    saved_path = saved_config(cfg) if saved_config else None
    if saved_path is not None and Path(saved_path).is_file() and Path(saved_path).resolve() != (
            Path(config_file).resolve() if config_file else None):
        saved = load_config_file(saved_path)
        known = {f.name for f in dataclasses.fields(cls)}
        saved = {k: v for k, v in saved.items() if k in known}
        cfg = resolve(layers[:1] + [(str(saved_path), saved)] + layers[1:] if preset else
                      [(str(saved_path), saved)] + layers)
        if log:
            log(f"continuing the run's saved config {saved_path} (options given now override it)")
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a JSON-able dict, with the ``PATH_FIELDS`` that exist on disk made absolute."""
    values = dataclasses.asdict(cfg)
    for name in getattr(type(cfg), "PATH_FIELDS", ()):
        value = values.get(name)
        if isinstance(value, str) and value and Path(value).exists():
            values[name] = str(Path(value).resolve())
    return values


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as JSON (atomically); ``--config`` reads it back."""
    atomic_write_json(path, config_to_dict(cfg))
