"""Where model files come from: a local path, or the published weights on the Hugging Face hub.

With no flag, commands use the published weights, downloaded once into the Hugging Face cache
(``huggingface_hub.hf_hub_download``). Offline and not cached, :class:`ModelNotFound` says in one
message which files to fetch and which flags point at local copies; :func:`resolve_models`
resolves everything a command needs first, so that one message names every missing file.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterable

from dcae.model.config import DEFAULT_CONFIG, config_path, packaged_configs

DEFAULT_AE_REPO = "KdaiP/DC-Speech-VAE"
DEFAULT_AE_FILE = "generator_700000.pt"
DEFAULT_VOCODER_REPO = "nvidia/bigvgan_v2_22khz_80band_256x"


class ModelNotFound(RuntimeError):
    """A model file is neither local nor downloadable; the message says what to fetch and how.

    ``fetch``: the (hub repo, file name) pairs that could not be downloaded; ``flags``: the options
    that point at local copies instead; ``offline``: the hub could not be reached at all.
    """

    def __init__(self, message: str, fetch: Iterable[tuple[str, str]] = (), flags: Iterable[str] = (),
                 offline: bool = False):
        super().__init__(message)
        self.fetch = list(fetch)
        self.flags = list(flags)
        self.offline = offline


FLAG_HINTS = {"--ae-model": "--ae-model FILE", "--vocoder": "--vocoder DIR (the folder holding both vocoder files)"}


def merge_errors(errors: list[ModelNotFound]) -> ModelNotFound:
    """One :class:`ModelNotFound` for several: every file to fetch (grouped by hub repo) and every flag."""
    if len(errors) == 1:
        return errors[0]
    if not all(e.fetch for e in errors):
        return ModelNotFound("; ".join(str(e) for e in errors))
    by_repo: dict[str, list[str]] = {}
    for e in errors:
        for repo, name in e.fetch:
            by_repo.setdefault(repo, []).append(name)
    flags = list(dict.fromkeys(f for e in errors for f in e.flags))
    where = ("the hub cannot be reached and they are not in the Hugging Face cache" if all(e.offline for e in errors)
             else "they could not be downloaded from the Hugging Face hub")
    files = " and ".join(f"{' + '.join(names)} from https://huggingface.co/{repo}" for repo, names in by_repo.items())
    hints = " ".join(FLAG_HINTS.get(f, f) for f in flags)
    return ModelNotFound(f"model files missing ({where}): fetch {files} on a machine with internet, then pass {hints}",
                         [f for e in errors for f in e.fetch], flags, all(e.offline for e in errors))


def _collect(calls: Iterable[Callable[[], Path | None]]) -> list[Path | None]:
    """Run every resolver; raise one merged :class:`ModelNotFound` if any failed."""
    results, errors = [], []
    for call in calls:
        try:
            results.append(call())
        except ModelNotFound as e:
            errors.append(e)
            results.append(None)
    if errors:
        raise merge_errors(errors)
    return results


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


@contextlib.contextmanager
def _quiet_hub():
    """huggingface_hub's retry warnings silenced inside the block: they would bury the one-line message."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


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
                            f"cached); {hint}", [(repo_id, filename)], [flag], offline=True)
    try:
        with _quiet_hub():
            return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as e:  # noqa: BLE001 - gated, missing, network: all become one message
        raise ModelNotFound(f"cannot get {filename} from the Hugging Face hub repo {repo_id} "
                            f"({type(e).__name__}); {hint}", [(repo_id, filename)], [flag]) from None


def resolve_pretrained(spec: str, flag: str) -> Path:
    """A Hugging Face model (``from_pretrained`` layout) named by ``spec``: a local folder as it is, or a hub
    id, from the cache or downloaded whole. Raises :class:`ModelNotFound` (one line naming what to fetch)."""
    local = Path(spec).expanduser()
    if local.is_dir():
        return local
    if not _is_hub_id(spec):
        raise ModelNotFound(f"{flag} {spec}: no such folder (want a Hugging Face model folder or a hub id "
                            f"such as openai/whisper-large-v3)")
    from huggingface_hub import snapshot_download

    hint = (f"fetch it on a machine with internet (hf download {spec} --local-dir DIR) and pass {flag} DIR")
    try:
        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError and kin)
        pass
    if not _hub_reachable():
        raise ModelNotFound(f"{flag} {spec}: not in the Hugging Face cache and the hub cannot be reached; {hint}",
                            [(spec, "*")], [flag], offline=True)
    try:
        with _quiet_hub():
            return Path(snapshot_download(spec))
    except Exception as e:  # noqa: BLE001 - gated, missing, network: all become one message
        raise ModelNotFound(f"{flag} {spec}: cannot download it from the Hugging Face hub ({type(e).__name__}); "
                            f"{hint}", [(spec, "*")], [flag]) from None


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
    """The diffusers-style DCAE JSON: ``path`` when given (a file, or a packaged config's name), else our
    packaged copy of the published one."""
    if path is None or str(path) == "":
        return DEFAULT_CONFIG
    p = config_path(path)
    if not p.is_file():
        names = ", ".join(c.stem for c in packaged_configs())
        raise ModelNotFound(f"{p}: AE config not found (pass --ae-config PATH to a JSON file, or a packaged "
                            f"config by name: {names})")
    return p


def _is_hub_id(target: str) -> bool:
    return target.count("/") == 1 and not target.startswith((".", "/", "~"))


VOCODER_FILES = ("config.json", "bigvgan_generator.pt")  # NVIDIA's BigVGAN folder layout


def _local_vocoder_folder(target: str, needed: tuple[str, ...]) -> Path | None:
    """The one ``--vocoder`` rule for a local path: a folder holding ``needed``, or that folder's
    ``config.json`` (the folder is used). Any other file is refused, since the loaders read the
    folder's ``config.json`` and would silently ignore it. None when ``target`` is not a local path."""
    p = Path(target)
    if p.is_file():
        if p.name != "config.json":
            raise ModelNotFound(f"{p}: --vocoder takes a BigVGAN folder (config.json + bigvgan_generator.pt) or "
                                "that folder's config.json, not another file")
        p = p.parent
    if not p.is_dir():
        return None
    missing = [n for n in needed if not (p / n).is_file()]
    if missing:
        raise ModelNotFound(f"{p}: vocoder folder lacks {', '.join(missing)} (NVIDIA's layout: "
                            "config.json + bigvgan_generator.pt)")
    return p


def _vocoder_not_found(target: str) -> ModelNotFound:
    return ModelNotFound(f"{target}: vocoder folder not found (pass --vocoder DIR holding config.json and "
                         f"bigvgan_generator.pt, DIR/config.json, or a hub id such as {DEFAULT_VOCODER_REPO})")


def resolve_vocoder_dir(path_or_id: str | Path | None) -> Path:
    """A folder holding BigVGAN's ``config.json`` + ``bigvgan_generator.pt`` (NVIDIA's layout).

    ``None`` means the published ``nvidia/bigvgan_v2_22khz_80band_256x``; the folder may also be
    given by its ``config.json``; a string that is not an existing path is taken as a hub repo id.
    """
    target = str(path_or_id) if path_or_id not in (None, "") else DEFAULT_VOCODER_REPO
    folder = _local_vocoder_folder(target, VOCODER_FILES)
    if folder is not None:
        return folder
    if Path(target).exists() or not _is_hub_id(target):
        raise _vocoder_not_found(target)
    config, _ = _collect([lambda name=name: hub_download(target, name, "--vocoder") for name in VOCODER_FILES])
    return config.parent


def resolve_mel_config_dir(path_or_id: str | Path | None) -> Path | None:
    """A folder holding the vocoder's ``config.json`` when only its mel settings are needed (encoding):
    ``None`` (or the published vocoder's id) means the packaged copy of the published config; a folder,
    its ``config.json`` file or a hub id (only ``config.json`` is downloaded) name another one (the
    same rule as :func:`resolve_vocoder_dir`, without the weights)."""
    if path_or_id in (None, "") or str(path_or_id) == DEFAULT_VOCODER_REPO:
        return None
    target = str(path_or_id)
    folder = _local_vocoder_folder(target, ("config.json",))
    if folder is not None:
        return folder
    if Path(target).exists() or not _is_hub_id(target):
        raise _vocoder_not_found(target)
    return hub_download(target, "config.json", "--vocoder").parent


def resolve_models(ae_model: str | Path | None, ae_config: str | Path | None, vocoder: str | Path | None,
                   vocoder_weights: bool = True) -> tuple[Path, Path, Path | None]:
    """Everything a command loads, resolved before anything is loaded:
    (AE generator file, AE config JSON, vocoder folder). With ``vocoder_weights=False`` (encoding)
    the third is :func:`resolve_mel_config_dir`'s folder, or None for the packaged mel config.
    Raises one :class:`ModelNotFound` naming every file to fetch and every flag to give."""
    vocoder_resolver = resolve_vocoder_dir if vocoder_weights else resolve_mel_config_dir
    model, config, voc = _collect([lambda: resolve_ae_model(ae_model), lambda: resolve_ae_config(ae_config),
                                   lambda: vocoder_resolver(vocoder)])
    return model, config, voc
