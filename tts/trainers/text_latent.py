"""Text -> latent trainers (``--model ar`` and ``--model flow``) on the shared harness.

The first start writes the run files (see :mod:`tts.run`): the text vocabulary fitted on the
manifest's texts, the latent stats, the duration rule (frames per text token, a least-squares fit
through the origin) and the model description. A restart with the same ``--output-dir`` reuses them
and resumes from the newest complete checkpoint set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dcae.corpus import LatentManifestDataset, LatentStats, ManifestError, pad_sequences
from dcae.errors import ConfigError
from dcae.training import TrainingRun
from tts.run import model_config, save_run_files
from tts.text import FrontendError, TextFrontend
from tts.trainers.config import TTSRunConfig, check_flow_schedule, check_manifest, check_transformer
from tts.trainers.model_trainer import ModelTrainer, is_restart

MODELS = ("ar", "flow")


@dataclass
class TTSTrainConfig(TTSRunConfig):
    """Training configuration of the text-to-latent TTS models (AR with a flow head, or non-AR flow matching)."""

    # data
    stats: str | None = "auto"  # stats.json path, "auto" (next to the manifest, else computed) or none
    text_frontend: str = "chars"  # chars | bytes | phonemes
    lowercase: bool = True  # lowercase the text before tokenising
    phoneme_language: str = "en-us"  # espeak-ng voice for text_frontend=phonemes
    max_frames: int = 1000  # longer utterances are left out

    # both models
    width: int = 512  # transformer width
    layers: int = 8  # transformer blocks
    heads: int = 8  # attention heads
    ff_mult: float = 4.0  # feed-forward width / width
    dropout: float = 0.0  # dropout in attention and feed-forward
    aligned_positions: bool = True  # text and frames share a rotary time axis (rate fitted on the data)

    # AR model
    head_width: int = 512  # width of the flow head MLP
    head_layers: int = 3  # residual blocks of the flow head
    flow_samples: int = 4  # flow-time draws per frame per step
    stop_weight: float = 1.0  # weight of the stop head's loss
    cond_drop: float = 0.1  # text hidden with this probability (classifier-free guidance)

    # flow model
    text_on_frames: bool = True  # each frame input also gets the embedding of its evenly-spread token
    infill_min: float = 0.7  # fraction of each utterance to generate in training (the rest is the prompt)
    infill_max: float = 1.0  # (the span's fraction is drawn uniformly in [infill_min, infill_max])
    drop_audio: float = 0.3  # prompt hidden with this probability
    drop_all: float = 0.2  # prompt and text hidden with this probability
    immiscible: bool = False  # assign the batch's noise to samples by a linear assignment (immiscible diffusion)
    contrastive_weight: float = 0.0  # contrastive flow matching: minus this times the error to another sample's target
    meanflow: bool = False  # MeanFlow average-velocity training (few-step sampling)
    meanflow_ratio: float = 0.25  # fraction of samples trained on an interval [s, e] rather than a point
    time_scale: float = 10.0  # flow time embedded as sinusoids of time_scale * s (MeanFlow is steadier lower)
    time_schedule: str = "uniform"  # training flow times: uniform | logit_normal (SD3) | cosine (AR head and flow model)

def check_config(cfg: TTSTrainConfig) -> None:
    """Raise ConfigError (one line) for values training cannot run with."""
    if cfg.model not in MODELS:
        raise ConfigError(f"--model: expected ar or flow, got {cfg.model!r}")
    check_transformer(cfg)
    check_flow_schedule(cfg)
    if not 0 < cfg.infill_min <= cfg.infill_max <= 1:
        raise ConfigError("--infill-min/--infill-max: need 0 < min <= max <= 1")
    for name in ("layers", "flow_samples"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(cfg, name)}")
    check_manifest(cfg)


class TokenizedLatents(Dataset):
    """Latent items with their text as token ids (tokenised once, up front): ``{"tokens", "latent"}``."""

    def __init__(self, latents: LatentManifestDataset, frontend: TextFrontend):
        self.latents = latents
        self.tokens = [torch.tensor(ids, dtype=torch.long) for ids in frontend.encode_batch(latents.texts)]
        empty = [latents.rows[i]["id"] for i, t in enumerate(self.tokens) if t.numel() == 0]
        if empty:
            raise ManifestError(f"{latents.manifest_path}: {len(empty)} row(s) have empty text (first: {empty[0]})")

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokens[index], "latent": self.latents[index]["latent"]}


def collate_tts(items: list[dict[str, torch.Tensor]], left_pad_text: bool) -> dict[str, torch.Tensor]:
    """Text (B, L) padded (left for the AR model) with mask, latents (B, T, D) right-padded with mask."""
    text, text_mask = pad_sequences([it["tokens"] for it in items], left=left_pad_text)
    latent, latent_mask = pad_sequences([it["latent"] for it in items])
    return {"text": text, "text_mask": text_mask, "latent": latent, "latent_mask": latent_mask}


def fit_frames_per_token(num_frames: list[int], num_tokens: list[int]) -> float:
    """Least-squares rate through the origin: frames ~ rate * tokens."""
    return sum(f * t for f, t in zip(num_frames, num_tokens)) / max(1, sum(t * t for t in num_tokens))


def prepare_run(cfg: TTSTrainConfig, log) -> None:
    """Write the run files on the first start (main process only)."""
    out = Path(cfg.output_dir)
    if is_restart(out, cfg.model):  # the same vocabulary, stats and duration rule
        return
    stats_arg = None if cfg.stats in (None, "none") else cfg.stats
    data = LatentManifestDataset(cfg.manifest, stats_path=stats_arg, normalize=stats_arg is not None,
                                 max_frames=cfg.max_frames, require_text=True)
    frontend = TextFrontend.fit(data.texts, cfg.text_frontend, cfg.lowercase, cfg.phoneme_language)
    tokens = [len(t) for t in frontend.encode_batch(data.texts)]
    rate = fit_frames_per_token(data.num_frames, tokens)
    stats = data.stats or LatentStats(torch.zeros(data.latent_dim), torch.ones(data.latent_dim), sum(data.num_frames))
    meta = data.meta
    latent_info = {"frames_per_token": rate, "sample_rate": meta.sample_rate, "hop_length": meta.hop_length,
                   "frame_rate": meta.frame_rate, "model": meta.model, "latent_dim": data.latent_dim}
    config = model_config(cfg.model, cfg, frontend.vocab_size, data.latent_dim, rate)
    save_run_files(out, cfg.model, config, frontend, stats, latent_info)
    log(f"{len(data)} utterances, {sum(data.num_frames)} frames, latent dim {data.latent_dim}, "
        f"vocabulary {frontend.vocab_size} ({cfg.text_frontend}), {rate:.2f} frames per token")


class TextToLatentTrainer(ModelTrainer):
    """AR (causal transformer + flow head) or non-AR flow matching from text to normalised latents."""

    config_class = TTSTrainConfig
    user_errors = (ManifestError, FrontendError)

    def check(self) -> None:
        check_config(self.cfg)

    def build(self, run: TrainingRun) -> None:
        cfg = self.cfg
        info = self.run_files(run, prepare_run)
        self.frontend = TextFrontend.load(Path(cfg.output_dir) / "vocab.json")
        self.setup(run, cfg.model, model_config(cfg.model, cfg, self.frontend.vocab_size,
                                                info["latent_dim"], info["frames_per_token"]))

    def dataset(self, run: TrainingRun) -> Dataset:
        out = Path(self.cfg.output_dir)
        latents = LatentManifestDataset(self.cfg.manifest, stats_path=out / "stats.json", max_frames=self.cfg.max_frames,
                                        require_text=True)
        return TokenizedLatents(latents, self.frontend)

    def collate(self, items):
        return collate_tts(items, left_pad_text=self.cfg.model == "ar")


class ARTrainer(TextToLatentTrainer):
    """``--model ar``: causal transformer with a flow head."""

    kind = "ar"


class FlowTrainer(TextToLatentTrainer):
    """``--model flow``: non-autoregressive flow matching with infilling."""

    kind = "flow"
