"""The DC-AE's trainer: ``python train.py [--config FILE] [--field-name VALUE ...]`` (``dcae train ...``).

One code path for every scale: ``python train.py`` runs on the CPU or one GPU, and
``torchrun --nproc_per_node N [--nnodes M ...] train.py`` runs data-parallel (NCCL on GPU, gloo
on CPU). Every :class:`TrainConfig` field is a flag (``--segment-samples 16384``); ``--help``
lists them with their meaning. The loop itself (resume, precision, NaN guard, logging,
checkpoints) is the shared harness, :mod:`dcae.training`; this module is what is particular to the
DC-AE: its models, its data and its GAN step.

Each step: random waveform segments -> BigVGAN log-mel on the device -> DC-AE (sigma-VAE noise)
-> reconstruction. The discriminators (multiband + PatchGAN) take an LSGAN step on real vs
reconstructed mels; then the generator takes a step on ``L1 * recon_loss_factor + LSGAN +
feature matching + dispersive * disp_loss_factor``. Muon drives matrix/conv weights, AdamW the rest.

Checkpoints (``model_save_path``): ``generator_{step}.pt`` (the official layout),
``discriminator_{step}.pt``, ``optimizerg_{step}.pt``, ``optimizerd_{step}.pt`` and
``state_{step}.pt`` (step, schedulers, RNG, config), written last as the completion marker.
A restart resumes from the newest complete set, also from a reference run's folder, with the
run's saved ``train_config.json`` (paths in it are absolute; options given again override it).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from dcae.audio import AudioError
from dcae.audio_shards import is_audio_shards
from dcae.hub import DEFAULT_AE_FILE, ModelNotFound, resolve_ae_model, resolve_vocoder_dir
from dcae.model.checkpoint import (
    CheckpointError,
    check_fits,
    is_weight_norm_layout,
    load_state_into,
    normalise_keys,
    read_state_dict,
)
from dcae.model.config import DEFAULT_CONFIG, DCAEConfig
from dcae.model.discriminators import MelDiscriminator
from dcae.model.gan_losses import discriminator_loss, feature_matching_loss, generator_loss
from dcae.model.losses import dispersive_loss
from dcae.model.weight_norm import add_weight_norm, fold_weight_norm
from dcae.model.wrapper import DCAEWrapper
from dcae.training import ConfigError, RunConfig, Trainer, TrainingRun, run_main
from dcae.training.optim import MuonAdamW, Schedulers
from dcae.training.schedule import cosine_schedule_with_warmup
from evaluation.metrics import MetricError, pesq_wb, stoi
from preprocess.dataset import SegmentBatch, SegmentDataset, collate_segments, note_skipped, read_clip
from preprocess.filelist import FilelistError, read_filelist
from vocoder.bigvgan_loader import load_vocoder
from vocoder.mel import PACKAGED_CONFIG as PACKAGED_MEL_CONFIG
from vocoder.mel import MelSpectrogram

MIN_FRAMES = 64  # the PatchGAN discriminator's five stride-2 convs need at least 64 mel frames


@dataclass
class TrainConfig(RunConfig):
    """Training configuration of the DC-AE mel VAE (the reference trainer's fields and defaults, plus more)."""

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("train_dataset_path", "val_dataset_path", "model_config_path", "init_from",
                                              "vocoder_config_path", "vocoder_path", "model_save_path", "log_dir")

    # data and models (reference fields)
    train_dataset_path: str = "filelists/filelist.txt"  # filelist of training audio ('path' or 'path|text' lines), or a folder of WebDataset .tar / Parquet audio shards
    model_config_path: str = str(DEFAULT_CONFIG)  # DC-AE config (diffusers JSON), or a packaged one by name: default, tiny
    vocoder_config_path: str = str(PACKAGED_MEL_CONFIG)  # mel settings (BigVGAN config.json)
    output_channels: int = 80  # mel bins seen by the discriminators

    # optimisation (reference fields)
    batch_size: int = 4  # segments per process per step
    gen_learning_rate: float = 1e-4  # generator learning rate (Muon and AdamW)
    disc_learning_rate: float = 1e-4  # discriminator learning rate
    max_grad_norm: float = 500.0  # gradient clipping of each update
    recon_loss_factor: float = 5  # weight of the mel L1 reconstruction loss
    disp_loss_factor: float = 0.25  # weight of the dispersive loss on the clean latent
    max_steps: int = 10_000_000_000_000_000  # stop after this many steps

    # output (reference fields)
    model_save_path: str = "./checkpoints"  # checkpoint folder (reference layout) and train_config.json
    log_dir: str = "./runs"  # TensorBoard folder
    log_interval: int = 32  # steps between logged losses
    save_interval: int = 1000  # steps between checkpoint sets

    warmup_steps: int = 0  # linear learning-rate warmup, then cosine decay to 0 at max_steps
    num_workers: int = min(4, os.cpu_count() or 1)  # audio-decoding worker processes per training process (default: 4, at most the machine's cores)
    segment_samples: int = 256 * 16 * 60  # samples per training segment (a multiple of hop x compression)

    # additions
    weight_decay: float = 0.1  # decoupled weight decay (Muon and AdamW)
    val_dataset_path: str | None = None  # filelist of validation audio (none: no validation)
    val_num_clips: int = 8  # validation files scored for mel L1
    val_max_seconds: float = 10.0  # each validation clip is the start of its file, at most this long
    val_audio_clips: int = 4  # of those, how many are vocoded for audio + PESQ/STOI (needs vocoder_path)
    vocoder_path: str | None = None  # BigVGAN folder (config.json + bigvgan_generator.pt) or hub id, for validation audio
    min_audio_seconds: float = 0.1  # shorter training files are skipped
    keep_checkpoints: int = 5  # newest complete checkpoint sets kept (0: keep all)

    # fine-tuning (docs/training.md, "Fine-tuning")
    init_from: str | None = None  # a new run starts from this generator: a .pt (official layout) or .safetensors file, a hub id owner/repo[/file], or "published" (KdaiP/DC-Speech-VAE); fresh discriminator, optimizers and schedule
    freeze: str | None = None  # encoder (the latent space stays bit-identical: exported latents and TTS runs stay valid) or decoder: that part is not trained

    def run_dir(self) -> Path:
        return Path(self.model_save_path)

    def checkpoint_dir(self) -> Path:
        return Path(self.model_save_path)

    def tensorboard_dir(self) -> Path:
        return Path(self.log_dir)

    def config_path(self) -> Path:
        return Path(self.model_save_path) / "train_config.json"


# --------------------------------------------------------------------------- validation


def load_validation_clips(cfg: TrainConfig, sample_rate: int, multiple: int, log) -> list[torch.Tensor]:
    """The start of the first ``val_num_clips`` usable files of the validation filelist, (samples,) each."""
    if not cfg.val_dataset_path:
        return []
    clips = []
    for entry in read_filelist(cfg.val_dataset_path):
        if len(clips) == cfg.val_num_clips:
            break
        try:
            clips.append(read_clip(entry.path, int(cfg.val_max_seconds * sample_rate), multiple))
        except AudioError as e:
            log(f"validation: skipped {e}")
    log(f"validation: {len(clips)} clips from {cfg.val_dataset_path}")
    return clips


def mel_figure(truth: torch.Tensor, recon: torch.Tensor):
    """Matplotlib figure: ground-truth mel above its reconstruction, (n_mels, T) each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for ax, mel, title in ((axes[0], truth, "ground truth"), (axes[1], recon, "reconstruction")):
        ax.imshow(mel.float().cpu().numpy(), origin="lower", aspect="auto", interpolation="none")
        ax.set_title(title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def validate(generator: DCAEWrapper, mel_fn: MelSpectrogram, clips: list[torch.Tensor], vocoder, writer,
             step: int, cfg: TrainConfig, device: torch.device, log_truth: bool) -> dict[str, float]:
    """Mean mel L1 over the validation clips (no sigma-VAE noise), and PESQ-WB / STOI of the vocoded
    ones; mel images and audio go to ``writer``. ``log_truth``: also log the original audio (once)."""
    rate = mel_fn.sample_rate
    generator.eval()
    l1s, pesqs, stois = [], [], []
    for i, clip in enumerate(clips):
        mel = mel_fn(clip.to(device))
        recon = generator.decode(generator.encode(mel)).float()
        l1s.append(F.l1_loss(recon, mel).item())
        if i < cfg.val_audio_clips:
            writer.add_figure(f"validation/mel_{i}", mel_figure(mel[0], recon[0]), step)
            if vocoder is not None:
                audio = vocoder(recon)[0].cpu()
                writer.add_audio(f"validation/audio_{i}", audio.clamp(-1, 1), step, sample_rate=rate)
                if log_truth:
                    writer.add_audio(f"validation/audio_{i}_truth", clip.clamp(-1, 1), step, sample_rate=rate)
                n = min(audio.numel(), clip.numel())
                try:
                    pesqs.append(pesq_wb(clip[:n], audio[:n], rate))
                    stois.append(stoi(clip[:n], audio[:n], rate))
                except MetricError:
                    pass
    generator.train()
    values = {"validation/mel_l1": sum(l1s) / len(l1s)}
    if pesqs:
        values["validation/pesq_wb"] = sum(pesqs) / len(pesqs)
        values["validation/stoi"] = sum(stois) / len(stois)
    return values


# --------------------------------------------------------------------------- the trainer


def vocoder_problem(error: ModelNotFound) -> str:
    """``error`` in this command's terms: the hub's message names the inference flag ``--vocoder``."""
    if not error.fetch:
        return str(error)
    files = ", ".join(f"https://huggingface.co/{repo}/blob/main/{name}" for repo, name in error.fetch)
    why = "offline: the hub cannot be reached and they are not cached" if error.offline else "download failed"
    return (f"cannot get {files} ({why}); fetch them on a machine with internet and pass --vocoder-path DIR "
            f"(the folder holding config.json and bigvgan_generator.pt)")


class DCAETrainer(Trainer):
    """The DC-AE GAN trainer on the shared harness: models, data and the two-update step."""

    config_class = TrainConfig
    user_errors = (FilelistError, ModelNotFound)

    def check(self) -> None:
        """The files the run needs, before the first step: the validation filelist and vocoder too,
        which are first used at step ``val_interval``; the generator to start from."""
        cfg = self.cfg
        if cfg.freeze not in (None, "", "none", "encoder", "decoder"):
            raise ConfigError(f"--freeze: expected encoder or decoder, got {cfg.freeze!r}")
        self.init_state = None
        if cfg.init_from:  # read and checked against the config now, loaded by started() into a new run
            try:
                self.init_path = init_checkpoint(cfg.init_from)
                self.init_state = normalise_keys(read_state_dict(self.init_path))
                check_fits(DCAEConfig.from_json(cfg.model_config_path), self.init_state, str(self.init_path),
                           "--model-config-path")
            except (ModelNotFound, CheckpointError) as e:
                raise ConfigError(f"--init-from: {e}") from None
        if not Path(cfg.train_dataset_path).is_file() and not is_audio_shards(cfg.train_dataset_path):
            raise ConfigError(f"--train-dataset-path: {cfg.train_dataset_path}: neither a filelist nor a folder of "
                              f"audio shards (.tar / .parquet)")
        if cfg.val_dataset_path:
            try:
                entries = read_filelist(cfg.val_dataset_path)
            except FilelistError as e:
                raise ConfigError(f"--val-dataset-path: {e}") from None
            if not entries:
                raise ConfigError(f"--val-dataset-path: {cfg.val_dataset_path}: filelist has no audio files")
            if cfg.vocoder_path:
                try:
                    resolve_vocoder_dir(cfg.vocoder_path)  # a hub id is downloaded (or found cached) now
                except ModelNotFound as e:
                    raise ConfigError(f"--vocoder-path: {vocoder_problem(e)}") from None

    def build(self, run: TrainingRun) -> None:
        cfg, device = self.cfg, run.device
        self.generator = DCAEWrapper(cfg.model_config_path).to(device)
        self.frozen = None
        if cfg.freeze in ("encoder", "decoder"):  # before the optimizers: they take the trainable parameters only
            self.frozen = getattr(self.generator.model, cfg.freeze).requires_grad_(False)
        self.discriminator = MelDiscriminator(cfg.output_channels).to(device)
        self.mel_fn = MelSpectrogram(cfg.vocoder_config_path).to(device)
        multiple = self.mel_fn.hop_length * self.generator.compression
        minimum = max(2 * multiple, MIN_FRAMES * self.mel_fn.hop_length)
        if cfg.segment_samples % multiple or cfg.segment_samples < minimum:
            raise ConfigError(f"--segment-samples: must be a multiple of {multiple} (hop {self.mel_fn.hop_length} x "
                              f"compression {self.generator.compression}) and at least {minimum}, got {cfg.segment_samples}")
        self.opt_g = MuonAdamW([self.generator], cfg.gen_learning_rate, cfg.weight_decay)
        self.opt_d = MuonAdamW([self.discriminator], cfg.disc_learning_rate, cfg.weight_decay)
        self.sched_g = Schedulers([cosine_schedule_with_warmup(o, cfg.warmup_steps, cfg.max_steps) for o in self.opt_g.optimizers])
        self.sched_d = Schedulers([cosine_schedule_with_warmup(o, cfg.warmup_steps, cfg.max_steps) for o in self.opt_d.optimizers])
        run.register_module("generator", self.generator)
        run.register_module("discriminator", self.discriminator)
        run.register_optimizer("optimizerg", self.opt_g, self.generator.parameters(), self.sched_g, "scheduler_g")
        run.register_optimizer("optimizerd", self.opt_d, self.discriminator.parameters(), self.sched_d, "scheduler_d")
        run.log(f"generator {sum(p.numel() for p in self.generator.parameters()) / 1e6:.2f} M parameters; discriminator "
                f"{sum(p.numel() for p in self.discriminator.parameters()) / 1e6:.2f} M; {run.world_size} process(es) "
                f"on {device}, {run.precision}, Muon orthogonalization in {str(self.opt_g.ns_dtype).replace('torch.', '')}")
        # the modules the step calls: DDP for synchronised updates, compiled when asked; in the generator
        # update only the discriminator's input gradients are needed, so it runs without DDP there
        self.gen_step = run.compile(run.distributed(self.generator))
        self.disc_step = run.compile(run.distributed(self.discriminator))
        self.disc_eval = run.compile(self.discriminator)
        self.skipped_files: dict[str, int] = {}
        self.validation: tuple | None = None
        self.truth_logged = False

    def started(self, run: TrainingRun) -> None:
        """A new run with ``--init-from`` starts from that generator (a resumed run from its checkpoint)."""
        cfg = self.cfg
        if not cfg.init_from:
            return
        if run.step > 0:
            run.log(f"--init-from {cfg.init_from}: not used, the run resumes from its own checkpoint (step {run.step})")
            return
        load_generator_weights(self.generator, self.init_state, str(self.init_path))
        self.init_state = None
        frozen = f"; {cfg.freeze} frozen" if self.frozen is not None else ""
        run.log(f"generator initialised from {self.init_path}; new discriminator, optimizers and learning-rate "
                f"schedule (warmup {cfg.warmup_steps} steps){frozen}")

    def dataset(self, run: TrainingRun) -> SegmentDataset:
        return SegmentDataset(self.cfg.train_dataset_path, self.cfg.segment_samples, self.mel_fn.sample_rate,
                              self.cfg.min_audio_seconds)

    def collate(self, items) -> SegmentBatch:
        return collate_segments(items)

    def train_step(self, batch: SegmentBatch, run: TrainingRun) -> dict[str, torch.Tensor | float]:
        note_skipped(batch, self.skipped_files, run.log)  # files that could not be used
        if self.frozen is not None:
            self.frozen.eval()  # nothing in it changes, running statistics included
        with torch.no_grad():
            mel = self.mel_fn(batch.audio)  # (B, n_mels, T)
        losses = gan_step(self, mel, run)
        return {**losses, "learning_rate/learning_rate_d": self.sched_d.last_lr(),
                "learning_rate/learning_rate_g": self.sched_g.last_lr(),
                "data/skipped_files": float(len(self.skipped_files))}

    def validate(self, run: TrainingRun, step: int) -> dict[str, float]:
        if self.validation is None:  # loaded on first use (main process only)
            clips = load_validation_clips(self.cfg, self.mel_fn.sample_rate,
                                          self.mel_fn.hop_length * self.generator.compression, run.log)
            vocoder = None
            if self.cfg.vocoder_path and clips:
                vocoder = load_vocoder(self.cfg.vocoder_path, run.device)
            self.validation = (clips, vocoder)
        clips, vocoder = self.validation
        if not clips:
            return {}
        values = validate(self.generator, self.mel_fn, clips, vocoder, run.writer, step, self.cfg, run.device,
                          log_truth=not self.truth_logged)
        self.truth_logged = True
        return values

    def extra_state(self) -> dict:
        return {"skipped": dict(self.skipped_files)}

    def load_extra_state(self, state: dict) -> None:
        self.skipped_files = dict(state.get("skipped", {}))

    def adapt_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return normalise_keys(state)  # also the reference's DDP/compile prefixes and bare AutoencoderDC keys


def init_checkpoint(value: str) -> Path:
    """The generator file ``--init-from`` names: a local file, ``owner/repo/file`` or ``owner/repo`` on the
    hub (``generator_700000.pt`` then), or ``published`` (the published DC-Speech-VAE weights)."""
    if value == "published":
        return resolve_ae_model(None)
    path = Path(value)
    if not path.exists() and value.count("/") == 1 and not value.startswith((".", "/", "~")):
        return resolve_ae_model(f"{value}/{DEFAULT_AE_FILE}")
    return resolve_ae_model(value)


def load_generator_weights(generator: DCAEWrapper, state: dict[str, torch.Tensor], source: str) -> None:
    """A generator ``state`` (official weight-norm layout, or folded plain weights) into the training
    ``generator`` (weight norm applied). Raises :class:`CheckpointError` (one line naming the config the
    checkpoint fits) when it does not fit the generator's config."""
    if is_weight_norm_layout(state):
        load_state_into(generator, state, source)
        return
    plain = fold_weight_norm(DCAEWrapper(generator.config))
    load_state_into(plain, state, source)
    add_weight_norm(plain.model)
    generator.load_state_dict(plain.to(next(generator.parameters()).device).state_dict())


def gan_step(trainer: DCAETrainer, mel: torch.Tensor, run: TrainingRun) -> dict[str, torch.Tensor]:
    """One discriminator update then one generator update on ``mel`` (B, n_mels, T); the losses and
    gradient norms, detached, under the reference trainer's TensorBoard tags."""
    cfg, discriminator = trainer.cfg, trainer.discriminator
    with run.autocast():
        recon, clean_latent = trainer.gen_step(mel)
    recon = recon.float()

    # discriminator: real and reconstructed mels in one batch
    with run.autocast():
        scores, _ = trainer.disc_step(torch.cat([mel, recon.detach()]))
    scores = [s.float() for s in scores]
    loss_d = discriminator_loss([s[: len(mel)] for s in scores], [s[len(mel):] for s in scores])
    update_d = run.update("optimizerd", loss_d)

    # generator: discriminator weights frozen, real features computed without a graph
    discriminator.requires_grad_(False)
    with run.autocast():
        with torch.no_grad():
            _, real_features = trainer.disc_eval(mel)
        fake_scores, fake_features = trainer.disc_eval(recon)
    loss_recon = F.l1_loss(recon, mel)
    loss_disp = dispersive_loss(clean_latent.float())
    loss_fm = feature_matching_loss([[f.float() for f in d] for d in real_features],
                                    [[f.float() for f in d] for d in fake_features])
    loss_adv = generator_loss([s.float() for s in fake_scores])
    loss_g = loss_adv + loss_fm + cfg.recon_loss_factor * loss_recon + cfg.disp_loss_factor * loss_disp
    try:
        update_g = run.update("optimizerg", loss_g)
    finally:
        discriminator.requires_grad_(True)
    losses = {"training/gen_loss_total": loss_g, "training/fm_loss_discriminator": loss_fm,
              "training/gen_loss_discriminator": loss_adv, "training/disc_loss_discriminator": loss_d,
              "training/recon_loss": loss_recon, "training/disp_loss": loss_disp,
              "grad_norm/grad_norm_discriminator": update_d.grad_norm, "grad_norm/grad_norm_g": update_g.grad_norm}
    return {k: v.detach() for k, v in losses.items()}


def main(argv: list[str] | None = None, prog: str = "train.py") -> int:
    """Train from command-line flags (``python train.py``, ``dcae train``); the exit code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        return run_main(DCAETrainer, argv, prog=prog)
