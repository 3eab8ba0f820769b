"""Speech tokens -> latents trainer (``--model token-flow``) on the shared harness.

Reads rows with a latent and speech tokens (text is not used) from the corpus ``--manifest``
names (a ``manifest.jsonl`` with ``latent_path`` + ``token_path``, or a shard folder with a
``tokens`` column), streamed in batches (:mod:`tts.trainers.data`). The first start writes the run
files (:mod:`tts.run`): latent stats, ``latent.json`` (frame rate, token rate, tokens per frame,
codebook size, tokenizer) and the model description; a restart with the same ``--output-dir``
reuses them and resumes from the newest complete checkpoint set, mid-epoch.

Rows are checked once: every row must have the same token rate (the row's ``token_rate``, else its
token file's or shard's metadata), and each latent's frame count must match
``round(num_tokens / token_rate * frame_rate)`` within ``length_tolerance`` frames (more means the
tokens and the latent come from different audio). With ``speaker_dim`` > 0 each row also needs a
speaker embedding (speaker_dim,): a ``speaker_path`` file (:mod:`dcae.corpus.speaker_file`) or a
``speaker_embedding`` column. With ``--speaker-encoder learnable`` no embedding is needed: a learnable
speaker encoder (:mod:`tts.speakers.learnable`) reads a reference crop of another utterance of the
row's ``speaker`` (seen earlier in the stream; of the utterance itself when rows carry no speaker id
or for a speaker's first utterance), trained jointly and dropped with the other conditions.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dcae.corpus import LatentStats, ManifestError, pad_sequences
from dcae.corpus.stream import BatchStream
from dcae.training import ConfigError, TrainingRun
from tts.run import save_run_files
from tts.speakers.learnable import ReferencePool
from tts.token_flow.length_regulator import frames_for_tokens
from tts.token_flow.model import TokenFlowConfig
from tts.trainers.config import (
    TTSRunConfig,
    check_flow_schedule,
    check_manifest,
    check_speaker_options,
    check_transformer,
)
from tts.trainers.data import batch_stream, check_speakers, corpus_stats, speaker_of, training_corpus
from tts.trainers.model_trainer import ModelTrainer, is_restart

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
    speaker_encoder: str = "none"  # none | learnable: MiniMax-Speech's speaker encoder on a reference clip's latents
    speaker_layers: int = 2  # learnable speaker encoder: transformer blocks
    reference_frames: int = 64  # learnable speaker encoder: reference crops of at most this many latent frames
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


class TokenLatentItems:
    """A corpus row -> ``{"tokens" (N,), "latent" normalised (T, D)[, "speaker" (S,)]}``; None for rows
    over ``max_frames`` frames."""

    def __init__(self, stats: LatentStats, max_frames: int, speaker_dim: int, source: Path,
                 references: ReferencePool | None = None):
        self.stats, self.max_frames, self.speaker_dim, self.source = stats, max_frames, speaker_dim, source
        self.references = references

    def __call__(self, row: dict[str, Any], rng: random.Random) -> dict[str, torch.Tensor] | None:
        if int(row["num_frames"]) > self.max_frames:
            return None
        if row.get("tokens") is None:
            raise ManifestError(f"{self.source}: row {row['id']} has no speech tokens (add them with dcae tokens)")
        out = {"tokens": torch.as_tensor(row["tokens"], dtype=torch.long),
               "latent": self.stats.normalize(torch.from_numpy(row["latent"]).T.float())}
        if self.speaker_dim:
            out["speaker"] = speaker_of(row, self.speaker_dim, self.source)
        if self.references is not None:
            out["reference"] = self.references.for_row(row, out["latent"], rng)
        return out


def latent_frames(item: dict[str, torch.Tensor]) -> int:
    return int(item["latent"].shape[0])


def collate_token_latents(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """tokens (B, N) + token_mask, latent (B, T, D) + latent_mask, right-padded; speaker (B, S) and reference
    (B, R, D) + reference_mask when present."""
    tokens, token_mask = pad_sequences([it["tokens"] for it in items])
    latent, latent_mask = pad_sequences([it["latent"] for it in items])
    batch = {"tokens": tokens, "token_mask": token_mask, "latent": latent, "latent_mask": latent_mask}
    if "speaker" in items[0]:
        batch["speaker"] = torch.stack([it["speaker"] for it in items])
    if "reference" in items[0]:
        batch["reference"], batch["reference_mask"] = pad_sequences([it["reference"] for it in items])
    return batch


def check_lengths(source: Path, ids: list[str], frames: list[int], counts: list[int], token_rate: float,
                  frame_rate: float, tolerance: int) -> None:
    """Each latent's frame count is ``round(num_tokens / token_rate * frame_rate)`` within ``tolerance``
    frames (more: the tokens and the latent come from different audio). Raises :class:`ManifestError`."""
    per_frame = token_rate / frame_rate
    for uid, n_frames, count in zip(ids, frames, counts):
        expected = frames_for_tokens(count, per_frame)
        if abs(n_frames - expected) > tolerance:
            raise ManifestError(f"{source}: row {uid}: {count} tokens at {token_rate:g}/s make {expected} latent "
                                f"frames but the latent has {n_frames} (tokens and latent of different audio? "
                                f"--length-tolerance {tolerance})")


def prepare_run(cfg: TokenFlowTrainConfig, log) -> None:
    """Write the run files on the first start (main process only)."""
    out = Path(cfg.output_dir)
    if is_restart(out, KIND):
        return
    corpus = training_corpus(cfg)
    rows = [(row["id"], int(row["num_frames"])) for row in corpus.rows(["num_frames"])]
    tokens = corpus.token_info(counts=True)
    meta, dim = corpus.meta, corpus.latent_dim
    kept = [(uid, frames, count) for (uid, frames), count in zip(rows, tokens.counts) if frames <= cfg.max_frames]
    if not kept:
        raise ManifestError(f"{corpus.path}: no row has at most {cfg.max_frames} frames")
    ids, frames, counts = (list(column) for column in zip(*kept))
    check_lengths(corpus.path, ids, frames, counts, tokens.token_rate, meta.frame_rate, cfg.length_tolerance)
    vocab = cfg.vocab_size or tokens.codebook_size or tokens.largest_id + 1
    if tokens.largest_id >= vocab:
        raise ConfigError(f"--vocab-size {vocab}: {cfg.manifest} has token id {tokens.largest_id}")
    ratio = tokens.token_rate / meta.frame_rate
    stats = corpus_stats(corpus, cfg.stats)
    latent_info = {"sample_rate": meta.sample_rate, "hop_length": meta.hop_length, "frame_rate": meta.frame_rate,
                   "model": meta.model, "latent_dim": dim, "token_rate": tokens.token_rate,
                   "tokens_per_frame": ratio, "codebook_size": vocab, "tokenizer": tokens.tokenizer}
    config = model_config(cfg, vocab, dim, ratio)
    save_run_files(out, KIND, config, None, stats, latent_info)
    log(f"{len(ids)} utterances, {sum(frames)} frames, latent dim {dim}, {vocab} token ids at "
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
        check_speaker_options(cfg)
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

    def dataset(self, run: TrainingRun) -> BatchStream:
        cfg = self.cfg
        corpus = training_corpus(cfg, run.log)
        check_speakers(corpus, cfg.speaker_dim)
        stats = LatentStats.load(Path(cfg.output_dir) / "stats.json")
        learnable = cfg.speaker_encoder == "learnable"
        items = TokenLatentItems(stats, cfg.max_frames, cfg.speaker_dim, corpus.path,
                                 ReferencePool(cfg.reference_frames) if learnable else None)
        columns = ["tokens", "latent", *(["speaker_embedding"] if cfg.speaker_dim else []),
                   *(["speaker"] if learnable else [])]
        return batch_stream(cfg, run, corpus, items, collate_token_latents, latent_frames, columns)
