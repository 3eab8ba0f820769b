"""Our FSQ speech tokenizer (``--model fsq-tokenizer``) trained from audio on the shared harness.

    python -m tts.train --model fsq-tokenizer --filelist train.txt --val-filelist held.txt \\
        --output-dir runs/fsq --preset tiny|base [--max-steps N]

Each step: random ``segment_frames``-long waveform windows of the filelist's files
(:class:`preprocess.dataset.SegmentDataset`, per-item seeds, so a resumed run draws the same
windows) -> BigVGAN log-mel on the device (the tokenizer's own :class:`vocoder.mel.MelSpectrogram`)
-> :class:`~tts.tokenizers.fsq.FSQTokenizer` reconstruction loss (L1 of the normalised mel).
Files shorter than a window are zero-padded by the dataset; that padding (known from the batch's
``valid_samples``, not guessed from trailing zeros) is masked out of the loss.

Validation (every ``val_interval`` steps, on the main process) reconstructs whole held-out clips
(``--val-filelist``) and logs the mel L1 against the trivial baseline (every frame predicted as the
per-bin mean of the held-out mels themselves) and the codebook usage of their tokens.

After every checkpoint set the run folder gets the tokenizer's inference files
(``fsq_tokenizer.json`` + ``fsq_tokenizer.safetensors``, :mod:`tts.tokenizers.fsq_run`), so
``load_tokenizer(RUN)`` / ``dcae tokens --tokenizer RUN`` use the newest weights.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from dcae.audio import AudioError
from dcae.training import ConfigError, RunConfig, Trainer, TrainingRun
from dcae.training.schedule import cosine_schedule_with_warmup
from preprocess.dataset import SegmentBatch, SegmentDataset, collate_segments, note_skipped, read_clip
from preprocess.filelist import FilelistError, read_filelist
from tts.presets import load_presets
from tts.tokenizers import FSQTokenizer, FSQTokenizerConfig, codebook_usage, save_fsq_tokenizer

KIND = "fsq-tokenizer"
ARCHITECTURE_FIELDS = ("mel_frames_per_token", "channels", "frame_blocks", "token_blocks", "kernel_size", "mlp_ratio",
                       "levels", "mel_mean", "mel_std")


@dataclass
class FSQTrainConfig(RunConfig):
    """Training configuration of the FSQ speech tokenizer (mel reconstruction from audio)."""

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("filelist", "val_filelist", "output_dir")

    model: str = KIND  # which model to train (python -m tts.train --model KIND --help lists its fields)
    filelist: str = "filelists/train.txt"  # training audio, lines 'path' or 'path|text' (text unused)
    val_filelist: str | None = None  # held-out audio for validation (none: no validation)
    output_dir: str = "runs/fsq"  # the run folder: config, fsq_tokenizer.{json,safetensors}, checkpoints/, logs/

    # data
    segment_frames: int = 128  # mel frames per training window (x 256 samples at 22050 Hz)
    min_audio_seconds: float = 0.1  # shorter training files are skipped
    val_num_clips: int = 64  # validation files used (the first ones of --val-filelist)
    val_max_seconds: float = 20.0  # each validation clip is the start of its file, at most this long
    num_workers: int = min(2, os.cpu_count() or 1)  # audio-decoding worker processes per training process (at most the cores)

    # tokenizer (tts.tokenizers.FSQTokenizerConfig; --preset tiny|base sets them)
    mel_frames_per_token: int = 4  # divides 16: 4 -> 21.53 tokens/s = 4 per DC-AE latent frame
    channels: int = 256  # width of the convolutional encoder and decoder
    frame_blocks: int = 2  # ConvNeXt blocks at the mel frame rate (encoder and decoder each)
    token_blocks: int = 6  # ConvNeXt blocks at the token rate (encoder and decoder each)
    kernel_size: int = 7  # depthwise kernel of the blocks
    mlp_ratio: int = 3  # hidden width of the blocks' pointwise MLP, x channels
    levels: list[int] = field(default_factory=lambda: [8, 8, 8, 6, 5])  # FSQ levels; the codebook has prod(levels) codes
    mel_mean: float = -6.0  # input normalisation: (mel - mel_mean) / mel_std
    mel_std: float = 2.8

    # optimisation
    learning_rate: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_steps: int = 500  # linear warmup, then cosine decay to a tenth of the peak at max_steps
    max_steps: int = 100_000  # stop after this many steps

    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def tokenizer_config(self) -> FSQTokenizerConfig:
        return FSQTokenizerConfig(**{name: getattr(self, name) for name in ARCHITECTURE_FIELDS}).check()


def valid_frames(valid_samples: torch.Tensor, hop_length: int) -> torch.Tensor:
    """(B,) samples of each window that came from its file (the dataset's ``valid_samples``; the rest
    is zero padding) -> (B,) mel frames that hold them (at least 1)."""
    return ((valid_samples + hop_length - 1) // hop_length).clamp(min=1)


class HeldOut:
    """Validation mels (n_mels, T_i) of the held-out clips and their per-bin-mean baseline error."""

    def __init__(self, mels: list[torch.Tensor]):
        self.mels = mels
        frames = torch.cat(mels, -1)
        self.bin_mean = frames.mean(-1, keepdim=True)  # (n_mels, 1): the trivial baseline's prediction
        self.baseline_l1 = float(sum((self.bin_mean - m).abs().sum() for m in mels) / frames.numel())
        self.num_frames = frames.shape[-1]

    @torch.no_grad()
    def score(self, model: FSQTokenizer) -> dict[str, float]:
        """Mel L1 (log-mel units, mean over every bin of every frame) of the reconstructions through the
        tokens, against the baseline; codebook usage of the held-out tokens."""
        was_training = model.training
        model.eval()
        try:
            error, tokens = 0.0, []
            for mel in self.mels:
                error += float((model.reconstruct(mel[None])[0] - mel).abs().sum())
                tokens.append(model.encode(mel[None])[0])
        finally:
            model.train(was_training)
        l1 = error / (self.num_frames * self.mels[0].shape[0])
        usage = codebook_usage(tokens, model.codebook_size)
        return {"validation/mel_l1": l1, "validation/baseline_mel_l1": self.baseline_l1,
                "validation/mel_l1_ratio": l1 / self.baseline_l1, "validation/codes_used": float(usage.codes_used),
                "validation/used_fraction": usage.used_fraction, "validation/perplexity": usage.perplexity}


class FSQTokenizerTrainer(Trainer):
    """FSQ tokenizer: audio windows -> mel on the device -> masked mel-reconstruction L1."""

    config_class = FSQTrainConfig
    user_errors = (FilelistError,)

    @classmethod
    def presets(cls) -> dict[str, dict]:
        return load_presets(KIND)

    def check(self) -> None:
        cfg = self.cfg
        if cfg.model != KIND:
            raise ConfigError(f"--model: this trainer trains {KIND}, got {cfg.model!r}")
        if not Path(cfg.filelist).is_file():
            raise ConfigError(f"--filelist: {cfg.filelist}: filelist not found")
        if cfg.val_filelist and not Path(cfg.val_filelist).is_file():
            raise ConfigError(f"--val-filelist: {cfg.val_filelist}: filelist not found")
        self.tokenizer_config = cfg.tokenizer_config()  # ConfigError (one line) for bad sizes
        if cfg.segment_frames < cfg.mel_frames_per_token:
            raise ConfigError(f"--segment-frames: must be at least --mel-frames-per-token ({cfg.mel_frames_per_token}), "
                              f"got {cfg.segment_frames}")
        if cfg.val_num_clips < 1 or not cfg.val_max_seconds > 0:
            raise ConfigError("--val-num-clips must be >= 1 and --val-max-seconds > 0")

    def build(self, run: TrainingRun) -> None:
        cfg = self.cfg
        self.model = FSQTokenizer(self.tokenizer_config).to(run.device)
        self.hop_length = self.model.config.hop_length
        run.log(f"FSQ tokenizer: {sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M parameters, "
                f"{self.model.codebook_size} codes, {self.model.token_rate:.2f} tokens/s; {run.world_size} process(es) "
                f"on {run.device}, {run.precision}")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scheduler = cosine_schedule_with_warmup(self.optimizer, cfg.warmup_steps, cfg.max_steps, min_lr_ratio=0.1)
        run.register_module("model", self.model)
        run.register_optimizer("optimizer", self.optimizer, self.model.parameters(), self.scheduler, "scheduler")
        self.step_model = run.compile(run.distributed(self.model))
        self.skipped_files: dict[str, int] = {}
        self.held_out: HeldOut | None = None
        self.held_out_loaded = False

    def saved(self, run: TrainingRun, step: int) -> None:
        save_fsq_tokenizer(self.model, self.cfg.output_dir, extra={"step": step, "trainer": KIND})

    def dataset(self, run: TrainingRun) -> SegmentDataset:
        return SegmentDataset(self.cfg.filelist, self.cfg.segment_frames * self.hop_length, self.model.sample_rate,
                              self.cfg.min_audio_seconds)

    def collate(self, items) -> SegmentBatch:
        return collate_segments(items)

    def train_step(self, batch: SegmentBatch, run: TrainingRun) -> dict[str, torch.Tensor | float]:
        note_skipped(batch, self.skipped_files, run.log)  # files that could not be used
        with torch.no_grad():
            mel = self.model.mel(batch.audio)  # (B, n_mels, T)
        lengths = valid_frames(batch.valid_samples, self.hop_length).clamp(max=mel.shape[-1])
        self.model.train()
        with run.autocast():
            losses = self.step_model(mel, lengths)
        update = run.update("optimizer", losses["loss"])
        return {"train/loss": losses["loss"].detach(), "train/mel_l1": losses["mel_l1"],
                "train/lr": self.scheduler.get_last_lr()[0], "train/grad_norm": update.grad_norm,
                "data/skipped_files": float(len(self.skipped_files))}

    def load_held_out(self, run: TrainingRun) -> HeldOut | None:
        cfg, mels = self.cfg, []
        minimum = self.hop_length * self.model.frames_per_token
        for entry in read_filelist(cfg.val_filelist)[:cfg.val_num_clips]:
            try:
                clip = read_clip(entry.path, int(cfg.val_max_seconds * self.model.sample_rate), minimum,
                                 self.model.sample_rate)
            except AudioError as e:
                run.log(f"validation: skipped {e}")
                continue
            with torch.no_grad():
                mels.append(self.model.mel(clip.to(run.device))[0])
        run.log(f"validation: {len(mels)} clips from {cfg.val_filelist}, "
                f"{sum(m.shape[-1] for m in mels)} mel frames")
        return HeldOut(mels) if mels else None

    def validate(self, run: TrainingRun, step: int) -> dict[str, float]:
        if not self.cfg.val_filelist:
            return {}
        if not self.held_out_loaded:  # on first use (main process only)
            self.held_out, self.held_out_loaded = self.load_held_out(run), True
        return self.held_out.score(self.model) if self.held_out is not None else {}

