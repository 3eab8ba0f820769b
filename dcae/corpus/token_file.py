"""The token file format (DESIGN.md, Formats): one safetensors file per utterance.

Integer tensor ``tokens`` of shape (num_tokens,), string metadata ``token_rate`` (tokens per
second) plus optional extra strings (``tokenizer``, ``codebook_size``, ...)::

    save_tokens("u1.safetensors", ids, token_rate=25.0, extra={"tokenizer": "x", "codebook_size": 4096})
    tokens, meta = load_tokens("u1.safetensors")   # LongTensor (N,), TokenMeta(token_rate=25.0, extra={...})

Writes are atomic; reads check that the file is complete. Files written by other tools without
``token_rate`` load with ``meta.token_rate = None``.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from dcae.corpus.tensor_file import TensorFileError, read_tensor, write_tensor
from dcae.paths import safe_stem

TOKENS_KEY = "tokens"
RATE_KEY = "token_rate"


TOKENS_DIR = "tokens"  # an export folder's token files: tokens/<ab>/<id>.safetensors


class TokenFileError(TensorFileError):
    """A token file that is missing, truncated or not in the format; the message names the file."""


@dataclass(frozen=True)
class TokenMeta:
    token_rate: float | None  # tokens per second; None when the file does not say
    extra: dict[str, str] = field(default_factory=dict)  # other metadata, e.g. tokenizer, codebook_size


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def _positive_rate(value: Any) -> float | None:
    """``value`` as a positive finite float, or None if it is not one."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return None
    return rate if math.isfinite(rate) and rate > 0 else None


def save_tokens(path: str | Path, tokens: torch.Tensor | Sequence[int], token_rate: float,
                extra: dict[str, Any] | None = None) -> None:
    """Atomically write ``tokens`` (num_tokens,) as int64 with ``token_rate`` and ``extra`` metadata
    (values stored as strings)."""
    tokens = torch.as_tensor(tokens)
    if tokens.numel() == 0 and tokens.ndim == 1:
        tokens = tokens.long()  # [] has no integer type of its own
    if tokens.ndim != 1 or not _is_integer(tokens.dtype):
        raise ValueError(f"{path}: tokens must be a 1-D integer tensor, got {tokens.dtype} of shape {tuple(tokens.shape)}")
    extra = {str(k): str(v) for k, v in (extra or {}).items()}
    if RATE_KEY in extra:
        raise ValueError(f"{path}: give token_rate as its own argument, not in extra")
    rate = _positive_rate(token_rate)
    if rate is None:
        raise ValueError(f"{path}: token_rate must be a positive number, got {token_rate!r}")
    write_tensor(path, TOKENS_KEY, tokens.long(), {RATE_KEY: repr(rate), **extra})


def load_tokens(path: str | Path) -> tuple[torch.Tensor, TokenMeta]:
    """Read a token file -> (tokens LongTensor (num_tokens,), metadata). Raises :class:`TokenFileError`."""
    tokens, metadata = read_tensor(path, TOKENS_KEY, TokenFileError)
    if not _is_integer(tokens.dtype):
        raise TokenFileError(f"{path}: '{TOKENS_KEY}' must be an integer tensor, got {tokens.dtype}")
    if tokens.ndim != 1:
        raise TokenFileError(f"{path}: '{TOKENS_KEY}' must have shape (num_tokens,), got {tuple(tokens.shape)}")
    tokens = tokens.long()
    if tokens.numel() and int(tokens.min()) < 0:
        raise TokenFileError(f"{path}: negative token id {int(tokens.min())}")
    text = metadata.pop(RATE_KEY, None)
    rate = None if text is None else _positive_rate(text)
    if text is not None and rate is None:
        raise TokenFileError(f"{path}: bad {RATE_KEY} metadata {text!r} (want a positive number)")
    return tokens, TokenMeta(token_rate=rate, extra=metadata)


def token_relpath(uid: str) -> str:
    """Where an utterance's token file lives, relative to the export folder (sharded by a hash of the id)."""
    digest = hashlib.sha1(uid.encode("utf-8")).hexdigest()
    return f"{TOKENS_DIR}/{digest[:2]}/{safe_stem(uid)}.safetensors"
