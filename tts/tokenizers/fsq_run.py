"""An FSQ tokenizer on disk: a run folder holding ``fsq_tokenizer.json`` (the config) and
``fsq_tokenizer.safetensors`` (the weights), both written atomically.

    save_fsq_tokenizer(tokenizer, "runs/fsq")
    tokenizer = load_fsq_tokenizer("runs/fsq")      # eval mode; one-line FSQTokenizerRunError if wrong
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dcae.atomic import atomic_save_safetensors, atomic_write_json
from dcae.errors import ConfigError
from tts.tokenizers.fsq import FSQTokenizer
from tts.tokenizers.fsq_config import FSQTokenizerConfig

CONFIG_FILE = "fsq_tokenizer.json"
WEIGHTS_FILE = "fsq_tokenizer.safetensors"
KIND = "fsq-speech-tokenizer"
FORMAT_VERSION = 1


class FSQTokenizerRunError(ValueError):
    """A folder that does not hold a usable FSQ tokenizer; the message names it and the reason."""


def save_fsq_tokenizer(tokenizer: FSQTokenizer, run_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the config (+ ``extra`` facts, e.g. training steps) and the weights into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in tokenizer.state_dict().items()}
    atomic_save_safetensors(state, run_dir / WEIGHTS_FILE, metadata={"kind": KIND})
    atomic_write_json(run_dir / CONFIG_FILE, {
        "kind": KIND, "format_version": FORMAT_VERSION, "token_rate": tokenizer.token_rate,
        "codebook_size": tokenizer.codebook_size, "config": tokenizer.config.to_dict(), **({"extra": extra} if extra else {}),
    })
    return run_dir


def _fail(run_dir: Path, reason: str) -> FSQTokenizerRunError:
    return FSQTokenizerRunError(f"{run_dir}: {reason}")


def load_fsq_tokenizer(run_dir: str | Path, device: str | torch.device = "cpu") -> FSQTokenizer:
    """The tokenizer saved in ``run_dir`` (eval mode on ``device``). Raises :class:`FSQTokenizerRunError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise _fail(run_dir, "not a folder (want an FSQ tokenizer run folder)" if run_dir.exists() else "folder not found")
    config_path, weights_path = run_dir / CONFIG_FILE, run_dir / WEIGHTS_FILE
    if not config_path.is_file():
        raise _fail(run_dir, f"no {CONFIG_FILE}: not an FSQ tokenizer run folder")
    try:
        info = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(run_dir, f"{CONFIG_FILE} is not valid JSON ({' '.join(str(e).split())})") from None
    if not isinstance(info, dict) or info.get("kind") != KIND or not isinstance(info.get("config"), dict):
        raise _fail(run_dir, f"{CONFIG_FILE} does not describe an FSQ tokenizer (want kind {KIND!r} and a config)")
    try:
        config = FSQTokenizerConfig.from_dict(info["config"], source=str(config_path))
        tokenizer = FSQTokenizer(config)
    except (ConfigError, TypeError, ValueError) as e:
        raise _fail(run_dir, f"bad config in {CONFIG_FILE} ({' '.join(str(e).split())})") from None
    if not weights_path.is_file():
        raise _fail(run_dir, f"no {WEIGHTS_FILE} (weights missing)")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise _fail(run_dir, f"{WEIGHTS_FILE} is not a readable safetensors file ({' '.join(str(e).split())})") from None
    expected = tokenizer.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)
        raise _fail(run_dir, f"{WEIGHTS_FILE} does not match {CONFIG_FILE} ({detail})")
    tokenizer.load_state_dict(state)
    return tokenizer.to(device).eval()
