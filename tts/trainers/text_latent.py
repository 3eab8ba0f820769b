"""Text -> latent trainers (``--model ar`` and ``--model flow``) on the shared harness.

The corpus (``--manifest``: a ``manifest.jsonl`` or a shard folder) is streamed in batches
(:mod:`tts.trainers.data`). The first start writes the run files (see :mod:`tts.run`): the text
vocabulary fitted on the corpus's texts, the latent stats, the duration rule (frames per text token,
a least-squares fit through the origin) and the model description. A restart with the same
``--output-dir`` reuses them and resumes from the newest complete checkpoint set, mid-epoch.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dcae.corpus import LatentStats, ManifestError, pad_sequences
from dcae.corpus.stream import BatchStream
from dcae.errors import ConfigError
from dcae.training import TrainingRun
from tts.run import model_config, save_run_files
from tts.text import FrontendError, TextFrontend
from tts.trainers.config import TTSRunConfig, check_flow_schedule, check_manifest, check_transformer
from tts.trainers.data import batch_stream, corpus_stats, training_corpus
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


class TextLatentItems:
    """A corpus row -> ``{"tokens": text ids (L,), "latent": normalised (T, D)}``; None for rows over
    ``max_frames`` frames."""

    def __init__(self, frontend: TextFrontend, stats: LatentStats, max_frames: int, source: Path):
        self.frontend, self.stats, self.max_frames, self.source = frontend, stats, max_frames, source

    def __call__(self, row: dict[str, Any], rng: random.Random) -> dict[str, torch.Tensor] | None:
        if int(row["num_frames"]) > self.max_frames:
            return None
        ids = self.frontend.encode(str(row.get("text", "")))
        if not ids:
            raise ManifestError(f"{self.source}: row {row['id']} has empty text")
        latent = self.stats.normalize(torch.from_numpy(row["latent"]).T.float())
        return {"tokens": torch.tensor(ids, dtype=torch.long), "latent": latent}


class TextLatentBatch:
    """:func:`collate_tts` with the text padded on the left for the AR model."""

    def __init__(self, left_pad_text: bool):
        self.left_pad_text = left_pad_text

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return collate_tts(items, self.left_pad_text)


def latent_frames(item: dict[str, torch.Tensor]) -> int:
    return int(item["latent"].shape[0])


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
    corpus = training_corpus(cfg)
    ids, texts, frames = [], [], []
    for row in corpus.rows(["text", "num_frames"]):  # one pass over the light columns
        if not str(row.get("text", "")).strip():
            raise ManifestError(f"{corpus.path}: row {row['id']} has no text (a text-to-latent model reads text)")
        if int(row["num_frames"]) <= cfg.max_frames:
            ids.append(row["id"])
            texts.append(str(row["text"]))
            frames.append(int(row["num_frames"]))
    if not texts:
        raise ManifestError(f"{corpus.path}: no row has at most {cfg.max_frames} frames")
    frontend = TextFrontend.fit(texts, cfg.text_frontend, cfg.lowercase, cfg.phoneme_language)
    tokens = [len(t) for t in frontend.encode_batch(texts)]
    empty = [uid for uid, n in zip(ids, tokens) if n == 0]
    if empty:
        raise ManifestError(f"{corpus.path}: {len(empty)} row(s) have empty text (first: {empty[0]})")
    rate = fit_frames_per_token(frames, tokens)
    stats = corpus_stats(corpus, cfg.stats)
    meta, dim = corpus.meta, corpus.latent_dim
    latent_info = {"frames_per_token": rate, "sample_rate": meta.sample_rate, "hop_length": meta.hop_length,
                   "frame_rate": meta.frame_rate, "model": meta.model, "latent_dim": dim}
    config = model_config(cfg.model, cfg, frontend.vocab_size, dim, rate)
    save_run_files(out, cfg.model, config, frontend, stats, latent_info)
    log(f"{len(texts)} utterances, {sum(frames)} frames, latent dim {dim}, "
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

    def dataset(self, run: TrainingRun) -> BatchStream:
        cfg = self.cfg
        corpus = training_corpus(cfg, run.log)
        stats = LatentStats.load(Path(cfg.output_dir) / "stats.json")
        items = TextLatentItems(self.frontend, stats, cfg.max_frames, corpus.path)
        return batch_stream(cfg, run, corpus, items, TextLatentBatch(cfg.model == "ar"), latent_frames,
                            ["text", "latent"])


class ARTrainer(TextToLatentTrainer):
    """``--model ar``: causal transformer with a flow head."""

    kind = "ar"


class FlowTrainer(TextToLatentTrainer):
    """``--model flow``: non-autoregressive flow matching with infilling."""

    kind = "flow"
