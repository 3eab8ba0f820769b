"""Speech tokens -> latents trainer (``--model token-flow``) on the shared harness.

Reads manifest rows with ``latent_path`` + ``token_path`` (text is not used). The first start writes
the run files (:mod:`tts.run`): latent stats, ``latent.json`` (frame rate, token rate, tokens per
frame, codebook size, tokenizer) and the model description; a restart with the same
``--output-dir`` reuses them and resumes from the newest complete checkpoint set.

Rows are checked once: every token file must have the same token rate (the manifest's
``token_rate``, else the file's metadata), and each latent's frame count must match
``round(num_tokens / token_rate * frame_rate)`` within ``length_tolerance`` frames (more means the
tokens and the latent come from different audio). With ``speaker_dim`` > 0 each row also needs
``speaker_path``: a safetensors file with a float tensor ``embedding`` (speaker_dim,) (:mod:`.speaker`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from dcae.corpus import LatentManifestDataset, LatentStats, ManifestError, pad_sequences
from dcae.training import ConfigError, TrainingRun
from tts.run import save_run_files
from tts.token_flow.length_regulator import frames_for_tokens
from tts.token_flow.model import TokenFlowConfig
from tts.trainers.config import TTSRunConfig, check_flow_schedule, check_manifest, check_transformer
from tts.trainers.model_trainer import ModelTrainer, is_restart
from tts.trainers.speaker import load_speaker_embedding, speaker_paths
from tts.trainers.token_corpus import TokenCorpus, scan_token_files

KIND = "token-flow"


@dataclass
class TokenFlowTrainConfig(TTSRunConfig):
    """Training configuration of the token-to-latent flow model."""

    model: str = KIND  # which model to train
    # data
    stats: str | None = "auto"  # stats.json path, "auto" (next to the manifest, else computed) or none
    max_frames: int = 1000  # longer utterances are left out
    length_tolerance: int = 2  # frames a latent may differ from round(num_tokens / token_rate * frame_rate)
    vocab_size: int = 0  # token ids the model takes (0: the token files' codebook_size, else the largest id + 1)
    # model
    width: int = 256  # transformer width (token encoder and DiT)
    layers: int = 6  # DiT blocks
    encoder_layers: int = 3  # token encoder blocks
    heads: int = 4  # attention heads
    ff_mult: float = 4.0  # feed-forward width / width
    dropout: float = 0.0  # dropout in attention and feed-forward
    lookahead: int = 3  # tokens the encoder reads ahead (streaming waits for them)
    separate_encoders: bool = True  # a token encoder of its own for each attention mode (full / chunked)
    speaker_dim: int = 0  # speaker embedding size (0: none; else rows need speaker_path)
    prompt_ratio_tolerance: float = 0.2  # prompts may have up to this much more tokens per frame than the corpus
    # training
    chunk_sizes: list[int] = field(default_factory=lambda: [1, 2, 4])  # chunk sizes (latent frames) of chunked samples
    full_context_prob: float = 0.7  # fraction of samples trained with full context (the rest chunked)
    prompt_max: float = 0.5  # the prompt is a prefix of up to this fraction of the utterance
    drop_prompt: float = 0.3  # no prompt with this probability
    drop_cond: float = 0.2  # tokens, prompt and speaker hidden with this probability (classifier-free guidance)
    immiscible: bool = False  # assign the batch's noise to samples by a linear assignment (immiscible diffusion)
    contrastive_weight: float = 0.0  # contrastive flow matching: minus this times the error to another sample's target
    meanflow: bool = False  # MeanFlow average-velocity training (few-step sampling)
    meanflow_ratio: float = 0.25  # fraction of samples trained on an interval [s, e] rather than a point
    time_scale: float = 10.0  # flow time embedded as sinusoids of time_scale * s
    time_schedule: str = "uniform"  # training flow times: uniform | logit_normal | cosine


def model_config(cfg: TokenFlowTrainConfig, vocab_size: int, latent_dim: int, tokens_per_frame: float) -> dict[str, Any]:
    """The model's own config (:class:`TokenFlowConfig` fields) from the training config."""
    fields = {k: getattr(cfg, k) for k in TokenFlowConfig.__dataclass_fields__ if hasattr(cfg, k)}
    fields.update(vocab_size=vocab_size, latent_dim=latent_dim, tokens_per_frame=tokens_per_frame)
    return asdict(TokenFlowConfig(**fields))


class TokenLatents(Dataset):
    """``{"tokens" (N,), "latent" (T, D)[, "speaker" (S,)]}`` per manifest row."""

    def __init__(self, latents: LatentManifestDataset, speaker_dim: int = 0):
        self.latents = latents
        self.speaker_dim = speaker_dim
        self.speaker_paths = speaker_paths(latents.manifest_path, latents.rows, speaker_dim)

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.latents[index]
        out = {"tokens": item["tokens"], "latent": item["latent"]}
        if self.speaker_paths:
            out["speaker"] = load_speaker_embedding(self.speaker_paths[index], self.speaker_dim)
        return out


def collate_token_latents(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """tokens (B, N) + token_mask, latent (B, T, D) + latent_mask, right-padded; speaker (B, S) when present."""
    tokens, token_mask = pad_sequences([it["tokens"] for it in items])
    latent, latent_mask = pad_sequences([it["latent"] for it in items])
    batch = {"tokens": tokens, "token_mask": token_mask, "latent": latent, "latent_mask": latent_mask}
    if "speaker" in items[0]:
        batch["speaker"] = torch.stack([it["speaker"] for it in items])
    return batch


def check_lengths(data: LatentManifestDataset, corpus: TokenCorpus, tolerance: int) -> None:
    """Each latent's frame count is ``round(num_tokens / token_rate * frame_rate)`` within ``tolerance``
    frames (more: the tokens and the latent come from different audio). Raises :class:`ManifestError`."""
    per_frame = corpus.token_rate / data.meta.frame_rate
    for row, count in zip(data.rows, corpus.counts):
        expected = frames_for_tokens(count, per_frame)
        if abs(int(row["num_frames"]) - expected) > tolerance:
            raise ManifestError(f"{data.manifest_path}: row {row['id']}: {count} tokens at {corpus.token_rate:g}/s "
                                f"make {expected} latent frames but the latent has {row['num_frames']} (tokens and "
                                f"latent of different audio? --length-tolerance {tolerance})")


def prepare_run(cfg: TokenFlowTrainConfig, log) -> None:
    """Write the run files on the first start (main process only)."""
    out = Path(cfg.output_dir)
    if is_restart(out, KIND):
        return
    stats_arg = None if cfg.stats in (None, "none") else cfg.stats
    data = LatentManifestDataset(cfg.manifest, stats_path=stats_arg, normalize=stats_arg is not None,
                                 max_frames=cfg.max_frames, with_tokens=True)
    tokens = scan_token_files(data.manifest_path, data.rows)
    check_lengths(data, tokens, cfg.length_tolerance)
    vocab = cfg.vocab_size or tokens.codebook_size or tokens.largest_id + 1
    if tokens.largest_id >= vocab:
        raise ConfigError(f"--vocab-size {vocab}: {cfg.manifest} has token id {tokens.largest_id}")
    meta = data.meta
    ratio = tokens.token_rate / meta.frame_rate
    stats = data.stats or LatentStats(torch.zeros(data.latent_dim), torch.ones(data.latent_dim), sum(data.num_frames))
    latent_info = {"sample_rate": meta.sample_rate, "hop_length": meta.hop_length, "frame_rate": meta.frame_rate,
                   "model": meta.model, "latent_dim": data.latent_dim, "token_rate": tokens.token_rate,
                   "tokens_per_frame": ratio, "codebook_size": vocab, "tokenizer": tokens.tokenizer}
    config = model_config(cfg, vocab, data.latent_dim, ratio)
    save_run_files(out, KIND, config, None, stats, latent_info)
    log(f"{len(data)} utterances, {sum(data.num_frames)} frames, latent dim {data.latent_dim}, {vocab} token ids at "
        f"{tokens.token_rate:g}/s = {ratio:.3f} tokens per latent frame")


class TokenFlowTrainer(ModelTrainer):
    """Flow matching from speech tokens to normalised latents, full-context and chunked ("unified")."""

    config_class = TokenFlowTrainConfig
    user_errors = (ManifestError,)

    kind = KIND

    def check(self) -> None:
        cfg = self.cfg
        if cfg.model != KIND:
            raise ConfigError(f"--model: this trainer is {KIND}, got {cfg.model!r}")
        check_transformer(cfg)
        check_flow_schedule(cfg)
        for name in ("layers", "encoder_layers"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(cfg, name)}")
        if cfg.lookahead < 0 or cfg.speaker_dim < 0 or cfg.length_tolerance < 0:
            raise ConfigError("--lookahead, --speaker-dim and --length-tolerance must be >= 0")
        if any(c < 1 for c in cfg.chunk_sizes):
            raise ConfigError(f"--chunk-sizes: chunk sizes are latent frames >= 1, got {cfg.chunk_sizes}")
        if not 0 <= cfg.full_context_prob <= 1 or (not cfg.chunk_sizes and cfg.full_context_prob < 1):
            raise ConfigError("--full-context-prob must be in [0, 1] (1 when --chunk-sizes is empty)")
        if not 0 <= cfg.prompt_max < 1:
            raise ConfigError(f"--prompt-max must be in [0, 1), got {cfg.prompt_max}")
        check_manifest(cfg)

    def build(self, run: TrainingRun) -> None:
        cfg = self.cfg
        info = self.run_files(run, prepare_run)
        self.setup(run, KIND, model_config(cfg, info["codebook_size"], info["latent_dim"], info["tokens_per_frame"]))

    def dataset(self, run: TrainingRun) -> Dataset:
        latents = LatentManifestDataset(self.cfg.manifest, stats_path=Path(self.cfg.output_dir) / "stats.json",
                                        max_frames=self.cfg.max_frames, with_tokens=True)
        return TokenLatents(latents, self.cfg.speaker_dim)

    def collate(self, items):
        return collate_token_latents(items)
