"""Text -> speech tokens trainer (``--model token-lm``) on the shared harness.

Reads rows with ``text`` and speech tokens (the latents are not used) from the corpus ``--manifest``
names (a ``manifest.jsonl`` with ``token_path``, or a shard folder with a ``tokens`` column), streamed
in batches (:mod:`tts.trainers.data`; ``--batch-frames`` counts layout positions). The first start
writes the run files (:mod:`tts.run`): the text vocabulary fitted on the texts, ``latent.json`` (here:
the token rate, codebook size and tokenizer of the token files, and the length rule: the smallest
and largest speech tokens per text id seen, with a margin) and the model description; a restart with
the same ``--output-dir`` reuses them and resumes from the newest complete checkpoint set.

Every token file must have the same token rate. The codebook size is ``--codebook-size``, else the
files' ``codebook_size`` metadata, else the largest id + 1. With ``--bistream`` each utterance whose
speech outlasts its full text chunks is trained in the interleaved layout with probability
``bistream_prob`` (the plain layout otherwise), so one model serves both synthesis modes.

With ``--backbone PATH_OR_HUB_ID`` the model is :class:`tts.token_lm.backbone.BackboneTokenLM`: a
Hugging Face causal LM started from its pretrained weights, the text read by its own tokenizer
(``RUN/backbone/`` keeps its config and tokenizer; the weights are in the checkpoints), in CosyVoice
2's layout; ``--lora-rank`` trains LoRA adapters instead of the whole backbone, ``--gradient-checkpointing``
trades compute for memory, and ``--text-condition hidden`` is MinMo's conditioning.

With ``--speaker-encoder learnable`` (MiniMax-Speech) the first position is the vector of a learnable
speaker encoder (:mod:`tts.speakers.learnable`) reading a reference crop of another utterance of the
row's ``speaker`` (a crop of itself when rows carry no speaker id), trained jointly; the latents are
then read too, normalised by the corpus stats (``RUN/stats.json``), and the vector is dropped (zero)
with the text (``--cond-drop``).
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dcae.corpus import LatentStats, ManifestError, pad_sequences
from dcae.corpus.stream import BatchStream
from dcae.training import ConfigError, TrainingRun
from tts.run import save_run_files
from tts.speakers.learnable import ReferencePool
from tts.text import KINDS as FRONTEND_KINDS
from tts.text import FrontendError, TextFrontend
from tts.token_lm.backbone import TEXT_CONDITIONS, BackboneError, BackboneLMConfig, BackboneTokenizer, backbone_config
from tts.token_lm.layout import IGNORE, bistream_layout, fits_bistream, plain_layout
from tts.token_lm.model import TokenLMConfig
from tts.trainers.config import TTSRunConfig, check_manifest, check_speaker_options, check_transformer
from tts.trainers.data import batch_stream, check_speakers, corpus_stats, speaker_of, training_corpus
from tts.trainers.model_trainer import ModelTrainer, is_restart

KIND = "token-lm"
BACKBONE_DIR, TEXT_LLM_DIR = "backbone", "text_llm"  # in the run folder: the backbone's (and frozen LLM's) config
LENGTH_MARGIN = 0.8  # the length rule allows this fraction of the smallest ratio seen, and 1 / it of the largest


@dataclass
class TokenLMTrainConfig(TTSRunConfig):
    """Training configuration of the text-to-speech-token language model."""

    model: str = KIND  # which model to train
    # data
    text_frontend: str = "chars"  # chars | bytes | phonemes
    lowercase: bool = True  # lowercase the text before tokenising
    phoneme_language: str = "en-us"  # espeak-ng voice for text_frontend=phonemes
    max_tokens: int = 1500  # utterances with more speech tokens are left out
    codebook_size: int = 0  # speech-token ids (0: the token files' codebook_size, else the largest id + 1)
    min_len_ratio: float = 0.0  # fewest new speech tokens per text id at synthesis (0: fitted on the data)
    max_len_ratio: float = 0.0  # most new speech tokens per text id at synthesis (0: fitted on the data)
    # model
    width: int = 256  # transformer width
    layers: int = 6  # transformer blocks
    heads: int = 4  # attention heads
    ff_mult: float = 4.0  # feed-forward width / width
    dropout: float = 0.0  # dropout in attention and feed-forward
    speaker_dim: int = 0  # speaker embedding size (0: none; else rows need speaker_path)
    cond_drop: float = 0.0  # text hidden with this probability (classifier-free guidance; 0: off)
    # bistream
    bistream: bool = False  # also train the interleaved text/speech layout (streaming text in)
    bistream_prob: float = 0.5  # fraction of the fitting utterances trained interleaved
    text_chunk: int = 5  # bistream: text ids per chunk (N)
    speech_chunk: int = 15  # bistream: speech tokens per chunk (M); utterances need more than M/N tokens per id
    # pretrained LLM backbone (a Hugging Face causal LM); width/layers/heads/ff_mult/dropout/text_frontend then unused
    backbone: str = ""  # folder or hub id of the backbone (e.g. Qwen/Qwen2.5-0.5B); empty: the from-scratch transformer
    text_condition: str = "embeddings"  # backbone: embeddings (CosyVoice 2) | hidden (MinMo: a frozen text LLM's states)
    text_llm: str = ""  # text_condition=hidden: folder or hub id of the frozen text LLM (empty: the backbone as loaded)
    lora_rank: int = 0  # backbone: > 0 trains LoRA adapters of this rank (peft) instead of the whole backbone
    lora_alpha: int = 16  # backbone: LoRA scale numerator
    gradient_checkpointing: bool = False  # backbone: recompute activations in the backward pass (less memory)
    # learnable speaker encoder (MiniMax-Speech)
    speaker_encoder: str = "none"  # none | learnable: a reference clip's latents -> the first position, trained jointly
    speaker_layers: int = 2  # learnable speaker encoder: transformer blocks
    reference_frames: int = 64  # learnable speaker encoder: reference crops of at most this many latent frames


def model_config(cfg: TokenLMTrainConfig, text_vocab: int, codebook: int, latent_dim: int = 80) -> dict[str, Any]:
    if cfg.backbone:
        fields = {k: getattr(cfg, k) for k in BackboneLMConfig.__dataclass_fields__ if hasattr(cfg, k)}
        fields.update(backbone=BACKBONE_DIR, text_vocab=text_vocab, codebook_size=codebook,
                      text_llm=TEXT_LLM_DIR if cfg.text_llm else "", latent_dim=latent_dim)
        return asdict(BackboneLMConfig(**fields))
    fields = {k: getattr(cfg, k) for k in TokenLMConfig.__dataclass_fields__ if hasattr(cfg, k)}
    fields.update(text_vocab=text_vocab, codebook_size=codebook, latent_dim=latent_dim)
    return asdict(TokenLMConfig(**fields))


def prepare_run(cfg: TokenLMTrainConfig, log) -> None:
    """Write the run files on the first start (main process only)."""
    out = Path(cfg.output_dir)
    if is_restart(out, KIND):
        return
    corpus = training_corpus(cfg)
    rows = list(corpus.rows(["text"]))
    for row in rows:
        if not str(row.get("text", "")).strip():
            raise ManifestError(f"{corpus.path}: row {row['id']} has no text (the token LM reads text)")
    tokens = corpus.token_info(counts=True)
    kept = [(row, n) for row, n in zip(rows, tokens.counts) if n <= cfg.max_tokens]
    if not kept:
        raise ManifestError(f"{corpus.path}: no row has at most {cfg.max_tokens} speech tokens")
    rows, counts = [r for r, _ in kept], [n for _, n in kept]
    texts = [str(r["text"]) for r in rows]
    if cfg.backbone:
        frontend = save_backbone_files(cfg, out, log)
    else:
        frontend = TextFrontend.fit(texts, cfg.text_frontend, cfg.lowercase, cfg.phoneme_language)
    lengths = [len(ids) for ids in frontend.encode_batch(texts)]
    empty = [r["id"] for r, n in zip(rows, counts) if n == 0]
    if empty:
        raise ManifestError(f"{cfg.manifest}: row {empty[0]}: its token file holds no tokens")
    codebook = cfg.codebook_size or tokens.codebook_size or tokens.largest_id + 1
    if tokens.largest_id >= codebook:
        raise ConfigError(f"--codebook-size {codebook}: {cfg.manifest} has token id {tokens.largest_id}")
    ratios = [n / max(1, text_len) for n, text_len in zip(counts, lengths)]  # speech tokens per text id
    info = {"token_rate": tokens.token_rate, "codebook_size": codebook, "tokenizer": tokens.tokenizer,
            "tokens_per_text": sum(ratios) / len(ratios),
            "min_len_ratio": cfg.min_len_ratio or LENGTH_MARGIN * min(ratios),
            "max_len_ratio": cfg.max_len_ratio or max(ratios) / LENGTH_MARGIN}
    if cfg.bistream:
        fit = sum(fits_bistream(n, count, cfg.text_chunk, cfg.speech_chunk) for n, count in zip(lengths, counts))
        if fit == 0:
            raise ConfigError(f"--bistream: no utterance has more than {cfg.speech_chunk}/{cfg.text_chunk} speech "
                              f"tokens per text id (the corpus has {min(ratios):.2f}..{max(ratios):.2f}); "
                              f"lower --speech-chunk or raise --text-chunk")
        info["bistream_fit"] = fit / len(rows)
        log(f"bistream: {fit} of {len(rows)} utterances fit the {cfg.text_chunk}:{cfg.speech_chunk} layout")
    stats = corpus_stats(corpus, "auto") if cfg.speaker_encoder == "learnable" else None  # the references' scale
    if stats is not None:
        info["latent_dim"] = corpus.latent_dim
    save_run_files(out, KIND, model_config(cfg, frontend.vocab_size, codebook, info.get("latent_dim", 80)),
                   None if cfg.backbone else frontend, stats, info)
    log(f"{len(rows)} utterances, {sum(counts)} speech tokens at "
        f"{tokens.token_rate:g}/s, codebook {codebook}, text vocabulary {frontend.vocab_size} "
        f"({cfg.backbone + ' tokenizer' if cfg.backbone else cfg.text_frontend}), "
        f"{info['tokens_per_text']:.2f} tokens per text id (length rule {info['min_len_ratio']:.2f}.."
        f"{info['max_len_ratio']:.2f})")


def save_backbone_files(cfg: TokenLMTrainConfig, out: Path, log) -> BackboneTokenizer:
    """RUN/backbone/ (and RUN/text_llm/): the backbone's config and tokenizer, so the run rebuilds without
    its source; returns the tokenizer (the run's text front end)."""
    try:
        config = backbone_config(cfg.backbone)
        tokenizer = BackboneTokenizer.load(cfg.backbone, config.vocab_size)
        config.save_pretrained(str(out / BACKBONE_DIR))
        tokenizer.save(out / BACKBONE_DIR)
        if cfg.text_llm:
            backbone_config(cfg.text_llm).save_pretrained(str(out / TEXT_LLM_DIR))
    except BackboneError as e:
        raise ConfigError(f"--backbone: {e}") from None
    log(f"backbone {cfg.backbone}: {config.model_type}, hidden {config.hidden_size}, {config.num_hidden_layers} "
        f"layers, text vocabulary {config.vocab_size}")
    return tokenizer


class LayoutItems:
    """A corpus row -> its layout (:mod:`tts.token_lm.layout`) as tensors ``inputs``, ``targets``,
    ``is_text`` (S,) [+ ``speaker`` (S_dim,)]; None for rows over ``max_tokens`` speech tokens. With
    bistream training each fitting row is interleaved with probability ``bistream_prob``, drawn from
    the window's seeded ``rng`` (so a resumed run draws the same)."""

    def __init__(self, frontend: TextFrontend | BackboneTokenizer, cfg: TokenLMConfig | BackboneLMConfig, max_tokens: int, bistream_prob: float,
                 source: Path, stats: LatentStats | None = None):
        self.frontend, self.cfg, self.vocab, self.max_tokens, self.source = frontend, cfg, cfg.vocab, max_tokens, source
        self.bistream_prob = bistream_prob if cfg.bistream else 0.0
        self.stats = stats  # learnable speaker encoder: references are normalised latents
        self.references = ReferencePool(cfg.reference_frames) if cfg.speaker_encoder == "learnable" else None

    def __call__(self, row: dict[str, Any], rng: random.Random) -> dict[str, torch.Tensor] | None:
        if row.get("tokens") is None:
            raise ManifestError(f"{self.source}: row {row['id']} has no speech tokens (add them with dcae tokens)")
        speech = [int(t) for t in row["tokens"]]
        if len(speech) > self.max_tokens:
            return None
        bad = [t for t in speech if t >= self.vocab.codebook]
        if bad:
            raise ManifestError(f"{self.source}: row {row['id']}: token id {bad[0]} >= codebook size "
                                f"{self.vocab.codebook}")
        text = self.frontend.encode(str(row.get("text", "")))
        if not text:
            raise ManifestError(f"{self.source}: row {row['id']} has text with no symbols")
        bistream = rng.random() < self.bistream_prob
        if bistream and fits_bistream(len(text), len(speech), self.cfg.text_chunk, self.cfg.speech_chunk):
            lay = bistream_layout(self.vocab, text, speech, self.cfg.text_chunk, self.cfg.speech_chunk)
        else:
            lay = plain_layout(self.vocab, text, speech)
        item = {"inputs": torch.tensor(lay.inputs), "targets": torch.tensor(lay.targets),
                "is_text": torch.tensor(lay.is_text)}
        if self.cfg.speaker_dim:
            item["speaker"] = speaker_of(row, self.cfg.speaker_dim, self.source)
        if self.references is not None:
            latent = self.stats.normalize(torch.from_numpy(row["latent"]).T.float())
            item["reference"] = self.references.for_row(row, latent, rng)
        return item


def layout_length(item: dict[str, torch.Tensor]) -> int:
    return int(item["inputs"].shape[0])


def collate_layouts(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """inputs, targets, is_text, valid (B, S) right-padded; speaker (B, S_dim) when present."""
    inputs, valid = pad_sequences([it["inputs"] for it in items])
    targets, _ = pad_sequences([it["targets"] for it in items], value=IGNORE)
    is_text, _ = pad_sequences([it["is_text"] for it in items])
    batch = {"inputs": inputs.long(), "targets": targets.long(), "valid": valid, "is_text": is_text.bool()}
    if "speaker" in items[0]:
        batch["speaker"] = torch.stack([it["speaker"] for it in items])
    if "reference" in items[0]:
        batch["reference"], batch["reference_mask"] = pad_sequences([it["reference"] for it in items])
    return batch


class TokenLMTrainer(ModelTrainer):
    """Next-token cross-entropy on the speech tokens of plain (and bistream) layouts."""

    config_class = TokenLMTrainConfig
    user_errors = (ManifestError, FrontendError)

    kind = KIND

    def check(self) -> None:
        cfg = self.cfg
        if cfg.model != KIND:
            raise ConfigError(f"--model: this trainer is {KIND}, got {cfg.model!r}")
        if cfg.text_frontend not in FRONTEND_KINDS:
            raise ConfigError(f"--text-frontend: expected one of {', '.join(FRONTEND_KINDS)}, got {cfg.text_frontend!r}")
        check_transformer(cfg)
        if cfg.layers < 1 or cfg.text_chunk < 1 or cfg.speech_chunk < 1:
            raise ConfigError("--layers, --text-chunk and --speech-chunk must be at least 1")
        if cfg.speaker_dim < 0 or cfg.codebook_size < 0 or cfg.max_tokens < 1:
            raise ConfigError("--speaker-dim and --codebook-size must be >= 0, --max-tokens >= 1")
        check_speaker_options(cfg)
        for name in ("cond_drop", "bistream_prob"):
            if not 0 <= getattr(cfg, name) <= 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(cfg, name)}")
        if cfg.text_condition not in TEXT_CONDITIONS:
            raise ConfigError(f"--text-condition: one of {', '.join(TEXT_CONDITIONS)}, got {cfg.text_condition!r}")
        if not cfg.backbone and (cfg.text_condition != "embeddings" or cfg.text_llm or cfg.lora_rank
                                 or cfg.gradient_checkpointing):
            raise ConfigError("--text-condition/--text-llm/--lora-rank/--gradient-checkpointing need --backbone")
        if cfg.text_llm and cfg.text_condition != "hidden":
            raise ConfigError("--text-llm is the frozen LLM of --text-condition hidden")
        if cfg.lora_rank < 0:
            raise ConfigError(f"--lora-rank must be >= 0 (0: full fine-tuning), got {cfg.lora_rank}")
        if cfg.min_len_ratio < 0 or cfg.max_len_ratio < 0 or (
                cfg.max_len_ratio and cfg.min_len_ratio > cfg.max_len_ratio):
            raise ConfigError("--min-len-ratio/--max-len-ratio: need 0 <= min <= max (0: fitted on the data)")
        if not math.isfinite(cfg.learning_rate) or cfg.learning_rate <= 0:
            raise ConfigError(f"--learning-rate must be a positive number, got {cfg.learning_rate}")
        check_manifest(cfg)

    def build(self, run: TrainingRun) -> None:
        out = Path(self.cfg.output_dir)
        fresh = not is_restart(out, KIND) or not self.checkpoints_exist(out)
        info = self.run_files(run, prepare_run)
        if not self.cfg.backbone:
            self.frontend = TextFrontend.load(out / "vocab.json")
            self.setup(run, KIND, model_config(self.cfg, self.frontend.vocab_size, info["codebook_size"],
                                               info.get("latent_dim", 80)))
            return
        text_vocab = json.loads((out / "model.json").read_text())["config"]["text_vocab"]
        try:
            self.frontend = BackboneTokenizer.load(out / BACKBONE_DIR, text_vocab)
        except BackboneError as e:
            raise ConfigError(str(e)) from None
        # a first start loads the pretrained weights; a restart rebuilds from RUN/backbone and its checkpoint
        self.setup(run, KIND, model_config(self.cfg, text_vocab, info["codebook_size"], info.get("latent_dim", 80)),
                   root=out,
                   weights=self.cfg.backbone if fresh else None,
                   text_llm_weights=self.cfg.text_llm if fresh and self.cfg.text_llm else None)

    @staticmethod
    def checkpoints_exist(out: Path) -> bool:
        return any((out / "checkpoints").glob("model_*.pt"))

    def dataset(self, run: TrainingRun) -> BatchStream:
        cfg = self.cfg
        corpus = training_corpus(cfg, run.log)
        check_speakers(corpus, cfg.speaker_dim)
        learnable = cfg.speaker_encoder == "learnable"
        stats = LatentStats.load(Path(cfg.output_dir) / "stats.json") if learnable else None
        items = LayoutItems(self.frontend, self.model.cfg, cfg.max_tokens, cfg.bistream_prob, corpus.path, stats)
        columns = ["text", "tokens", *(["speaker_embedding"] if cfg.speaker_dim else []),
                   *(["latent", "speaker"] if learnable else [])]
        if cfg.backbone:
            self.user_errors = (*self.user_errors, BackboneError)
        return batch_stream(cfg, run, corpus, items, collate_layouts, layout_length, columns)
