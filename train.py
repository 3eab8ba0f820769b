"""Train the DC-AE mel VAE: ``python train.py [--config FILE] [--field-name VALUE ...]``.

One code path for every scale: ``python train.py`` runs on the CPU or one GPU, and
``torchrun --nproc_per_node N [--nnodes M ...] train.py`` runs data-parallel (NCCL on GPU, gloo
on CPU). Every :class:`TrainConfig` field is a flag (``--segment-samples 16384``).

Each step: random waveform segments -> BigVGAN log-mel on the device -> DC-AE (sigma-VAE noise)
-> reconstruction. The discriminators (multiband + PatchGAN) take an LSGAN step on real vs
reconstructed mels; then the generator takes a step on ``L1 * recon_loss_factor + LSGAN +
feature matching + dispersive * disp_loss_factor``. Muon drives matrix/conv weights, AdamW the rest.

Checkpoints (``model_save_path``): ``generator_{step}.pt`` (the official layout),
``discriminator_{step}.pt``, ``optimizerg_{step}.pt``, ``optimizerd_{step}.pt`` and
``state_{step}.pt`` (step, schedulers, RNG, config), written last as the completion marker.
A restart resumes from the newest complete set, also from a reference run's folder.
"""
from __future__ import annotations

import random
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from dcae import DCAEWrapper, dispersive_loss
from dcae.checkpoint import normalise_keys
from dcae.discriminators import MelDiscriminator
from dcae.gan_losses import discriminator_loss, feature_matching_loss, generator_loss
from dcae.optim import MuonAdamW, Schedulers
from dcae.utils.checkpoints import CheckpointManager
from dcae.utils.config_cli import ConfigError, parse_config, save_config
from dcae.utils.data import infinite_batches
from dcae.utils.distributed import DistInfo, all_reduce_sum, cleanup, init_distributed
from dcae.utils.schedule import cosine_schedule_with_warmup
from preprocess.dataset import SegmentDataset, collate_segments, read_clip
from preprocess.filelist import FilelistError, read_filelist
from vocoder.audio import AudioError
from vocoder.mel import MelSpectrogram

PACKAGE_ROOT = Path(__file__).resolve().parent
CHECKPOINT_FILES = ["generator", "discriminator", "optimizerg", "optimizerd", "state"]
REFERENCE_FILES = CHECKPOINT_FILES[:4]
MIN_FRAMES = 64  # the PatchGAN discriminator's five stride-2 convs need at least 64 mel frames


@dataclass
class TrainConfig:
    """Training configuration of the DC-AE mel VAE (the reference trainer's fields and defaults, plus more)."""

    # data and models (reference fields)
    train_dataset_path: str = "filelists/filelist.txt"
    model_config_path: str = str(PACKAGE_ROOT / "dcae" / "configs" / "default.json")
    vocoder_config_path: str = str(PACKAGE_ROOT / "vocoder" / "configs" / "bigvgan_v2_22khz_80band_256x.json")
    output_channels: int = 80  # mel bins seen by the discriminators

    # optimisation (reference fields)
    batch_size: int = 4  # per process
    gen_learning_rate: float = 1e-4
    disc_learning_rate: float = 1e-4
    max_grad_norm: float = 500.0
    recon_loss_factor: float = 5
    disp_loss_factor: float = 0.25
    max_steps: int = 10_000_000_000_000_000

    # output (reference fields)
    model_save_path: str = "./checkpoints"
    log_dir: str = "./runs"
    log_interval: int = 32
    save_interval: int = 1000

    warmup_steps: int = 0
    num_workers: int = 4
    segment_samples: int = 256 * 16 * 60

    # additions
    weight_decay: float = 0.1
    val_dataset_path: str | None = None
    val_interval: int = 1000
    val_num_clips: int = 8  # validation files scored for mel L1
    val_max_seconds: float = 10.0  # each validation clip is the start of its file, at most this long
    val_audio_clips: int = 4  # of those, how many are vocoded for audio + PESQ/STOI (needs vocoder_path)
    vocoder_path: str | None = None  # BigVGAN folder (config.json + bigvgan_generator.pt) or hub id
    min_audio_seconds: float = 0.1  # shorter training files are skipped
    seed: int = 1234
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    compile: bool = False  # torch.compile the generator and discriminator
    keep_checkpoints: int = 5  # newest complete checkpoint sets kept (0: keep all)
    max_nonfinite_steps: int = 20  # stop after this many consecutive steps with a NaN/Inf loss or gradient
    device: str = "auto"  # auto | cpu | cuda | cuda:N


def check_config(cfg: TrainConfig, compression: int, hop: int) -> None:
    """Raise ConfigError (one line) for values the loop cannot run with."""
    if cfg.precision not in ("fp32", "bf16"):
        raise ConfigError(f"--precision: expected fp32 or bf16, got {cfg.precision!r}")
    multiple = hop * compression
    minimum = max(2 * multiple, MIN_FRAMES * hop)
    if cfg.segment_samples % multiple or cfg.segment_samples < minimum:
        raise ConfigError(f"--segment-samples: must be a multiple of {multiple} (hop {hop} x compression "
                          f"{compression}) and at least {minimum}, got {cfg.segment_samples}")
    for name in ("batch_size", "log_interval", "save_interval", "val_interval", "max_steps"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(cfg, name)}")
    if not Path(cfg.train_dataset_path).is_file():
        raise ConfigError(f"--train-dataset-path: {cfg.train_dataset_path}: filelist not found")


# --------------------------------------------------------------------------- checkpoints


def rng_state() -> dict:
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def gather_rng_states(info: DistInfo) -> list[dict]:
    """Every rank's RNG state (a collective under DDP)."""
    if not info.is_distributed:
        return [rng_state()]
    states: list = [None] * info.world_size
    dist.all_gather_object(states, rng_state())
    return states


def save_checkpoint(manager: CheckpointManager, step: int, generator, discriminator, opt_g, opt_d,
                    sched_g, sched_d, cfg: TrainConfig, rng_states: list[dict], skipped: dict) -> None:
    state = {"step": step, "scheduler_g": sched_g.state_dict(), "scheduler_d": sched_d.state_dict(),
             "rng": rng_states, "config": asdict(cfg), "skipped": skipped}
    manager.save(step, {
        "generator": {k: v.detach().cpu() for k, v in normalise_keys(generator.state_dict()).items()},
        "discriminator": {k: v.detach().cpu() for k, v in normalise_keys(discriminator.state_dict()).items()},
        "optimizerg": opt_g.state_dict(),
        "optimizerd": opt_d.state_dict(),
        "state": state,
    })


def resume(manager: CheckpointManager, generator, discriminator, opt_g, opt_d, sched_g, sched_d,
           info: DistInfo, log) -> tuple[int, dict]:
    """Load the newest complete checkpoint set; returns ``(step, skipped_files)`` (0 when starting fresh).

    A folder of the reference trainer (no ``state_*.pt``) resumes from its newest
    generator/discriminator/optimizer set: weights always; optimizer state when its layout matches.
    """
    step = manager.latest_step()
    own = step is not None
    if not own:
        step = manager.latest_step(REFERENCE_FILES)
        if step is None:
            return 0, {}
    generator.load_state_dict(normalise_keys(manager.load("generator", step)), strict=True)
    discriminator.load_state_dict(normalise_keys(manager.load("discriminator", step)), strict=True)
    for name, optimizer in (("optimizerg", opt_g), ("optimizerd", opt_d)):
        try:
            optimizer.load_state_dict(manager.load(name, step))
        except (ValueError, KeyError) as e:
            if own:
                raise
            log(f"{manager.path(name, step)}: optimizer state not usable here ({e}); it starts afresh")
    if not own:
        sched_g.fast_forward(step)
        sched_d.fast_forward(step)
        log(f"resumed from step {step} (reference checkpoint set in {manager.directory})")
        return step, {}
    state = manager.load("state", step)
    sched_g.load_state_dict(state["scheduler_g"])
    sched_d.load_state_dict(state["scheduler_d"])
    if len(state["rng"]) == info.world_size:
        set_rng_state(state["rng"][info.rank])
    log(f"resumed from step {step} ({manager.path('state', step)})")
    return step, state.get("skipped", {})


# --------------------------------------------------------------------------- validation


def load_validation_clips(cfg: TrainConfig, multiple: int, log) -> list[torch.Tensor]:
    """The start of the first ``val_num_clips`` usable files of the validation filelist, (samples,) each."""
    if not cfg.val_dataset_path:
        return []
    clips = []
    for entry in read_filelist(cfg.val_dataset_path):
        if len(clips) == cfg.val_num_clips:
            break
        try:
            clips.append(read_clip(entry.path, int(cfg.val_max_seconds * 22050), multiple))
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
             step: int, cfg: TrainConfig, device: torch.device, log_truth: bool) -> float:
    """Mean mel L1 over the validation clips (no sigma-VAE noise); logs images, audio, PESQ/STOI.

    ``log_truth``: also log the original audio of the vocoded clips (done once per run).
    """
    from evaluation.metrics import MetricError, pesq_wb, stoi

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
                writer.add_audio(f"validation/audio_{i}", audio.clamp(-1, 1), step, sample_rate=22050)
                if log_truth:
                    writer.add_audio(f"validation/audio_{i}_truth", clip.clamp(-1, 1), step, sample_rate=22050)
                n = min(audio.numel(), clip.numel())
                try:
                    pesqs.append(pesq_wb(clip[:n], audio[:n], 22050))
                    stois.append(stoi(clip[:n], audio[:n], 22050))
                except MetricError:
                    pass
    generator.train()
    mean_l1 = sum(l1s) / len(l1s)
    writer.add_scalar("validation/mel_l1", mean_l1, step)
    if pesqs:
        writer.add_scalar("validation/pesq_wb", sum(pesqs) / len(pesqs), step)
        writer.add_scalar("validation/stoi", sum(stois) / len(stois), step)
    return mean_l1


# --------------------------------------------------------------------------- training


@dataclass
class GANParts:
    """What one training step touches. ``*_step`` are the modules the loop calls (DDP-wrapped and/or
    compiled); ``disc_eval`` is the discriminator without DDP, used where only input gradients are needed."""

    generator: DCAEWrapper
    discriminator: MelDiscriminator
    gen_step: torch.nn.Module
    disc_step: torch.nn.Module
    disc_eval: torch.nn.Module
    opt_g: MuonAdamW
    opt_d: MuonAdamW
    autocast: object


def gan_step(parts: GANParts, mel: torch.Tensor, cfg: TrainConfig) -> dict:
    """One discriminator update then one generator update on ``mel`` (B, n_mels, T).

    Returns the (detached) losses, gradient norms and whether each update was applied
    (a NaN/Inf loss or gradient norm on any rank skips that update).
    """
    generator, discriminator, opt_g, opt_d = parts.generator, parts.discriminator, parts.opt_g, parts.opt_d
    with parts.autocast:
        recon, clean_latent = parts.gen_step(mel)
    recon = recon.float()

    # discriminator: real and reconstructed mels in one batch
    with parts.autocast:
        scores, _ = parts.disc_step(torch.cat([mel, recon.detach()]))
    scores = [s.float() for s in scores]
    loss_d = discriminator_loss([s[: len(mel)] for s in scores], [s[len(mel):] for s in scores])
    opt_d.zero_grad()
    loss_d.backward()
    grad_norm_d = torch.nn.utils.clip_grad_norm_(discriminator.parameters(), cfg.max_grad_norm)
    finite_d = finite_everywhere(loss_d, grad_norm_d)
    if finite_d:
        opt_d.step()

    # generator: discriminator weights frozen, real features computed without a graph
    discriminator.requires_grad_(False)
    with parts.autocast:
        with torch.no_grad():
            _, real_features = parts.disc_eval(mel)
        fake_scores, fake_features = parts.disc_eval(recon)
    loss_recon = F.l1_loss(recon, mel)
    loss_disp = dispersive_loss(clean_latent.float())
    loss_fm = feature_matching_loss([[f.float() for f in d] for d in real_features],
                                    [[f.float() for f in d] for d in fake_features])
    loss_adv = generator_loss([s.float() for s in fake_scores])
    loss_g = loss_adv + loss_fm + cfg.recon_loss_factor * loss_recon + cfg.disp_loss_factor * loss_disp
    opt_g.zero_grad()
    loss_g.backward()
    discriminator.requires_grad_(True)
    grad_norm_g = torch.nn.utils.clip_grad_norm_(generator.parameters(), cfg.max_grad_norm)
    finite_g = finite_everywhere(loss_g, grad_norm_g)
    if finite_g:
        opt_g.step()
    losses = {"loss_g": loss_g, "loss_d": loss_d, "loss_recon": loss_recon, "loss_disp": loss_disp,
              "loss_fm": loss_fm, "loss_adv": loss_adv, "grad_norm_d": grad_norm_d, "grad_norm_g": grad_norm_g}
    return {**{k: v.detach() for k, v in losses.items()}, "finite_d": finite_d, "finite_g": finite_g}


def train(cfg: TrainConfig) -> int:
    info = init_distributed(cfg.device)
    device = info.device
    log = (lambda msg: tqdm.write(msg)) if info.is_main else (lambda msg: None)
    seed_everything(cfg.seed + info.rank)
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")

    # models, mel front end, optimizers
    generator = DCAEWrapper(cfg.model_config_path).to(device)
    discriminator = MelDiscriminator(cfg.output_channels).to(device)
    mel_fn = MelSpectrogram(cfg.vocoder_config_path).to(device)
    check_config(cfg, generator.compression, mel_fn.hop_length)
    opt_g = MuonAdamW([generator], cfg.gen_learning_rate, cfg.weight_decay)
    opt_d = MuonAdamW([discriminator], cfg.disc_learning_rate, cfg.weight_decay)
    sched_g = Schedulers([cosine_schedule_with_warmup(o, cfg.warmup_steps, cfg.max_steps) for o in opt_g.optimizers])
    sched_d = Schedulers([cosine_schedule_with_warmup(o, cfg.warmup_steps, cfg.max_steps) for o in opt_d.optimizers])
    n_params = sum(p.numel() for p in generator.parameters()) / 1e6
    log(f"generator {n_params:.2f} M parameters; discriminator "
        f"{sum(p.numel() for p in discriminator.parameters()) / 1e6:.2f} M; {info.world_size} process(es) on {device}")

    checkpoints = CheckpointManager(cfg.model_save_path, CHECKPOINT_FILES, keep=cfg.keep_checkpoints)
    step, skipped_files = resume(checkpoints, generator, discriminator, opt_g, opt_d, sched_g, sched_d, info, log)
    if info.is_main:
        Path(cfg.model_save_path).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(cfg.model_save_path) / "train_config.json")

    # the modules the loop calls: DDP for the synchronised updates, compiled when asked
    gen_step = DDP(generator, device_ids=[device] if device.type == "cuda" else None) if info.is_distributed else generator
    disc_step = DDP(discriminator, device_ids=[device] if device.type == "cuda" else None) if info.is_distributed else discriminator
    disc_eval = discriminator  # in the generator step only input gradients are needed: no DDP sync
    if cfg.compile:
        gen_step, disc_step, disc_eval = torch.compile(gen_step), torch.compile(disc_step), torch.compile(disc_eval)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else nullcontext())
    parts = GANParts(generator, discriminator, gen_step, disc_step, disc_eval, opt_g, opt_d, autocast)

    # data
    dataset = SegmentDataset(cfg.train_dataset_path, cfg.segment_samples, mel_fn.sample_rate, cfg.min_audio_seconds)
    if len(dataset) < cfg.batch_size * info.world_size:
        raise ConfigError(f"{cfg.train_dataset_path}: {len(dataset)} files, fewer than one batch "
                          f"({cfg.batch_size} x {info.world_size} processes)")
    sampler = DistributedSampler(dataset, shuffle=True, seed=cfg.seed, drop_last=True) if info.is_distributed else None
    workers = dict(num_workers=cfg.num_workers, persistent_workers=True, prefetch_factor=4) if cfg.num_workers else {}
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
                        collate_fn=collate_segments, pin_memory=device.type == "cuda", **workers)
    batches = infinite_batches(loader, sampler, epoch=step // len(loader))

    writer = None
    val_clips: list[torch.Tensor] = []
    vocoder = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(cfg.log_dir)
        val_clips = load_validation_clips(cfg, mel_fn.hop_length * generator.compression, log)
        if cfg.vocoder_path and val_clips:
            from vocoder.bigvgan_loader import load_vocoder

            vocoder = load_vocoder(cfg.vocoder_path, device)

    consecutive_nonfinite = total_nonfinite = 0
    truth_logged = False
    samples_per_step = cfg.batch_size * info.world_size
    bar = tqdm(total=cfg.max_steps if cfg.max_steps < 1e12 else None, initial=step, disable=not info.is_main,
               dynamic_ncols=True, unit="step")
    t_last, step_last = time.perf_counter(), step
    generator.train()
    discriminator.train()

    while step < cfg.max_steps:
        batch = next(batches)
        for problem in batch.skipped:  # "path: reason" of files that could not be used
            if problem not in skipped_files:
                log(f"skipped {problem}")
            skipped_files[problem] = skipped_files.get(problem, 0) + 1
        with torch.no_grad():
            mel = mel_fn(batch.audio.to(device, non_blocking=True))  # (B, n_mels, T)

        out = gan_step(parts, mel, cfg)
        finite_d, finite_g = out["finite_d"], out["finite_g"]
        sched_d.step()
        sched_g.step()
        step += 1
        bar.update(1)

        if finite_d and finite_g:
            consecutive_nonfinite = 0
        else:
            consecutive_nonfinite += 1
            total_nonfinite += 1
            log(f"step {step}: non-finite {'discriminator' if not finite_d else 'generator'} loss or gradient; "
                f"update skipped ({consecutive_nonfinite} in a row, {total_nonfinite} in total)")
            if consecutive_nonfinite >= cfg.max_nonfinite_steps:
                log(f"stopping: {consecutive_nonfinite} consecutive steps had NaN/Inf losses or gradients. "
                    f"Lower the learning rates, use --precision fp32, or resume from an earlier checkpoint "
                    f"in {cfg.model_save_path}.")
                bar.close()
                cleanup()
                return 1

        if info.is_main and step % cfg.log_interval == 0:
            now = time.perf_counter()
            samples_per_s = (step - step_last) * samples_per_step / (now - t_last)
            t_last, step_last = now, step
            values = {"training/gen_loss_total": out["loss_g"], "training/fm_loss_discriminator": out["loss_fm"],
                      "training/gen_loss_discriminator": out["loss_adv"], "training/disc_loss_discriminator": out["loss_d"],
                      "training/recon_loss": out["loss_recon"], "training/disp_loss": out["loss_disp"],
                      "grad_norm/grad_norm_discriminator": out["grad_norm_d"], "grad_norm/grad_norm_g": out["grad_norm_g"],
                      "learning_rate/learning_rate_d": sched_d.last_lr(), "learning_rate/learning_rate_g": sched_g.last_lr(),
                      "speed/samples_per_second": samples_per_s,
                      "speed/audio_seconds_per_second": samples_per_s * cfg.segment_samples / mel_fn.sample_rate,
                      "data/skipped_files": len(skipped_files), "training/nonfinite_steps": total_nonfinite}
            for tag, value in values.items():
                writer.add_scalar(tag, value.item() if isinstance(value, torch.Tensor) else value, step)
            bar.set_postfix(g=f"{out['loss_g'].item():.3f}", d=f"{out['loss_d'].item():.3f}", recon=f"{out['loss_recon'].item():.3f}",
                            sps=f"{samples_per_s:.1f}")

        if info.is_main and val_clips and step % cfg.val_interval == 0:
            val_l1 = validate(generator, mel_fn, val_clips, vocoder, writer, step, cfg, device, log_truth=not truth_logged)
            truth_logged = True
            log(f"step {step}: validation mel L1 {val_l1:.4f}")

        if step % cfg.save_interval == 0 or step == cfg.max_steps:
            rng_states = gather_rng_states(info)
            if info.is_main:
                save_checkpoint(checkpoints, step, generator, discriminator, opt_g, opt_d, sched_g, sched_d,
                                cfg, rng_states, skipped_files)
                log(f"step {step}: saved {checkpoints.path('generator', step)} (recon loss {out['loss_recon'].item():.4f})")

    bar.close()
    if writer is not None:
        writer.close()
    cleanup()
    return 0


def finite_everywhere(loss: torch.Tensor, grad_norm: torch.Tensor) -> bool:
    """True when ``loss`` and ``grad_norm`` are finite on every rank (one tiny all-reduce under DDP)."""
    bad = (~torch.isfinite(loss.detach()) | ~torch.isfinite(grad_norm)).float().reshape(1)
    return all_reduce_sum(bad).item() == 0


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(TrainConfig, argv, prog="train.py")
        return train(cfg)
    except (ConfigError, FilelistError) as e:
        print(f"error: {e}", file=sys.stderr)
        cleanup()
        return 2


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        sys.exit(main())
