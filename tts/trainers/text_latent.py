"""Text -> latent trainers (``--model ar`` and ``--model flow``) on the shared harness.

The first start writes the run files (see :mod:`tts.run`): the text vocabulary fitted on the
manifest's texts, the latent stats, the duration rule (frames per text token, a least-squares fit
through the origin) and the model description. A restart with the same ``--output-dir`` reuses them
and resumes from the newest complete checkpoint set.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from dcae.corpus import LatentManifestDataset, LatentStats, ManifestError, pad_sequences
from dcae.training import TrainingRun
from tts.config import PRESET_DIR, TTSTrainConfig, check_config
from tts.run import model_config, save_run_files
from tts.text import FrontendError, TextFrontend
from tts.trainers.model_trainer import ModelTrainer, is_restart


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
    preset_dir = PRESET_DIR

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
