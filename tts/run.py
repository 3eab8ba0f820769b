"""A TTS run folder: everything needed to rebuild a trained model and synthesise with it.

    RUN/config.json        the resolved training config (``--config RUN/config.json`` reruns it)
    RUN/model.json         {"kind": "ar"|"flow"|"token-flow"|"token-lm", "config": the model config's fields}
    RUN/vocab.json         text front end (kind, symbols); kinds that read text (ar, flow, token-lm)
    RUN/backbone/          token-lm on a Hugging Face backbone: its config.json and tokenizer (no vocab.json)
    RUN/stats.json         latent mean/std used to normalise the training data (token-lm: only with a learnable
                           speaker encoder, for its reference latents)
    RUN/latent.json        the latents' sample/frame rate and AE hash, plus the length rule:
                           frames_per_token (text kinds) or token_rate / tokens_per_frame (token-flow);
                           token-lm: token_rate, codebook_size, tokenizer and the length rule
                           (min_len_ratio / max_len_ratio speech tokens per text id)
    RUN/checkpoints/{model,optimizer,state}_{step}.pt
    RUN/logs/              TensorBoard
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dcae.atomic import atomic_write_json
from dcae.corpus import LatentStats, ManifestError
from dcae.training.checkpoints import CheckpointManager
from tts.one_stage.ar import ARTTS, ARConfig
from tts.one_stage.flow import FlowConfig, FlowTTS
from tts.text import FrontendError, TextFrontend
from tts.token_flow.model import TokenFlowConfig, TokenFlowModel
from tts.token_lm.backbone import BackboneError, BackboneLMConfig, BackboneTokenizer, BackboneTokenLM
from tts.token_lm.cosyvoice import is_cosyvoice2, read_cosyvoice2
from tts.token_lm.model import TokenLM, TokenLMConfig

CHECKPOINT_FILES = ["model", "optimizer", "state"]
TEXT_KINDS = ("ar", "flow")  # text -> latents: the run has a text front end (vocab.json)
TOKEN_KINDS = ("token-flow",)  # speech tokens -> latents: no text front end
LM_KINDS = ("token-lm",)  # text -> speech tokens: a text front end, no latent stats


class RunError(ValueError):
    """A run folder that cannot be used; the message names the file and the reason."""


def build_model(kind: str, config: dict[str, Any], root: str | Path = ".", weights: str | None = None,
                text_llm_weights: str | None = None) -> nn.Module:
    """The model of a run's ``model.json``; a token LM on a Hugging Face backbone (config with ``backbone``)
    reads the backbone's config under ``root`` and, with ``weights``, its pretrained weights."""
    if kind == "ar":
        return ARTTS(ARConfig(**config))
    if kind == "flow":
        return FlowTTS(FlowConfig(**config))
    if kind == "token-flow":
        return TokenFlowModel(TokenFlowConfig(**config))
    if kind == "token-lm" and "backbone" in config:
        return BackboneTokenLM(BackboneLMConfig(**config), root=root, weights=weights,
                               text_llm_weights=text_llm_weights)
    if kind == "token-lm":
        return TokenLM(TokenLMConfig(**config))
    raise RunError(f"unknown model kind {kind!r} (one of {', '.join(TEXT_KINDS + TOKEN_KINDS + LM_KINDS)})")


def model_config(kind: str, train_cfg: Any, vocab_size: int, latent_dim: int, frames_per_token: float) -> dict[str, Any]:
    """The model's own config from a :class:`tts.trainers.text_latent.TTSTrainConfig`."""
    cls = ARConfig if kind == "ar" else FlowConfig
    fields = {k: getattr(train_cfg, k) for k in cls.__dataclass_fields__ if hasattr(train_cfg, k)}
    fields.update(vocab_size=vocab_size, latent_dim=latent_dim)
    if kind == "ar":
        fields["frames_per_token"] = frames_per_token if train_cfg.aligned_positions else None
    return asdict(cls(**fields))


def checkpoint_manager(directory: str | Path, keep: int = 3) -> CheckpointManager:
    return CheckpointManager(Path(directory) / "checkpoints", CHECKPOINT_FILES, keep=keep)


def save_run_files(directory: str | Path, kind: str, config: dict[str, Any], frontend: TextFrontend | None,
                   stats: LatentStats | None, latent_info: dict[str, Any]) -> None:
    """model.json, vocab.json (when there is a text front end), stats.json (when there are stats), latent.json."""
    directory = Path(directory)
    atomic_write_json(directory / "model.json", {"kind": kind, "config": config})
    if frontend is not None:
        frontend.save(directory / "vocab.json")
    if stats is not None:
        stats.save(directory / "stats.json")
    atomic_write_json(directory / "latent.json", latent_info)


@dataclass
class TTSRun:
    """A loaded run: ``model`` in eval mode plus what synthesis needs around it."""

    directory: Path
    kind: str
    model: nn.Module
    frontend: TextFrontend | None  # None for token kinds
    stats: LatentStats | None  # None for token-lm
    latent_info: dict[str, Any]  # sample_rate, hop_length, frame_rate, model; frames_per_token or token_rate
    step: int

    @property
    def frames_per_token(self) -> float:
        """Text kinds: latent frames per text token (the duration rule)."""
        return float(self.latent_info["frames_per_token"])

    @property
    def takes_text(self) -> bool:
        return self.kind in TEXT_KINDS

    @property
    def token_rate(self) -> float:
        """Token kinds: speech tokens per second the run was trained on."""
        return float(self.latent_info["token_rate"])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise RunError(f"{path}: cannot read ({e.strerror}); is {path.parent} a TTS run folder?") from None
    except ValueError as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None


def load_run(directory: str | Path, device: str | torch.device = "cpu", step: int | None = None) -> TTSRun:
    """Rebuild the model of a run folder from its newest (or the given) checkpoint. Raises :class:`RunError`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory}: run folder not found")
    if is_cosyvoice2(directory) and not (directory / "model.json").is_file():
        try:
            model, frontend, latent_info = read_cosyvoice2(directory, device)
        except BackboneError as e:
            raise RunError(str(e)) from None
        return TTSRun(directory=directory, kind="token-lm", model=model, frontend=frontend, stats=None,
                      latent_info=latent_info, step=0)
    spec = _read_json(directory / "model.json")
    latent_info = _read_json(directory / "latent.json")
    kind = spec.get("kind") if isinstance(spec, dict) else None
    backbone = isinstance(spec, dict) and isinstance(spec.get("config"), dict) and "backbone" in spec["config"]
    try:
        if backbone:
            frontend = BackboneTokenizer.load(directory / spec["config"]["backbone"], spec["config"]["text_vocab"])
        else:
            frontend = TextFrontend.load(directory / "vocab.json") if kind in TEXT_KINDS + LM_KINDS else None
        stats_file = directory / "stats.json"  # a token LM has one only with a learnable speaker encoder
        stats = LatentStats.load(stats_file) if kind not in LM_KINDS or stats_file.is_file() else None
    except (FrontendError, ManifestError, ValueError) as e:
        raise RunError(str(e)) from None
    try:
        model = build_model(spec["kind"], spec["config"], root=directory)
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{directory / 'model.json'}: not a model description ({e})") from None
    manager = checkpoint_manager(directory)
    step = manager.latest_step(["model"]) if step is None else step
    if step is None or not manager.path("model", step).is_file():
        raise RunError(f"{directory / 'checkpoints'}: no model checkpoint{'' if step is None else f' for step {step}'}")
    try:
        model.load_state_dict(manager.load("model", step))
    except (RuntimeError, OSError) as e:
        raise RunError(f"{manager.path('model', step)}: cannot load ({str(e).splitlines()[0]})") from None
    return TTSRun(directory=directory, kind=spec["kind"], model=model.to(device).eval(), frontend=frontend,
                  stats=stats, latent_info=latent_info, step=step)
