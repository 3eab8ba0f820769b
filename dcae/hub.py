"""Where model files come from: a local path, or the published weights on the Hugging Face hub.

With no flag, commands use the published weights, downloaded once into the Hugging Face cache
(``huggingface_hub.hf_hub_download``). Offline and not cached, :class:`ModelNotFound` says in one
message which files to fetch and which flags point at local copies.
"""
from __future__ import annotations

import logging
from pathlib import Path

DEFAULT_AE_REPO = "KdaiP/DC-Speech-VAE"
DEFAULT_AE_FILE = "generator_700000.pt"
DEFAULT_VOCODER_REPO = "nvidia/bigvgan_v2_22khz_80band_256x"
PACKAGED_AE_CONFIG = Path(__file__).resolve().parent / "configs" / "default.json"


class ModelNotFound(RuntimeError):
    """A model file is neither local nor downloadable; the message says what to fetch and how."""


def _hub_reachable() -> bool:
    """False when the hub's host name does not even resolve (offline machine): fail fast instead
    of waiting through huggingface_hub's retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
        return True
    except OSError:
        return False


def hub_download(repo_id: str, filename: str, flag: str) -> Path:
    """Download (or find in the cache) ``repo_id/filename``; raise :class:`ModelNotFound` if impossible."""
    hint = (f"download it from https://huggingface.co/{repo_id}/blob/main/{filename} on a machine with internet "
            f"and pass the local path with {flag}")
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of bigvgan
        raise ModelNotFound(f"huggingface_hub is not installed: {hint}") from None
    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached)
    if not _hub_reachable():
        raise ModelNotFound(f"cannot get {filename} from the Hugging Face hub repo {repo_id} (offline and not "
                            f"cached); {hint}")
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # its retry warnings would bury the one-line message
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as e:  # noqa: BLE001 - gated, missing, network: all become one message
        raise ModelNotFound(f"cannot get {filename} from the Hugging Face hub repo {repo_id} "
                            f"({type(e).__name__}); {hint}") from None
    finally:
        hub_logger.setLevel(level)


def resolve_ae_model(path: str | Path | None) -> Path:
    """The DCAE generator file: ``path`` when given, else the published ``generator_700000.pt``."""
    if path is None or str(path) == "":
        return hub_download(DEFAULT_AE_REPO, DEFAULT_AE_FILE, "--ae-model")
    p = Path(path)
    if p.is_file():
        return p
    if p.exists():
        raise ModelNotFound(f"{p}: --ae-model must be a generator file (.pt or .safetensors), not a folder")
    if "/" in str(path) and not str(path).startswith((".", "/")) and str(path).count("/") == 2:
        # "owner/repo/filename" names a file on the hub
        owner, repo, filename = str(path).split("/")
        return hub_download(f"{owner}/{repo}", filename, "--ae-model")
    raise ModelNotFound(f"{p}: AE checkpoint not found (pass --ae-model PATH to a generator_*.pt file)")


def resolve_ae_config(path: str | Path | None) -> Path:
    """The diffusers-style DCAE JSON: ``path`` when given, else our packaged copy of the published one."""
    if path is None or str(path) == "":
        return PACKAGED_AE_CONFIG
    p = Path(path)
    if not p.is_file():
        raise ModelNotFound(f"{p}: AE config not found (pass --ae-config PATH to a JSON file)")
    return p


def resolve_vocoder_dir(path_or_id: str | Path | None) -> Path:
    """A folder holding BigVGAN's ``config.json`` + ``bigvgan_generator.pt`` (NVIDIA's layout).

    ``None`` means the published ``nvidia/bigvgan_v2_22khz_80band_256x``; a string that is not an
    existing folder is taken as a hub repo id.
    """
    target = str(path_or_id) if path_or_id not in (None, "") else DEFAULT_VOCODER_REPO
    p = Path(target)
    if p.is_dir():
        missing = [n for n in ("config.json", "bigvgan_generator.pt") if not (p / n).is_file()]
        if missing:
            raise ModelNotFound(f"{p}: vocoder folder lacks {', '.join(missing)} (NVIDIA's layout: "
                                "config.json + bigvgan_generator.pt)")
        return p
    if p.exists() or target.startswith((".", "/")) or target.count("/") != 1:
        raise ModelNotFound(f"{target}: vocoder folder not found (pass --vocoder DIR holding config.json "
                            "and bigvgan_generator.pt, or a hub id such as " + DEFAULT_VOCODER_REPO + ")")
    config = hub_download(target, "config.json", "--vocoder")
    hub_download(target, "bigvgan_generator.pt", "--vocoder")
    return config.parent
