"""Getting the ``s3tokenizer`` package and the S3Tokenizer v2 weights, with one-line errors.

The package (:data:`INSTALL_HINT`: the ``[s3]`` extra, then s3tokenizer without its declared
dependencies) downloads ``speech_tokenizer_v2_25hz.onnx``
from ModelScope into ``$XDG_CACHE_HOME/s3tokenizer`` (default ``~/.cache/s3tokenizer``) at run time
and checks its SHA-256. Offline, :class:`S3WeightsNotFound` says in one line what to fetch, where
the cache expects it, and how to point at a local copy (``--s3-model`` / ``DCAE_S3_TOKENIZER``).

``s3tokenizer`` imports ``torchaudio`` at the top of its ``utils`` module for a file loader that we
never call (audio is decoded and resampled by :mod:`dcae.audio`). PyPI's torchaudio wheels are
CUDA builds tied to one torch release, so on a CPU build of torch, or another torch release, that
import fails; :func:`import_s3tokenizer` then puts an empty stand-in module in its place while
s3tokenizer imports (:mod:`dcae.torchaudio_stand_in`).
"""
from __future__ import annotations

import os
import socket
import types
from pathlib import Path
from urllib.parse import urlparse

from dcae.torchaudio_stand_in import import_without_torchaudio

MODEL_NAME = "speech_tokenizer_v2_25hz"
ENV_VAR = "DCAE_S3_TOKENIZER"
DEFAULT_FLAG = "--s3-model"
CONNECT_TIMEOUT_S = 10.0
INSTALL_HINT = 'pip install "dc-speech-vae[s3]" && pip install --no-deps s3tokenizer==0.3.0 (README, "Extras")'


class S3TokenizerUnavailable(RuntimeError):
    """The ``s3tokenizer`` package or its weights cannot be used; the message is one line."""


class S3WeightsNotFound(S3TokenizerUnavailable):
    """The weights are neither local nor downloadable; the message says what to fetch and how."""


def import_s3tokenizer() -> types.ModuleType:
    """``import s3tokenizer`` (with torchaudio's stand-in while it imports:
    :mod:`dcae.torchaudio_stand_in`), or :class:`S3TokenizerUnavailable` naming what to install."""
    try:
        return import_without_torchaudio("s3tokenizer")
    except ImportError as e:
        raise S3TokenizerUnavailable(f"the s3tokenizer package is not installed ({e}); install it: {INSTALL_HINT}"
                                     ) from None


def default_cache_dir() -> Path:
    """Where ``s3tokenizer.load_model`` caches downloads: ``$XDG_CACHE_HOME/s3tokenizer``."""
    return Path(os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))) / "s3tokenizer"


def weights_url(name: str = MODEL_NAME) -> str:
    return getattr(import_s3tokenizer(), "_MODELS", {}).get(name, f"the {name} URL listed in s3tokenizer._MODELS")


def _host_reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """False when the download host does not resolve or accept a connection within ``timeout``:
    fail fast instead of hanging in ``urlopen`` (the package sets no timeout)."""
    host = urlparse(url).hostname
    if host is None:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def not_found_message(reason: str, cache_dir: str | Path | None = None, flag: str = DEFAULT_FLAG) -> str:
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    return (f"cannot get the S3Tokenizer weights {MODEL_NAME}.onnx ({reason}): download {weights_url()} on a "
            f"machine with internet and put it at {cache_dir / (MODEL_NAME + '.onnx')}, or pass its path with "
            f"{flag} (or set {ENV_VAR})")


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def build_s3_model(config=None):
    """An S3Tokenizer v2 model of the package (``S3TokenizerV2``) with random weights, in eval mode.

    ``config``: ``s3tokenizer.model_v2.ModelConfig`` (default: the published model's sizes).
    """
    import_s3tokenizer()
    from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2

    return S3TokenizerV2(MODEL_NAME, ModelConfig() if config is None else config).eval()


def load_s3_model(model_path: str | Path | None = None, cache_dir: str | Path | None = None,
                  flag: str = DEFAULT_FLAG):
    """The published S3Tokenizer v2 as the package's ``S3TokenizerV2`` (eval mode, CPU).

    Weights: ``model_path`` (an ``.onnx`` file), else ``$DCAE_S3_TOKENIZER``, else the package's
    cached download in ``cache_dir`` (default :func:`default_cache_dir`), fetched now when online.
    Raises :class:`S3WeightsNotFound` / :class:`S3TokenizerUnavailable` with a one-line message.
    """
    s3tokenizer = import_s3tokenizer()
    given = model_path if model_path not in (None, "") else (os.environ.get(ENV_VAR) or None)
    if given is not None:
        path = Path(given)
        origin = "" if model_path not in (None, "") else f" (from {ENV_VAR})"
        if not path.is_file():
            raise S3WeightsNotFound(f"{path}{origin}: S3Tokenizer weight file not found (want {MODEL_NAME}.onnx)")
        try:
            state = s3tokenizer.onnx2torch(str(path), None, False)  # what the package's init_from_onnx loads
            model = build_s3_model()
            model.load_state_dict(state, strict=True)
        except Exception as e:  # noqa: BLE001 - onnx parse errors, missing/mismatched weights
            raise S3TokenizerUnavailable(f"{path}{origin}: not the S3Tokenizer {MODEL_NAME} ONNX file ({_one_line(e)})") from None
        return model.eval()
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    if not (cache_dir / f"{MODEL_NAME}.onnx").is_file() and not _host_reachable(weights_url()):
        raise S3WeightsNotFound(not_found_message("offline and not cached", cache_dir, flag))
    try:
        # the package's own download: checks the SHA-256 and re-downloads a damaged cached copy
        return s3tokenizer.load_model(MODEL_NAME, download_root=str(cache_dir)).eval()
    except Exception as e:  # noqa: BLE001 - URLError, checksum, disk: all become one line
        raise S3WeightsNotFound(not_found_message(_one_line(e), cache_dir, flag)) from None
